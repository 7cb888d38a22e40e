"""Agents as third-party users write them, played by the adapters: LangGraph graphs that are not
our examples (a checkpointer, interrupts, subgraphs, ``context_schema``, a hand-built
``StateGraph`` with ``ToolNode`` + ``tools_condition``, ``response_format``, parallel tool calls,
hung or looping nodes, a graph on the wrong chat model) and DSPy programs (``ChainOfThought`` /
``Predict`` with their own input names, custom modules with several predictors, ``dspy.ReAct``
over plain-function and async tools, async-only modules, ``dspy.Parallel``, a flaky step before the
first LM call, a program looping on its LM, predictors with an LM of their own).

Real LangGraph graphs, real DSPy modules, the real policy server and a real OpenAI client. Model
turns are scripted (``ScriptedPolicy`` over the embedded tokenizer, the warm start's stand-in), so
the tests above the "real model" section load no model weights. The two tests at the end train
one real GRPO step on the embedded SmolLM2 (``slow``).
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from dataclasses import dataclass

import pytest

pytest.importorskip("langgraph", reason="the LangGraph adapter needs the 'langgraph' extra")
dspy = pytest.importorskip("dspy", reason="the DSPy adapter needs the 'dspy' extra")
pytest.importorskip("transformers", reason="the scripted policy needs a tokenizer ('train' extra)")

from atlas_dspy import AtlasLM, DSPyRunner  # noqa: E402
from atlas_langgraph import AtlasChatModel, LangGraphRunner  # noqa: E402
from atlas_langgraph.names import SERVER_METADATA_KEY  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, SystemMessage  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from langchain_core.tools import StructuredTool  # noqa: E402
from langgraph.checkpoint.memory import MemorySaver  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402
from langgraph.runtime import Runtime  # noqa: E402
from langgraph.types import interrupt  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from atlas_plugins.embedded_model import load_tokenizer  # noqa: E402
from atlas_plugins.errors import AtlasError  # noqa: E402
from atlas_plugins.rewards.scorer import Scorer  # noqa: E402
from atlas_plugins.training.warmstart import ScriptedPolicy  # noqa: E402
from atlas_plugins.types import Task  # noqa: E402
from atlas_plugins.wire.toolcall import format_call  # noqa: E402

CALL = format_call("add", {"a": 2, "b": 3})
ANSWER = "<answer>5</answer>"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def add_task(task_id: str = "add-2-3", prompt: str = "Add 2 and 3.") -> Task:
    """A task whose rubric names the tool ``math:add`` (what third-party tools are mapped to)."""
    return Task(
        id=task_id, prompt=prompt, servers=["math"], answer="5", split="train",
        metadata={"reference_solution": [{"server": "math", "tool": "add", "arguments": {"a": 2, "b": 3}}]},
        rubric={"criteria": [
            {"name": "called add", "category": "TA", "weight": 5, "kind": "check",
             "check": {"type": "tool_called", "tool": "math:add", "ok_only": True}},
            {"name": "answer", "category": "TF", "weight": 8, "kind": "check", "check": {"type": "answer_contains", "values": ["5"]}},
        ]},
    )


def _add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def add_tool(**kw) -> StructuredTool:
    """The user's own tool (not a toolspace tool): a plain sync function named ``add``."""
    return StructuredTool.from_function(_add, name="add", description="Add two integers.", **kw)


def scripted(tok, turns: list[str]) -> AtlasChatModel:
    return AtlasChatModel(policy=ScriptedPolicy(tok, turns), max_new_tokens=64)


def react_agent(model, tools, **kw):
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # LangGraph 1.x suggests langchain.agents.create_agent; same graph
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools, **kw)


def calls(traj) -> list[tuple[str, bool, str]]:
    return [(c.name, c.ok, c.result) for c in traj.tool_calls]


# =============================================================================== LangGraph
def test_checkpointer_graph_plays_each_episode_on_its_own_thread(tok):
    """``create_react_agent(..., checkpointer=MemorySaver())`` — the usual chat-app agent. The runner
    gave no ``thread_id``, so every episode failed at once (KeyError 'thread_id', nothing recorded)."""
    saver = MemorySaver()
    model = scripted(tok, [CALL, ANSWER, CALL, ANSWER])
    graph = react_agent(model, [add_tool()], checkpointer=saver)
    runner = LangGraphRunner(graph, model, batch=False, max_concurrency=1, tool_names={"add": "math:add"})
    first, second = runner.run([add_task("a"), add_task("b")])
    for traj in (first, second):
        assert "error" not in traj.metadata, traj.metadata.get("error")
        assert calls(traj) == [("math:add", True, "5")] and traj.final_answer == "5"
    # The second episode is its own conversation, not the first one's thread continued.
    assert len(second.messages) == len(first.messages) == 4
    assert not saver.storage  # each episode's thread is deleted afterwards (a long run would pile them up)


def test_interrupt_before_tools_is_a_failed_episode_not_a_silent_stop(tok):
    """A human-in-the-loop graph (``interrupt_before=["tools"]``) stops after the first model turn;
    the episode looked finished (no error) though its tool never ran."""
    model = scripted(tok, [CALL, ANSWER])
    graph = react_agent(model, [add_tool()], checkpointer=MemorySaver(), interrupt_before=["tools"])
    (traj,) = LangGraphRunner(graph, model, batch=False, tool_names={"add": "math:add"}).run([add_task()])
    assert "GraphInterrupt" in traj.metadata["error"] and "tools" in traj.metadata["error"]
    assert traj.turns == 1 and traj.tool_calls[0].error_type == "not_run"


def test_dynamic_interrupt_in_a_tool_is_reported(tok):
    def transfer(amount: int) -> str:
        """Transfer money (a human approves first)."""
        return "done" if interrupt(f"approve a transfer of {amount}?") else "refused"

    model = scripted(tok, [format_call("transfer", {"amount": 10}), "<answer>done</answer>"])
    graph = react_agent(model, [StructuredTool.from_function(transfer)])
    (traj,) = LangGraphRunner(graph, model, batch=False).run([Task(id="pay", prompt="Send 10.")])
    assert "GraphInterrupt" in traj.metadata["error"] and "approve a transfer of 10" in traj.metadata["error"]


def test_tools_of_a_subgraph_agent_are_named_by_their_server(tok):
    """A supervisor-style graph whose worker node is a ``create_react_agent``: the worker's tools
    (tagged with their MCP server, as ``load_mcp_tools`` tags them) were not found, so the call was
    recorded as bare ``add`` and no ``server:tool`` rubric check could match it."""
    model = scripted(tok, [CALL, ANSWER])
    worker = react_agent(model, [add_tool(metadata={SERVER_METADATA_KEY: "math"})])
    outer = StateGraph(MessagesState)
    outer.add_node("worker", worker)
    outer.add_edge(START, "worker")
    outer.add_edge("worker", END)
    runner = LangGraphRunner(outer.compile(), model, batch=False)
    (traj,) = runner.run([Task(id="sub", prompt="Add 2 and 3.")])  # no reference solution to guess from
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert calls(traj) == [("math:add", True, "5")]
    assert runner.names.graph_name("math:add") == "add"  # the warm start's scripted calls reach it too


def test_hand_built_state_graph_with_tool_node_and_tools_condition(tok):
    model = scripted(tok, [CALL, ANSWER])
    tools = [add_tool()]
    llm = model.bind_tools(tools)

    def agent(state: MessagesState):
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    (traj,) = LangGraphRunner(builder.compile(), llm, batch=False).run([add_task()])  # the bound model is accepted
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert calls(traj) == [("math:add", True, "5")] and traj.final_answer == "5" and traj.prefix_breaks == 0
    Scorer("static").score(traj)
    assert traj.reward == 1.0


def test_string_prompt_and_response_format(tok):
    class Sum(BaseModel):
        value: int

    model = scripted(tok, [CALL, ANSWER, format_call("Sum", {"value": 5})])
    graph = react_agent(model, [add_tool()], prompt="You add numbers with the add tool.", response_format=Sum)
    runner = LangGraphRunner(graph, model, batch=False, output_fn=lambda s: str(s["structured_response"].value))
    (traj,) = runner.run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.final_answer == "5" and traj.turns == 3  # the structured-output call is a recorded turn
    assert traj.messages[0] == {"role": "system", "content": "You add numbers with the add tool."}


def test_parallel_tool_calls_in_one_message(tok):
    both = format_call("add", {"a": 2, "b": 3}) + format_call("add", {"a": 1, "b": 1})
    model = scripted(tok, [both, "<answer>5 and 2</answer>"])
    graph = react_agent(model, [add_tool()])
    (traj,) = LangGraphRunner(graph, model, batch=False).run([add_task()])
    assert calls(traj) == [("math:add", True, "5"), ("math:add", True, "2")]
    assert len({c.turn for c in traj.tool_calls}) == 1 and traj.prefix_breaks == 0


def test_return_direct_tool_result_is_the_final_answer(tok):
    """A ``return_direct=True`` tool ends the run on its ToolMessage; the final answer was read from
    the AI message before it, which holds only the call: ``None``, and the answer check failed."""
    model = scripted(tok, [CALL, ANSWER])
    graph = react_agent(model, [add_tool(return_direct=True)])
    (traj,) = LangGraphRunner(graph, model, batch=False).run([add_task()])
    assert traj.turns == 1 and calls(traj) == [("math:add", True, "5")]
    assert traj.final_answer == "5"
    Scorer("static").score(traj)
    assert traj.reward == 1.0


def test_context_schema_and_user_config_reach_the_graph(tok):
    """Graphs that read ``runtime.context`` (``context_schema``) or their own ``configurable`` keys
    could not be given either: every episode failed on ``None.user_name`` / a missing key."""

    @dataclass
    class UserCtx:
        user_name: str

    def prompt(state, runtime: Runtime[UserCtx]):
        return [SystemMessage(f"You help {runtime.context.user_name}."), *state["messages"]]

    model = scripted(tok, [CALL, ANSWER])
    graph = react_agent(model, [add_tool()], prompt=prompt, context_schema=UserCtx)
    runner = LangGraphRunner(graph, model, batch=False, context_fn=lambda task: UserCtx(user_name=f"ann-{task.id}"))
    (traj,) = runner.run([add_task("ctx")])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.messages[0] == {"role": "system", "content": "You help ann-ctx."}

    model = scripted(tok, [ANSWER])

    def agent(state: MessagesState, config: RunnableConfig):
        user = config["configurable"]["user_id"]
        return {"messages": [model.invoke([SystemMessage(f"User {user}."), *state["messages"]], config)]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    runner = LangGraphRunner(builder.compile(), model, batch=False, config={"configurable": {"user_id": "u-7"}})
    (traj,) = runner.run([add_task("cfg")])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.messages[0]["content"] == "User u-7." and traj.final_answer == "5"


@pytest.mark.timeout(60)
def test_a_hung_async_node_times_out_as_a_failed_episode(tok):
    """A node awaiting a server that never answers held the whole training step forever."""

    async def hang(state: MessagesState):
        await asyncio.sleep(3600)

    builder = StateGraph(MessagesState)
    builder.add_node("hang", hang)
    builder.add_edge(START, "hang")
    t0 = time.monotonic()
    (traj,) = LangGraphRunner(builder.compile(), scripted(tok, [ANSWER]), batch=False, episode_timeout_s=1).run([add_task()])
    assert time.monotonic() - t0 < 30
    assert traj.metadata["error"].startswith("TimeoutError")


@pytest.mark.timeout(60)
def test_a_node_looping_on_the_model_is_stopped(tok):
    """A Python loop inside one node (retry until the reply parses) is invisible to the recursion
    limit; the episode's time budget stops it at its next model call, keeping what it recorded."""
    model = scripted(tok, ["not yet"])

    def retry_forever(state: MessagesState):
        while True:
            model.invoke(state["messages"])

    builder = StateGraph(MessagesState)
    builder.add_node("retry", retry_forever)
    builder.add_edge(START, "retry")
    runner = LangGraphRunner(builder.compile(), model, batch=False, use_async=False, episode_timeout_s=1)
    (traj,) = runner.run([add_task()])
    assert traj.metadata["error"].startswith("TimeoutError") and traj.turns >= 1 and traj.completion_ids


def test_one_failing_episode_does_not_sink_the_run(tok):
    def prompt(state):
        if "boom" in state["messages"][0].content:
            raise RuntimeError("prompt store unavailable")
        return state["messages"]

    model = scripted(tok, [CALL, ANSWER])
    graph = react_agent(model, [add_tool()], prompt=prompt)
    ok, bad = LangGraphRunner(graph, model, batch=False, max_concurrency=1).run([add_task("ok"), add_task("bad", "boom")])
    assert "error" not in ok.metadata and ok.final_answer == "5"
    assert "prompt store unavailable" in bad.metadata["error"] and bad.turns == 0


def test_model_wrappers_are_unwrapped_and_bad_inputs_are_named(tok):
    model = scripted(tok, [ANSWER])
    graph = react_agent(model, [add_tool()])
    assert LangGraphRunner(graph, model.bind_tools([add_tool()]).with_retry()).model is model
    fake = GenericFakeChatModel(messages=iter([AIMessage("5")]))
    with pytest.raises(TypeError, match=r"GenericFakeChatModel.*ProxyRunner"):
        LangGraphRunner(graph, fake)
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda s: {"messages": [model.invoke(s["messages"])]})
    builder.add_edge(START, "agent")
    with pytest.raises(TypeError, match=r"StateGraph.*compile\(\)"):
        LangGraphRunner(builder, model)


def test_graph_on_another_model_is_a_setup_error(tok):
    """The graph built on one AtlasChatModel, the runner given another: the trainer's policy went
    into a model the graph never calls, and GRPO trained on samples of the untrained one."""
    graph_model, other = scripted(tok, [ANSWER]), scripted(tok, [ANSWER])
    graph = react_agent(graph_model, [add_tool()])
    with pytest.raises(AtlasError, match="not the AtlasChatModel given"):
        LangGraphRunner(graph, other, batch=False).run([add_task()])

    # A graph on a chat model that is not ours at all (ChatOpenAI at its own server, ChatHuggingFace ...).
    fake = GenericFakeChatModel(messages=iter([AIMessage("5")] * 4))
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda s: {"messages": [fake.invoke(s["messages"])]})
    builder.add_edge(START, "agent")
    with pytest.raises(AtlasError, match="without one call of the AtlasChatModel"):
        LangGraphRunner(builder.compile(), other, batch=False).run([add_task()])


def test_a_second_chat_model_on_the_same_policy_is_accepted(tok):
    """A node with its own sampling settings built as another ``AtlasChatModel`` on the same
    policy samples from the policy being trained: not a setup error."""
    model = scripted(tok, [CALL, ANSWER])
    summariser = AtlasChatModel(policy=model.policy, max_new_tokens=32)
    agent = react_agent(model, [add_tool()])
    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("summary", lambda s: {"messages": [summariser.invoke(s["messages"][-1:])]})
    builder.add_edge(START, "agent")
    builder.add_edge("agent", "summary")
    (traj,) = LangGraphRunner(builder.compile(), model, batch=False).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.turns == 3  # call, answer, and the summary node's turn


def test_proxy_checkpointer_graph_and_an_agent_that_never_calls_the_proxy(tok):
    pytest.importorskip("langchain_openai")
    from atlas_langgraph.proxy import ProxyRunner, start_proxy
    from langchain_openai import ChatOpenAI

    proxy = start_proxy(max_new_tokens=64)
    try:
        llm = ChatOpenAI(base_url=proxy.base_url, api_key="x", model="policy", max_retries=0)
        graph = react_agent(llm, [add_tool()], checkpointer=MemorySaver())
        runner = ProxyRunner(graph, proxy=proxy, recursion_limit=6, tool_names={"add": "math:add"})
        (traj,) = runner.run([add_task()], policy=ScriptedPolicy(tok, [CALL, ANSWER]))
        assert "error" not in traj.metadata, traj.metadata.get("error")
        assert calls(traj) == [("math:add", True, "5")]

        def elsewhere(task: Task) -> str:  # its client still points at the user's own server
            return "5"

        with pytest.raises(AtlasError, match="no request to the proxy"):
            ProxyRunner(elsewhere, proxy=proxy).run([add_task()], policy=ScriptedPolicy(tok, [ANSWER]))
    finally:
        proxy.stop()


# ==================================================================================== DSPy
def fmt(signature, outputs: dict) -> str:
    """A reply in the ChatAdapter's format (what a warm-started model writes)."""
    return dspy.ChatAdapter().format_assistant_message_content(signature, outputs)


def scripted_lm(tok, replies: list[str]) -> AtlasLM:
    return AtlasLM(ScriptedPolicy(tok, replies, eos=True), max_tokens=160)


def react_script(program, tool: str, args: dict, answer: str) -> list[str]:
    react, extract = program.react.signature, program.extract.predict.signature
    return [
        fmt(react, {"next_thought": "Use the tool.", "next_tool_name": tool, "next_tool_args": args}),
        fmt(react, {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}}),
        fmt(extract, {"reasoning": "The tool said so.", "answer": answer}),
    ]


def user_text(traj) -> str:
    return "\n".join(m["content"] for m in traj.messages if m["role"] == "user")


def test_chain_of_thought_with_its_own_input_name_gets_the_prompt(tok):
    """``dspy.ChainOfThought("question -> answer")``: the runner passed ``task=...``, DSPy dropped it
    with a warning, and every episode answered an empty question (no error anywhere)."""
    cot = dspy.ChainOfThought("question -> answer")
    lm = scripted_lm(tok, [fmt(cot.predict.signature, {"reasoning": "2 + 3 = 5.", "answer": "5"})])
    (traj,) = DSPyRunner(cot, lm, None, max_concurrency=1).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert "Add 2 and 3." in user_text(traj) and traj.final_answer == "5"


def test_custom_forward_with_kwargs_still_gets_task(tok):
    """A user's ``forward(self, **kw)`` reading ``kw["task"]`` keeps the ``task`` input (only DSPy's
    own modules pass ``**kwargs`` on to their predictor)."""

    class ReadsTask(dspy.Module):
        def __init__(self):
            super().__init__()
            self.cot = dspy.ChainOfThought("question -> answer")

        def forward(self, **kw):
            return self.cot(question=kw["task"])

    program = ReadsTask()
    lm = scripted_lm(tok, [fmt(program.cot.predict.signature, {"reasoning": "2 + 3 = 5.", "answer": "5"})])
    (traj,) = DSPyRunner(program, lm, None, max_concurrency=1).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert "Add 2 and 3." in user_text(traj) and traj.final_answer == "5"


def test_predictor_with_another_atlas_lm_on_the_same_policy_is_accepted(tok):
    cot = dspy.ChainOfThought("question -> answer")
    lm = scripted_lm(tok, [fmt(cot.predict.signature, {"reasoning": "2 + 3 = 5.", "answer": "5"})])
    cot.set_lm(AtlasLM(lm.policy, max_tokens=160))  # same policy, its own sampling settings
    (traj,) = DSPyRunner(cot, lm, None, max_concurrency=1).run([add_task()])
    assert traj.final_answer == "5" and traj.turns == 1


def test_predict_with_several_inputs_asks_for_an_input_fn(tok):
    predict = dspy.Predict("question, context -> answer")
    lm = scripted_lm(tok, [fmt(predict.signature, {"answer": "5"})])
    with pytest.raises(AtlasError, match=r"\['question', 'context'\].*input_fn"):
        DSPyRunner(predict, lm, None)
    runner = DSPyRunner(predict, lm, None, input_fn=lambda t: {"question": t.prompt, "context": "Arithmetic."}, max_concurrency=1)
    (traj,) = runner.run([add_task()])
    assert "Add 2 and 3." in user_text(traj) and "Arithmetic." in user_text(traj)


def test_custom_module_with_several_predictors_and_its_own_forward(tok):
    class Solver(dspy.Module):
        def __init__(self):
            super().__init__()
            self.plan = dspy.Predict("query -> plan")
            self.solve = dspy.ChainOfThought("query, plan -> answer")

        def forward(self, query):
            return self.solve(query=query, plan=self.plan(query=query).plan)

    program = Solver()
    lm = scripted_lm(tok, [fmt(program.plan.signature, {"plan": "add them"}),
                           fmt(program.solve.predict.signature, {"reasoning": "2 + 3 = 5.", "answer": "5"})])
    (traj,) = DSPyRunner(program, lm, None, max_concurrency=1).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.turns == 2 and len(traj.segments) == 2 and traj.final_answer == "5"
    assert "Add 2 and 3." in user_text(traj)


def test_react_over_plain_function_tools_records_their_calls(tok):
    """``dspy.ReAct(sig, tools=[my_function])``: only toolspace tools logged calls, so the episode
    had ``tool_calls=[]`` and a ``tool_called`` rubric check scored 0 although the tool ran."""

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    react = dspy.ReAct("task -> answer", tools=[add, divide], max_iters=3)
    (traj,) = DSPyRunner(react, scripted_lm(tok, react_script(react, "add", {"a": 2, "b": 3}, "5")), None,
                         max_concurrency=1).run([add_task()])
    assert [(c.name, c.ok, c.result, c.arguments) for c in traj.tool_calls] == [("math:add", True, "5", {"a": 2, "b": 3})]
    Scorer("static").score(traj)
    assert traj.reward == 1.0
    # A failing tool is a failed call; tool_names places a tool the task does not name.
    runner = DSPyRunner(react, scripted_lm(tok, react_script(react, "divide", {"a": 1, "b": 0}, "none")), None,
                        max_concurrency=1, tool_names={"divide": "math:divide"})
    (traj,) = runner.run([add_task()])
    (call,) = traj.tool_calls
    assert call.name == "math:divide" and not call.ok and "ZeroDivisionError" in call.error and traj.tool_errors == 1


def test_async_tools_in_react_and_in_a_sync_module(tok):
    """Async tools (``async def``, what ``dspy.Tool.from_mcp_tool`` makes) called from the sync
    ``forward`` failed every call ("use acall instead") and the episode scored 0."""

    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    react = dspy.ReAct("task -> answer", tools=[dspy.Tool(add)], max_iters=3)
    runner = DSPyRunner(react, scripted_lm(tok, react_script(react, "add", {"a": 2, "b": 3}, "5")), None, max_concurrency=1)
    (traj,) = runner.run([add_task()])
    assert calls(traj) == [("math:add", True, "5")] and traj.final_answer == "5"

    class Pipeline(dspy.Module):  # sync forward, calling an async tool itself
        def __init__(self):
            super().__init__()
            self.add = dspy.Tool(add)
            self.answer = dspy.Predict("task, total -> answer")

        def forward(self, task):
            return self.answer(task=task, total=self.add(a=2, b=3))

    program = Pipeline()
    runner = DSPyRunner(program, scripted_lm(tok, [fmt(program.answer.signature, {"answer": "5"})]), None,
                        input_fn=lambda t: {"task": t.prompt}, max_concurrency=1)
    (traj,) = runner.run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert calls(traj) == [("math:add", True, "5")]


def test_async_only_module(tok):
    class AsyncAgent(dspy.Module):
        def __init__(self):
            super().__init__()
            self.respond = dspy.Predict("task -> answer")

        async def aforward(self, task):
            return await self.respond.acall(task=task)

    program = AsyncAgent()
    lm = scripted_lm(tok, [fmt(program.respond.signature, {"answer": "5"})])
    (traj,) = DSPyRunner(program, lm, None, max_concurrency=1).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.turns == 1 and traj.final_answer == "5"


def test_dspy_parallel_inside_a_module_is_recorded(tok):
    """``dspy.Parallel`` (and ``Module.batch``) run predictors in DSPy's own threads, which copy
    DSPy's settings but not other context variables: those LM calls were not recorded at all."""

    class TwoViews(dspy.Module):
        def __init__(self):
            super().__init__()
            self.fast = dspy.Predict("task -> answer")
            self.careful = dspy.Predict("task -> answer")

        def forward(self, task):
            return dspy.Parallel(num_threads=2)([(self.fast, {"task": task}), (self.careful, {"task": task})])[0]

    program = TwoViews()
    lm = scripted_lm(tok, [fmt(program.fast.signature, {"answer": "5"})])
    (traj,) = DSPyRunner(program, lm, None, max_concurrency=1).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.turns == 2 and traj.final_answer == "5"


def test_one_episode_failing_before_its_first_lm_call_does_not_sink_the_run(tok):
    """A flaky step before the first LM call (a retriever) raised AtlasError from run(): the whole
    GRPO step failed for one bad episode."""

    class Retrieve(dspy.Module):
        def __init__(self):
            super().__init__()
            self.respond = dspy.Predict("task -> answer")
            self.n, self.lock = 0, threading.Lock()

        def forward(self, task):
            with self.lock:
                self.n += 1
                first = self.n == 1
            if first:
                raise RuntimeError("retriever unavailable")
            return self.respond(task=task)

    program = Retrieve()
    lm = scripted_lm(tok, [fmt(program.respond.signature, {"answer": "5"})])
    bad, good = DSPyRunner(program, lm, None, max_concurrency=1).run([add_task("bad"), add_task("good")])
    assert "retriever unavailable" in bad.metadata["error"] and bad.turns == 0 and bad.final_answer is None
    assert "error" not in good.metadata and good.final_answer == "5"


@pytest.mark.timeout(60)
def test_a_program_looping_on_its_lm_is_stopped(tok):
    class UntilParsed(dspy.Module):
        def __init__(self):
            super().__init__()
            self.respond = dspy.Predict("task -> answer")

        def forward(self, task):
            while True:  # "retry until it answers": a small model may never do
                self.respond(task=task)

    program = UntilParsed()
    lm = scripted_lm(tok, [fmt(program.respond.signature, {"answer": "5"})])
    (traj,) = DSPyRunner(program, lm, None, max_concurrency=1, episode_timeout_s=1).run([add_task()])
    assert traj.metadata["error"].startswith("TimeoutError") and traj.turns >= 1


def test_predictors_with_their_own_lm_are_named(tok):
    """An optimized / loaded program often carries ``set_lm(dspy.LM(...))``: the AtlasLM was never
    called and the run failed later with the other LM's transport error."""
    program = dspy.ChainOfThought("task -> answer")
    program.set_lm(dspy.LM("openai/my-local-model", api_base="http://127.0.0.1:9/v1", api_key="x", num_retries=0))
    lm = scripted_lm(tok, [fmt(program.predict.signature, {"reasoning": "r", "answer": "5"})])
    with pytest.raises(AtlasError, match=r"'predict'.*openai/my-local-model.*set_lm"):
        DSPyRunner(program, lm, None)
    with pytest.raises(AtlasError, match=r"AtlasLM\(TransformersPolicy"):
        DSPyRunner(program, dspy.LM("openai/my-local-model", api_base="http://127.0.0.1:9/v1"), None)


def test_json_adapter_program(tok):
    program = dspy.Predict("task -> answer")
    lm = scripted_lm(tok, ['{"answer": "5"}'])
    with dspy.context(adapter=dspy.JSONAdapter()):
        (traj,) = DSPyRunner(program, lm, None, max_concurrency=1).run([add_task()])
    assert "error" not in traj.metadata, traj.metadata.get("error")
    assert traj.final_answer == "5" and traj.turns == 1


# ============================================================================ real model
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grpo_step_on_a_checkpointed_context_schema_state_graph(tmp_path):
    """One real GRPO step of a hand-built ``StateGraph`` compiled with a ``MemorySaver``, reading
    ``runtime.context``: before, every episode failed before its first model call (no thread_id,
    no context), so the step trained nothing."""
    pytest.importorskip("trl", reason="training needs the 'train' extra")
    import json

    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer

    @dataclass
    class UserCtx:
        user_name: str

    policy = TransformersPolicy()
    model = AtlasChatModel(policy=policy, max_new_tokens=24)
    tools = [add_tool()]
    llm = model.bind_tools(tools)

    def agent(state: MessagesState, runtime: Runtime[UserCtx]):
        system = SystemMessage(f"You help {runtime.context.user_name}. Call the add tool, then answer.")
        return {"messages": [llm.invoke([system, *state["messages"]])]}

    builder = StateGraph(MessagesState, context_schema=UserCtx)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = builder.compile(checkpointer=MemorySaver())
    runner = LangGraphRunner(graph, model, recursion_limit=4, tool_names={"add": "math:add"},
                             context_fn=lambda task: UserCtx(user_name="Ann"))
    cfg = AtlasGRPOConfig.cpu_demo(
        str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=64, save_steps=1, logging_steps=1, rubric_provider="static", seed=0,
    )
    trainer = AtlasTrainer(cfg, toolspace=None, tasks=[add_task()], model=policy.model, tokenizer=policy.tokenizer, runner=runner)
    trainer.train()
    assert trainer.state.global_step == 1
    records = [json.loads(line) for line in cfg.trajectory_log_path.read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        traj = r["trajectory"]
        assert traj["turns"] >= 1, traj["metadata"].get("error")  # the model was called in every episode
        assert "thread_id" not in str(traj["metadata"].get("error")) and traj["messages"][0]["content"].startswith("You help Ann.")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grpo_step_on_chain_of_thought_with_a_question_input(tmp_path):
    """One real GRPO step of ``dspy.ChainOfThought("question -> answer")``: every episode's prompt
    holds the task (before, the question was dropped and GRPO trained on empty questions)."""
    pytest.importorskip("trl", reason="training needs the 'train' extra")
    import json

    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer

    policy = TransformersPolicy()
    lm = AtlasLM(policy, max_tokens=32)
    program = dspy.ChainOfThought("question -> answer")
    cfg = AtlasGRPOConfig.cpu_demo(
        str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=64, save_steps=1, logging_steps=1, rubric_provider="static", seed=0,
    )
    trainer = AtlasTrainer(cfg, toolspace=None, tasks=[add_task()], model=policy.model, tokenizer=policy.tokenizer,
                           runner=DSPyRunner(program, lm, None, max_concurrency=2))
    trainer.train()
    assert trainer.state.global_step == 1
    records = [json.loads(line) for line in cfg.trajectory_log_path.read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        msgs = r["trajectory"]["messages"]
        assert r["trajectory"]["turns"] >= 1 and any("Add 2 and 3." in m["content"] for m in msgs if m["role"] == "user")
