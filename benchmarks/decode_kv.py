"""Decode step time with the reserved K/V cache vs transformers' DynamicCache (copy per step).

For each (rows, context) shape: a batch of ``rows`` random prompts of ``context`` tokens is
prefilled, then ``steps`` greedy tokens are decoded (EOS and stop strings off, so every row
decodes every step), once with ``TransformersPolicy.reserve_kv`` on and once off, in interleaved
rounds on the same policy object. Reports the median decode time per step (the prefill is
timed apart) and the ratio reserved / dynamic, measured in the same run. Each measurement
prefills twice, so large shapes cost mostly prefill: 27x2000 ran over 10 minutes (2 cores).

    python benchmarks/decode_kv.py                      # shapes 1x1000, 8x1000 (a few minutes)
    python benchmarks/decode_kv.py --shapes 27x2000 --steps 64 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="1x1000,8x1000", help="rows x context tokens, comma-separated")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "decode_kv.json")
    args = ap.parse_args()

    import torch

    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    if args.threads:
        torch.set_num_threads(args.threads)
    policy = TransformersPolicy("embedded", prefix_cache=False)
    eos = set(policy._eos_ids)
    policy._eos_ids = []  # every row decodes all steps: the same work on both sides
    vocab = [t for t in range(1000, 40000) if t not in eos]
    rows_out = []
    for shape in args.shapes.split(","):
        rows, context = (int(x) for x in shape.lower().split("x"))
        g = torch.Generator().manual_seed(rows * 7919 + context)
        prompts = [[vocab[int(i)] for i in torch.randint(len(vocab), (context,), generator=g)] for _ in range(rows)]
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for flag in (True, False):
                policy.reserve_kv = flag
                t0 = time.perf_counter()
                policy.generate(prompts, max_new_tokens=1, temperature=0)  # prefill (+1 token)
                t1 = time.perf_counter()
                policy.generate(prompts, max_new_tokens=args.steps + 1, temperature=0)
                t2 = time.perf_counter()
                prefill = t1 - t0
                times[flag].append(((t2 - t1) - prefill) / args.steps)
        med = {flag: statistics.median(v) for flag, v in times.items()}
        kv_bytes = rows * (context + args.steps) * 30 * 2 * 3 * 64 * 4
        row = {
            "rows": rows,
            "context": context,
            "steps": args.steps,
            "kv_gb": round(kv_bytes / 1e9, 3),
            "dynamic_ms_per_step": round(1000 * med[False], 1),
            "reserved_ms_per_step": round(1000 * med[True], 1),
            "ratio_reserved_over_dynamic": round(med[True] / med[False], 3),
            "rounds": {str(k): [round(1000 * x, 1) for x in v] for k, v in times.items()},
        }
        rows_out.append(row)
        print(
            f"{rows:>3} rows x {context} ctx (K/V {row['kv_gb']} GB): dynamic {row['dynamic_ms_per_step']} ms/step, "
            f"reserved {row['reserved_ms_per_step']} ms/step -> {row['ratio_reserved_over_dynamic']:.2f}x",
            flush=True,
        )
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"threads": torch.get_num_threads(), "shapes": rows_out}, indent=2))
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
