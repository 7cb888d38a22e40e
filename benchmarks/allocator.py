"""Peak RSS of the demo's warm start under glibc's default malloc, large blocks always mmap'd, and
the heap trimmed after every step.

Why: the demo's process holds ~8 GB RSS from its first warm-start step on, for a 135M model
whose live tensors (weights, LoRA state, one batch's activations with checkpointing) are far
smaller. glibc raises its mmap threshold each time a large mmap'd block is freed (up to 32 MiB),
after which blocks of that size come from the heap, and freed heap memory is kept by the process.
``M_MMAP_THRESHOLD`` set once (``atlas_plugins.training.allocator``) turns that off: every block
over the threshold is mmap'd and goes back to the OS when freed. ``trim`` keeps glibc's defaults
and calls ``malloc_trim(0)`` after every optimizer step (``trim_heap_callback``). ``trl-tiles``
keeps glibc's defaults and scores with TRL's own log-softmax tiles (4,096 tokens x 32,768 columns,
what ran before 2026-12-03) instead of the CPU tiles of ``atlas_plugins.training.shared_prefix``.

Each case runs in its own process (peak RSS = the kernel's ``ru_maxrss`` of that process, as
``/usr/bin/time -v`` reports it), alternating the ``--cases`` for ``--rounds`` rounds. A case plays
the reference solutions of the first ``--tasks`` level-1 training tasks under ITL and ITL+PTC
(as ``atlas demo`` does) and runs ``--steps`` warm-start steps of batch 8 on them.

    python benchmarks/allocator.py                    # 2 rounds x 3 cases, ~15 min on 2 idle cores
    python benchmarks/allocator.py --cases default,trim --rounds 1
    python benchmarks/allocator.py --tasks 16 --steps 2 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("default", "mmap", "trim", "trl-tiles")


def child(args: argparse.Namespace) -> None:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import atlas_plugins as atlas
    from atlas_plugins.embedded_model import resolve_model_path
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.rewards.scorer import Scorer
    from atlas_plugins.training.allocator import release_large_blocks, trim_heap_callback
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.demo import pick_tasks
    from atlas_plugins.training.warmstart import demonstrations, warm_start

    if args.case == "mmap" and not release_large_blocks(int(args.threshold_mib * 2**20)):
        raise SystemExit("mallopt is not available here (not glibc): nothing to compare")
    if args.case == "trl-tiles":
        from atlas_plugins.training import shared_prefix

        shared_prefix.CPU_TILE_TOKENS, shared_prefix.CPU_TILE_COLUMNS = shared_prefix.trl_logprob_tile()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    tasks = pick_tasks(load_default_tasks("train"), args.tasks, 1)
    cfg = AtlasGRPOConfig.cpu_demo(tempfile.mkdtemp(prefix="atlas-alloc-"), designs="itl,itl+ptc")
    demos = []
    with atlas.Toolspace.default(seed=0) as ts:
        scorer = Scorer(toolspace=ts)
        for agent_cfg in cfg.design_configs().values():
            demos += demonstrations(tasks, ts, tok, agent_cfg, scorer, think=True)[0]
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM"
    )
    epochs = args.steps * args.batch / max(1, len(demos))
    t0 = time.perf_counter()
    _, log = warm_start(
        model,
        tok,
        demos,
        output_dir=tempfile.mkdtemp(prefix="atlas-alloc-sft-"),
        epochs=epochs,
        learning_rate=3e-3,
        peft_config=lora,
        batch_size=args.batch,
        max_length=4096,
        seed=0,
        callbacks=[trim_heap_callback()] if args.case == "trim" else [],
    )
    wall = time.perf_counter() - t0
    losses = [h["loss"] for h in log if "loss" in h]
    print(
        "RESULT "
        + json.dumps({"case": args.case, "rows": len(demos), "steps": len(losses), "train_s": wall, "losses": losses}),
        flush=True,
    )


def run_case(case: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", "--case", case, *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout is not None
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"case {case} failed; its last output:\n" + "\n".join(lines[-20:]))
    result = json.loads(next(x for x in reversed(lines) if x.startswith("RESULT "))[len("RESULT ") :])
    result["peak_rss_gib"] = usage.ru_maxrss / 1024**2  # KiB on Linux
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=16, help="training tasks per design (demonstrations)")
    ap.add_argument("--steps", type=int, default=3, help="warm-start steps")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threshold-mib", type=float, default=1.0, help="mmap threshold of the mmap case")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="default,mmap,trim", help="comma-separated: default, mmap, trim, trl-tiles")
    ap.add_argument("--case", choices=CASES, default="default", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "allocator.json")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = sorted(set(cases) - set(CASES))
    if bad or "default" not in cases:
        raise SystemExit(
            f"--cases: unknown {bad} (known: {', '.join(CASES)}); 'default' is the baseline and must be one"
        )
    argv = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("tasks", "steps", "batch", "threads", "threshold_mib")
    ]
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    for r in range(args.rounds):
        for case in cases:
            res = run_case(case, argv)
            runs[case].append(res)
            print(
                f"round {r + 1} {case:7s}: peak RSS {res['peak_rss_gib']:.2f} GiB, {res['steps']} steps in "
                f"{res['train_s']:.0f} s, losses {[round(x, 3) for x in res['losses']]}",
                flush=True,
            )
    summary = {
        c: {
            "peak_rss_gib": statistics.median(x["peak_rss_gib"] for x in v),
            "train_s": statistics.median(x["train_s"] for x in v),
        }
        for c, v in runs.items()
    }
    for c in (x for x in cases if x != "default"):
        summary[f"rss_ratio_{c}_over_default"] = summary[c]["peak_rss_gib"] / summary["default"]["peak_rss_gib"]
        summary[f"time_ratio_{c}_over_default"] = summary[c]["train_s"] / summary["default"]["train_s"]
    print(json.dumps(summary, indent=1))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps(
            {
                "settings": {k: v for k, v in vars(args).items() if k not in ("child", "case", "json_out")},
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
