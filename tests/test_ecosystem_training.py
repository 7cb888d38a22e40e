"""Real GRPO steps with an agent as its users build it (issue 17, items 2, 3, 4, 6, 10, 11):
a real ``create_react_agent`` over async-only tools of its own (no atlas toolspace), on the
embedded SmolLM2, trained with TRL. One episode of the step fails before its first model call (the
graph's prompt step raises): the step must go on, count and name the error, train nothing on that
episode and give it no reward. ``report_to: tensorboard`` writes the atlas/* metrics; a memory
budget too small for a step stops the run with a clear message before the training forward; a
second run into the same output_dir does not append to the first run's trajectory log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="training needs the 'train' extra")
pytest.importorskip("langgraph", reason="the LangGraph adapter needs the 'langgraph' extra")

from langchain_core.tools import StructuredTool  # noqa: E402

from atlas_plugins.errors import AtlasError  # noqa: E402
from atlas_plugins.policy.transformers_policy import TransformersPolicy  # noqa: E402
from atlas_plugins.training.config import AtlasGRPOConfig  # noqa: E402
from atlas_plugins.training.trainer import AtlasTrainer  # noqa: E402
from atlas_plugins.types import Task  # noqa: E402
from atlas_langgraph import AtlasChatModel, LangGraphRunner  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def add(a: int, b: int) -> str:
    return str(a + b)


def tasks() -> list[Task]:
    rubric = lambda ans: {"criteria": [  # noqa: E731
        {"name": "answer", "category": "TF", "weight": 8, "kind": "check", "check": {"type": "answer_contains", "values": [ans]}},
        {"name": "called add", "category": "TA", "weight": 5, "kind": "check", "check": {"type": "tool_called", "tool": "math:add"}},
    ]}
    return [
        Task(id="add-a", prompt="Add 2 and 3 with the add tool.", servers=["math"], answer="5", split="train", rubric=rubric("5")),
        Task(id="add-b", prompt="Add 4 and 4 with the add tool.", servers=["math"], answer="8", split="train", rubric=rubric("8")),
    ]


def build_runner(policy: TransformersPolicy) -> LangGraphRunner:
    """The user's graph: its prompt step fails once (a retrieval step, a template bug ...), before
    that episode's first model call."""
    from langgraph.prebuilt import create_react_agent

    failures = {"left": 1}
    lock = threading.Lock()

    def prompt(state):
        with lock:
            fail, failures["left"] = failures["left"] > 0, failures["left"] - 1
        if fail:
            raise RuntimeError("prompt store unavailable")
        return [{"role": "system", "content": "Call the add tool, then answer."}, *state["messages"]]

    model = AtlasChatModel(policy=policy, max_new_tokens=24)
    tool = StructuredTool.from_function(coroutine=add, name="add", description="Add two integers.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = create_react_agent(model, [tool], prompt=prompt)
    return LangGraphRunner(graph, model, recursion_limit=4, tool_names={"add": "math:add"})


def envs_children() -> list[str]:
    """Command lines of this process's children that are embedded MCP servers."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and "atlas_plugins.envs" in cmd:
            out.append(cmd)
    return out


def tensorboard_tags(root: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in root.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags().get("scalars", []))
    return tags


def test_failed_episode_own_tools_tensorboard_memory_and_runs(tmp_path, caplog):
    pytest.importorskip("tensorboard", reason="report_to: tensorboard needs the tensorboard package (dev extra)")
    policy = TransformersPolicy()
    out = tmp_path / "run"
    cfg = AtlasGRPOConfig.cpu_demo(
        str(out), max_steps=1, per_device_train_batch_size=4, num_generations=2, max_completion_length=96,
        save_steps=1, logging_steps=1, rubric_provider="static", report_to=["tensorboard"], seed=0,
    )
    runner = build_runner(policy)
    trainer = AtlasTrainer(cfg, toolspace=None, tasks=tasks(), model=policy.model, tokenizer=policy.tokenizer, runner=runner)
    # Item 4: the runner brings its own tools, so no toolspace and no embedded server was started.
    assert trainer.toolspace is None and not envs_children()
    with caplog.at_level(logging.WARNING, logger="atlas_plugins.training.trainer"):
        trainer.train()  # TRL used to raise IndexError (ids[-1]) on the empty completion
    assert trainer.state.global_step == 1
    # Item 2: the failed episode is counted and named.
    logged = next(h for h in trainer.state.log_history if "atlas/episode_errors" in h)
    assert logged["atlas/episode_errors"] == 1.0 and logged["atlas/untrainable_episodes"] == 1.0
    assert "1 of 4 episode(s) failed" in caplog.text and "prompt store unavailable" in caplog.text
    # Item 3: it trained nothing and has no reward; the others were scored.
    records = [json.loads(line) for line in cfg.trajectory_log_path.read_text().splitlines()]
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 1
    failed = [r for r in records if r["trajectory"]["metadata"].get("error")]
    assert len(failed) == 1 and failed[0]["reward"] is None
    assert failed[0]["trajectory"]["metadata"]["untrainable"].startswith("no model call: RuntimeError")
    assert all(r["reward"] is not None for r in records if r not in failed)
    # Item 6: the step's memory was planned from its token counts.
    assert logged["atlas/memory/budget_gb"] > 0 and "atlas/memory/checkpointing" in logged
    # Item 10: tensorboard event files with the atlas/* metrics.
    tags = tensorboard_tags(out)
    assert any(t.endswith("atlas/episode_errors") for t in tags), sorted(tags)
    assert any(t.endswith("atlas/memory/estimate_gb") for t in tags) and any("rubric/" in t for t in tags)
    first_run = records[0]["run_id"]
    trainer.close()

    # A second run into the same output_dir, with a budget no step fits in: it stops before the
    # training forward, saying what to change; the first run's log was moved aside, not appended to.
    small = AtlasGRPOConfig.cpu_demo(
        str(out), max_steps=1, per_device_train_batch_size=4, num_generations=2, max_completion_length=96,
        save_steps=1, rubric_provider="static", memory_budget_gb=0.01, seed=1,
    )
    again = AtlasTrainer(small, toolspace=None, tasks=tasks(), model=policy.model, tokenizer=policy.tokenizer,
                         runner=build_runner(policy))
    with pytest.raises(AtlasError, match=r"does not fit in memory.*per_device_train_batch_size=4"):
        again.train()
    moved = [p for p in out.glob("trajectories.*.jsonl")]
    assert len(moved) == 1
    assert {json.loads(line)["run_id"] for line in moved[0].read_text().splitlines()} == {first_run}
    assert not cfg.trajectory_log_path.exists() or first_run not in cfg.trajectory_log_path.read_text()
