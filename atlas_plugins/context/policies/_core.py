"""Shared machinery of the built-in loading policies.

One :class:`ContextEpisode` class implements every built-in policy; a policy is a
:class:`PolicySettings` (what the index shows, what ``fetch_tools`` returns, which meta-tools
exist). That keeps the bad-input handling, the qualified naming and the eviction logic in one
place, so ``eager``/``isl``/``itl``/``search`` cannot disagree about them.

Design choices (documented here because the agent loop relies on them):

* ``system_prompt()`` is fixed for the whole episode. Loaded schemas reach the model as
  meta-call *observations*, so the prompt prefix never changes (token-faithful training needs
  an append-only transcript).
* "Loaded" means "the model has been shown this schema and it has not been evicted since".
  :meth:`ContextEpisode.check_call` refuses calls to tools that are not loaded, with the exact
  meta-call that loads them.
* With ``max_loaded_tokens`` set, loaded schemas are kept in least-recently-used order (a load
  or a successful ``check_call`` counts as a use); when the total exceeds the budget the
  oldest are evicted. Tools requested in the same meta-call are never evicted by that call.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas_plugins.context import prompts
from atlas_plugins.context.base import MetaTool
from atlas_plugins.errors import AtlasError
from atlas_plugins.types import TOOL_SEP, ServerInfo, ToolSpec
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise AtlasError(f"invalid option(s) for loading policy {policy!r}: {problems}") from None


class PolicySettings(BaseModel):
    """What distinguishes the built-in policies."""

    name: str
    #: ``eager``: everything loaded up front; ``schemas``: fetch_tools returns full schemas
    #: (ISL); ``names``: fetch_tools returns names and get_selected_tools loads (ITL).
    mode: Literal["eager", "schemas", "names"]
    #: Whether the index shows one-line server summaries (ISL) or names only (ITL).
    summaries: bool = False
    #: Whether search_tools exists (the ``search`` policy).
    search: bool = False
    search_k: int = 5
    search_max_k: int = 20
    #: search_tools also loads (and shows) the schemas of its hits.
    search_returns_schemas: bool = False


def _task_servers(task: Any) -> list[str]:
    if task is None or isinstance(task, str):
        return []
    servers = task.get("servers") if isinstance(task, dict) else getattr(task, "servers", None)
    return [str(s) for s in servers or []]


class ContextEpisode:
    """The context state of one episode (implements :class:`~atlas_plugins.context.base.EpisodeContext`)."""

    def __init__(
        self,
        settings: PolicySettings,
        options: PolicyOptions,
        toolspace: Any,
        task: Any = None,
        *,
        retriever_provider: Any = None,
    ) -> None:
        self.settings = settings
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
        self._retriever_provider = retriever_provider
        self._system: str | None = None
        if settings.mode == "eager":
            for q in self.tools:
                self._loaded[q] = 0
            self.log.append({"event": "initial_load", "tools": len(self.tools)})

    # -- EpisodeContext -------------------------------------------------------------------
    def system_prompt(self) -> str:
        if self._system is None:
            self._system = self._build_system()
        return self._system

    def meta_tools(self) -> list[MetaTool]:
        s = self.settings
        tools: list[MetaTool] = []
        if s.mode == "eager":
            return tools
        tools.append(
            MetaTool(
                name="fetch_tools",
                description=(
                    "Load the full schemas of every tool of a server."
                    if s.mode == "schemas"
                    else "List the tool names of a server."
                ),
                input_schema={
                    "type": "object",
                    "properties": {"server": {"type": "string"}},
                    "required": ["server"],
                },
            )
        )
        if s.mode == "names":
            tools.append(
                MetaTool(
                    name="get_selected_tools",
                    description="Load the schemas of the named tools of a server.",
                    input_schema={
                        "type": "object",
                        "properties": {"server": {"type": "string"}, "tools": {"type": "array", "items": {"type": "string"}}},
                        "required": ["server", "tools"],
                    },
                )
            )
        if s.search:
            tools.append(
                MetaTool(
                    name="search_tools",
                    description="Find tools by what they do; returns the best k matches.",
                    input_schema={
                        "type": "object",
                        "properties": {"query": {"type": "string"}, "k": {"type": "integer", "default": s.search_k}},
                        "required": ["query"],
                    },
                )
            )
        return tools

    def handle_meta_call(self, name: str, arguments: dict[str, Any]) -> str | None:
        handlers = {m.name: getattr(self, f"_meta_{m.name}") for m in self.meta_tools()}
        if name not in handlers:
            return None
        if not isinstance(arguments, dict):
            return f"Error: the arguments of {name} must be a JSON object, got {type(arguments).__name__}."
        return handlers[name](arguments)

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
        why = (
            "was unloaded to stay within the context budget"
            if name in self._evicted
            else "is not loaded yet"
        )
        return f"Error: the schema of {name!r} {why}. Load it first with {self._load_hint(server, tool)}, then call it."

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
        s, o = self.settings, self.options
        meta = self.meta_tools()
        if not self.servers:
            return prompts.system_text(
                intro="No tool servers are available in this episode; answer directly.",
                sections=[],
                meta_tools=[],
            )
        if s.mode == "eager":
            body = "\n".join(prompts.render_tool_schema(t) for t in self.tools.values())
            return prompts.system_text(intro="", sections=[("Tools:", body)], meta_tools=meta)
        compact = len(self.servers) > o.compact_above
        chars = o.compact_summary_chars if compact else o.summary_chars
        index = prompts.render_server_index(
            self.servers.values(),
            summaries=s.summaries and chars > 0,
            summary_chars=max(chars, 10),
            counts=s.summaries,  # ITL's index is names only, as in the paper
        )
        first = next(iter(self.servers))
        if s.mode == "schemas":
            intro = (
                "Tools are grouped by server; only the servers are listed (infer what each does from its "
                f"name{' and summary' if s.summaries else ''}). Load a server's tool schemas with "
                f"{prompts.tool_call_example('fetch_tools', {'server': first})} before calling its tools."
            )
        else:
            intro = (
                "Only server names are listed. List a server's tools with "
                f"{prompts.tool_call_example('fetch_tools', {'server': first})}, load the schemas you need with "
                "get_selected_tools, then call them."
            )
        if s.search:
            intro += " search_tools finds tools by what they do."
        if o.max_loaded_tokens:
            intro += (
                f" At most {o.max_loaded_tokens} tokens of schemas stay loaded; the least recently used are "
                "unloaded first and can be loaded again."
            )
        return prompts.system_text(intro=intro, sections=[(f"Servers ({len(self.servers)}):", index)], meta_tools=meta)

    # -- meta-calls -------------------------------------------------------------------------
    def _servers_hint(self, name: str) -> str:
        if not self.servers:
            return " No servers are available."
        return " Available servers (closest first): " + _listing(ranked_names(name, list(self.servers))) + "."

    def _resolve_server(self, arguments: dict[str, Any], meta: str) -> tuple[ServerInfo | None, str | None]:
        raw = arguments.get("server")
        if not isinstance(raw, str) or not raw.strip():
            example = prompts.tool_call_example(meta, self._example_args(meta))
            got = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"[:80]
            return None, f"Error: {meta} needs a server name as the string argument 'server' (got {got}), e.g. {example}."
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

    def _example_args(self, meta: str) -> dict[str, Any]:
        server = next(iter(self.servers), "server")
        if meta == "get_selected_tools":
            tools = [t.name for t in self.servers[server].tools[:2]] if server in self.servers else ["tool"]
            return {"server": server, "tools": tools or ["tool"]}
        if meta == "search_tools":
            return {"query": "send an email", "k": self.settings.search_k}
        return {"server": server}

    def _load_hint(self, server: str, tool: str) -> str:
        if self.settings.mode == "names":
            return prompts.tool_call_example("get_selected_tools", {"server": server, "tools": [tool]})
        return prompts.tool_call_example("fetch_tools", {"server": server})

    def _meta_fetch_tools(self, arguments: dict[str, Any]) -> str:
        info, err = self._resolve_server(arguments, "fetch_tools")
        if err:
            return err
        assert info is not None
        if not info.tools:
            return f"Server {info.name!r} has no tools."
        if self.settings.mode == "names":
            listing = prompts.render_tool_list(info.tools, description_chars=self.options.description_chars)
            return (
                f"Server {info.name!r} has {len(info.tools)} tools. Load the schemas of the ones you need with "
                f"get_selected_tools before calling them:\n{listing}"
            )
        evicted = self._load([t.qualified_name for t in info.tools], via="fetch_tools")
        body = "\n".join(prompts.render_tool_schema(t) for t in info.tools)
        return f"Loaded {len(info.tools)} tool schemas of server {info.name!r}:\n{body}" + self._evicted_note(evicted)

    def _meta_get_selected_tools(self, arguments: dict[str, Any]) -> str:
        info, err = self._resolve_server(arguments, "get_selected_tools")
        if err:
            return err
        assert info is not None
        raw = arguments.get("tools")
        example = prompts.tool_call_example(
            "get_selected_tools", {"server": info.name, "tools": [t.name for t in info.tools[:2]] or ["tool"]}
        )
        if not isinstance(raw, list) or not raw:
            got = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"[:80]
            return f"Error: 'tools' must be a non-empty list of tool names of server {info.name!r} (got {got}), e.g. {example}."
        names = [t.name for t in info.tools]
        wanted: list[str] = []
        problems: list[str] = []
        for item in raw:
            if not isinstance(item, str) or not item.strip():
                problems.append(f"{item!r} is not a tool name (expected a string)")
                continue
            tool = item.strip()
            if tool not in names and TOOL_SEP in tool:
                srv, _, bare = tool.partition(TOOL_SEP)
                if srv != info.name:
                    problems.append(f"{tool!r} belongs to server {srv!r}, not {info.name!r}; ask that server for it")
                    continue
                tool = bare
            if tool not in names:
                hint = did_you_mean(tool, names)
                problems.append(
                    f"no tool {tool!r} on server {info.name!r}"
                    + (f" (did you mean {' or '.join(repr(h) for h in hint)}?)" if hint else "")
                )
                continue
            if tool not in wanted:
                wanted.append(tool)
        parts: list[str] = []
        evicted: list[str] = []
        if wanted:
            specs = [next(t for t in info.tools if t.name == w) for w in wanted]
            evicted = self._load([t.qualified_name for t in specs], via="get_selected_tools")
            parts.append(
                f"Loaded {len(specs)} tool schema(s):\n" + "\n".join(prompts.render_tool_schema(t) for t in specs)
            )
        if problems:
            parts.append(
                "Error: " + "; ".join(problems) + f". See the tools with "
                f"{prompts.tool_call_example('fetch_tools', {'server': info.name})}."
            )
        return "\n".join(parts) + self._evicted_note(evicted)

    def _meta_search_tools(self, arguments: dict[str, Any]) -> str:
        s = self.settings
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            example = prompts.tool_call_example("search_tools", self._example_args("search_tools"))
            return f"Error: search_tools needs a non-empty string 'query', e.g. {example}."
        k_raw = arguments.get("k", s.search_k)
        try:
            k = int(k_raw)
        except (TypeError, ValueError):
            return f"Error: 'k' must be a whole number between 1 and {s.search_max_k}, got {k_raw!r}."
        if k < 1:
            return f"Error: 'k' must be a whole number between 1 and {s.search_max_k}, got {k_raw!r}."
        k = min(k, s.search_max_k)
        if not self.tools:
            return "No tools are available to search."
        retriever = self._retriever_provider(self) if self._retriever_provider else None
        if retriever is None:
            return "Error: tool search is not available in this episode."
        # The index is built over this episode's tools; the filter only guards a foreign index.
        hits = [h for h in retriever.search(query, k=k) if f"{h.server}{TOOL_SEP}{h.tool}" in self.tools]
        self.log.append({"event": "search", "query": query, "hits": [f"{h.server}{TOOL_SEP}{h.tool}" for h in hits]})
        if not hits:
            return f"No tools match {query!r}. Try other words, or browse a server with fetch_tools."
        specs = [self.tools[f"{h.server}{TOOL_SEP}{h.tool}"] for h in hits]
        if s.search_returns_schemas:
            evicted = self._load([t.qualified_name for t in specs], via="search_tools")
            body = "\n".join(prompts.render_tool_schema(t) for t in specs)
            return f"Top {len(specs)} tools for {query!r} (schemas loaded):\n{body}" + self._evicted_note(evicted)
        listing = prompts.render_tool_list(specs, description_chars=self.options.description_chars)
        how = (
            "Load the schemas you need with get_selected_tools."
            if s.mode == "names"
            else "Load a server's schemas with fetch_tools."
        )
        return f"Top {len(specs)} tools for {query!r}. {how}\n{listing}"

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
        return (
            "\nUnloaded to stay within the context budget (load again before calling): "
            + ", ".join(evicted)
            + "."
        )


class BuiltinPolicy:
    """A built-in loading policy: settings + validated options; ``start_episode`` makes a context."""

    name: str = ""
    settings: PolicySettings
    options_model: type[PolicyOptions] = PolicyOptions

    def __init__(self, **options: Any) -> None:
        self.options = build_options(self.options_model, self.name, options)

    def start_episode(self, toolspace: Any, task: Any = None) -> ContextEpisode:
        return ContextEpisode(self.settings, self.options, toolspace, task)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"
