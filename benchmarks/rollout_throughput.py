"""Rollout throughput: group-batched vs one-at-a-time generation.

GRPO samples a *group* of G completions per prompt. ``TransformersPolicy.generate`` decodes the
whole group as one left-padded, KV-cached batch; the baseline generates the same completions
one prompt at a time (what a naive agent loop does). Same prompts, same ``max_new_tokens``,
same temperature (1.0), same seeds per run; the embedded SmolLM2-135M-Instruct on CPU.

Both sides count the tokens actually sampled (completions end at EOS or at the limit), so
tokens/s is fair even though lengths differ; the speed-up is the ratio of tokens/s measured in
the same run.

A second table measures the prefix (multi-turn KV) cache: an agent-like loop of ``--turns``
turns over a batch of ``--turn-batch`` episodes whose prompts start at ~``--turn-prompt-tokens``
tokens; each turn appends the sampled ids and ~``--env-tokens`` environment tokens to every
episode and calls ``generate`` again with the whole sequences. Same policy weights, same seeds,
with ``prefix_cache=True`` vs ``prefix_cache=False``; the speed-up is the ratio of wall times.

    .venv/bin/python benchmarks/rollout_throughput.py            # defaults: groups 4 and 8, then multi-turn
    .venv/bin/python benchmarks/rollout_throughput.py --groups 4 --prompts 1 --max-new-tokens 32
    .venv/bin/python benchmarks/rollout_throughput.py --threads 1 --only multi-turn
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


def long_prompts(policy, batch: int, target_tokens: int) -> list[list[int]]:
    """``batch`` different chat prompts of ~``target_tokens`` tokens: a tool catalogue in the
    system message (what an eager agent sends) and one of :data:`PROMPTS` as the question."""
    lines, k = [], 0
    while True:
        lines.append(f"- server_{k % 7}:tool_{k}(query: str, limit: int = 10) -> list: looks up record {k} "
                     f"in collection {k % 13} and returns matching entries sorted by relevance.")
        k += 1
        system = "You can call these tools:\n" + "\n".join(lines)
        ids = policy.apply_chat_template([{"role": "system", "content": system},
                                          {"role": "user", "content": PROMPTS[0]}])
        if len(ids) >= target_tokens:
            break
    return [policy.apply_chat_template([{"role": "system", "content": system},
                                        {"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
            for i in range(batch)]


def env_tokens(policy, n: int, turn: int) -> list[int]:
    """~``n`` tokens of an environment reply (a tool result message and the next assistant header)."""
    words = " ".join(f"item{turn}_{j}" for j in range(n))
    ids = policy.tokenizer.encode(
        f"<|im_start|>user\n<tool_response>{words}</tool_response><|im_end|>\n<|im_start|>assistant\n",
        add_special_tokens=False)
    head, tail = ids[: n // 2], ids[-(n - n // 2):]  # exactly n tokens, keeping both ends
    return head + tail


def run_turns(policy, start: list[list[int]], turns: int, env: int, max_new_tokens: int, seed: int) -> dict:
    """Play ``turns`` turns of an agent-like loop; the sequences only ever grow."""
    seqs = [list(p) for p in start]
    per_turn, outputs, sampled = [], [], 0
    begin = time.perf_counter()
    for turn in range(turns):
        t0 = time.perf_counter()
        gens = policy.generate(seqs, max_new_tokens=max_new_tokens, temperature=1.0, seed=seed + turn)
        per_turn.append(round(time.perf_counter() - t0, 3))
        outputs.append([g.completion_ids for g in gens])
        sampled += sum(g.num_tokens for g in gens)
        extra = env_tokens(policy, env, turn)
        seqs = [s + g.completion_ids + extra for s, g in zip(seqs, gens)]
    wall = time.perf_counter() - begin
    return {"mode": "prefix cache" if policy.prefix_cache else "re-prefill", "wall_s": round(wall, 3),
            "turn_s": per_turn, "sampled_tokens": sampled, "final_len": [len(s) for s in seqs],
            # Without the cache every turn prefills whole sequences (counted by the caller).
            "prefilled_tokens": policy.prefix_cache_stats["prefilled_tokens"] if policy.prefix_cache else None,
            "outputs": outputs}


def multi_turn(policy, args) -> dict:
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    start = long_prompts(policy, args.turn_batch, args.turn_prompt_tokens)
    plain = TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache=False, name=policy.name)
    cached = TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache=True, name=policy.name)
    rows = [run_turns(pol, start, args.turns, args.env_tokens, args.turn_max_new_tokens, args.seed)
            for pol in (plain, cached)]
    base, fast = rows
    base["prefilled_tokens"] = sum(
        len(start[i]) + sum(len(base["outputs"][t][i]) + args.env_tokens for t in range(turn))
        for turn in range(args.turns) for i in range(len(start)))
    same = base["outputs"] == fast["outputs"]
    for r in rows:
        r.pop("outputs")
    print()
    print(f"multi-turn: batch {args.turn_batch}, {args.turns} turns, prompts ~{len(start[0])} tokens, "
          f"+{args.env_tokens} env tokens/turn, max_new_tokens {args.turn_max_new_tokens}")
    print(f"{'mode':>13} {'wall s':>8} {'per turn s':>30} {'prefilled':>10} {'sampled':>8}")
    for r in rows:
        turns_s = " ".join(f"{t:.2f}" for t in r["turn_s"])
        print(f"{r['mode']:>13} {r['wall_s']:>8.2f} {turns_s:>30} {r['prefilled_tokens']:>10} {r['sampled_tokens']:>8}")
    ratio = round(base["wall_s"] / fast["wall_s"], 2)
    later = round(sum(base["turn_s"][1:]) / max(1e-9, sum(fast["turn_s"][1:])), 2)
    print(f"prefix cache speed-up: {ratio}x overall, {later}x on turns 2..{args.turns}; "
          f"sampled ids identical in both modes: {same}")
    return {"batch": args.turn_batch, "turns": args.turns, "prompt_tokens": [len(p) for p in start],
            "env_tokens_per_turn": args.env_tokens, "max_new_tokens": args.turn_max_new_tokens,
            "temperature": 1.0, "rows": rows, "speedup_wall": ratio, "speedup_later_turns": later,
            "identical_outputs": same}


def groups_table(policy, prompt_ids: list[list[int]], args) -> dict:
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

    return {
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "temperature": 1.0,
        "rows": rows,
        "speedup": ratios,
        "goal": "batched >= 2x sequential tokens/s at group 4",
        "goal_met": ratios.get("group_4", {}).get("tokens_per_s_ratio", 0) >= 2.0,
    }


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
    parser.add_argument("--only", choices=["groups", "multi-turn"], default=None, help="run one table only")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--turn-batch", type=int, default=4)
    parser.add_argument("--turn-prompt-tokens", type=int, default=1500)
    parser.add_argument("--env-tokens", type=int, default=50)
    parser.add_argument("--turn-max-new-tokens", type=int, default=16)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rollout_throughput.json"))
    args = parser.parse_args()

    import torch

    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    if args.threads:
        torch.set_num_threads(args.threads)
    policy = TransformersPolicy(args.model, device=args.device)
    prompt_ids = [policy.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS[: args.prompts]]
    policy.generate(prompt_ids[:1], max_new_tokens=4, seed=0)  # warm-up (allocator, kernels)

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}  # keep the table not re-run
    result.update({"benchmark": "rollout_throughput", "model": policy.name, "device": args.device,
                   "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()})
    if args.only != "multi-turn":
        result.update(groups_table(policy, prompt_ids, args))
    if args.only != "groups":
        result["multi_turn"] = multi_turn(policy, args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
