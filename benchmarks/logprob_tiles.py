"""Peak memory and time of the completion log-probs' forward and backward, by log-softmax tile.

Every pass that scores completions (the warm start's SFT loss, GRPO's training, reference and old
passes) ends in TRL's chunked log-prob kernel over the model's 49,152-word LM head. On a GPU the
kernel folds each tile in Triton; on a CPU it runs as torch ops over tiles of 4,096 tokens x
32,768 columns, holding several such fp32 temporaries at once. This measures that one call, on
the embedded model's real LM head, for each tile size:

* ``trl``: TRL's own tiles (``4,096 x 32,768``), what ran before 2026-12-03;
* ``TxC``: ``T`` tokens x ``C`` columns per tile (``atlas_plugins.training.shared_prefix``
  defaults to ``1024x8192`` off the GPU).

Each (case, round) runs in its own process with glibc's mmap threshold fixed at 1 MiB, so that
freed blocks leave RSS and the peak is the call's live memory; the figure reported is the
kernel's ``ru_maxrss`` minus the RSS just before the call. Rounds interleave the cases. Time is
the median over ``--reps`` forward+backward calls in the process (after one untimed call).

    python benchmarks/logprob_tiles.py                   # ~2 min on 2 idle cores
    python benchmarks/logprob_tiles.py --tokens 6000 --cases trl,1024x8192,512x4096 --rounds 3

What it does not cover: the rest of a training step (see ``benchmarks/memory.py`` for whole GRPO
steps), GPUs, and LM heads with a bias or soft-capping.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(case: str, tokens: int, reps: int, threads: int) -> dict[str, object]:
    """One case in this process: returns its peak memory above the starting RSS and its time."""
    import torch
    from safetensors.torch import load_file

    from atlas_plugins.embedded_model import resolve_model_path
    from atlas_plugins.training.allocator import release_large_blocks
    from atlas_plugins.training.shared_prefix import target_logprobs, trl_logprob_tile

    release_large_blocks()
    torch.set_num_threads(threads)
    weights = load_file(str(Path(resolve_model_path(None)) / "model.safetensors"))
    # The tied LM head, frozen under LoRA. Copied out of the lazily mapped file, so that its pages
    # are in RSS before the measured call (``.float()`` of fp32 data is the mapped tensor itself).
    weight = weights["model.embed_tokens.weight"].float().clone()
    del weights
    gen = torch.Generator().manual_seed(0)
    hidden = (torch.randn(tokens, weight.shape[1], generator=gen) * 0.5).requires_grad_(True)
    targets = torch.randint(0, weight.shape[0], (tokens,), generator=gen)
    tile = trl_logprob_tile() if case == "trl" else tuple(int(x) for x in case.split("x"))

    def once() -> float:
        hidden.grad = None
        logps, entropy = target_logprobs(hidden, weight, None, targets, compute_entropy=True, tile=tile)
        (logps.sum() + 0.01 * entropy.sum()).backward()  # the GRPO loss reads both
        return float(logps.detach().sum())

    # A small call first: the kernels' one-time buffers are not the tile's.
    warm = hidden[:16].detach().clone().requires_grad_(True)
    logps, entropy = target_logprobs(warm, weight, None, targets[:16], compute_entropy=True, tile=tile)
    (logps.sum() + entropy.sum()).backward()
    del warm, logps, entropy
    before = _rss_kib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    checksum = once()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if peak <= maxrss_before:
        raise SystemExit(f"{case}: the call did not raise the process's peak RSS; its peak is not measurable here")
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return {
        "case": case,
        "tokens": tokens,
        "peak_above_start_mib": (peak - before) / 1024,
        "seconds": statistics.median(times),
        "logprob_sum": checksum,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=6000, help="completion tokens scored in one call")
    ap.add_argument("--cases", default="trl,1024x8192,512x4096,2048x16384")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "logprob_tiles.json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens, args.reps, args.threads)))
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for case in cases:
        if case != "trl" and not (len(case.split("x")) == 2 and all(p.isdigit() for p in case.split("x"))):
            ap.error(f"--cases: {case!r} is neither 'trl' nor TOKENSxCOLUMNS (e.g. 1024x8192)")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    runs = []
    for r in range(args.rounds):
        for case in cases:
            cmd = [sys.executable, __file__, "--child", case, "--tokens", str(args.tokens), "--reps", str(args.reps)]
            cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"case {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            out = proc.stdout
            row = json.loads(out.strip().splitlines()[-1]) | {"round": r}
            runs.append(row)
            print(f"round {r} {case:>12}: peak +{row['peak_above_start_mib']:8.0f} MiB  {row['seconds']:.2f} s")
    table = {}
    for case in cases:
        mine = [x for x in runs if x["case"] == case]
        table[case] = {
            "peak_above_start_mib": statistics.median(x["peak_above_start_mib"] for x in mine),
            "seconds": statistics.median(x["seconds"] for x in mine),
            "logprob_sum": mine[0]["logprob_sum"],
        }
    base = table[cases[0]]
    print(f"\n{'case':>12} | peak above start | time | vs {cases[0]}")
    for case, row in table.items():
        print(
            f"{case:>12} | {row['peak_above_start_mib']:10.0f} MiB | {row['seconds']:.2f} s | "
            f"{row['peak_above_start_mib'] / max(base['peak_above_start_mib'], 1):.2f}x memory, "
            f"{row['seconds'] / base['seconds']:.2f}x time"
        )
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps({"args": vars(args) | {"json_out": str(args.json_out)}, "runs": runs, "table": table}, indent=2)
    )


if __name__ == "__main__":
    main()
