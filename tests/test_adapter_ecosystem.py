"""Agents as their users build them (issue 17): async-only tools (as langchain-mcp-adapters makes
them), async agents behind the proxy, and tool names that are not ``server:tool``.

Real LangGraph graphs (``create_react_agent``), real async-only ``StructuredTool``s (built with
``coroutine=`` only, exactly like langchain-mcp-adapters' tools), the real policy server and a real
OpenAI client. The model's turns are scripted (``ScriptedPolicy``, the warm start's stand-in policy
over the embedded tokenizer), so these tests load no model weights and stay fast.
"""

from __future__ import annotations

import logging
import warnings

import pytest

pytest.importorskip("langgraph", reason="the LangGraph adapter needs the 'langgraph' extra")
pytest.importorskip("transformers", reason="the scripted policy needs a tokenizer ('train' extra)")

from atlas_langgraph import AtlasChatModel, LangGraphRunner  # noqa: E402
from atlas_langgraph.names import ToolNames, load_mcp_tools, resolve_graph_name  # noqa: E402
from atlas_langgraph.runner import demonstrations, reference_turns  # noqa: E402
from langchain_core.tools import StructuredTool  # noqa: E402

from atlas_plugins.embedded_model import load_tokenizer  # noqa: E402
from atlas_plugins.rewards.scorer import Scorer  # noqa: E402
from atlas_plugins.training.warmstart import ScriptedPolicy  # noqa: E402
from atlas_plugins.types import Task  # noqa: E402
from atlas_plugins.wire.toolcall import format_call  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def react_agent(model, tools, **kw):
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools, **kw)


def async_only_tools() -> list[StructuredTool]:
    """Tools with a coroutine and no sync function: invoking them synchronously raises
    ``NotImplementedError`` — langchain-mcp-adapters' MCP tools behave exactly so."""

    async def add(a: int, b: int) -> str:
        return str(a + b)

    async def get_current_time(timezone: str) -> str:
        return f"{timezone}: 09:00"

    return [
        StructuredTool.from_function(coroutine=add, name="add", description="Add two integers."),
        StructuredTool.from_function(coroutine=get_current_time, name="get_current_time", description="Current time in a zone."),
    ]


def add_task(task_id: str = "add-2-3", rubric_tool: str = "math:add") -> Task:
    return Task(
        id=task_id, prompt="Add 2 and 3.", servers=["math"], answer="5", split="train",
        metadata={"reference_solution": [{"server": "math", "tool": "add", "arguments": {"a": 2, "b": 3}}]},
        rubric={"criteria": [
            {"name": "called add", "category": "TA", "weight": 5, "kind": "check",
             "check": {"type": "tool_called", "tool": rubric_tool, "ok_only": True}},
            {"name": "answer", "category": "TF", "weight": 8, "kind": "check", "check": {"type": "answer_contains", "values": ["5"]}},
        ]},
    )


def test_async_only_tools_run_and_are_recorded(tok):
    """Without ``ainvoke`` the call ends in "StructuredTool does not support sync invocation", the
    episode keeps ``tool_calls=[]`` and the reward is 0 — the call GRPO should reinforce."""
    turns = [format_call("math:add", {"a": 2, "b": 3}), "<answer>5</answer>"]
    model = AtlasChatModel(policy=ScriptedPolicy(tok, turns), max_new_tokens=64)
    runner = LangGraphRunner(react_agent(model, async_only_tools()), model, batch=False)
    (traj,) = runner.run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    # The model wrote "math:add"; the graph's tool is "add"; the record is "math:add" again.
    assert [(c.name, c.ok, c.result) for c in traj.tool_calls] == [("math:add", True, "5")]
    assert traj.final_answer == "5" and traj.turns == 2
    Scorer("static").score(traj)
    assert traj.reward == 1.0
    runner.close()


def test_sync_mode_still_available_and_reports_the_error(tok):
    """``use_async=False`` is plain ``invoke``: the async-only tool fails and the episode says why."""
    turns = [format_call("add", {"a": 2, "b": 3}), "<answer>5</answer>"]
    model = AtlasChatModel(policy=ScriptedPolicy(tok, turns), max_new_tokens=64)
    runner = LangGraphRunner(react_agent(model, async_only_tools()), model, batch=False, use_async=False)
    (traj,) = runner.run([add_task()])
    assert "NotImplementedError" in traj.metadata["error"] and "sync invocation" in traj.metadata["error"]


def test_tool_names_map_once_in_both_directions():
    names = ToolNames(async_only_tools(), explicit={"get_current_time": "time:get_current_time"})
    task = add_task()
    assert names.qualified("add", task) == "math:add"  # from the task's reference solution
    assert names.qualified("get_current_time") == "time:get_current_time"  # explicit pair
    assert names.qualified("fetch_tools") == "fetch_tools"  # meta-tools pass through
    assert names.graph_name("math:add") == "add" and names.graph_name("time:get_current_time") == "get_current_time"
    assert names.graph_name("math:multiply") is None
    assert resolve_graph_name("time:now", ["time_now", "now"]) == "time_now"  # tool_name_prefix spelling first
    with pytest.raises(ValueError, match="not 'server:tool'"):
        ToolNames([], explicit={"x": "bare"})
    # Reference turns write the graph's own name.
    assert reference_turns(task, names)[0] == format_call("add", {"a": 2, "b": 3})


def test_tool_names_from_tagged_langchain_mcp_adapter_tools():
    """load_mcp_tools tags each tool with its server, whatever the client named it."""

    class Client:  # the two attributes and the one method of MultiServerMCPClient that load_mcp_tools uses
        connections = {"time": {}, "math": {}}
        tool_name_prefix = True

        async def get_tools(self, *, server_name=None):
            tools = async_only_tools()
            keep = {"time": "get_current_time", "math": "add"}[server_name]
            out = [t for t in tools if t.name == keep]
            for t in out:
                t.name = f"{server_name}_{t.name}"
            return out

    import asyncio

    tools = asyncio.run(load_mcp_tools(Client()))
    names = ToolNames(tools)
    assert names.qualified("time_get_current_time") == "time:get_current_time"
    assert names.qualified("math_add") == "math:add"
    assert names.graph_name("time:get_current_time") == "time_get_current_time"


def test_demonstrations_reach_bare_named_tools_and_say_why_others_fail(tok, caplog):
    """reference_turns used to write ``math:add`` for a graph whose tool is ``add``: 0 kept, no reason."""
    base = ScriptedPolicy(tok, ["<answer>nothing</answer>"])
    model = AtlasChatModel(policy=base, max_new_tokens=64)
    runner = LangGraphRunner(react_agent(model, async_only_tools()), model, batch=False)
    good = add_task("good")
    wrong = add_task("wrong-answer").model_copy(update={"answer": "6"})  # the reference answer fails the rubric
    nothing = Task(id="no-solution", prompt="Hi.", split="train", rubric=good.rubric)
    with caplog.at_level(logging.WARNING, logger="atlas_langgraph.runner"):
        kept, stats = demonstrations(runner, [good, wrong, nothing], Scorer("static"))
    assert [t.task_id for t in kept] == ["good"] and stats["kept"] == 1
    assert [t.tool_calls[0].name for t in kept] == ["math:add"]
    reasons = {r["task_id"]: r["reason"] for r in stats["rejections"]}
    assert set(reasons) == {"wrong-answer", "no-solution"}
    assert "reward" in reasons["wrong-answer"] and "answer = 0.00" in reasons["wrong-answer"]
    assert "no reference_solution" in reasons["no-solution"]
    assert "wrong-answer" in caplog.text and "not kept" in caplog.text
    runner.close()


# ------------------------------------------------------------------------------- the proxy
def test_proxy_awaits_async_agents_and_async_tools(tok):
    """An ``async def agent(task)`` was called and never awaited (turns=0); a ChatOpenAI graph over
    async-only tools failed like the in-process runner did."""
    pytest.importorskip("langchain_openai")
    from atlas_langgraph.proxy import ProxyRunner, start_proxy
    from langchain_openai import ChatOpenAI

    proxy = start_proxy(max_new_tokens=64)
    try:
        async def agent(task: Task) -> str:
            llm = ChatOpenAI(base_url=proxy.base_url, api_key="x", model="policy", max_retries=0)
            return (await llm.ainvoke(task.prompt)).content

        runner = ProxyRunner(agent, proxy=proxy)
        (traj,) = runner.run([add_task()], policy=ScriptedPolicy(tok, ["<answer>5</answer>"]))
        assert "error" not in traj.metadata and traj.turns == 1 and runner.last_results == ["<answer>5</answer>"]
        assert traj.final_answer == "5"
        runner.close()

        # A graph written against the endpoint, with async-only tools, played twice on the runner's
        # one event loop (the client's pooled connections survive from episode to episode).
        llm = ChatOpenAI(base_url=proxy.base_url, api_key="x", model="policy", max_retries=0)
        graph = react_agent(llm, async_only_tools())
        runner = ProxyRunner(graph, proxy=proxy, recursion_limit=6)
        for _ in range(2):
            turns = [format_call("add", {"a": 2, "b": 3}), "<answer>5</answer>"]
            (traj,) = runner.run([add_task()], policy=ScriptedPolicy(tok, turns))
            assert "error" not in traj.metadata, traj.metadata.get("error")
            assert [(c.name, c.ok, c.result) for c in traj.tool_calls] == [("math:add", True, "5")]
            Scorer("static").score(traj)
            assert traj.reward == 1.0
        runner.close()
    finally:
        proxy.stop()
