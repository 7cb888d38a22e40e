"""The TRL reward contract of ``rubric_reward``: direct calls in every input shape TRL uses,
and two real GRPO steps of plain ``trl.GRPOTrainer`` on a tiny model built from a config."""

from __future__ import annotations

import json

import pytest

import atlas_plugins as atlas
from atlas_plugins.types import ToolCallRecord, Trajectory

TASK = {
    "id": "add",
    "prompt": "What is 17 + 25?",
    "answer": "42",
    "metadata": {"expected_tools": [{"tool": "math:add", "arguments": {"a": 17, "b": 25}}]},
}
GOOD = '<tool_call>{"name": "math:add", "arguments": {"a": 17, "b": 25}}</tool_call>\n<answer>42</answer>'
BAD = "<answer>41</answer>"


def test_string_and_chat_completions_with_task_column():
    fn = atlas.rubric_reward(provider="template", judge="rules", aggregator="atlas")
    assert fn.__name__ == "rubric_reward"
    chat_good = [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "math:add", "arguments": '{"a": 17, "b": 25}'}}]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
    ]
    out = fn(["q"] * 3, [GOOD, BAD, chat_good], completion_ids=[[1]] * 3, task=[TASK] * 3, trainer_state=None)
    assert len(out) == 3 and out[1] == 0.0
    assert out[2] == 1.0  # tool result 42 grounds the answer; every criterion met
    assert 0.8 < out[0] < 1.0  # same, but no tool result to ground "42" in
    m = fn.last_metrics
    assert set(m) >= {"reward", "TF", "TA", "TG", "PA"} and m["TF"] == pytest.approx(2 / 3)
    assert fn.last_trajectories[2].tool_calls[0].result == "42"


def test_rubric_column_trajectory_column_and_unscorable_rows():
    rubric = {"criteria": [{"id": "ok", "name": "says 42", "check": {"type": "answer_contains", "values": ["42"]}},
                           {"id": "nice", "name": "polite", "description": "is polite"}]}
    judge_only = {"criteria": [{"id": "nice", "name": "polite", "description": "is polite"}]}
    traj = Trajectory(task_id="add", tool_calls=[ToolCallRecord(turn=1, name="math:add")], final_answer="42")
    logged = {}
    fn = atlas.rubric_reward(name="rubric")
    out = fn(
        ["q", "q", "q"],
        ["ignored", "The answer is 42", "x"],
        rubric=[rubric, json.dumps(rubric), judge_only],
        trajectory=[traj.model_dump(), None, None],
        log_metric=lambda k, v: logged.__setitem__(k, v),
    )
    assert out[:2] == [1.0, 1.0]
    assert out[2] is None  # nothing scorable: None (TRL excludes it), never a made-up 0
    assert fn.__name__ == "rubric" and logged["rubric/TF"] == 1.0 and logged["rubric/scored_fraction"] == pytest.approx(2 / 3)
    with pytest.raises(atlas.ConfigError, match="rubric column, row 0"):
        fn(["q"], ["a"], rubric=[{"criteria": [{"name": "x", "weight": 11}]}])


def test_group_relative_scores_each_task_group_together():
    fn = atlas.rubric_reward(provider="template", aggregator="group_relative")
    out = fn(["q"] * 4, [GOOD, BAD, BAD, GOOD], task=[TASK, TASK, {**TASK, "id": "b"}, {**TASK, "id": "b"}])
    assert out == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.slow
def test_two_real_grpo_steps_with_rubric_rewards(tmp_path):
    torch = pytest.importorskip("torch")
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from atlas_plugins.policy.embedded import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(None)  # the embedded SmolLM2 tokenizer (chat template included)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    # Rubric: any non-empty answer (random tiny model) + says 42; rows carry it as a column.
    rubric = {"criteria": [
        {"id": "nonempty", "name": "answers", "category": "TF", "weight": 3, "check": {"type": "answer_regex", "pattern": "\\\\S"}},
        {"id": "right", "name": "says 42", "category": "TF", "weight": 10, "check": {"type": "answer_contains", "values": ["42"]}},
        {"id": "tool", "name": "calls add", "category": "TA", "weight": 5, "check": {"type": "tool_called", "tool": "math:add"}},
    ]}
    ds = Dataset.from_list([
        {"prompt": [{"role": "user", "content": "What is 17 + 25?"}], "rubric": rubric, "task_id": "add"},
        {"prompt": [{"role": "user", "content": "What is 40 + 2?"}], "rubric": rubric, "task_id": "add2"},
    ])
    reward = atlas.rubric_reward(provider="static", judge="rules", aggregator="atlas")
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, report_to="none", use_cpu=True, logging_steps=1, save_strategy="no",
                      learning_rate=1e-4, seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[reward], args=args, train_dataset=ds)
    trainer.train()
    assert trainer.state.global_step == 2
    logs = [h for h in trainer.state.log_history if "rewards/rubric_reward/mean" in h]
    assert len(logs) == 2
    # rewards came from the rubric: every completion was scored, per-category metrics logged
    assert all("rubric/TF" in h and "rubric/TA" in h for h in logs)
    assert reward.calls == 2 and reward.last_metrics["scored_fraction"] == 1.0
    expected = [b.value for b in reward.last_breakdowns]
    assert logs[-1]["rewards/rubric_reward/mean"] == pytest.approx(sum(expected) / len(expected), abs=1e-5)
