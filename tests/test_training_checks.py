"""Everything a training config can get wrong is reported before any model loads, naming the field
(issue 17, items 4, 6, 7, 9, 11). Fast: no model is loaded — a trainer subclass whose model loading
fails the test proves the order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

from atlas_plugins.errors import AtlasError, ConfigError  # noqa: E402
from atlas_plugins.training.config import AtlasGRPOConfig  # noqa: E402
from atlas_plugins.training.memory import GB, estimate, plan_step, prefix_tokens  # noqa: E402
from atlas_plugins.training.trainer import AtlasTrainer, TrajectoryLog, load_tasks_for, training_view  # noqa: E402
from atlas_plugins.types import Task, Trajectory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class ModelLoaded(Exception):
    """Raised instead of loading a model: everything before it has passed."""


class NoModelTrainer(AtlasTrainer):
    def _load_model(self, model, tokenizer):  # noqa: ANN001
        raise ModelLoaded(self)


class OwnToolsRunner:
    """A runner whose agent brings its own tools (it holds no atlas toolspace)."""

    toolspace = None

    def run(self, tasks, *, policy, seed=None):  # noqa: ANN001
        return []


def task(i: int = 0, **kw) -> Task:
    data = {"id": f"t{i}", "prompt": f"Add {i} and 1.", "servers": ["math"], "answer": str(i + 1), "split": "train"}
    data.update(kw)
    return Task(**data)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_types_and_names_are_checked_naming_the_field(tmp_path):
    cfg = write_yaml(tmp_path / "a.yaml", f"output_dir: {tmp_path}/out\nmax_steps: two\n")
    with pytest.raises(ConfigError, match=r"max_steps must be an integer, got 'two'"):
        AtlasGRPOConfig.from_yaml(cfg)
    cfg = write_yaml(tmp_path / "b.yaml", f"output_dir: {tmp_path}/out\nloading: itll\njudge: rulez\ndesigns: itl,itll+ptc\n")
    with pytest.raises(ConfigError) as err:
        AtlasGRPOConfig.from_yaml(cfg)
    msg = str(err.value)
    assert "loading: unknown loading policy 'itll'. Did you mean 'itl'?" in msg
    assert "judge: unknown judge 'rulez'" in msg and "designs: unknown design 'itll+ptc'" in msg
    cfg = write_yaml(tmp_path / "c.yaml", f"output_dir: {tmp_path}/out\njudge_options: 3\nlearning_rate: 1e-5\n")
    with pytest.raises(ConfigError, match=r"judge_options must be a mapping, got 3"):
        AtlasGRPOConfig.from_yaml(cfg)
    # YAML reads 1e-5 as a string; a number field takes it as the number it is.
    cfg = write_yaml(tmp_path / "d.yaml", f"output_dir: {tmp_path}/out\nlearning_rate: 1e-5\nmax_steps: 3\n"
                     "judge_options: {max_tokens: 99}\n")
    loaded = AtlasGRPOConfig.from_yaml(cfg)
    assert loaded.learning_rate == 1e-5 and loaded.max_steps == 3 and loaded.judge_options == {"max_tokens": 99}


def test_atlas_train_cli_fails_fast_and_plainly(tmp_path):
    cfg = write_yaml(tmp_path / "bad.yaml", f"output_dir: {tmp_path}/out\nmax_steps: two\nloading: itl\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "atlas_plugins.cli", "train", "--config", str(cfg), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    said = " ".join((out.stdout + out.stderr).split())  # the CLI wraps long lines
    assert out.returncode != 0
    assert "max_steps must be an integer, got 'two'" in said
    assert "Traceback" not in out.stderr and "Loading weights" not in out.stderr
    cfg = write_yaml(tmp_path / "bad2.yaml", f"output_dir: {tmp_path}/out\nloading: itll\n")
    out = subprocess.run([sys.executable, "-m", "atlas_plugins.cli", "train", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode != 0 and "Did you mean 'itl'" in " ".join((out.stdout + out.stderr).split())
    assert "Loading weights" not in out.stderr
    print(f"two failing `atlas train` runs: {time.perf_counter() - t0:.1f} s")


def test_task_files_without_split_are_never_dropped_silently(tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(t.model_dump_json() for t in [task(0), task(1, split=None), task(2, split=None)]))
    cfg = AtlasGRPOConfig(output_dir=str(tmp_path / "o"), tasks=str(mixed))
    with pytest.raises(ConfigError, match=r"2 of 3 task\(s\) have no 'split' \('t1', 't2'\)"):
        load_tasks_for(cfg)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(t.model_dump_json() for t in [task(0, split=None), task(1, split=None)]))
    cfg = AtlasGRPOConfig(output_dir=str(tmp_path / "o"), tasks=str(plain))
    assert [t.id for t in load_tasks_for(cfg)] == ["t0", "t1"]  # a file without splits trains on all of it
    with pytest.raises(ConfigError, match="no heldout tasks left"):
        load_tasks_for(cfg, "heldout")


def test_every_rubric_is_checked_before_the_model_loads(tmp_path):
    bad = task(1, rubric={"criteria": [{"name": "x", "weight": 0, "kind": "check",
                                         "check": {"type": "answer_contains", "values": ["2"]}}]})
    cfg = AtlasGRPOConfig(output_dir=str(tmp_path / "o"), rubric_provider="static")
    with pytest.raises(ConfigError) as err:
        NoModelTrainer(cfg, tasks=[task(0, rubric=bad.rubric), bad, task(2)], runner=OwnToolsRunner())
    msg = str(err.value)
    assert "rubric_provider 'static': 3 task(s) have no valid rubric" in msg
    assert "task 't1'" in msg and "weight" in msg and "task 't2'" in msg and "has no rubric" in msg


def test_judge_options_reach_the_scorer_and_an_endpoint_is_required(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ATLAS_JUDGE_MODEL", raising=False)
    cfg = AtlasGRPOConfig(output_dir=str(tmp_path / "o"), judge="openai")
    with pytest.raises(ConfigError, match=r"'openai' judge \(judge_options\) needs base_url and model"):
        NoModelTrainer(cfg, tasks=[task(0)], runner=OwnToolsRunner())
    cfg = AtlasGRPOConfig(output_dir=str(tmp_path / "o"), judge="openai", rubric_provider="template",
                          judge_options={"base_url": "http://127.0.0.1:9/v1", "model": "judge-m", "max_tokens": 77},
                          aggregator="weighted_mean")
    with pytest.raises(ModelLoaded) as got:
        NoModelTrainer(cfg, tasks=[task(0)], runner=OwnToolsRunner())
    trainer = got.value.args[0]
    judge = trainer.scorer.judge
    assert judge.client.base_url == "http://127.0.0.1:9/v1" and judge.client.model == "judge-m"
    assert judge.reply_tokens("list", 12) == 77 and judge.reply_tokens("criterion") == 77
    # Item 4: a runner that brings its own tools starts no toolspace at all.
    assert trainer.toolspace is None
    cfg = AtlasGRPOConfig(output_dir=str(tmp_path / "o"), rubric_provider="llm")
    with pytest.raises(ConfigError, match=r"'llm' rubric provider \(rubric_provider_options\) needs base_url and model"):
        NoModelTrainer(cfg, tasks=[task(0)], runner=OwnToolsRunner())


def test_lm_judge_default_reply_budgets_leave_room_for_a_sentence():
    from atlas_plugins.rewards.judges.hf import HFJudge
    from atlas_plugins.rewards.judges.openai import OpenAIJudge

    remote = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m")
    assert remote.reply_tokens("criterion") >= 64 and remote.reply_tokens("list", 12) >= 256
    local = HFJudge()  # loads nothing until used
    assert local.reply_tokens("criterion") == 12  # the local small judge stays short
    with pytest.raises(ValueError, match="max_tokens"):
        OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m", max_tokens=0)


def test_zero_length_episode_gets_a_masked_placeholder_row():
    import random

    failed = Trajectory(task_id="t", task=task().model_dump(), metadata={"error": "ValueError: boom"})
    row = training_view(failed, random.Random(0), 64, eos_id=2, fallback_prompt=[5, 6, 7])
    assert row == {"prompt_ids": [5, 6, 7], "completion_ids": [2], "env_mask": [0], "logprobs": [0.0]}
    assert failed.metadata["untrainable"].startswith("no model call: ValueError: boom")
    with pytest.raises(AtlasError, match="no completion tokens"):
        training_view(failed.model_copy(deep=True), random.Random(0))


def test_trajectory_log_starts_a_new_file_per_run(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    first = TrajectoryLog(path)
    first.write([{"step": 0}])
    second = TrajectoryLog(path)
    moved = second.start_run()
    assert moved is not None and moved.exists() and not path.exists()
    second.write([{"step": 0}, {"step": 1}])
    assert {json.loads(line)["run_id"] for line in path.read_text().splitlines()} == {second.run_id}
    assert [json.loads(line)["run_id"] for line in moved.read_text().splitlines()] == [first.run_id]
    assert TrajectoryLog(tmp_path / "none.jsonl").start_run() is None


def test_memory_estimate_for_a_realistic_tool_set():
    """19 MCP tools: a 2,407-token prompt; 8 rows x 384 completion tokens on SmolLM2 (fp32). Killed
    at 22 GB without checkpointing, 14.3 GB with it — the estimate must say the same."""
    from transformers import AutoConfig

    from atlas_plugins.embedded_model import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path("embedded"))
    rows = [([1] * 2407, [2] * 384)] * 8
    est = estimate(config, rows, micro_batch=8, trainable_params=4_884_480, first_step=True)
    assert est.without_checkpointing > 22 * GB and 6 * GB < est.with_checkpointing < 14.3 * GB
    assert plan_step(est, budget=20 * GB).checkpointing is True
    with pytest.raises(AtlasError, match=r"does not fit in memory: a micro-batch of 8 rows .* per_device_train_batch_size"):
        plan_step(est, budget=4 * GB)
    small = estimate(config, [([1] * 200, [2] * 60)] * 4, micro_batch=4)
    assert plan_step(small, budget=20 * GB).checkpointing is False
    # The shared-prefix tree processes each distinct prefix once.
    assert prefix_tokens([[1, 2, 3], [1, 2, 4], [1, 2, 3]]) == 4
    tree = estimate(config, rows, micro_batch=8, tree=True)
    assert tree.tokens == 2407 + 384 and tree.without_checkpointing < est.without_checkpointing
    # The log-softmax's tile temporaries (benchmarks/logprob_tiles.py: 4.8 GiB at TRL's own
    # 4,096 x 32,768 tiles on a CPU, a few hundred MiB at the CPU's 1,024 x 8,192); these rows
    # have 3,072 completion tokens, so TRL's tile is 3,072 x 32,768 here.
    trl_tiles = estimate(config, rows, micro_batch=8, tree=True, logprob_tile=(4096, 32768))
    assert trl_tiles.with_checkpointing - tree.with_checkpointing > 3 * GB
    assert estimate(config, [([1] * 50, [2] * 10)], micro_batch=1, tree=True).with_checkpointing < 0.1 * GB
