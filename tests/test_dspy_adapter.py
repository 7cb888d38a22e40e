"""The DSPy adapter on real parts: a real ``dspy.ReAct`` over the embedded SmolLM2-135M and real
MCP servers — token faithfulness of the recording, episode-scoped tools, failed programs as data,
and ≥ 2 real GRPO steps of the trainer driving the DSPy program, in place."""

from __future__ import annotations

import collections

import pytest

dspy = pytest.importorskip("dspy", reason="the DSPy adapter needs the 'dspy' extra")
pytest.importorskip("trl", reason="the GRPO test needs the 'train' extra")

# Loads the embedded model (or trains): left out of `make test-fast`.
pytestmark = pytest.mark.slow

import atlas_plugins as atlas  # noqa: E402
from atlas_dspy import AtlasLM, DSPyRunner, episode, recording, toolspace_tools  # noqa: E402
from atlas_plugins.agent.runner import Runner  # noqa: E402
from atlas_plugins.envs.taskgen import load_default_tasks  # noqa: E402
from atlas_plugins.policy.transformers_policy import TransformersPolicy  # noqa: E402

# Two tools keep ReAct's prompt near 900 tokens: CPU cost scales with prompt length.
TOOLS = ["math:add", "math:subtract"]


class CapturingPolicy(TransformersPolicy):
    """The real policy, keeping what it was asked and what it sampled (for comparison only)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.captured: list[tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]] = []

    def generate(self, batch, **kw):
        gens = super().generate(batch, **kw)
        self.captured += [(tuple(p), tuple(g.completion_ids), tuple(g.logprobs)) for p, g in zip(batch, gens)]
        return gens


@pytest.fixture(scope="module")
def ts():
    with atlas.Toolspace.default(servers=["math"]) as space:
        yield space


@pytest.fixture(scope="module")
def tasks():
    keep = [t for t in load_default_tasks("train") if t.difficulty == 1 and t.metadata["expected_tools"][0]["tool"] in TOOLS]
    assert len(keep) >= 2, "the embedded train set should hold level-1 add/subtract tasks"
    return keep[:2]


def _program(ts, tools=TOOLS):
    return dspy.ReAct("task -> answer", tools=toolspace_tools(ts, ["math"], tools=tools), max_iters=2)


def test_toolspace_tools_take_mcp_schemas_and_scope_calls_to_the_episode(ts):
    tools = {t.name: t for t in toolspace_tools(ts, ["math"])}
    assert "math__gcd_lcm" in tools and tools["math__gcd_lcm"].qualified_name == "math:gcd_lcm"
    assert all(name.isidentifier() for name in tools)
    assert set(tools["math__add"].args) == set(ts.get_tool("math:add").input_schema["properties"])
    store, recall = tools["math__store_value"], tools["math__recall_value"]
    with episode("task-a-1") as a:
        store(name="x", value=41)
        seen_a = recall(name="x")
    with episode("task-b-1") as b:
        seen_b = recall(name="x")
    assert "41" in seen_a and "41" not in seen_b  # per-episode server state
    assert [c.name for c in a.tool_calls] == ["math:store_value", "math:recall_value"] and all(c.ok for c in a.tool_calls)
    assert b.tool_calls[0].name == "math:recall_value"
    with episode("task-c-1") as c:
        out = tools["math__add"](nums=[1, 2])  # wrong argument name: the server explains, the log keeps it
    assert "numbers" in out and not c.tool_calls[0].ok and c.tool_errors == 1
    with pytest.raises(ValueError, match="math:nope"):
        toolspace_tools(ts, ["math"], tools=["math:nope"])
    with pytest.raises(KeyError, match="maht"):
        toolspace_tools(ts, ["maht"])


def test_recorded_calls_are_token_faithful(ts, tasks):
    policy = CapturingPolicy(None)
    lm = AtlasLM(policy, max_tokens=24)
    runner = DSPyRunner(_program(ts), lm, ts, max_concurrency=2)
    assert isinstance(runner, Runner)
    trajs = runner.run([tasks[0], tasks[0]], policy=policy, seed=11)  # a GRPO group of 2

    calls = [seg for t in trajs for seg in (t.segments or [{"prompt_ids": t.prompt_ids, "completion_ids": t.completion_ids,
                                                             "env_mask": t.env_mask, "logprobs": t.logprobs}])]
    # One recorded call per LM call DSPy made (its own history), per generation the policy ran.
    assert sum(t.turns for t in trajs) == len(lm.history) == len(policy.captured) == len(calls) >= 2
    # Recorded ids are exactly what was sampled, with the sampled logprobs; no re-tokenization.
    recorded = collections.Counter((tuple(c["prompt_ids"]), tuple(c["completion_ids"]), tuple(c["logprobs"])) for c in calls)
    assert recorded == collections.Counter(policy.captured)
    # Prompts are the chat template's render of the messages DSPy sent (from DSPy's own history).
    sent = collections.Counter(tuple(policy.apply_chat_template(e["messages"])) for e in lm.history)
    assert sent == collections.Counter(tuple(c["prompt_ids"]) for c in calls)
    for t in trajs:
        # DSPy renders every call afresh: one segment per call, all tokens in a segment sampled.
        assert t.prefix_breaks == t.turns - 1
        for c in calls:
            assert len(c["env_mask"]) == len(c["completion_ids"]) == len(c["logprobs"])
            assert all(m == 1 for m in c["env_mask"])  # no environment tokens inside a DSPy call
        assert t.metadata["runner"] == "dspy" and t.metadata["episode_id"].startswith(t.task_id + "-")
        assert t.metadata["lm_calls"] == t.turns
    assert trajs[0].metadata["episode_id"] != trajs[1].metadata["episode_id"]
    # The same prompt twice in a group gives different samples (no response cache).
    assert trajs[0].completion_ids != trajs[1].completion_ids


def test_stitched_calls_mask_the_environment_tokens():
    """A conversation DSPy continues (``dspy.History``-style chat) is rendered append-only: the
    new user turn becomes environment tokens (mask 0) between the two sampled completions."""
    policy = TransformersPolicy(None)
    lm = AtlasLM(policy, max_tokens=8)
    first = [{"role": "user", "content": "Say hi."}]
    with recording(seed=1) as rec:
        reply = lm(messages=first)[0]
        lm(messages=[*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "Again."}])
    from atlas_plugins.agent.recorder import token_fields

    a, b = rec.calls
    assert b.continued and b.prompt_ids[: len(a.prompt_ids) + len(a.completion_ids)] == a.prompt_ids + a.completion_ids
    f = token_fields(rec.calls)
    assert f["prefix_breaks"] == 0
    env = len(b.prompt_ids) - len(a.prompt_ids) - len(a.completion_ids)
    assert f["env_mask"] == [1] * len(a.completion_ids) + [0] * env + [1] * len(b.completion_ids)
    assert f["completion_ids"] == a.completion_ids + b.prompt_ids[len(a.prompt_ids) + len(a.completion_ids):] + b.completion_ids


class _FailsAfterOneCall(dspy.Module):
    """A user program that raises after its first LM call."""

    def forward(self, task):
        dspy.settings.lm(task)
        raise RuntimeError("tool backend unavailable")


def test_a_failing_program_is_an_episode_not_a_crash(ts, tasks):
    lm = AtlasLM(TransformersPolicy(None), max_tokens=8)
    [traj] = DSPyRunner(_FailsAfterOneCall(), lm, ts).run(tasks[:1], seed=0)
    assert traj.final_answer is None and traj.turns == 1 and traj.completion_ids
    assert "RuntimeError: tool backend unavailable" in traj.metadata["error"]

    class NeverCalls(dspy.Module):
        def forward(self, task):
            return dspy.Prediction(answer="x")

    with pytest.raises(atlas.AtlasError, match="made no LM call"):
        DSPyRunner(NeverCalls(), lm, ts).run(tasks[:1])


def test_grpo_trains_the_dspy_program_in_place(tmp_path, ts, tasks):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atlas_plugins.policy.embedded import resolve_model_path
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer

    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    lm = AtlasLM(TransformersPolicy(model=model, tokenizer=tok), max_tokens=16)
    program = _program(ts, tools=TOOLS[:1])
    cfg = AtlasGRPOConfig.cpu_demo(
        str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=64, save_steps=10, logging_steps=1, seed=0,
    )
    trainer = AtlasTrainer(cfg, toolspace=ts, tasks=tasks[:1], model=model, tokenizer=tok,
                           runner=DSPyRunner(program, lm, ts, max_concurrency=2))
    trainer.train()
    assert trainer.trainer.state.global_step == 2
    logged = [h for h in trainer.trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    lines = (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 4  # 2 steps x 2 episodes, each scored
    import json

    recs = [json.loads(x) for x in lines]
    assert all(r["trajectory"]["metadata"]["runner"] == "dspy" for r in recs)
    assert all("trained_segment" in r["trajectory"]["metadata"] or r["trajectory"]["prefix_breaks"] == 0 for r in recs)
    # In place: the program's LM now samples with the model being trained (PEFT-wrapped).
    trained = trainer.trainer.accelerator.unwrap_model(trainer.trainer.model)
    assert lm.policy.model is trained and hasattr(trained, "peft_config")
    grad_norms = [h.get("grad_norm", 0.0) for h in trainer.trainer.state.log_history]
    if any(g and g > 0 for g in grad_norms):  # equal rewards within every group give no gradient
        assert any("lora_B" in n and p.abs().sum() > 0 for n, p in trained.named_parameters())
    else:  # zero advantages -> zero gradient -> LoRA's B stays at its zero initialisation
        print("note: every GRPO group had equal rewards, so the LoRA weights did not move")
        assert not any("lora_B" in n and p.abs().sum() > 0 for n, p in trained.named_parameters())
    assert lm(messages=[{"role": "user", "content": "2+2?"}])  # the same LM object keeps answering


def test_demonstrations_replay_reference_solutions_in_dspy_format(ts, tasks):
    from atlas_dspy import demonstrations, react_replies
    from atlas_plugins.training.evaluate import Scorer
    from atlas_plugins.training.warmstart import sft_rows

    base = TransformersPolicy(None)
    lm = AtlasLM(base, max_tokens=80)  # a scripted react reply is ~60 tokens
    program = _program(ts)  # max_iters=2: one tool step, a finish step, then extract
    runner = DSPyRunner(program, lm, ts, max_concurrency=1)
    demos, stats = demonstrations(runner, tasks, Scorer(toolspace=ts))
    assert stats == {"tasks": len(tasks), "no_solution": 0, "kept": len(tasks), "rejected": 0}
    assert lm.policy is base  # the scripted policy is swapped out again
    eos = base.tokenizer.eos_token_id
    for demo, task in zip(demos, tasks):
        # DSPy's own parser read every scripted reply: no parse failure, the reference answer out.
        assert demo.parse_failures == 0 and "error" not in demo.metadata
        assert demo.final_answer == task.answer and demo.reward >= 0.999
        assert [c.name for c in demo.tool_calls] == [f"{s['server']}:{s['tool']}" for s in task.metadata["reference_solution"]]
        assert demo.turns == 3 and len(demo.segments) == 3  # react (tool), react (finish), extract
        for seg in demo.segments:  # every call is model tokens only, ending as a sampled reply ends
            assert seg["completion_ids"][-1] == eos and set(seg["env_mask"]) == {1}
        assert "<|im_end|>" not in demo.messages[-1]["content"]  # text as the policy decodes it
    rows = sft_rows(demos)
    assert len(rows) == sum(len(d.segments) for d in demos)  # one SFT row per LM call
    for row, seg in zip(rows, [s for d in demos for s in d.segments]):
        assert row["input_ids"] == seg["prompt_ids"] + seg["completion_ids"]
        assert sum(label != -100 for label in row["labels"]) == len(seg["completion_ids"])

    # Replies longer than the LM's token budget are cut as sampling would cut them: not cloned.
    short = DSPyRunner(program, AtlasLM(base, max_tokens=16), ts, max_concurrency=1)
    _, cut = demonstrations(short, tasks[:1], Scorer(toolspace=ts))
    assert cut["kept"] == 0 and cut["rejected"] == 1

    # The answer goes to the runner's answer field, whatever the signature calls it.
    named = dspy.ReAct("task -> result", tools=toolspace_tools(ts, ["math"], tools=TOOLS), max_iters=2)
    kept, _ = demonstrations(DSPyRunner(named, lm, ts, answer_field="result", max_concurrency=1), tasks[:1], Scorer(toolspace=ts))
    assert len(kept) == 1 and kept[0].final_answer == tasks[0].answer
    with pytest.raises(atlas.AtlasError, match="notes"):
        react_replies(dspy.ReAct("task -> notes, answer", tools=[]), tasks[0])

    one_step = dspy.ReAct("task -> answer", tools=toolspace_tools(ts, ["math"], tools=TOOLS), max_iters=1)
    assert len(react_replies(one_step, tasks[0])) == 2  # no room for finish: tool step, extract
    two_steps = tasks[0].model_copy(update={"metadata": {**tasks[0].metadata, "reference_solution": tasks[0].metadata["reference_solution"] * 2}})
    assert react_replies(one_step, two_steps) is None  # needs more iterations than the program has
    held = next(t for t in load_default_tasks("heldout") if t.difficulty == 1)
    with pytest.raises(ValueError, match="held out"):
        demonstrations(runner, [held], Scorer(toolspace=ts))
    with pytest.raises(atlas.AtlasError, match="dspy.ReAct"):
        react_replies(dspy.Predict("task -> answer"), tasks[0])
