"""``create_atlas_agent``: a small prebuilt LangGraph agent with ATLAS context control.

Two nodes, like ``langgraph-bigtool``'s agent::

    START -> agent --(tool calls)--> tools -> agent ... --(no tool calls)--> finish -> END

* **agent** — on the episode's first step it starts the loading policy's episode context
  (``get_loading_policy(loading).start_episode(toolspace, task)``) and, with an executor, opens
  the episode's ``code_interpreter`` session; then it calls the model with the episode's system
  prompt (the same text the native agent shows) before the conversation.
* **tools** — runs the requested calls as LangChain tools that act on the episode's context:
  the loading policy's meta-tools (``fetch_tools``, ``get_selected_tools``, ``search_tools`` …),
  ``code_interpreter``, and every MCP tool (refused with a "load it first" message while its
  schema is not loaded, like the native loop).
* **finish** — closes the episode's code session.

How a step finds its episode: the episode id is the run's
``config["configurable"]["atlas_episode"]`` (what :class:`~atlas_langgraph.runner.LangGraphRunner`
sets) or, when the caller gives none, a fresh id kept in the graph state. The task comes from
``configurable["atlas_task"]`` (set by the runner) or is built from the first user message.

With ``executor`` set the agent is the paper's ITL+PTC design: the only tool shown is
``code_interpreter`` and tools are reached from Python. With ``executor=None`` the model calls
the meta-tools and ``server:tool`` tools directly.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import ConfigDict
from typing_extensions import TypedDict

from atlas_plugins.types import Task, qualify
from atlas_plugins.wire.text import cut as wire_cut

from atlas_langgraph.tools import EPISODE_CONFIG_KEY, current_episode, lc_tool_name

__all__ = ["AtlasAgentState", "create_atlas_agent", "release_episode"]

_TASK_CONFIG_KEY = "atlas_task"
_CODE_TOOL = "code_interpreter"


class AtlasAgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    #: The episode id when the caller's config names none.
    atlas_episode: str


@dataclass
class _Episode:
    ctx: Any
    session: Any
    system: str


# episode id -> {agent key -> _Episode}; shared by every agent so a runner can release by id.
_EPISODES: dict[str, dict[int, _Episode]] = {}
_LOCK = threading.Lock()


def release_episode(episode_id: str) -> None:
    """Close the code sessions of an episode and forget its contexts (idempotent)."""
    with _LOCK:
        eps = _EPISODES.pop(episode_id, {})
    for ep in eps.values():
        if ep.session is not None:
            try:
                ep.session.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the process may be gone
                pass


class _EpisodeTool(BaseTool):
    """A tool whose behaviour depends on the calling episode's context (see module docs)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    fn: Callable[[_Episode, dict[str, Any], str], tuple[str, dict[str, Any]]]
    lookup: Callable[[str], _Episode]
    response_format: str = "content_and_artifact"

    def _to_args_and_kwargs(self, tool_input: Any, tool_call_id: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if isinstance(tool_input, str):
            raise ValueError(f"tool {self.name!r} takes a JSON object of arguments, got the string {tool_input!r}")
        return (dict(tool_input),), {}

    def _run(self, arguments: dict[str, Any], config: RunnableConfig, run_manager: Any = None) -> tuple[str, dict[str, Any]]:
        episode = current_episode(config)
        if not episode:
            raise ValueError(f"tool {self.name!r} ran outside an atlas episode (no configurable['atlas_episode'])")
        return self.fn(self.lookup(episode), arguments, episode)


def create_atlas_agent(
    model: Any,
    toolspace: Any,
    loading: str = "itl",
    executor: str | None = "local",
    *,
    servers: list[str] | None = None,
    loading_options: dict[str, Any] | None = None,
    executor_options: dict[str, Any] | None = None,
    max_response_chars: int = 4000,
) -> Any:
    """A compiled LangGraph agent over ``toolspace`` with ATLAS context control (see module docs).

    Args:
        model: a LangChain chat model (an :class:`~atlas_langgraph.AtlasChatModel` to train it).
        toolspace: the :class:`~atlas_plugins.toolspace.Toolspace` to act in.
        loading: loading policy name (``eager``, ``isl``, ``itl``, ``search`` or a plugin's).
        executor: executor for ``code_interpreter`` (``local``, ``e2b``, a plugin's) or ``None``.
        servers: servers the episode sees when the task names none (default: all live ones).
        max_response_chars: tool observations are cut here (paper: 4,000).
    """
    from atlas_plugins.plugins import get_executor, get_loading_policy

    policy = get_loading_policy(loading, **(loading_options or {}))
    execu = get_executor(executor, **(executor_options or {})) if executor else None
    key = id(policy)

    def system_text(ctx: Any, task: Task) -> str:
        if execu is None:
            return ctx.system_prompt()
        # PTC, as the native agent: code_interpreter is the only tool; servers list their tool names.
        from atlas_plugins.context.prompts import FORMAT_INSTRUCTIONS
        from atlas_plugins.orchestration.prompt import code_interpreter_prompt, code_interpreter_schema

        schema = code_interpreter_schema()
        return "\n\n".join(
            [
                FORMAT_INSTRUCTIONS,
                code_interpreter_prompt(toolspace, servers=task.servers or servers or None),
                "Tool:\n" + json.dumps(schema["function"], separators=(",", ":")),
            ]
        )

    def start(episode: str, task: Task) -> _Episode:
        with _LOCK:
            found = _EPISODES.get(episode, {}).get(key)
        if found is not None:
            return found
        ctx = policy.start_episode(toolspace, task)
        session = execu.open_session(toolspace, episode=episode, servers=task.servers or servers or None) if execu else None
        ep = _Episode(ctx=ctx, session=session, system=system_text(ctx, task))
        with _LOCK:
            _EPISODES.setdefault(episode, {})[key] = ep
        return ep

    def lookup(episode: str) -> _Episode:
        with _LOCK:
            ep = _EPISODES.get(episode, {}).get(key)
        if ep is None:
            raise ValueError(f"episode {episode!r} has not started (the agent node starts it)")
        return ep

    def cut(text: str) -> str:
        return wire_cut(text, max_response_chars)

    # -- tools ----------------------------------------------------------------------------------
    def meta_fn(name: str) -> Callable[[_Episode, dict[str, Any], str], tuple[str, dict[str, Any]]]:
        def fn(ep: _Episode, args: dict[str, Any], episode: str) -> tuple[str, dict[str, Any]]:
            out = ep.ctx.handle_meta_call(name, args)
            if out is None:
                out = f"Error: {name!r} is not a helper tool of this episode"
            ok = not out.lstrip().lower().startswith("error")
            return cut(out), {"ok": ok, "error": None if ok else out, "error_type": None if ok else "meta_error"}

        return fn

    def code_fn(ep: _Episode, args: dict[str, Any], episode: str) -> tuple[str, dict[str, Any]]:
        code = args.get("code")
        if ep.session is None:
            return f"Error: {_CODE_TOOL} is not available in this episode", {"ok": False, "error_type": "unknown_tool"}
        if not isinstance(code, str) or not code.strip():
            return 'Error: code_interpreter needs {"code": "<python source>"}', {"ok": False, "error_type": "invalid_arguments"}
        cell = ep.session.run(code)
        return cell.observation(max_response_chars), {
            "ok": cell.ok,
            "error": cell.error,
            "error_type": None if cell.ok else "code_error",
            "inner_calls": cell.tool_calls,
        }

    def mcp_fn(server: str, tool: str) -> Callable[[_Episode, dict[str, Any], str], tuple[str, dict[str, Any]]]:
        qualified = qualify(server, tool)

        def fn(ep: _Episode, args: dict[str, Any], episode: str) -> tuple[str, dict[str, Any]]:
            if ep.session is not None:
                return (f"Error: call tools from Python inside {_CODE_TOOL}", {"ok": False, "error_type": "unknown_tool"})
            not_loaded = ep.ctx.check_call(qualified)
            if not_loaded:
                return not_loaded, {"ok": False, "error": not_loaded, "error_type": "not_loaded"}
            result = toolspace.call(server, tool, args, episode=episode)
            return cut(result.observation()), result.model_dump()

        return fn

    probe = policy.start_episode(toolspace, None)
    tools: list[BaseTool] = []
    for meta in probe.meta_tools():
        tools.append(_EpisodeTool(name=meta.name, description=meta.description, args_schema=meta.input_schema, fn=meta_fn(meta.name), lookup=lookup))
    if execu is not None:
        from atlas_plugins.orchestration.prompt import code_interpreter_schema

        fn_schema = code_interpreter_schema()["function"]
        tools.append(_EpisodeTool(name=_CODE_TOOL, description=fn_schema["description"], args_schema=fn_schema["parameters"], fn=code_fn, lookup=lookup))
    for info in toolspace.servers:
        if info.catalog_only or (servers is not None and info.name not in servers):
            continue
        for spec in info.tools:
            schema = dict(spec.input_schema or {"type": "object", "properties": {}})
            tools.append(
                _EpisodeTool(name=lc_tool_name(spec.server, spec.name), description=spec.description or spec.name,
                             args_schema=schema, fn=mcp_fn(spec.server, spec.name), lookup=lookup)
            )
    by_name = {t.name: t for t in tools}

    # -- graph ----------------------------------------------------------------------------------
    def episode_of(state: AtlasAgentState, config: RunnableConfig) -> str:
        return current_episode(config) or state.get("atlas_episode") or f"atlas-{uuid.uuid4().hex[:10]}"

    def task_of(episode: str, state: AtlasAgentState, config: RunnableConfig) -> Task:
        given = (config.get("configurable") or {}).get(_TASK_CONFIG_KEY)
        if given:
            return Task.model_validate(given)
        first = next((m for m in state.get("messages", []) if isinstance(m, HumanMessage)), None)
        prompt = first.content if first is not None and isinstance(first.content, str) else ""
        return Task(id=episode, prompt=prompt, servers=list(servers or []))

    def agent(state: AtlasAgentState, config: RunnableConfig) -> dict[str, Any]:
        episode = episode_of(state, config)
        ep = start(episode, task_of(episode, state, config))
        reply = model.invoke([SystemMessage(ep.system), *state["messages"]], _with_episode(config, episode))
        return {"messages": [reply], "atlas_episode": episode}

    def run_tools(state: AtlasAgentState, config: RunnableConfig) -> dict[str, Any]:
        episode = episode_of(state, config)
        cfg = _with_episode(config, episode)
        out: list[ToolMessage] = []
        for call in state["messages"][-1].tool_calls:
            tool = by_name.get(call["name"]) or by_name.get(call["name"].replace(":", "__"))
            if tool is None:
                helpers = [t.name for t in tools if "__" not in t.name]
                msg = f"Error: unknown tool {call['name']!r}. Tools are named server:tool; helper tools: {', '.join(helpers)}"
                out.append(ToolMessage(msg, tool_call_id=call["id"], name=call["name"], status="error", artifact={"ok": False, "error": msg, "error_type": "unknown_tool"}))
                continue
            out.append(tool.invoke({**call, "type": "tool_call"}, cfg))
        return {"messages": out}

    def finish(state: AtlasAgentState, config: RunnableConfig) -> dict[str, Any]:
        release_episode(episode_of(state, config))
        return {}

    def route(state: AtlasAgentState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else "finish"

    builder = StateGraph(AtlasAgentState)
    builder.add_node("agent", agent)
    builder.add_node("tools", run_tools)
    builder.add_node("finish", finish)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, {"tools": "tools", "finish": "finish"})
    builder.add_edge("tools", "agent")
    builder.add_edge("finish", END)
    return builder.compile(name="atlas_agent")


def _with_episode(config: RunnableConfig, episode: str) -> RunnableConfig:
    configurable = dict(config.get("configurable") or {})
    configurable[EPISODE_CONFIG_KEY] = episode
    return {**config, "configurable": configurable}
