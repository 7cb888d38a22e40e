"""``atlas train`` on two CPU processes under Accelerate (issue 17, item 10).

``accelerate launch --num_processes 2 --cpu`` starts ONE process in accelerate 1.x (its CPU path
is the single-process launcher unless mpirun is configured: measured, ``processes == 1``), so the
processes are started with ``torchrun`` (``torch.distributed.run``, what ``accelerate launch``
uses for several devices); with ``use_cpu: true`` Accelerate then runs MULTI_CPU over gloo.

Two real processes over gloo, the embedded SmolLM2-135M, two GRPO steps with tiny budgets. Each
process plays its share of every step's rollouts; gradients are all-reduced, so after two steps on
different rollouts both processes still hold the same (changed) LoRA weights; the main process
alone writes the checkpoint, the trajectory log, the adapter and the tensorboard events (with the
atlas/* metrics).

The rubric's python check scores the length of what the model wrote, so rollouts of one task
score differently and every step has a non-zero advantage to train on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("trl", reason="training needs the 'train' extra")
pytest.importorskip("accelerate", reason="training needs the 'train' extra")

from conftest import REPO, free_port  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHECK_MODULE = '''
def written_length(trajectory):
    """A score that differs between samples: the length of the assistant's text, mod 11, over 10."""
    text = "".join(m.get("content") or "" for m in trajectory.messages if m.get("role") == "assistant")
    return (len(text) % 11) / 10
'''


def _task(i: int, a: int, b: int) -> dict:
    return {
        "id": f"add-{i}", "split": "train", "servers": ["math"], "prompt": f"Add {a} and {b}.", "answer": str(a + b),
        "rubric": {"criteria": [
            {"name": "written", "category": "TF", "weight": 5, "kind": "check",
             "check": {"type": "python", "function": "accel_checks:written_length"}},
            {"name": "called add", "category": "TA", "weight": 3, "kind": "check",
             "check": {"type": "tool_called", "tool": "math:add"}},
        ]},
    }


def _json_object(text: str) -> dict:
    """The JSON object the main process printed (other output may come before it)."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{" and (i == 0 or text[i - 1] == "\n"):
            try:
                obj, _ = decoder.raw_decode(text[i:])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "global_step" in obj:
                return obj
    raise AssertionError(f"no result JSON in the output:\n{text[-3000:]}")


def test_atlas_train_on_two_processes(tmp_path):
    pytest.importorskip("tensorboard", reason="report_to: tensorboard needs the tensorboard package (dev extra)")
    from atlas_plugins.embedded_model import embedded_model_dir
    from atlas_plugins.errors import AtlasError

    try:
        embedded_model_dir(progress=False)
    except AtlasError as exc:
        pytest.skip(f"the embedded model is not available: {exc}")

    (tmp_path / "accel_checks.py").write_text(CHECK_MODULE)
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(_task(i, a, b)) + "\n" for i, (a, b) in enumerate([(2, 3), (4, 4)])))
    (tmp_path / "toolspace.yaml").write_text("servers:\n  math: {embedded: true}\n")
    out = tmp_path / "run"
    config = {
        "output_dir": str(out), "tasks": str(tmp_path / "tasks.jsonl"), "toolspace": str(tmp_path / "toolspace.yaml"),
        "loading": "itl", "max_steps": 2, "per_device_train_batch_size": 2, "num_generations": 2,
        "max_completion_length": 64, "max_turn_tokens": 16, "max_turns": 2, "max_tool_calls": 1,
        "rubric_provider": "static", "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "beta": 0.0, "learning_rate": 1.0e-3, "lora_r": 4, "lora_alpha": 8, "temperature": 1.0,
        "save_steps": 2, "logging_steps": 1, "report_to": ["tensorboard"], "seed": 0,
    }
    (tmp_path / "run.yaml").write_text(json.dumps(config))  # JSON is YAML
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "atlas_plugins.cli", "train", "-c", str(tmp_path / "run.yaml"), "--json"],
        capture_output=True, text=True, timeout=840, env=env, cwd=tmp_path,
    )
    (tmp_path / "stderr.txt").write_text(proc.stderr)
    first = [line for line in proc.stderr.splitlines() if "Error" in line or "error:" in line or "terminate" in line]
    assert proc.returncode == 0, "\n".join(first[:30]) + "\n...\n" + proc.stderr[-2000:]
    result = _json_object(proc.stdout)
    assert result["processes"] == 2 and result["global_step"] == 2
    # Gradients were all-reduced: both processes hold the same weights ...
    assert result["replicas_in_sync"] is True

    # ... and those weights moved (LoRA B starts at zero), so the steps trained.
    from safetensors.torch import load_file

    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and any(float(w.abs().max()) > 0 for w in lora_b)

    # Rollouts were split: every step's 4 episodes, 2 from each process, logged once by the main process.
    records = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(records) == 8, [(r.get("step"), r.get("process")) for r in records]
    assert sorted(r["process"] for r in records) == [0] * 4 + [1] * 4
    assert len({r["run_id"] for r in records}) == 1
    ids = [r["trajectory"]["metadata"]["episode_id"] for r in records]
    assert len(set(ids)) == 8  # no episode written twice
    # One checkpoint, one adapter, one set of tensorboard events, all from the main process.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    events = list(out.rglob("events.out.tfevents.*"))
    assert len(events) == 1, events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    assert any(t.endswith("atlas/episode_errors") for t in tags) and any("atlas/turns" in t for t in tags), sorted(tags)
