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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from atlas_plugins import hookspecs
from atlas_plugins.errors import AtlasError

if TYPE_CHECKING:  # typer loads with the CLI only (the env server processes import this module)
    import typer
    from typer.models import CommandInfo, TyperInfo

    from atlas_plugins.types import Trajectory

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

#: The built-in command modules, each a plugin implementing ``atlas_register_commands``; their
#: commands are added in this order, before any third-party plugin's.
BUILTIN_COMMAND_MODULES: tuple[str, ...] = (
    "atlas_plugins.context.commands",
    "atlas_plugins.orchestration.commands",
    "atlas_plugins.rewards.commands",
    "atlas_plugins.envs.commands",
    "atlas_plugins.training.commands",
    "atlas_plugins.evaluation.commands",
)

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
        # Built-in components load on first use (a registry lookup, ``describe()`` or an event
        # hook): the ``atlas`` CLI creates this manager at start-up for its command plugins and
        # should not pay for importing every retriever and judge first.
        self._builtins_loaded = False
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

    def _ensure_builtins(self) -> None:
        if self._builtins_loaded:
            return
        with self._lock:
            if not self._builtins_loaded:
                self._builtins_loaded = True
                self._load_builtins()

    def _load_builtins(self) -> None:
        for _kind, (_hook, package) in EXTENSION_POINTS.items():
            try:
                pkg = importlib.import_module(package)
            except Exception as exc:  # noqa: BLE001 - a broken built-in package must not take the rest down
                self._report_broken(package, BUILTIN_DISTRIBUTION, exc)
                continue
            for short in getattr(pkg, "BUILTINS", ()):
                module_name = f"{package}.{short}"
                if self._disabled(module_name, short):
                    continue
                try:
                    module = importlib.import_module(module_name)
                except Exception as exc:  # noqa: BLE001 - reported as a broken plugin; the others load
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
                # pluggy validates the hook implementations here (a misspelt argument name raises).
                self.register(obj, name=ep.name, distribution=dist)
            except Exception as exc:  # noqa: BLE001 - reported by name and distribution; the others load
                if self.pm.get_plugin(ep.name) is not None:  # pluggy may have added part of it
                    self.pm.unregister(name=ep.name)
                self._report_broken(ep.name, dist, exc)
                continue

    def _report_broken(self, plugin: str, distribution: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        self.broken.append(BrokenPlugin(plugin, distribution, msg))
        warnings.warn(
            f"atlas-plugins: plugin {plugin!r} from distribution {distribution!r} failed to load "
            f"and was skipped ({msg})",
            RuntimeWarning,
            stacklevel=3,
        )

    def register(self, plugin: object, *, name: str | None = None, distribution: str = "<runtime>") -> str:
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
        self._ensure_builtins()
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
        # Newest registration first, built-ins last (as when built-ins were registered first).
        impls = sorted(
            reversed(hook.get_hookimpls()),
            key=lambda i: self.distributions.get(i.plugin_name) == BUILTIN_DISTRIBUTION,
        )
        for impl in impls:
            plugin_name = impl.plugin_name
            dist = self.distributions.get(plugin_name, "<runtime>")
            pending: list[Entry] = []

            def register(
                name: str,
                factory: Callable[..., Any],
                _p: str = plugin_name,
                _d: str = dist,
                _pending: list[Entry] = pending,
            ) -> None:
                if not isinstance(name, str) or not name:
                    raise AtlasError(f"plugin {_p!r} registered a {kind} entry with an invalid name {name!r}")
                if not callable(factory):
                    raise AtlasError(f"plugin {_p!r} registered {name!r} with a non-callable factory")
                _pending.append(Entry(name, factory, _p, _d))

            try:
                impl.function(register=register)
            except Exception as exc:  # noqa: BLE001 - reported as a broken plugin; the others register
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
            rows: list[dict[str, Any]] = [
                {"name": e.name, "plugin": e.plugin, "distribution": e.distribution}
                for e in sorted(reg.entries.values(), key=lambda e: e.name)
            ]
            for name, entries in sorted(reg.conflicts.items()):
                for e in entries:
                    rows.append({"name": name, "plugin": e.plugin, "distribution": e.distribution, "conflict": True})
            out[kind] = rows
        out["broken"] = [b.__dict__ for b in self.broken]
        return out

    # -- CLI commands -----------------------------------------------------------------------
    def add_commands(self, app: typer.Typer, *, owner: str = "atlas_plugins.cli") -> dict[str, list[str]]:
        """Let every plugin add its ``atlas`` commands to the Typer ``app``.

        The built-in command modules (:data:`BUILTIN_COMMAND_MODULES`) are registered as plugins
        of distribution ``atlas-plugins`` and go first, in that order; then every other plugin's
        ``atlas_register_commands``, one at a time, in registration order. Each plugin writes to
        a Typer of its own that is merged into ``app`` afterwards, so one that raises is reported
        through the broken-plugin list and adds nothing. A name already taken (by ``owner``,
        the commands already on ``app``, or an earlier plugin) is a conflict: the name then runs
        a command that fails with a :class:`PluginConflictError` message naming both plugins.
        Returns ``{command name: [plugin, ...]}`` for the conflicts.
        """
        import typer

        for module_name in BUILTIN_COMMAND_MODULES:
            if self.pm.has_plugin(module_name) or self._disabled(module_name):
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - one broken area must not take the CLI down
                self._report_broken(module_name, BUILTIN_DISTRIBUTION, exc)
                continue
            self.register(module, name=module_name, distribution=BUILTIN_DISTRIBUTION)

        owners: dict[str, list[tuple[str, str]]] = {}
        infos: dict[str, list[CommandInfo | TyperInfo]] = {}
        for info in _registered(app):
            for name in _command_names(info):
                owners.setdefault(name, []).append((owner, BUILTIN_DISTRIBUTION))
                infos.setdefault(name, []).append(info)

        impls = self.pm.hook.atlas_register_commands.get_hookimpls()
        rank = {m: i for i, m in enumerate(BUILTIN_COMMAND_MODULES)}
        builtins = sorted((i for i in impls if i.plugin_name in rank), key=lambda i: rank[i.plugin_name])
        others = [i for i in impls if i.plugin_name not in rank]  # registration order
        for impl in builtins + others:
            plugin = impl.plugin_name
            dist = self.distributions.get(plugin, "<runtime>")
            scratch = typer.Typer()
            try:
                impl.function(app=scratch)
                added = [(info, _command_names(info)) for info in _registered(scratch)]
            except Exception as exc:  # noqa: BLE001 - reported as a broken plugin, the CLI goes on
                self._report_broken(plugin, dist, exc)
                continue
            for info, names in added:
                for name in names:
                    owners.setdefault(name, []).append((plugin, dist))
                    infos.setdefault(name, []).append(info)
                if isinstance(info, typer.models.CommandInfo):
                    app.registered_commands.append(info)
                else:
                    app.registered_groups.append(info)

        conflicts = {name: who for name, who in owners.items() if len(who) > 1}
        for name, who in conflicts.items():
            for info in infos[name]:
                if isinstance(info, typer.models.CommandInfo):
                    if info in app.registered_commands:
                        app.registered_commands.remove(info)
                elif info in app.registered_groups:
                    app.registered_groups.remove(info)
            both = " and ".join(f"{p!r} (distribution {d!r})" for p, d in who)
            message = (
                f"command {name!r} is registered by more than one plugin: {both}. "
                "Uninstall one, or skip one with ATLAS_DISABLE_PLUGINS."
            )
            app.registered_commands.append(_conflict_command(name, message))
        return {name: [p for p, _ in who] for name, who in conflicts.items()}

    # -- event hooks ----------------------------------------------------------------------
    def before_tool_call(self, server: str, tool: str, arguments: dict[str, Any]) -> str | None:
        """Run the veto hook. Returns the veto reason, or ``None`` when the call may proceed."""
        self._ensure_builtins()
        if not self.pm.hook.atlas_before_tool_call.get_hookimpls():
            return None
        for verdict in self.pm.hook.atlas_before_tool_call(server=server, tool=tool, arguments=arguments):
            if verdict is False:
                return "blocked by policy"
            if isinstance(verdict, str):
                return f"blocked by policy: {verdict}"
        return None

    def on_trajectory(self, trajectory: Trajectory) -> None:
        self._ensure_builtins()
        self.pm.hook.atlas_on_trajectory(trajectory=trajectory)

    def on_train_step(self, metrics: dict[str, Any]) -> None:
        self._ensure_builtins()
        self.pm.hook.atlas_on_train_step(metrics=metrics)


def _registered(app: typer.Typer) -> list[CommandInfo | TyperInfo]:
    """The commands, then the groups, that ``app`` has."""
    return [*app.registered_commands, *app.registered_groups]


def _command_names(info: CommandInfo | TyperInfo) -> list[str]:
    """The top-level names a Typer ``CommandInfo``/``TyperInfo`` adds (as Typer resolves them)."""
    from typer.main import get_command_name, solve_typer_info_defaults
    from typer.models import CommandInfo

    if isinstance(info, CommandInfo):
        return [info.name or get_command_name(getattr(info.callback, "__name__", ""))]
    name = solve_typer_info_defaults(info).name
    if name:
        return [name]
    sub = info.typer_instance  # a group added without a name merges its commands in
    assert sub is not None, "add_typer always sets typer_instance"
    return [n for i in _registered(sub) for n in _command_names(i)]


def _conflict_command(name: str, message: str) -> CommandInfo:
    """A command that fails with ``message`` (the same way for ``--json``) whatever it is given."""
    import typer
    from typer.models import CommandInfo

    def conflict(ctx: typer.Context) -> None:
        from atlas_plugins.cli_support import fail

        fail(str(PluginConflictError(message)), as_json="--json" in ctx.args)

    conflict.__annotations__ = {"ctx": typer.Context, "return": None}  # typer is not a global here

    return CommandInfo(
        name=name,
        callback=conflict,
        help=f"(conflict) {message}",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    )


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


def register_plugin(plugin: object, name: str | None = None) -> str:
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
