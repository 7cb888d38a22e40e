"""Rollout throughput: group-batched vs one-at-a-time generation.

GRPO samples a *group* of G completions per prompt. ``TransformersPolicy.generate`` decodes the
whole group as one left-padded, KV-cached batch; the baseline generates the same completions
one prompt at a time (what a naive agent loop does). Same prompts, same ``max_new_tokens``,
same temperature (1.0), same seeds per run; the embedded SmolLM2-135M-Instruct on CPU.

Both sides count the tokens actually sampled (completions end at EOS or at the limit), so
tokens/s is fair even though lengths differ; the speed-up is the ratio of tokens/s measured in
the same run.

    .venv/bin/python benchmarks/rollout_throughput.py            # defaults: groups 4 and 8
    .venv/bin/python benchmarks/rollout_throughput.py --groups 4 --prompts 1 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

PROMPTS = [
    "Find the weather in Paris tomorrow and convert the temperature to Fahrenheit.",
    "Add 17 and 25, then multiply the result by 3. Explain each step.",
    "Write a short note titled 'groceries' listing milk, eggs and bread.",
    "Which tools would you use to look up the current time in Tokyo?",
]


def run(policy, prompt_ids: list[list[int]], group: int, max_new_tokens: int, batched: bool, seed: int) -> dict:
    tokens = seqs = 0
    start = time.perf_counter()
    for p_i, ids in enumerate(prompt_ids):
        if batched:
            gens = policy.generate([ids] * group, max_new_tokens=max_new_tokens, temperature=1.0, seed=seed + p_i)
        else:
            gens = [
                policy.generate([ids], max_new_tokens=max_new_tokens, temperature=1.0, seed=seed + p_i * 100 + g)[0]
                for g in range(group)
            ]
        tokens += sum(g.num_tokens for g in gens)
        seqs += len(gens)
    wall = time.perf_counter() - start
    return {"mode": "batched" if batched else "sequential", "group": group, "sequences": seqs, "tokens": tokens,
            "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 2), "seqs_per_s": round(seqs / wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--prompts", type=int, default=2, help="how many prompts (GRPO tasks) per measurement")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; use 1 on a shared, busy machine)")
    parser.add_argument("--model", default=None, help="model path (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rollout_throughput.json"))
    args = parser.parse_args()

    import torch

    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    if args.threads:
        torch.set_num_threads(args.threads)
    policy = TransformersPolicy(args.model, device=args.device)
    prompt_ids = [policy.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS[: args.prompts]]
    policy.generate(prompt_ids[:1], max_new_tokens=4, seed=0)  # warm-up (allocator, kernels)

    rows, ratios = [], {}
    for group in args.groups:
        seq = run(policy, prompt_ids, group, args.max_new_tokens, batched=False, seed=args.seed)
        bat = run(policy, prompt_ids, group, args.max_new_tokens, batched=True, seed=args.seed)
        rows += [seq, bat]
        ratios[f"group_{group}"] = {
            "tokens_per_s_ratio": round(bat["tokens_per_s"] / seq["tokens_per_s"], 2),
            "seqs_per_s_ratio": round(bat["seqs_per_s"] / seq["seqs_per_s"], 2),
        }

    print(f"{'group':>5} {'mode':>10} {'seqs':>5} {'tokens':>7} {'wall s':>8} {'tok/s':>8} {'seq/s':>7}")
    for r in rows:
        print(f"{r['group']:>5} {r['mode']:>10} {r['sequences']:>5} {r['tokens']:>7} {r['wall_s']:>8.2f} "
              f"{r['tokens_per_s']:>8.1f} {r['seqs_per_s']:>7.3f}")
    for key, val in ratios.items():
        print(f"{key}: batched/sequential tokens/s = {val['tokens_per_s_ratio']}x, seqs/s = {val['seqs_per_s_ratio']}x")

    result = {
        "benchmark": "rollout_throughput",
        "model": policy.name,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "temperature": 1.0,
        "rows": rows,
        "speedup": ratios,
        "goal": "batched >= 2x sequential tokens/s at group 4",
        "goal_met": ratios.get("group_4", {}).get("tokens_per_s_ratio", 0) >= 2.0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
