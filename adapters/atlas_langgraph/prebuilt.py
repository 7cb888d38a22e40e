"""``create_atlas_agent``: a small prebuilt LangGraph agent with ATLAS context control.

Two nodes, like ``langgraph-bigtool``'s agent::

    START -> agent --(tool calls)--> tools -> agent ... --(no tool calls)--> finish -> END

* **agent** — on the episode's first step it starts the episode's
  :class:`~atlas_plugins.agent.env.EpisodeEnv` (the loading policy's context and, with an
  executor, the ``code_interpreter`` session: the same object the native agent plays through);
  then it calls the model with the episode's system text before the conversation.
* **tools** — runs the requested calls as LangChain tools, each one ``env.act(name, args)``:
  the loading policy's meta-tools (``fetch_tools``, ``get_selected_tools``, ``search_tools`` …),
  ``code_interpreter``, and every MCP tool (refused with a "load it first" message while its
  schema is not loaded, and under PTC refused with "call tools from Python", like the native loop).
* **finish** — closes the episode's environment.

How a step finds its episode: the episode id is the run's
``config["configurable"]["atlas_episode"]`` (what :class:`~atlas_langgraph.runner.LangGraphRunner`
sets) or, when the caller gives none, a fresh id kept in the graph state. The task comes from
``configurable["atlas_task"]`` (set by the runner) or is built from the first user message.

With ``executor`` set the agent is the paper's ITL+PTC design: the only tool shown is
``code_interpreter`` and tools are reached from Python. With ``executor=None`` the model calls
the meta-tools and ``server:tool`` tools directly.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import ConfigDict
from typing_extensions import TypedDict

from atlas_langgraph.tools import EPISODE_CONFIG_KEY, current_episode, lc_tool_name
from atlas_plugins.agent.env import EnvTool, EpisodeEnv
from atlas_plugins.types import Task

__all__ = ["AtlasAgentState", "create_atlas_agent", "release_episode"]

_TASK_CONFIG_KEY = "atlas_task"


class AtlasAgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    #: The episode id when the caller's config names none.
    atlas_episode: str


# episode id -> {agent key -> EpisodeEnv}; shared by every agent so a runner can release by id.
_EPISODES: dict[str, dict[int, EpisodeEnv]] = {}
_LOCK = threading.Lock()


def release_episode(episode_id: str) -> None:
    """Close the environments (code sessions) of an episode and forget them (idempotent)."""
    with _LOCK:
        envs = _EPISODES.pop(episode_id, {})
    for env in envs.values():
        try:
            env.close()
        except Exception:  # noqa: BLE001 - closing is best effort; the process may be gone
            pass


class _EpisodeTool(BaseTool):
    """A tool whose behaviour depends on the calling episode's context (see module docs)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    qualified: str  # the name EpisodeEnv.act knows the tool by ("server:tool" or a helper's name)
    lookup: Callable[[str], EpisodeEnv]
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"

    def _to_args_and_kwargs(self, tool_input: Any, tool_call_id: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if isinstance(tool_input, str):
            raise ValueError(f"tool {self.name!r} takes a JSON object of arguments, got the string {tool_input!r}")
        return (dict(tool_input),), {}

    def _run(
        self, arguments: dict[str, Any], config: RunnableConfig, run_manager: Any = None
    ) -> tuple[str, dict[str, Any]]:
        episode = current_episode(config)
        if not episode:
            raise ValueError(f"tool {self.name!r} ran outside an atlas episode (no configurable['atlas_episode'])")
        obs = self.lookup(episode).act(self.qualified, arguments)
        return obs.text, obs.artifact()


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

    def start(episode: str, task: Task) -> EpisodeEnv:
        with _LOCK:
            found = _EPISODES.get(episode, {}).get(key)
        if found is not None:
            return found
        env = EpisodeEnv(
            toolspace,
            task,
            loading=policy,
            executor=execu,
            episode_id=episode,
            max_response_chars=max_response_chars,
            default_servers=servers,
        )
        with _LOCK:
            _EPISODES.setdefault(episode, {})[key] = env
        return env

    def lookup(episode: str) -> EpisodeEnv:
        with _LOCK:
            env = _EPISODES.get(episode, {}).get(key)
        if env is None:
            raise ValueError(f"episode {episode!r} has not started (the agent node starts it)")
        return env

    # The tools every episode of this agent offers (a task-free probe, closed at once).
    with EpisodeEnv(toolspace, None, loading=policy, executor=None, episode_id="atlas-probe") as probe:
        offered: list[EnvTool] = probe.tools(servers=servers)
    if execu is not None:  # under PTC: code_interpreter, and no meta-tools (as the native agent)
        from atlas_plugins.orchestration.prompt import code_interpreter_schema

        fn = code_interpreter_schema()["function"]
        offered = [
            EnvTool(name="code_interpreter", description=fn["description"], parameters=fn["parameters"], kind="code"),
            *[t for t in offered if t.kind == "mcp"],
        ]
    tools: list[BaseTool] = [
        _EpisodeTool(
            name=lc_tool_name(*t.name.split(":", 1)) if t.kind == "mcp" else t.name,
            description=t.description,
            args_schema=t.parameters,
            qualified=t.name,
            lookup=lookup,
        )
        for t in offered
    ]
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
        env = start(episode, task_of(episode, state, config))
        reply = model.invoke([SystemMessage(env.system_text()), *state["messages"]], _with_episode(config, episode))
        return {"messages": [reply], "atlas_episode": episode}

    def run_tools(state: AtlasAgentState, config: RunnableConfig) -> dict[str, Any]:
        episode = episode_of(state, config)
        cfg = _with_episode(config, episode)
        out: list[ToolMessage] = []
        last = cast(AIMessage, state["messages"][-1])  # route() sends only an AIMessage with tool calls here
        for call in last.tool_calls:
            tool = by_name.get(call["name"]) or by_name.get(call["name"].replace(":", "__"))
            if tool is None:  # the episode's environment words the error, as for the native agent
                obs = lookup(episode).act(call["name"], dict(call.get("args") or {}))
                out.append(
                    ToolMessage(
                        obs.text, tool_call_id=call["id"], name=call["name"], status="error", artifact=obs.artifact()
                    )
                )
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
