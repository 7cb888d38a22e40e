"""The zero-code-change path: an unchanged ``ChatOpenAI`` LangGraph graph trained through the
local policy endpoint (real SmolLM2, real ``langchain_openai.ChatOpenAI``, real
``create_react_agent``, real MCP servers, real HTTP)."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch", reason="the proxy runner tests need the 'train' extra (torch)")
pytest.importorskip("langgraph", reason="the proxy runner needs the 'langgraph' extra")
langchain_openai = pytest.importorskip("langchain_openai", reason="the proxy tests need langchain-openai ('langgraph' extra)")

# Loads the embedded model (or trains): left out of `make test-fast`.
pytestmark = pytest.mark.slow

import httpx  # noqa: E402

import atlas_plugins as atlas  # noqa: E402
from atlas_plugins.envs.taskgen import load_default_tasks  # noqa: E402
from atlas_plugins.policy.serve import PolicyServer, assistant_message, stream_events  # noqa: E402
from atlas_plugins.policy.transformers_policy import TransformersPolicy  # noqa: E402
from atlas_plugins.types import Task  # noqa: E402

from atlas_langgraph.proxy import ProxyRunner, start_proxy  # noqa: E402
from atlas_langgraph.tools import toolspace_tools  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent  # noqa: E402

ChatOpenAI = langchain_openai.ChatOpenAI

# The graph's own prompt (part of the user's graph, not of the adapter): a one-shot example that
# shows the base 135M model the call format, so that episodes really call a tool.
SYSTEM = "You call tools. Write <tool_call>{json}</tool_call> to call one; after the result, give the answer."
EXAMPLE = [
    {"role": "user", "content": "Add 5 and 9."},
    {"role": "assistant", "content": '<tool_call>{"name": "math__add", "arguments": {"a": 5, "b": 9}}</tool_call>'},
    {"role": "user", "content": "Multiply 3 by 8."},
    {"role": "assistant", "content": '<tool_call>{"name": "math__multiply", "arguments": {"a": 3, "b": 8}}</tool_call>'},
]


def prompt(state):
    return [{"role": "system", "content": SYSTEM}, *EXAMPLE, *state["messages"]]


KEEP_TOOLS = ("math__add", "math__multiply")




@pytest.fixture(scope="module")
def ts():
    with atlas.Toolspace.default(servers=["math", "units"]) as space:
        yield space


@pytest.fixture(scope="module")
def policy() -> TransformersPolicy:
    return TransformersPolicy()


@pytest.fixture(scope="module")
def proxy():
    srv = start_proxy(max_new_tokens=40)  # no policy yet: the runner plugs it in
    yield srv
    srv.stop()


def build_graph(base_url: str, ts, **llm_kw):
    """The user's graph, written against an OpenAI endpoint; nothing ATLAS-specific in it but the tools."""
    llm = ChatOpenAI(base_url=base_url, api_key="x", model="policy", max_retries=0, **llm_kw)
    tools = [t for t in toolspace_tools(ts, ["math"]) if t.name in KEEP_TOOLS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(llm, tools, prompt=prompt)


def math_tasks() -> list[Task]:
    return [
        Task(id="add-a", prompt="Add 17 and 25.", servers=["math"], answer="42"),
        Task(id="mul-b", prompt="What is 6 times 7?", servers=["math"], answer="42"),
        Task(id="add-c", prompt="Add 3 and 4 with the math tool.", servers=["math"], answer="7"),
    ]


def assert_chain_consistent(runner: ProxyRunner, traj) -> list:
    """Every request of the main chain extends the previous one: its messages, then its tokens."""
    records = [runner.proxy.record_at(i) for i in traj.metadata["requests"]]
    assert records and all(r is not None for r in records)
    for prev, nxt in zip(records, records[1:]):
        reply = prev.completions[0].message
        assert nxt.messages[: len(prev.messages) + 1][:-1] == prev.messages
        assert nxt.messages[len(prev.messages)]["role"] == "assistant"
        assert (nxt.messages[len(prev.messages)].get("content") or "") == (reply.get("content") or "")
        # Append-only rendering: the prompt is the previous prompt + the sampled ids + new env tokens.
        seq = prev.prompt_ids + prev.completions[0].completion_ids
        assert nxt.continued and nxt.prompt_ids[: len(seq)] == seq
    return records


def test_concurrent_episodes_are_attributed_and_token_faithful(ts, policy, proxy) -> None:
    graph = build_graph(proxy.base_url, ts, temperature=1.0)
    runner = ProxyRunner(graph, toolspace=ts, proxy=proxy, recursion_limit=4)
    base = math_tasks()
    # Five episodes at once, two of them the SAME task (a GRPO pair); a few rounds until one calls a tool.
    tasks = [base[0], base[1], base[2], base[0], base[1]]
    seen_tool_result = False
    for _round in range(4):
        trajs = runner.run(tasks, policy=policy)
        assert proxy.policy.policy is policy  # the trainer's policy is what serves (batched)
        assert [t.task_id for t in trajs] == [t.id for t in tasks]
        assert not runner.unattributed
        eids = [t.metadata["episode_id"] for t in trajs]
        assert len(set(eids)) == len(tasks) and all(e.startswith(t.id) for e, t in zip(eids, tasks))
        used = [set(t.metadata["requests"]) for t in trajs]
        assert all(used) and all(not (a & b) for i, a in enumerate(used) for b in used[i + 1 :])  # disjoint
        for task, traj, result in zip(tasks, trajs, runner.last_results):
            records = assert_chain_consistent(runner, traj)
            # The chain really is this episode's: it starts from this task's prompt ...
            assert records[0].messages[-1] == {"role": "user", "content": task.prompt}
            if result is not None:
                # ... and is exactly the conversation the graph itself ended with.
                graph_msgs = result["messages"]
                ours = [(m.get("content") or "") for m in traj.messages[1 + len(EXAMPLE):]]  # after the graph's prompt
                theirs = [m.content for m in graph_msgs]
                assert len(ours) == len(theirs) and ours[:-1] == theirs[:-1]
                # create_react_agent replaces a last-step tool call with a canned message; the
                # trajectory keeps what the model actually said.
                assert ours[-1] == theirs[-1] or theirs[-1] == "Sorry, need more steps to process this request."
            else:
                assert "GraphRecursionError" in traj.metadata["error"]
            # Completion ids are what the policy sampled; logprobs line up; tool results are env tokens.
            sampled = [tok for r in records for tok in r.completions[0].completion_ids]
            model_tokens = [tok for tok, m in zip(traj.completion_ids, traj.env_mask) if m == 1]
            assert model_tokens == sampled and traj.prefix_breaks == 0
            assert len(traj.completion_ids) == len(traj.env_mask) == len(traj.logprobs)
            assert traj.prompt_ids == records[0].prompt_ids and traj.turns == len(records)
            env_text = policy.tokenizer.decode([t for t, m in zip(traj.completion_ids, traj.env_mask) if m == 0])
            for m in traj.messages:
                if m["role"] == "tool":
                    seen_tool_result = True
                    assert str(m["content"])[:40] in env_text
            # Tool calls come from the conversation, named server:tool as rubrics expect.
            asked = [tc["function"]["name"] for m in traj.messages if m["role"] == "assistant"
                     for tc in m.get("tool_calls") or []]
            assert [c.name for c in traj.tool_calls] == [n.replace("__", ":", 1) for n in asked]
            # A tool the graph does not have always fails; a real one may fail on sampled bad arguments.
            assert not any(c.ok for c in traj.tool_calls if c.name not in ("math:add", "math:multiply"))
        # The two copies of the same task really are two different episodes' conversations.
        assert trajs[0].metadata["requests"] != trajs[3].metadata["requests"]
        if seen_tool_result:
            break
    assert seen_tool_result, "no episode called a tool in 4 rounds of 5 episodes"


def test_explicit_rollout_urls_and_plain_callable(ts, policy, proxy) -> None:
    seen_urls: list[str] = []

    def agent(task: Task, base_url: str) -> str:  # a plain callable that CAN take a per-episode URL
        seen_urls.append(base_url)
        llm = ChatOpenAI(base_url=base_url, api_key="x", model="policy", max_retries=0, temperature=1.0)
        return llm.invoke([("user", task.prompt)]).content

    tasks = [math_tasks()[0]] * 3  # identical requests: only the tags tell them apart
    runner = ProxyRunner(agent, proxy=proxy)
    trajs = runner.run(tasks, policy=policy)
    assert len(set(seen_urls)) == 3 and all("/rollouts/" in u for u in seen_urls)
    for traj, url, answer in zip(trajs, seen_urls, runner.last_results):
        assert traj.metadata["explicit_attribution"] and url.split("/rollouts/")[1].startswith(traj.metadata["episode_id"])
        (rec,) = [proxy.record_at(i) for i in traj.metadata["requests"]]
        assert rec.rollout == traj.metadata["episode_id"] and rec.completions[0].text == answer
        assert traj.final_answer is not None and traj.completion_ids == rec.completions[0].completion_ids

    # A failing episode is recorded, not raised.
    def broken(task: Task) -> str:
        raise RuntimeError("boom")

    (bad,) = ProxyRunner(broken, proxy=proxy).run(tasks[:1], policy=policy)
    assert bad.metadata["error"] == "RuntimeError: boom" and bad.turns == 0 and bad.prompt_ids


def test_streaming_client_gets_the_whole_completion(ts, policy) -> None:
    with PolicyServer(policy, streaming=True, default_max_tokens=16) as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="x", model="policy", max_retries=0, temperature=0,
                         streaming=True, stream_usage=True)
        chunks = list(llm.stream("Add 2 and 2."))
        text = "".join(c.content for c in chunks)
        record = srv.records[-1]
        assert text == record.completions[0].text and text
        usage = [c.usage_metadata for c in chunks if c.usage_metadata]
        assert usage and usage[-1]["output_tokens"] == len(record.completions[0].completion_ids)
    # A tool call is streamed as a tool-call delta the client's own chunk schema accepts.
    openai = pytest.importorskip("openai", reason="the official openai client is not installed")
    text = '<tool_call>{"name": "math__add", "arguments": {"a": 2, "b": 2}}</tool_call>'
    message, found = assistant_message(text, parse_tools=True, call_id="c")
    response = {"id": "x", "created": 0, "model": "policy", "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    events = [openai.types.chat.ChatCompletionChunk.model_validate(e) for e in stream_events(response, include_usage=True)]
    (call,) = [tc for e in events for c in e.choices for tc in (c.delta.tool_calls or [])]
    assert found and call.function.name == "math__add" and call.function.arguments == '{"a": 2, "b": 2}'
    assert events[-2].choices[0].finish_reason == "tool_calls" and events[-1].usage.total_tokens == 3
    with PolicyServer(policy) as plain:  # streaming off: a clear 400, nothing silently lost
        resp = httpx.post(f"{plain.base_url}/chat/completions",
                          json={"messages": [{"role": "user", "content": "hi"}], "stream": True}, timeout=30)
        assert resp.status_code == 400 and "streaming=True" in resp.json()["error"]["message"]


def test_grpo_steps_through_the_proxy(tmp_path, ts) -> None:
    import json

    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer

    tasks = [t for t in load_default_tasks("train") if t.difficulty == 1 and set(t.servers) <= {"math"}][:2]
    assert len(tasks) == 2, "the embedded task set has no two level-1 math tasks"
    small = start_proxy(max_new_tokens=16)  # its own proxy: short completions keep CPU training cheap
    graph = build_graph(small.base_url, ts, temperature=1.0)
    runner = ProxyRunner(graph, toolspace=ts, proxy=small, recursion_limit=4)
    config = AtlasGRPOConfig.cpu_demo(
        str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, num_generations=2, max_turn_tokens=8,
        max_completion_length=64, max_tool_calls=1, max_turns=2, save_steps=10, logging_steps=1,
    )
    trainer = AtlasTrainer(config, toolspace=ts, tasks=tasks, runner=runner)
    try:
        trainer.train()
    finally:
        small.stop()
    assert trainer.trainer.state.global_step == 2
    # The proxy served the policy over the very model being trained (swapped in, batched).
    assert small.policy.policy.model is trainer.trainer.accelerator.unwrap_model(trainer.trainer.model)
    lines = [json.loads(x) for x in (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 2 and {ln["step"] for ln in lines} == {0, 1}
    assert all(ln["trajectory"]["metadata"]["runner"] == "proxy" and ln["reward"] is not None for ln in lines)
    assert all(ln["trajectory"]["metadata"]["unattributed_chains"] == 0 for ln in lines)
