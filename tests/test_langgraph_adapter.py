"""The LangGraph adapter, in-process path: AtlasChatModel, toolspace tools, LangGraphRunner,
create_atlas_agent. Real embedded model, real MCP servers, real LangGraph graphs, real GRPO steps.

Module layout (the costly parts run once): a ReAct agent (``create_react_agent``) over three
math tools is warm-started on reference solutions played through the graph, then trained for
two GRPO steps through ``LangGraphRunner``; later tests use the trained agent, which writes tool
calls, to check token faithfulness and capture under retries, streaming and concurrency.
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("langgraph", reason="the LangGraph adapter needs the 'langgraph' extra")
pytest.importorskip("trl", reason="the training test needs the 'train' extra")

from langchain_core.exceptions import OutputParserException  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import atlas_plugins as atlas  # noqa: E402
from atlas_plugins.agent.recorder import token_fields  # noqa: E402
from atlas_plugins.envs.taskgen import load_default_tasks  # noqa: E402
from atlas_plugins.policy.transformers_policy import TransformersPolicy  # noqa: E402
from atlas_plugins.training.warmstart import ScriptedPolicy  # noqa: E402
from atlas_plugins.types import Task  # noqa: E402
from atlas_langgraph import (  # noqa: E402
    AtlasChatModel,
    LangGraphRunner,
    create_atlas_agent,
    episode_scope,
    qualified_name,
    recording_scope,
    toolspace_tools,
)
from atlas_langgraph.runner import demonstrations  # noqa: E402

TOOLS = ["math:add", "math:subtract"]
# The warm start + GRPO fixture is minutes of CPU on a loaded 2-core machine.
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]  # loads the model and trains: not in `make test-fast`


def react_agent(model, tools):
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # LangGraph 1.x suggests langchain.agents.create_agent; same graph
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools)


class ObservedPolicy(TransformersPolicy):
    """The real policy, remembering what each ``generate`` call returned (to compare recordings with)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen: list[tuple[list[int], list[int]]] = []

    def generate(self, batch, **kw):
        gens = super().generate(batch, **kw)
        for prompt, gen in zip(batch, gens):
            self.seen.append((list(prompt), list(gen.completion_ids)))
        return gens


@pytest.fixture(scope="module")
def ts():
    with atlas.Toolspace.default(servers=["math", "notes"]) as space:
        yield space


def _tasks(split: str, n: int) -> list[Task]:
    keep = {"add", "subtract"}
    return [
        t for t in load_default_tasks(split)
        if t.difficulty == 1 and t.servers == ["math"] and {s["tool"] for s in t.metadata.get("reference_solution", [])} <= keep
    ][:n]


@pytest.fixture(scope="module")
def trained(ts, tmp_path_factory):
    """Warm start + 2 GRPO steps of a real create_react_agent, trained through LangGraphRunner."""
    from peft import LoraConfig

    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.evaluate import Scorer
    from atlas_plugins.training.trainer import AtlasTrainer
    from atlas_plugins.training.warmstart import warm_start

    out = tmp_path_factory.mktemp("lg")
    policy = TransformersPolicy()
    model = AtlasChatModel(policy=policy, max_new_tokens=40, temperature=0.0)
    graph = react_agent(model, toolspace_tools(ts, tools=TOOLS))
    runner = LangGraphRunner(graph, model, ts, recursion_limit=6)
    train = _tasks("train", 4)
    demos, stats = demonstrations(runner, train, Scorer(toolspace=ts))
    assert stats["kept"] >= 3, stats
    cfg = AtlasGRPOConfig.cpu_demo(
        str(out / "grpo"), max_steps=2, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=160, save_steps=2, logging_steps=1, seed=0,
    )
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
    tuned, _ = warm_start(policy.model, policy.tokenizer, demos, output_dir=str(out / "ws"), epochs=3,
                          learning_rate=3e-3, batch_size=4, peft_config=lora, max_length=512, seed=0)
    lora_before = {n: p.detach().clone() for n, p in tuned.named_parameters() if "lora_" in n}
    model.temperature = 1.0
    model.max_new_tokens = 40
    trainer = AtlasTrainer(cfg, toolspace=ts, tasks=train, model=tuned, tokenizer=policy.tokenizer, runner=runner)
    trainer.train()
    model.temperature, model.max_new_tokens = 0.0, 40
    return {"graph": graph, "model": model, "runner": runner, "trainer": trainer, "lora_before": lora_before, "tasks": train}


# ----------------------------------------------------------------------------- cheap checks
def test_import_without_the_extra_names_the_extra():
    code = "import sys; sys.modules['langgraph'] = None\ntry:\n import atlas_langgraph\nexcept ImportError as e:\n print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'atlas-plugins[langgraph]'" in out.stdout, out.stdout + out.stderr


def test_toolspace_tools_names_schemas_and_per_episode_state(ts):
    tools = {t.name: t for t in toolspace_tools(ts, ["notes"])}
    assert "notes__create_note" in tools and all("__" in n for n in tools)
    assert qualified_name("notes__create_note") == "notes:create_note"
    assert qualified_name("fetch_tools") == "fetch_tools"  # meta-tools pass through
    assert "title" in tools["notes__create_note"].tool_call_schema["properties"]
    with pytest.raises(ValueError, match="'nope'"):
        toolspace_tools(ts, ["nope"])
    with pytest.raises(ValueError, match="'math:nope'"):
        toolspace_tools(ts, tools=["math:nope"])

    def count(**kw) -> int:
        msg = tools["notes__list_items"].invoke({"name": "notes__list_items", "args": {}, "id": "c", "type": "tool_call"}, **kw)
        return msg.artifact["content"]["total"]

    base = count(config={"configurable": {"atlas_episode": "ep-b"}})
    tools["notes__create_note"].invoke(
        {"name": "notes__create_note", "args": {"title": "t", "body": "b"}, "id": "c", "type": "tool_call"},
        config={"configurable": {"atlas_episode": "ep-a"}},
    )
    assert count(config={"configurable": {"atlas_episode": "ep-a"}}) == base + 1
    assert count(config={"configurable": {"atlas_episode": "ep-b"}}) == base

    # The scope form, seen from worker threads that copy the caller's context (as LangGraph's do).
    def in_thread() -> int:
        return count()

    with episode_scope("ep-a"), ThreadPoolExecutor(2) as pool:
        assert pool.submit(contextvars.copy_context().run, in_thread).result() == base + 1
    bad = tools["notes__create_note"].invoke({"name": "notes__create_note", "args": {"title": 3}, "id": "c", "type": "tool_call"})
    assert bad.content.startswith("Error:") and bad.artifact["ok"] is False


def test_plain_model_outside_a_run_records_nothing_and_still_answers(ts):
    model = AtlasChatModel(policy=TransformersPolicy(), max_new_tokens=8, temperature=0.0)
    reply = model.invoke("Say hi.")
    assert isinstance(reply, AIMessage) and reply.usage_metadata["output_tokens"] > 0
    with recording_scope() as rec:
        model.invoke("Say hi.")
    assert len(rec.calls) == 1


# ------------------------------------------------------------------------- training, in place
def test_react_agent_trains_two_grpo_steps_in_place(trained):
    trainer, model = trained["trainer"], trained["model"]
    assert trainer.trainer.state.global_step == 2
    logged = [h for h in trainer.trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    # The graph's model now acts with the policy over the very model object being trained ...
    trained_model = trainer.trainer.accelerator.unwrap_model(trainer.trainer.model)
    assert model.policy.model is trained_model
    # ... and GRPO moved its LoRA weights exactly when a group had reward variance: equal rewards
    # in every group give zero advantages, hence zero gradient, and Adam then leaves weights alone.
    after = dict(trained_model.named_parameters())
    moved = max((after[n].detach() - p).abs().max().item() for n, p in trained["lora_before"].items())
    if any(h.get("frac_reward_zero_std", 1.0) < 1.0 for h in logged):
        assert moved > 0
    else:
        print("note: every GRPO group had equal rewards (the warm-started agent solves these tasks), so no update")
        assert moved == 0
    # The same graph object answers (with a tool call: the warm start taught the format).
    task = _tasks("heldout", 1)[0]
    out = trained["graph"].invoke({"messages": [("user", task.prompt)]})
    assert any(isinstance(m, AIMessage) and m.tool_calls for m in out["messages"]), [m.content for m in out["messages"]]


def test_token_faithful_recording_of_a_react_run(trained, ts):
    model = trained["model"]
    observed = ObservedPolicy(model=model.policy.model, tokenizer=model.policy.tokenizer)
    model.policy = observed
    task = _tasks("heldout", 1)[0]
    with recording_scope("faith-1") as rec, episode_scope("faith-1"):
        state = trained["graph"].invoke({"messages": [("user", task.prompt)]}, {"configurable": {"atlas_episode": "faith-1"}})
    calls = rec.calls
    assert len(calls) >= 2, [m.content for m in state["messages"]]
    # Recorded ids are exactly the ids the policy sampled, call for call.
    assert [(c.prompt_ids, c.completion_ids) for c in calls] == observed.seen
    # Every later prompt extends the previous prompt + sampled ids: no prefix break.
    for prev, nxt in zip(calls, calls[1:]):
        assert nxt.continued and nxt.prompt_ids[: len(prev.prompt_ids) + len(prev.completion_ids)] == prev.prompt_ids + prev.completion_ids
    fields = token_fields(calls)
    assert fields["prefix_breaks"] == 0
    # env_mask: 1 exactly on sampled ids, 0 on the tool results between them.
    tok = observed.tokenizer
    env = [t for t, m in zip(fields["completion_ids"], fields["env_mask"]) if m == 0]
    sampled = [t for t, m in zip(fields["completion_ids"], fields["env_mask"]) if m == 1]
    assert sampled == [t for c in calls for t in c.completion_ids]
    tool_msgs = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert tool_msgs and tool_msgs[0].content in tok.decode(env)
    assert tool_msgs[0].content not in tok.decode(sampled)


def test_concurrent_runs_keep_their_calls_apart(trained):
    model, runner = trained["model"], trained["runner"]
    tasks = _tasks("train", 4)
    trajs = runner.run(tasks, seed=1)
    assert [t.task_id for t in trajs] == [t.id for t in tasks]
    for task, traj in zip(tasks, trajs):
        assert traj.metadata["runner"] == "langgraph" and traj.metadata["episode_id"].startswith(task.id)
        first_prompt = model.policy.tokenizer.decode(traj.prompt_ids)
        assert task.prompt in first_prompt
        assert not any(o.prompt in first_prompt for o in tasks if o.id != task.id)
        assert traj.turns == sum(1 for m in traj.messages if m["role"] == "assistant")
        for rec in traj.tool_calls:
            assert rec.name.startswith("math:")  # qualified names, as rubrics expect
    # graph.batch with one config per input records apart too.
    ids = [f"batch-{i}" for i in range(4)]
    with recording_scope(ids[0]) as r0, recording_scope(ids[1]) as r1, recording_scope(ids[2]) as r2, recording_scope(ids[3]) as r3:
        trained["graph"].batch(
            [{"messages": [("user", t.prompt)]} for t in tasks],
            [{"configurable": {"atlas_episode": i}} for i in ids],
        )
    for task, rec in zip(tasks, (r0, r1, r2, r3)):
        assert rec.calls and all(task.prompt in c.messages[0]["content"] for c in rec.calls)


def test_retry_structured_output_stream_and_async_keep_every_turn(trained):
    model, graph = trained["model"], trained["graph"]
    # with_retry: every attempt is its own recorded turn.
    attempts = {"n": 0}

    def flaky(msg: AIMessage) -> AIMessage:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise RuntimeError("transient")
        return msg

    with recording_scope() as rec:
        (model | RunnableLambda(flaky)).with_retry(stop_after_attempt=3, wait_exponential_jitter=False).invoke("Add 2 and 3.")
    assert len(rec.calls) == 3

    # Structured output: parsed, or a clear error naming the schema; the turn is recorded either way.
    class Sum(BaseModel):
        value: int

    with recording_scope() as rec:
        try:
            parsed = model.with_structured_output(Sum).invoke("What is 2 + 3? Reply with the Sum tool.")
            assert isinstance(parsed, Sum)
        except OutputParserException as exc:
            assert "'Sum'" in str(exc) and "The model replied" in str(exc)
    assert len(rec.calls) == 1 and rec.calls[0].tools[0]["function"]["name"] == "Sum"

    # Streaming a model and streaming a graph in "messages" mode (LangGraph then calls _stream).
    with recording_scope() as rec:
        chunks = list(model.stream("Say hi."))
    assert len(chunks) >= 1 and len(rec.calls) == 1
    task = _tasks("heldout", 1)[0]
    with recording_scope() as rec:
        final = None
        for final in graph.stream({"messages": [("user", task.prompt)]}, stream_mode="values"):
            pass
        list(graph.stream({"messages": [("user", task.prompt)]}, stream_mode="messages"))
    n_ai = sum(isinstance(m, AIMessage) for m in final["messages"])
    assert len(rec.calls) == 2 * n_ai  # same greedy run twice: every turn of both recorded once

    async def two():
        with recording_scope() as rec:
            await asyncio.gather(model.ainvoke("Say hi."), model.ainvoke([HumanMessage("Say bye.")]))
        return rec

    assert len(asyncio.run(two()).calls) == 2


def test_failed_episode_returns_what_was_recorded(trained, ts):
    """A graph that never ends hits LangGraph's recursion limit: the step goes on, the turns are kept."""
    from langgraph.graph import START, MessagesState, StateGraph

    model = trained["model"]

    def think(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"]), HumanMessage("Go on.")]}

    builder = StateGraph(MessagesState)
    builder.add_node("think", think)
    builder.add_edge(START, "think")
    builder.add_edge("think", "think")  # no way out
    runner = LangGraphRunner(builder.compile(), model, ts, recursion_limit=3)
    traj = runner.run(_tasks("heldout", 1))[0]
    assert "GraphRecursionError" in traj.metadata["error"]
    assert traj.turns == 3 and traj.prefix_breaks == 0  # user turns append like tool turns
    assert 0 in traj.env_mask and 1 in traj.env_mask  # the injected user turns are environment tokens


# --------------------------------------------------------------------------------- prebuilt
def _replay_agent(ts, turns, **kw):
    base = TransformersPolicy()
    model = AtlasChatModel(policy=ScriptedPolicy(base.tokenizer, turns, policy=base), max_new_tokens=64)
    return create_atlas_agent(model, ts, **kw), model


def test_create_atlas_agent_itl_meta_tools_and_loading(ts):
    turns = [
        '<tool_call>{"name": "math:add", "arguments": {"numbers": [1, 2]}}</tool_call>',  # not loaded yet
        '<tool_call>{"name": "fetch_tools", "arguments": {"server": "math"}}</tool_call>',
        '<tool_call>{"name": "get_selected_tools", "arguments": {"server": "math", "tools": ["add"]}}</tool_call>',
        '<tool_call>{"name": "math:add", "arguments": {"numbers": [1, 2]}}</tool_call>',
        "<answer>3</answer>",
    ]
    graph, model = _replay_agent(ts, turns, loading="itl", executor=None, servers=["math"])
    task = Task(id="itl-demo", prompt="Add 1 and 2.", servers=["math"])
    traj = LangGraphRunner(graph, model, ts).run([task])[0]
    names = [(r.name, r.ok, r.error_type) for r in traj.tool_calls]
    assert names[0] == ("math:add", False, "not_loaded")
    assert [n for n, *_ in names[1:]] == ["fetch_tools", "get_selected_tools", "math:add"] and names[-1][1]
    assert traj.final_answer == "3" and traj.prefix_breaks == 0
    assert "fetch_tools" in traj.messages[0]["content"]  # the loading policy's system prompt


def test_create_atlas_agent_ptc_code_interpreter(ts):
    code = "m = MCPServer('math')\\nm.add(numbers=[2, 5])"
    turns = ['<tool_call>{"name": "code_interpreter", "arguments": {"code": "' + code + '"}}</tool_call>', "<answer>7</answer>"]
    graph, model = _replay_agent(ts, turns, loading="itl", executor="local")
    traj = LangGraphRunner(graph, model, ts).run([Task(id="ptc-demo", prompt="Add 2 and 5.", servers=["math"])])[0]
    assert not traj.metadata.get("error"), traj.metadata
    assert [r.name for r in traj.tool_calls] == ["code_interpreter", "math:add"]
    assert "7" in traj.tool_calls[0].result and traj.final_answer == "7"
