"""MCP tools of a :class:`~atlas_plugins.toolspace.Toolspace` as LangChain tools, per episode.

Every embedded MCP server keeps per-episode state (a mailbox, a bank account) keyed by the
episode id sent with each call, so a tool must know *which episode* calls it. A LangGraph run
tells it in one of two ways, checked in this order:

1. ``config["configurable"]["atlas_episode"]`` of the run (LangGraph hands each tool the run's
   :class:`~langchain_core.runnables.RunnableConfig`; this survives ``graph.batch`` with one
   config per input, worker threads and async nodes alike);
2. the :func:`episode_scope` context variable around the run (LangGraph copies the caller's
   context into its worker threads and tasks, so a scope opened around ``graph.invoke`` is
   visible inside every tool).

With neither, calls go to the servers' default episode. Tool names are ``server__tool``
(a valid OpenAI function name); :func:`qualified_name` maps them back to ``server:tool``,
which is what trajectories and rubrics use.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import ConfigDict

from atlas_plugins.types import ToolSpec, qualify

__all__ = [
    "EPISODE_CONFIG_KEY",
    "MCPTool",
    "current_episode",
    "episode_scope",
    "lc_name_for",
    "lc_tool_name",
    "qualified_name",
    "toolspace_tools",
]

#: The ``configurable`` key a run uses to name its episode.
EPISODE_CONFIG_KEY = "atlas_episode"

_EPISODE: ContextVar[str | None] = ContextVar("atlas_langgraph_episode", default=None)

# LangChain name -> qualified "server:tool" (process-wide: names are deterministic).
_QUALIFIED: dict[str, str] = {}
_NAMES_LOCK = threading.Lock()
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


@contextlib.contextmanager
def episode_scope(episode_id: str | None) -> Iterator[str | None]:
    """Make ``episode_id`` the current episode for the code (and graph runs) inside the block."""
    token = _EPISODE.set(episode_id)
    try:
        yield episode_id
    finally:
        _EPISODE.reset(token)


def _episode_from_config(config: Any) -> str | None:
    if not config:
        return None
    configurable = config.get("configurable") or {}
    value = configurable.get(EPISODE_CONFIG_KEY)
    return str(value) if value else None


def current_episode(config: RunnableConfig | None = None) -> str | None:
    """The episode id for a tool call: the given config's, else the ambient run config's, else the scope's."""
    found = _episode_from_config(config)
    if found:
        return found
    # Inside a runnable LangChain keeps the run's config in a context variable.
    try:
        from langchain_core.runnables.config import var_child_runnable_config

        found = _episode_from_config(var_child_runnable_config.get())
    except (ImportError, LookupError):  # pragma: no cover - older langchain_core
        found = None
    return found or _EPISODE.get()


def lc_tool_name(server: str, tool: str) -> str:
    """``("math", "add") -> "math__add"``: a valid OpenAI function name, remembered for :func:`qualified_name`."""
    base = _INVALID.sub("_", f"{server}__{tool}")[:64]
    qualified = qualify(server, tool)
    with _NAMES_LOCK:
        name, n = base, 1
        # Two different tools sanitised to the same name get a numeric suffix.
        while _QUALIFIED.get(name, qualified) != qualified:
            n += 1
            suffix = f"_{n}"
            name = base[: 64 - len(suffix)] + suffix
        _QUALIFIED[name] = qualified
    return name


def lc_name_for(qualified: str) -> str | None:
    """The LangChain name of a ``server:tool`` tool made by :func:`lc_tool_name`, or None."""
    with _NAMES_LOCK:
        return next((lc for lc, q in _QUALIFIED.items() if q == qualified), None)


def qualified_name(name: str) -> str:
    """Map a LangChain tool name back to ``server:tool``; other names (meta-tools) pass through."""
    return _QUALIFIED.get(name, name)


def _args_schema(spec: ToolSpec) -> dict[str, Any]:
    schema = dict(spec.input_schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


class MCPTool(BaseTool):
    """One MCP tool of a toolspace. Returns the observation text; the artifact is the ToolResult dict.

    Tool-level failures (bad arguments, unknown tool, server errors) come back as an
    ``"Error: ..."`` observation rather than an exception, like the native loop: the model reads
    them and can recover. ``ToolMessage.artifact`` carries the full
    :class:`~atlas_plugins.types.ToolResult` (``ok``, ``error_type``, ...) for the trajectory.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    toolspace: Any
    server: str
    tool: str
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"

    @property
    def qualified(self) -> str:
        return qualify(self.server, self.tool)

    def _to_args_and_kwargs(
        self, tool_input: str | dict[str, Any], tool_call_id: str | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        # Pass MCP arguments as ONE dict so an MCP argument named "config" or "run_manager"
        # cannot collide with what LangChain injects as keyword arguments.
        if isinstance(tool_input, str):
            raise ValueError(f"tool {self.name!r} takes a JSON object of arguments, got the string {tool_input!r}")
        return (dict(tool_input),), {}

    def _run(
        self, arguments: dict[str, Any], config: RunnableConfig, run_manager: Any = None
    ) -> tuple[str, dict[str, Any]]:
        result = self.toolspace.call(self.server, self.tool, arguments, episode=current_episode(config))
        return result.observation(), result.model_dump()

    async def _arun(
        self, arguments: dict[str, Any], config: RunnableConfig, run_manager: Any = None
    ) -> tuple[str, dict[str, Any]]:
        result = await self.toolspace.acall(self.server, self.tool, arguments, episode=current_episode(config))
        return result.observation(), result.model_dump()


def toolspace_tools(
    toolspace: Any, servers: list[str] | None = None, *, tools: list[str] | None = None
) -> list[BaseTool]:
    """One LangChain tool per MCP tool of ``servers`` (default: every live server of the toolspace).

    ``tools`` (qualified ``server:tool`` names) keeps only those tools, in the toolspace's order.
    Catalogue-only servers have schemas but no process to call, so they are skipped unless named.
    Raises ``ValueError`` naming an unknown server or tool.
    """
    wanted = set(tools) if tools is not None else None
    if wanted is not None:
        known_tools = {t.qualified_name for s in toolspace.servers for t in s.tools}
        missing = sorted(wanted - known_tools)
        if missing:
            raise ValueError(f"unknown tool(s) {', '.join(map(repr, missing))}; names are 'server:tool'")
        if servers is None:
            servers = sorted({q.split(":", 1)[0] for q in wanted})
    if servers is None:
        infos = [s for s in toolspace.servers if not getattr(s, "catalog_only", False)]
    else:
        known = {s.name: s for s in toolspace.servers}
        unknown = [s for s in servers if s not in known]
        if unknown:
            raise ValueError(f"unknown server(s) {', '.join(map(repr, unknown))}; toolspace has: {', '.join(known)}")
        infos = [known[s] for s in servers]
    out: list[BaseTool] = []
    for info in infos:
        for spec in info.tools:
            if wanted is not None and spec.qualified_name not in wanted:
                continue
            out.append(
                MCPTool(
                    name=lc_tool_name(spec.server, spec.name),
                    description=(spec.description or f"{spec.name} on the {spec.server} server")[:1024],
                    args_schema=_args_schema(spec),
                    toolspace=toolspace,
                    server=spec.server,
                    tool=spec.name,
                )
            )
    return out
