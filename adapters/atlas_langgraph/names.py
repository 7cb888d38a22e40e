"""One mapping between the names a graph's tools have and ``server:tool``.

Trajectories, rubrics (``tool_called: "time:get_current_time"``) and reference solutions name
tools ``server:tool``. The tools of a user's graph are named however their source names them:
``toolspace_tools`` gives ``server__tool``; ``langchain-mcp-adapters`` gives the bare MCP name
(``get_current_time``) or, with ``tool_name_prefix=True``, ``server_tool``; a hand-written tool
has any name. :class:`ToolNames` is the single place that maps between the two, built once per
runner from the graph's tools, and used in both directions:

* graph name -> ``server:tool`` (:meth:`ToolNames.qualified`) for every recorded tool call, so a
  rubric check matches whatever the graph called its tool;
* ``server:tool`` -> graph name (:meth:`ToolNames.graph_name`) for the warm start's reference
  turns, so a scripted call reaches the graph's own tool.

Where a pair comes from, first match wins:

1. ``explicit`` pairs given to the runner (``tool_names={"get_current_time": "time:get_current_time"}``);
2. the tool itself: :class:`~atlas_langgraph.tools.MCPTool` knows its server, and tools loaded with
   :func:`load_mcp_tools` (or any tool whose ``metadata["atlas_server"]`` is set) carry theirs;
3. names made by :func:`~atlas_langgraph.tools.lc_tool_name` (``server__tool``);
4. the task: a step of its ``reference_solution`` whose tool is the name, or ``server_tool`` /
   ``server__tool`` of it;
5. the toolspace, when exactly one of its servers has a tool of that name.

A name none of these explains is kept as it is (meta-tools such as ``fetch_tools`` pass through).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from atlas_plugins.types import TOOL_SEP, Task

__all__ = ["SERVER_METADATA_KEY", "ToolNames", "graph_tools", "load_mcp_tools", "resolve_graph_name"]

#: ``BaseTool.metadata`` key naming the MCP server a tool belongs to.
SERVER_METADATA_KEY = "atlas_server"
#: ``BaseTool.metadata`` key with the tool's MCP name when the graph name differs (a prefix).
TOOL_METADATA_KEY = "atlas_tool"


def _split(qualified: str) -> tuple[str, str] | None:
    server, sep, tool = qualified.partition(TOOL_SEP)
    return (server, tool) if sep and server and tool else None


def _spellings(server: str, tool: str) -> list[str]:
    """Graph names a ``server:tool`` tool commonly has, most specific first."""
    return [f"{server}__{tool}", f"{server}_{tool}", tool]


def resolve_graph_name(name: str, candidates: Iterable[str]) -> str | None:
    """The one graph tool among ``candidates`` that ``name`` (``server:tool`` or a graph name) means.

    Exact names first, then the registered ``server__tool`` name, then ``server_tool`` and the bare
    tool name; ``None`` when nothing (or more than one thing) fits.
    """
    names = set(candidates)
    if name in names:
        return name
    parts = _split(name)
    if parts is None:
        return None
    from atlas_langgraph.tools import lc_name_for

    registered = lc_name_for(name)
    if registered in names:
        return registered
    for spelling in _spellings(*parts):
        if spelling in names:
            return spelling
    return None


def graph_tools(graph: Any) -> list[Any]:
    """The LangChain tools a compiled graph's tool nodes hold (``ToolNode.tools_by_name``), its
    subgraphs' included (a ``create_react_agent`` used as a node of a supervisor graph)."""
    graphs = [graph]
    try:
        # Subgraphs are not in graph.nodes as ToolNodes: without this, the tools of an agent used as a
        # node of a bigger graph were never seen, so their server tags / names were not used.
        graphs += [g for _, g in graph.get_subgraphs(recurse=True)]
    except Exception:  # noqa: BLE001 - not a Pregel graph (a plain runnable): its own nodes only
        pass
    out: list[Any] = []
    seen: set[int] = set()
    for g in graphs:
        for node in (getattr(g, "nodes", None) or {}).values():
            bound = getattr(node, "bound", node)
            by_name = getattr(bound, "tools_by_name", None)
            if isinstance(by_name, dict):
                for tool in by_name.values():
                    if id(tool) not in seen:
                        seen.add(id(tool))
                        out.append(tool)
    return out


def _tool_qualified(tool: Any) -> str | None:
    """What a tool object says about its server (MCPTool, or tagged metadata)."""
    qualified = getattr(tool, "qualified", None)
    if isinstance(qualified, str) and _split(qualified):
        return qualified
    meta = getattr(tool, "metadata", None) or {}
    server = meta.get(SERVER_METADATA_KEY) if isinstance(meta, dict) else None
    if server:
        return f"{server}{TOOL_SEP}{meta.get(TOOL_METADATA_KEY) or getattr(tool, 'name', '')}"
    return None


class ToolNames:
    """Graph tool names <-> ``server:tool`` (see the module docs for the rules).

    Args:
        tools: the graph's tools (see :func:`graph_tools`); their names are the graph names.
        explicit: ``{graph name: "server:tool"}`` pairs that override everything else.
        toolspace: an atlas toolspace whose tool names can place a bare name (optional).
    """

    def __init__(
        self, tools: Sequence[Any] = (), *, explicit: dict[str, str] | None = None, toolspace: Any = None
    ) -> None:
        self._lock = threading.Lock()
        self._to_qualified: dict[str, str] = {}
        self._to_graph: dict[str, str] = {}
        self.graph_names: list[str] = [str(getattr(t, "name", t)) for t in tools]
        for t in tools:
            q = _tool_qualified(t)
            if q:
                self._add(str(t.name), q)
        for graph_name, q in (explicit or {}).items():
            if not _split(q):
                raise ValueError(f"tool_names: {graph_name!r} maps to {q!r}, which is not 'server:tool'")
            self._add(graph_name, q)
            if graph_name not in self.graph_names:
                self.graph_names.append(graph_name)
        self._by_tool: dict[str, list[str]] = {}
        if toolspace is not None:
            try:
                for spec in toolspace.list_tools():
                    self._by_tool.setdefault(spec.name, []).append(spec.qualified_name)
            except Exception:  # noqa: BLE001 - a toolspace that cannot list tools only loses this rule
                self._by_tool = {}

    @classmethod
    def for_graph(cls, graph: Any, *, explicit: dict[str, str] | None = None, toolspace: Any = None) -> ToolNames:
        return cls(graph_tools(graph), explicit=explicit, toolspace=toolspace)

    def _add(self, graph_name: str, qualified: str) -> None:
        with self._lock:
            self._to_qualified[graph_name] = qualified
            self._to_graph.setdefault(qualified, graph_name)

    # -- graph name -> server:tool -----------------------------------------------------------
    def qualified(self, name: str, task: Task | None = None) -> str:
        """``server:tool`` for a graph tool name (rules 1–5); other names pass through."""
        with self._lock:
            found = self._to_qualified.get(name)
        if found:
            return found
        from atlas_langgraph.tools import qualified_name

        registered = qualified_name(name)
        if registered != name:
            return registered
        if _split(name):
            return name
        for step in (task.metadata.get("reference_solution") or []) if task is not None else []:
            server, tool = str(step.get("server", "")), str(step.get("tool", ""))
            if server and tool and name in _spellings(server, tool):
                return f"{server}{TOOL_SEP}{tool}"
        places = self._by_tool.get(name) or []
        if len(places) == 1:
            return places[0]
        return name

    # -- server:tool -> graph name -----------------------------------------------------------
    def graph_name(self, qualified: str) -> str | None:
        """The graph's name for a ``server:tool`` tool, or ``None`` when the graph has none."""
        with self._lock:
            found = self._to_graph.get(qualified)
        if found:
            return found
        return resolve_graph_name(qualified, self.graph_names)


async def load_mcp_tools(client: Any, *, server_name: str | None = None) -> list[Any]:
    """``client.get_tools()`` of a ``langchain_mcp_adapters`` ``MultiServerMCPClient``, each tool
    tagged with its server (``metadata["atlas_server"]``), so trajectories name it ``server:tool``
    whatever the client named it (bare, or prefixed with ``tool_name_prefix=True``)."""
    servers = [server_name] if server_name else list(getattr(client, "connections", {}) or {})
    prefix = bool(getattr(client, "tool_name_prefix", False))
    out: list[Any] = []
    for server in servers:
        for tool in await client.get_tools(server_name=server):
            mcp_name = tool.name[len(server) + 1 :] if prefix and tool.name.startswith(f"{server}_") else tool.name
            tool.metadata = {**(tool.metadata or {}), SERVER_METADATA_KEY: server, TOOL_METADATA_KEY: mcp_name}
            out.append(tool)
    return out
