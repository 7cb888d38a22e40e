"""Plugin discovery and the component registries.

Built-ins and third-party plugins go through the same pluggy hooks. Built-in modules are
listed by each extension-point package (``BUILTINS`` in its ``__init__``); third-party plugins
arrive through the entry-point group ``atlas_plugins``.

Environment variables:

* ``ATLAS_PLUGINS=a,b`` loads only those third-party plugins (entry-point or distribution
  names); built-ins always load. ``ATLAS_PLUGINS=`` (empty) loads no third-party plugin.
* ``ATLAS_DISABLE_PLUGINS=c,d`` skips plugins by entry-point name, distribution name, or
  built-in module (full dotted path or its last part, e.g. ``hybrid``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from atlas_plugins import hookspecs
from atlas_plugins.errors import AtlasError

ENTRY_POINT_GROUP = "atlas_plugins"
BUILTIN_DISTRIBUTION = "atlas-plugins"

#: Extension point -> (register hook, package that lists its built-in modules).
EXTENSION_POINTS: dict[str, tuple[str, str]] = {
    "retrievers": ("atlas_register_retrievers", "atlas_plugins.context.retrievers"),
    "loading_policies": ("atlas_register_loading_policies", "atlas_plugins.context.policies"),
    "executors": ("atlas_register_executors", "atlas_plugins.orchestration.executors"),
    "rubric_providers": ("atlas_register_rubric_providers", "atlas_plugins.rewards.providers"),
    "judges": ("atlas_register_judges", "atlas_plugins.rewards.judges"),
    "aggregators": ("atlas_register_aggregators", "atlas_plugins.rewards.aggregators"),
}

_SINGULAR = {
    "retrievers": "retriever",
    "loading_policies": "loading policy",
    "executors": "executor",
    "rubric_providers": "rubric provider",
    "judges": "judge",
    "aggregators": "aggregator",
}


class UnknownComponentError(AtlasError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0] if self.args else ""


class PluginConflictError(AtlasError):
    """Two plugins registered the same name for one extension point."""


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str


@dataclass
class BrokenPlugin:
    plugin: str
    distribution: str
    error: str


@dataclass
class Registry:
    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    conflicts: dict[str, list[Entry]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.entries)


class PluginManager:
    """Owns the pluggy manager, the loaded plugins and the per-extension registries."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.distributions: dict[str, str] = {}  # plugin name -> distribution name
        self.broken: list[BrokenPlugin] = []
        self._registries: dict[str, Registry] = {}
        self._lock = threading.RLock()
        self._load_builtins()
        if load_entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------
    @staticmethod
    def _split_env(var: str) -> set[str] | None:
        raw = os.environ.get(var)
        if raw is None:
            return None
        return {p.strip() for p in raw.split(",") if p.strip()}

    def _disabled(self, *names: str) -> bool:
        disabled = self._split_env("ATLAS_DISABLE_PLUGINS") or set()
        return any(n in disabled for n in names if n)

    def _load_builtins(self) -> None:
        for _kind, (_hook, package) in EXTENSION_POINTS.items():
            try:
                pkg = importlib.import_module(package)
            except Exception as exc:  # a broken built-in package must not take the rest down
                self._report_broken(package, BUILTIN_DISTRIBUTION, exc)
                continue
            for short in getattr(pkg, "BUILTINS", ()):
                module_name = f"{package}.{short}"
                if self._disabled(module_name, short):
                    continue
                try:
                    module = importlib.import_module(module_name)
                except Exception as exc:
                    self._report_broken(module_name, BUILTIN_DISTRIBUTION, exc)
                    continue
                self.register(module, name=module_name, distribution=BUILTIN_DISTRIBUTION)

    def _load_entry_points(self) -> None:
        allowed = self._split_env("ATLAS_PLUGINS")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            if self._disabled(ep.name, dist):
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                self._report_broken(ep.name, dist, exc)
                continue
            self.register(obj, name=ep.name, distribution=dist)

    def _report_broken(self, plugin: str, distribution: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        self.broken.append(BrokenPlugin(plugin, distribution, msg))
        warnings.warn(
            f"atlas-plugins: plugin {plugin!r} from distribution {distribution!r} failed to load "
            f"and was skipped ({msg})",
            RuntimeWarning,
            stacklevel=3,
        )

    def register(self, plugin: Any, *, name: str | None = None, distribution: str = "<runtime>") -> str:
        """Register a plugin object (a module or any object with hookimpls) at run time."""
        with self._lock:
            plugin_name = self.pm.register(plugin, name=name)
            if plugin_name is None:  # pluggy returns None for an already-blocked name
                raise AtlasError(f"plugin {name!r} is blocked and cannot be registered")
            self.distributions[plugin_name] = distribution
            self._registries.clear()
            return plugin_name

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.distributions.pop(name, None)
            self._registries.clear()

    # -- registries ----------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        if kind not in EXTENSION_POINTS:
            raise AtlasError(f"unknown extension point {kind!r}; known: {', '.join(EXTENSION_POINTS)}")
        with self._lock:
            if kind not in self._registries:
                self._registries[kind] = self._collect(kind)
            return self._registries[kind]

    def _collect(self, kind: str) -> Registry:
        hook_name, _ = EXTENSION_POINTS[kind]
        reg = Registry(kind)
        hook = getattr(self.pm.hook, hook_name)
        # Call each implementation on its own so every registration is attributed to its
        # plugin (and a plugin that raises here is reported without losing the others).
        for impl in reversed(hook.get_hookimpls()):
            plugin_name = impl.plugin_name
            dist = self.distributions.get(plugin_name, "<runtime>")
            pending: list[Entry] = []

            def register(name: str, factory: Callable[..., Any], _p=plugin_name, _d=dist) -> None:
                if not isinstance(name, str) or not name:
                    raise AtlasError(f"plugin {_p!r} registered a {kind} entry with an invalid name {name!r}")
                if not callable(factory):
                    raise AtlasError(f"plugin {_p!r} registered {name!r} with a non-callable factory")
                pending.append(Entry(name, factory, _p, _d))

            try:
                impl.function(register=register)
            except Exception as exc:
                self._report_broken(plugin_name, dist, exc)
                continue
            for entry in pending:
                if entry.name in reg.conflicts:
                    reg.conflicts[entry.name].append(entry)
                elif entry.name in reg.entries:
                    first = reg.entries.pop(entry.name)
                    reg.conflicts[entry.name] = [first, entry]
                else:
                    reg.entries[entry.name] = entry
        return reg

    def get(self, kind: str, name: str) -> Entry:
        reg = self.registry(kind)
        if name in reg.conflicts:
            who = " and ".join(f"{e.plugin!r} (distribution {e.distribution!r})" for e in reg.conflicts[name])
            raise PluginConflictError(
                f"{_SINGULAR[kind]} {name!r} is registered by more than one plugin: {who}. "
                "Uninstall one, or skip one with ATLAS_DISABLE_PLUGINS."
            )
        if name not in reg.entries:
            known = reg.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownComponentError(
                f"unknown {_SINGULAR[kind]} {name!r}.{hint} Registered: {', '.join(known) or '(none)'}"
            )
        return reg.entries[name]

    def create(self, kind: str, name: str, **options: Any) -> Any:
        return self.get(kind, name).factory(**options)

    def describe(self) -> dict[str, Any]:
        """The data behind ``atlas plugins --json``."""
        out: dict[str, Any] = {}
        for kind in EXTENSION_POINTS:
            reg = self.registry(kind)
            rows = [
                {"name": e.name, "plugin": e.plugin, "distribution": e.distribution}
                for e in sorted(reg.entries.values(), key=lambda e: e.name)
            ]
            for name, entries in sorted(reg.conflicts.items()):
                for e in entries:
                    rows.append(
                        {"name": name, "plugin": e.plugin, "distribution": e.distribution, "conflict": True}
                    )
            out[kind] = rows
        out["broken"] = [b.__dict__ for b in self.broken]
        return out

    # -- event hooks ----------------------------------------------------------------------
    def before_tool_call(self, server: str, tool: str, arguments: dict[str, Any]) -> str | None:
        """Run the veto hook. Returns the veto reason, or ``None`` when the call may proceed."""
        if not self.pm.hook.atlas_before_tool_call.get_hookimpls():
            return None
        for verdict in self.pm.hook.atlas_before_tool_call(server=server, tool=tool, arguments=arguments):
            if verdict is False:
                return "blocked by policy"
            if isinstance(verdict, str):
                return f"blocked by policy: {verdict}"
        return None

    def on_trajectory(self, trajectory: Any) -> None:
        self.pm.hook.atlas_on_trajectory(trajectory=trajectory)

    def on_train_step(self, metrics: dict[str, Any]) -> None:
        self.pm.hook.atlas_on_train_step(metrics=metrics)


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def reset_plugins() -> None:
    """Forget the loaded plugins; the next lookup re-reads built-ins, entry points and env vars."""
    global _manager
    with _manager_lock:
        _manager = None


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object at run time (handy in notebooks and tests)."""
    return get_plugin_manager().register(plugin, name=name)


def unregister_plugin(name: str) -> None:
    get_plugin_manager().unregister(name)


def _getter(kind: str) -> Callable[..., Any]:
    def get(name: str, **options: Any) -> Any:
        return get_plugin_manager().create(kind, name, **options)

    get.__name__ = f"get_{_SINGULAR[kind].replace(' ', '_')}"
    get.__doc__ = f"Create the {_SINGULAR[kind]} registered as ``name`` (options go to its factory)."
    return get


get_retriever = _getter("retrievers")
get_loading_policy = _getter("loading_policies")
get_executor = _getter("executors")
get_rubric_provider = _getter("rubric_providers")
get_judge = _getter("judges")
get_aggregator = _getter("aggregators")
