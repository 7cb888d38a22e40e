"""Judge benchmark: does an LM judge agree with ground truth, and do rubrics make it more consistent?

Tasks are synthetic arithmetic tasks with known answers and known tool calls on a ``math``
server. For each task we build four trajectories (correct; right tool with wrong arguments;
right call but wrong final answer; no tool call and a wrong answer). The rubric is the
``template`` provider's (four categories, all exact checks) and the ground-truth label of a
trajectory is the ``rules`` judge's score aggregated with ``atlas``.

The LM judge is the ``hf`` judge on the embedded SmolLM2-135M-Instruct in ``checks="lm"``
mode (the model scores every criterion from its description; no exact checks), with
``method="distribution"``: one forward pass per (trajectory, criterion) gives the model's
probability over the digits 0–9; temperature 0 uses the expected digit, temperature T > 0
samples a digit (identical in distribution to sampling the first answer token with decoding
constrained to digits). The baseline is a single generic prompt, "rate this trajectory 0–9",
scored the same way with the same model on the same trajectories.

Reported: Spearman correlation and MAE against the labels, pairwise accuracy within each
task's group (what GRPO uses), and the spread (std across 5 repeated samplings at T=0.7) of
the reward, rubric vs generic.

Run: ``.venv/bin/python benchmarks/judge.py`` (``--tasks N`` to change the size).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import atlas_plugins as atlas
from atlas_plugins.rewards.judges._lm import SYSTEM_PROMPT
from atlas_plugins.rewards.render import render_trajectory
from atlas_plugins.types import ToolCallRecord, Trajectory

OPS = {"add": ("+", lambda a, b: a + b), "subtract": ("-", lambda a, b: a - b), "multiply": ("*", lambda a, b: a * b)}


def make_tasks(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        op = list(OPS)[i % 3]
        a, b = rng.randint(11, 99), rng.randint(2, 60)
        sym, f = OPS[op]
        tasks.append({
            "id": f"{op}-{a}-{b}",
            "prompt": f"Use the math server to compute {a} {sym} {b}.",
            "servers": ["math"],
            "answer": str(f(a, b)),
            "metadata": {"expected_tools": [{"tool": f"math:{op}", "arguments": {"a": a, "b": b}}]},
        })
    return tasks


def make_trajectories(task: dict) -> list[tuple[str, Trajectory]]:
    op = task["metadata"]["expected_tools"][0]["tool"]
    args = task["metadata"]["expected_tools"][0]["arguments"]
    a, b = args["a"], args["b"]
    _, f = OPS[op.split(":")[1]]
    right = f(a, b)
    wrong_args = {"a": a, "b": b + 7}
    wrong = f(a, b + 7)

    def t(calls, answer):
        return Trajectory(task_id=task["id"], task=task, final_answer=answer,
                          tool_calls=[ToolCallRecord(turn=i + 1, name=n, arguments=x, result=r) for i, (n, x, r) in enumerate(calls)])

    return [
        ("correct", t([(op, args, str(right))], f"The result is {right}.")),
        ("wrong_args", t([(op, wrong_args, str(wrong))], f"The result is {wrong}.")),
        ("wrong_answer", t([(op, args, str(right))], f"The result is {right + 13}.")),
        ("no_tool", t([], f"I think it is {right * 2 + 1}.")),
    ]


def generic_prompt(traj: Trajectory) -> list[dict[str, str]]:
    user = (f"{render_trajectory(traj)}\n\nRate how well the agent did this task overall. Reply with "
            "<score>N</score>, N an integer from 0 (terrible) to 9 (perfect).")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else float("nan")


def pairwise_accuracy(groups: list[list[int]], pred: list[float], label: list[float]) -> float:
    """Within each task group, the fraction of label-ordered pairs the prediction orders the same
    way (ties in the prediction count half)."""
    hits, n = 0.0, 0
    for g in groups:
        for i in g:
            for j in g:
                if label[i] > label[j]:
                    n += 1
                    hits += 1.0 if pred[i] > pred[j] else 0.5 if pred[i] == pred[j] else 0.0
    return hits / n if n else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10, help="tasks (4 trajectories each; 10 -> 40)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--model", default=None, help="judge model path/id (default: embedded SmolLM2-135M)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "judge.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()

    provider = atlas.get_rubric_provider("template")
    rules = atlas.get_judge("rules")
    agg = atlas.get_aggregator("atlas")
    rows = []  # (task, variant, traj, rubric, label)
    for task in make_tasks(args.tasks):
        rubric = provider.rubric_for(task)
        for variant, traj in make_trajectories(task):
            label = agg.aggregate(rubric, rules.score(rubric, traj).scores).value
            rows.append((task, variant, traj, rubric, label))
    labels = [r[4] for r in rows]
    groups = [list(range(i, i + 4)) for i in range(0, len(rows), 4)]

    judge = atlas.get_judge("hf", model=args.model, checks="lm", method="distribution", batch_size=16)
    t_load = time.perf_counter()
    judge._load()
    load_s = time.perf_counter() - t_load

    # rubric judging: one distribution per (trajectory, criterion)
    t_r = time.perf_counter()
    items = [(k, c) for k, r in enumerate(rows) for c in r[3].criteria]
    dists = judge.digit_distributions([judge.criterion_prompt(rows[k][2], c, scale_max=9) for k, c in items])
    rubric_s = time.perf_counter() - t_r
    per_traj: list[list[tuple[str, list[float]]]] = [[] for _ in rows]
    for (k, c), d in zip(items, dists):
        per_traj[k].append((c.id, d))

    t_g = time.perf_counter()
    gdists = judge.digit_distributions([generic_prompt(r[2]) for r in rows])
    generic_s = time.perf_counter() - t_g

    rng = random.Random(0)
    score = judge.score_from_distribution

    def rubric_reward(k: int, temp: float) -> float:
        return agg.aggregate(rows[k][3], {cid: score(d, temp, rng) for cid, d in per_traj[k]}).value

    rubric_t0 = [rubric_reward(k, 0.0) for k in range(len(rows))]
    generic_t0 = [score(d, 0.0) for d in gdists]
    rubric_samples = [[rubric_reward(k, args.temperature) for _ in range(args.repeats)] for k in range(len(rows))]
    generic_samples = [[score(d, args.temperature, rng) for _ in range(args.repeats)] for d in gdists]

    def summary(t0_vals, samples):
        means = [statistics.fmean(s) for s in samples]
        per_repeat_pair = [pairwise_accuracy(groups, [s[r] for s in samples], labels) for r in range(args.repeats)]
        return {
            "spearman_t0": spearman(t0_vals, labels),
            "mae_t0": statistics.fmean(abs(a - b) for a, b in zip(t0_vals, labels)),
            "pairwise_acc_t0": pairwise_accuracy(groups, t0_vals, labels),
            "spearman_sampled_mean": spearman(means, labels),
            "pairwise_acc_per_sample": statistics.fmean(per_repeat_pair),
            "spread_std": statistics.fmean(statistics.pstdev(s) for s in samples),
            "spread_std_relative": statistics.fmean(statistics.pstdev(s) for s in samples)
            / max(1e-9, statistics.pstdev([x for s in samples for x in s])),
        }

    res_rubric = summary(rubric_t0, rubric_samples)
    res_generic = summary(generic_t0, generic_samples)
    digit_mass = statistics.fmean(d[10] for d in dists)
    by_variant = {}
    for v in ("correct", "wrong_args", "wrong_answer", "no_tool"):
        idx = [k for k, r in enumerate(rows) if r[1] == v]
        by_variant[v] = {
            "label": statistics.fmean(labels[k] for k in idx),
            "rubric_t0": statistics.fmean(rubric_t0[k] for k in idx),
            "generic_t0": statistics.fmean(generic_t0[k] for k in idx),
        }
    total_s = time.perf_counter() - t0
    out = {
        "model": args.model or "SmolLM2-135M-Instruct (embedded)",
        "trajectories": len(rows),
        "tasks": args.tasks,
        "criteria_per_rubric": len(rows[0][3].criteria),
        "repeats": args.repeats,
        "temperature": args.temperature,
        "rubric": res_rubric,
        "generic": res_generic,
        "by_variant": by_variant,
        "mean_digit_mass": digit_mass,
        "seconds": {"load": load_s, "rubric_scoring": rubric_s, "generic_scoring": generic_s, "total": total_s},
        "time_ratio_rubric_vs_generic": rubric_s / max(generic_s, 1e-9),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))

    print(f"judge benchmark: {len(rows)} trajectories, {args.tasks} tasks, hf judge = SmolLM2-135M, "
          f"{args.repeats} samples at T={args.temperature}")
    hdr = f"{'metric':28} {'rubric':>10} {'generic':>10}"
    print(hdr + "\n" + "-" * len(hdr))
    for key in res_rubric:
        print(f"{key:28} {res_rubric[key]:10.3f} {res_generic[key]:10.3f}")
    print(f"{'scoring time (s)':28} {rubric_s:10.1f} {generic_s:10.1f}   (ratio {out['time_ratio_rubric_vs_generic']:.1f}x)")
    print("\nmean reward by trajectory variant (label = rules judge):")
    print(f"{'variant':14} {'label':>7} {'rubric':>7} {'generic':>8}")
    for v, d in by_variant.items():
        print(f"{v:14} {d['label']:7.3f} {d['rubric_t0']:7.3f} {d['generic_t0']:8.3f}")
    print(f"\nmean probability mass on digit tokens: {digit_mass:.2f}; total {total_s:.0f}s; wrote {args.out}")


if __name__ == "__main__":
    main()
