"""The mechanism every built-in loading policy shares; each policy file adds its own behaviour.

:class:`EpisodeBase` is the context state of one episode: the task's scope of servers, the
schemas loaded so far (an LRU set under an optional token budget), ``check_call`` with the
exact meta-call that loads a missing schema, the bad-input handling of meta-calls, and the
system text's frame. It has no meta-tools of its own. A policy subclasses it and says what
differs: its meta-tools and their handlers (``meta_<name>`` methods returning
:class:`~atlas_plugins.context.base.MetaResult`), its intro text, and how a missing schema is
loaded. :class:`LoadingPolicyBase` is the policy object (validated options, ``start_episode``)
and also writes the reference turns that solve a task under the policy (``reference_calls``).
A plugin author writes a new loading policy the same way: subclass both, register the policy.

Design choices (documented here because the agent loop relies on them):

* ``system_prompt()`` is fixed for the whole episode. Loaded schemas reach the model as
  meta-call *observations*, so the prompt prefix never changes (token-faithful training needs
  an append-only transcript).
* "Loaded" means "the model has been shown this schema and it has not been evicted since".
  :meth:`EpisodeBase.check_call` refuses calls to tools that are not loaded, with the exact
  meta-call that loads them.
* With ``max_loaded_tokens`` set, loaded schemas are kept in least-recently-used order (a load
  or a successful ``check_call`` counts as a use); when the total exceeds the budget the
  oldest are evicted. Tools requested in the same meta-call are never evicted by that call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas_plugins.context import prompts
from atlas_plugins.context.base import MetaResult, MetaTool
from atlas_plugins.errors import AtlasError
from atlas_plugins.types import TOOL_SEP, ServerInfo, TaskLike, ToolCatalog, ToolSpec
from atlas_plugins.wire import text as wire_text

#: How many names an error message lists at most (huge catalogues must not flood the context).
MAX_LISTED = wire_text.MAX_LISTED
did_you_mean, ranked_names, _listing = wire_text.closest, wire_text.ranked_names, wire_text.listing


class PolicyOptions(BaseModel):
    """Options every built-in loading policy accepts (``get_loading_policy(name, **options)``)."""

    model_config = ConfigDict(extra="forbid")

    #: Token budget for loaded schemas; ``None`` = unlimited (the paper's setting).
    max_loaded_tokens: int | None = Field(default=None, ge=1)
    #: Tokenizer used to measure loaded schemas against the budget (``None`` = embedded SmolLM2).
    tokenizer: str | None = None
    #: Characters of a server summary kept in the ISL index.
    summary_chars: int = Field(default=100, ge=10)
    #: Above this many servers the index shortens summaries to ``compact_summary_chars``.
    compact_above: int = Field(default=150, ge=1)
    compact_summary_chars: int = Field(default=40, ge=0)
    #: Characters of a tool description in ITL's ``fetch_tools`` / ``search_tools`` listings.
    description_chars: int = Field(default=100, ge=10)


def build_options(model: type[BaseModel], policy: str, options: dict[str, Any]) -> Any:
    """Validate factory options; a bad option is an :class:`AtlasError` naming it."""
    try:
        return model(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise AtlasError(f"invalid option(s) for loading policy {policy!r}: {problems}") from None


def _task_servers(task: TaskLike) -> list[str]:
    if task is None or isinstance(task, str):
        return []
    servers = task.get("servers") if isinstance(task, dict) else getattr(task, "servers", None)
    return [str(s) for s in servers or []]


class EpisodeBase:
    """The context state of one episode (implements :class:`~atlas_plugins.context.base.EpisodeContext`).

    Subclasses override the hooks below; everything else is shared.

    * ``meta_tools()`` lists the meta-tools; each ``name`` is answered by ``meta_<name>(arguments)``.
    * ``intro()`` is the system text's opening; ``sections()`` its titled blocks (default: the
      server index, with one-line summaries when ``show_summaries``).
    * ``load_hint(server, tool)`` is the meta-call that loads a missing schema;
      ``load_how`` says it in a sentence (used by tool search listings).
    * ``uses_budget``: whether the intro states the schema budget (not when all is loaded).
    """

    show_summaries: bool = False
    uses_budget: bool = True
    load_how: str = "Load a server's schemas with fetch_tools."

    def __init__(self, options: PolicyOptions, toolspace: ToolCatalog | None, task: TaskLike = None) -> None:
        self.options = options
        self.log: list[dict[str, Any]] = []
        servers: list[ServerInfo] = list(toolspace.servers) if toolspace is not None else []
        scope = _task_servers(task)
        if scope:
            # The paper gives each task only its own servers; keep the toolspace order.
            known = {s.name for s in servers}
            missing = [s for s in scope if s not in known]
            if missing:
                self.log.append({"event": "scope_missing", "servers": missing})
            servers = [s for s in servers if s.name in scope]
        self.servers: dict[str, ServerInfo] = {s.name: s for s in servers}
        self.tools: dict[str, ToolSpec] = {t.qualified_name: t for s in servers for t in s.tools}
        self._by_bare: dict[str, list[str]] = {}
        for q, t in self.tools.items():
            self._by_bare.setdefault(t.name, []).append(q)
        # qualified name -> schema tokens (0 when no budget is set), in LRU order (oldest first)
        self._loaded: OrderedDict[str, int] = OrderedDict()
        self._evicted: set[str] = set()
        self._system: str | None = None

    # -- hooks for subclasses -----------------------------------------------------------------
    def meta_tools(self) -> list[MetaTool]:
        return []

    def intro(self) -> str:
        return ""

    def sections(self) -> list[tuple[str, str]]:
        o = self.options
        compact = len(self.servers) > o.compact_above
        chars = o.compact_summary_chars if compact else o.summary_chars
        index = prompts.render_server_index(
            self.servers.values(),
            summaries=self.show_summaries and chars > 0,
            summary_chars=max(chars, 10),
            counts=self.show_summaries,  # ITL's index is names only, as in the paper
        )
        return [(f"Servers ({len(self.servers)}):", index)]

    def load_hint(self, server: str, tool: str) -> str:
        return prompts.tool_call_example("fetch_tools", {"server": server})

    def example_args(self, meta: str) -> dict[str, Any]:
        """Arguments of a well-formed ``meta`` call, shown in its error messages."""
        return {"server": next(iter(self.servers), "server")}

    # -- EpisodeContext -------------------------------------------------------------------
    def system_prompt(self) -> str:
        if self._system is None:
            self._system = self._build_system()
        return self._system

    def meta_call(self, name: str, arguments: dict[str, Any]) -> MetaResult | None:
        """Run meta-tool ``name``; None when ``name`` is not one of this episode's meta-tools."""
        if name not in {m.name for m in self.meta_tools()}:
            return None
        if not isinstance(arguments, dict):
            return _error(f"Error: the arguments of {name} must be a JSON object, got {type(arguments).__name__}.")
        handler: Callable[[dict[str, Any]], MetaResult] = getattr(self, f"meta_{name}")
        return handler(arguments)

    def handle_meta_call(self, name: str, arguments: dict[str, Any]) -> str | None:
        result = self.meta_call(name, arguments)
        return None if result is None else result.text

    def check_call(self, qualified_name: str) -> str | None:
        if any(m.name == qualified_name for m in self.meta_tools()):
            return None
        name = str(qualified_name)
        if TOOL_SEP not in name:
            owners = self._by_bare.get(name, [])
            if owners:
                return (
                    f"Error: tool names must be qualified as server{TOOL_SEP}tool. "
                    f"{name!r} exists as: {', '.join(owners[:MAX_LISTED])}."
                )
            return f"Error: unknown tool {name!r}; tools are named server{TOOL_SEP}tool." + self._servers_hint(name)
        server, _, tool = name.partition(TOOL_SEP)
        if server not in self.servers:
            return f"Error: unknown server {server!r} in {name!r}." + self._servers_hint(server)
        if name not in self.tools:
            names = [t.name for t in self.servers[server].tools]
            hint = did_you_mean(tool, names)
            msg = f"Error: server {server!r} has no tool {tool!r}."
            if hint:
                msg += " Did you mean " + " or ".join(repr(f"{server}{TOOL_SEP}{h}") for h in hint) + "?"
            return msg
        if name in self._loaded:
            self._loaded.move_to_end(name)  # a call is a use: keep it away from eviction
            return None
        why = "was unloaded to stay within the context budget" if name in self._evicted else "is not loaded yet"
        return f"Error: the schema of {name!r} {why}. Load it first with {self.load_hint(server, tool)}, then call it."

    def loaded_tools(self) -> list[ToolSpec]:
        return [self.tools[q] for q in self._loaded]

    # -- extras -----------------------------------------------------------------------------
    @property
    def loaded_tokens(self) -> int:
        """Tokens of the loaded schemas (tracked only when ``max_loaded_tokens`` is set)."""
        return sum(self._loaded.values())

    def is_loaded(self, qualified_name: str) -> bool:
        return qualified_name in self._loaded

    # -- system text ------------------------------------------------------------------------
    def _build_system(self) -> str:
        if not self.servers:
            return prompts.system_text(
                intro="No tool servers are available in this episode; answer directly.",
                sections=[],
                meta_tools=[],
            )
        intro = self.intro()
        budget = self.options.max_loaded_tokens
        if budget and self.uses_budget:
            intro += (
                f" At most {budget} tokens of schemas stay loaded; the least recently used are "
                "unloaded first and can be loaded again."
            )
        return prompts.system_text(intro=intro, sections=self.sections(), meta_tools=self.meta_tools())

    # -- helpers for meta-call handlers -------------------------------------------------------
    def _servers_hint(self, name: str) -> str:
        if not self.servers:
            return " No servers are available."
        return " Available servers (closest first): " + _listing(ranked_names(name, list(self.servers))) + "."

    def _resolve_server(self, arguments: dict[str, Any], meta: str) -> tuple[ServerInfo | None, str | None]:
        raw = arguments.get("server")
        if not isinstance(raw, str) or not raw.strip():
            example = prompts.tool_call_example(meta, self.example_args(meta))
            got = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"[:80]
            return (
                None,
                f"Error: {meta} needs a server name as the string argument 'server' (got {got}), e.g. {example}.",
            )
        name = raw.strip()
        if name not in self.servers and TOOL_SEP in name:
            name = name.split(TOOL_SEP, 1)[0]  # "email:send_email" names its server too
        if name not in self.servers:
            folded = [s for s in self.servers if s.lower() == name.lower()]
            if len(folded) == 1:
                name = folded[0]
        if name not in self.servers:
            return None, f"Error: unknown server {raw!r}." + self._servers_hint(name)
        return self.servers[name], None

    def _loaded_result(self, text: str, loaded: list[str], evicted: list[str]) -> MetaResult:
        return MetaResult(text=text + self._evicted_note(evicted), loaded=loaded, evicted=evicted)

    # -- loading and eviction ---------------------------------------------------------------
    def _schema_tokens(self, spec: ToolSpec) -> int:
        if not self.options.max_loaded_tokens:
            return 0
        from atlas_plugins.context.tokens import count_text_tokens

        return count_text_tokens(prompts.render_tool_schema(spec), self.options.tokenizer)

    def _load(self, qualified: list[str], *, via: str) -> list[str]:
        """Mark ``qualified`` loaded (most recent); evict LRU others over budget. Returns evicted."""
        for q in qualified:
            if q in self._loaded:
                self._loaded.move_to_end(q)
            else:
                self._loaded[q] = self._schema_tokens(self.tools[q])
            self._evicted.discard(q)
        self.log.append({"event": "load", "via": via, "tools": list(qualified), "loaded_tokens": self.loaded_tokens})
        evicted: list[str] = []
        budget = self.options.max_loaded_tokens
        if budget:
            keep = set(qualified)
            for q in list(self._loaded):
                if self.loaded_tokens <= budget:
                    break
                if q in keep:
                    continue
                self._loaded.pop(q)
                self._evicted.add(q)
                evicted.append(q)
            if evicted:
                self.log.append({"event": "evict", "tools": evicted, "loaded_tokens": self.loaded_tokens})
            if self.loaded_tokens > budget:
                self.log.append({"event": "over_budget", "loaded_tokens": self.loaded_tokens, "budget": budget})
        return evicted

    @staticmethod
    def _evicted_note(evicted: list[str]) -> str:
        if not evicted:
            return ""
        return "\nUnloaded to stay within the context budget (load again before calling): " + ", ".join(evicted) + "."


def _error(text: str) -> MetaResult:
    return MetaResult(text=text, ok=False, error_type="meta_error")


class LoadingPolicyBase:
    """A loading policy: validated options; ``start_episode`` makes the episode's context.

    Subclasses set ``name``, ``episode_class`` (an :class:`EpisodeBase` subclass) and, when they
    take more options, ``options_model``; ``episode_kwargs()`` passes extra constructor
    arguments. ``reference_calls`` writes the calls that solve a task under this policy (its
    meta-calls, then the task's own tool calls), which warm starts replay.
    """

    name: str = ""
    options_model: type[PolicyOptions] = PolicyOptions
    episode_class: type[EpisodeBase] = EpisodeBase

    def __init__(self, **options: Any) -> None:
        self.options = build_options(self.options_model, self.name, options)

    def episode_kwargs(self) -> dict[str, Any]:
        return {}

    def start_episode(self, toolspace: ToolCatalog | None, task: TaskLike = None) -> EpisodeBase:
        return self.episode_class(self.options, toolspace, task, **self.episode_kwargs())

    def reference_calls(self, solution: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """``(name, arguments)`` of each call that solves a task whose reference solution is
        ``solution`` (``[{"server", "tool", "arguments"}, ...]``). Default: the tool calls only."""
        return [(f"{step['server']}{TOOL_SEP}{step['tool']}", dict(step["arguments"])) for step in solution]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


def tools_by_server(solution: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """The distinct tools of a reference solution, per server, in first-use order."""
    out: dict[str, list[str]] = {}
    for step in solution:
        tools = out.setdefault(step["server"], [])
        if step["tool"] not in tools:
            tools.append(step["tool"])
    return out


def fetch_tools_tool(description: str) -> MetaTool:
    return MetaTool(
        name="fetch_tools",
        description=description,
        input_schema={"type": "object", "properties": {"server": {"type": "string"}}, "required": ["server"]},
    )
