"""GRPO signal: what the advantages of a finished run actually reward.

Reads the trajectory log a GRPO run writes (``trajectories.jsonl``: one scored episode per line,
a group's episodes consecutive) and recomputes each group's advantages the way TRL does with
``scale_rewards="group"`` (reward minus the group mean, over the group's std + 1e-4). Then it
asks whether that signal points at solving tasks:

* how many groups have rewards that differ at all, and how many hold a solved episode;
* whether the reward ordering within a group agrees with success (a failed episode scoring at
  or above a solved one would push the policy away from solving);
* how much reward a failed episode collects (partial rubric credit);
* which share of the advantage mass sits in groups where success differs, which share each
  rubric category carries, and which share comes from near-tied groups (a reward range of at
  most 0.1, which group scaling blows up to full-size advantages);
* the share of the advantage variance that the success indicator explains;
* training success per task template.

Stdlib only, no model: it can run beside a training job.

    python benchmarks/grpo_signal.py DEMO_DIR [DEMO_DIR ...]        # DIR/grpo/trajectories.jsonl
    python benchmarks/grpo_signal.py RUN_DIR --group 4 --json-out FILE
    python benchmarks/grpo_signal.py DEMO_DIR --alpha '{"TF": 0.7, "TA": 0.1, "TG": 0.1, "PA": 0.1}' --scale batch

``--alpha`` and ``--scale batch`` recompute the same episodes' rewards and advantages under another
training reward, an offline estimate of what that reward would have pushed towards (the episodes
themselves would differ under a policy trained on it).

What it does not cover: groups dropped by dynamic sampling before training (they are not logged)
and any criterion-level detail beyond the four rubric categories.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = ("TF", "TA", "TG", "PA")
DEFAULT_ALPHA = {"TF": 0.4, "TA": 0.3, "TG": 0.2, "PA": 0.1}  # the ``atlas`` aggregator's default
NEAR_TIE = 0.1


def trajectory_log(path: Path) -> Path:
    for candidate in (path / "grpo" / "trajectories.jsonl", path / "trajectories.jsonl", path):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no trajectories.jsonl in or under {path}")


def groups_of(rows: list[dict], size: int) -> list[list[dict]]:
    """Consecutive rows of one (step, task, design), cut into groups of ``size``."""
    out: list[list[dict]] = []
    run: list[dict] = []

    def key(r: dict) -> tuple:
        return (r["step"], r["task_id"], (r["trajectory"].get("metadata") or {}).get("design"))

    for r in rows:
        if run and key(r) != key(run[-1]):
            out += [run[i : i + size] for i in range(0, len(run), size)]
            run = []
        run.append(r)
    out += [run[i : i + size] for i in range(0, len(run), size)]
    short = [g for g in out if len(g) != size]
    if short:  # a wrong --group, or a run cut off mid-group: say so rather than count them
        print(f"  note: {len(short)} group(s) of other than {size} episodes left out (is --group right?)")
    unscored = [g for g in out if len(g) == size and any(r.get("reward") is None for r in g)]
    if unscored:
        print(f"  note: {len(unscored)} group(s) with an unscored episode left out")
    return [g for g in out if len(g) == size and all(r.get("reward") is not None for r in g)]


def advantages(rewards: list[float], scale: float | None = None) -> list[float]:
    """TRL's: the reward minus the group mean, over ``scale`` + 1e-4 (the group's std by default,
    ``scale_rewards="group"``; the step's std for ``"batch"``)."""
    mean = statistics.fmean(rewards)
    std = statistics.stdev(rewards) if scale is None else scale  # torch.std is unbiased, as here
    return [(r - mean) / (std + 1e-4) for r in rewards]


def rescored(groups: list[list[dict]], alpha: dict[str, float]) -> list[list[dict]]:
    """The groups with each reward recomputed from its category scores under ``alpha`` (the
    ``atlas`` aggregator's formula); success is unchanged, since it depends on TF only."""
    out = []
    for g in groups:
        new = []
        for r in g:
            cats = {c: float(v) for c, v in (r.get("by_category") or {}).items() if c in alpha}
            weight = sum(alpha[c] for c in cats)
            new.append(r | {"reward": sum(alpha[c] * v for c, v in cats.items()) / weight if weight else 0.0})
        out.append(new)
    return out


def _batch(group: list[dict]) -> tuple[str, int]:
    return (str(group[0].get("run_id", "")), int(group[0]["step"]))


def analyse(groups: list[list[dict]], alpha: dict[str, float], scale: str = "group") -> dict:
    total_weight = sum(alpha.values())
    step_std: dict[int, float] = {}
    if scale == "batch":
        # TRL's batch is one step's rollouts of one run: keyed by (run, step), never pooled across runs.
        by_step: dict[tuple[str, int], list[float]] = defaultdict(list)
        for g in groups:
            by_step[_batch(g)] += [float(r["reward"]) for r in g]
        step_std = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in by_step.items()}
    differing = with_success = top_is_success = pairs = inverted = 0
    mass = mass_success_varies = mass_near_tie = 0.0
    by_category: Counter[str] = Counter()
    var_total = var_success = 0.0
    for g in groups:
        rewards = [float(r["reward"]) for r in g]
        solved = [bool(r["success"]) for r in g]
        if any(solved):
            with_success += 1
            top = max(rewards)
            top_is_success += all(s for r, s in zip(rewards, solved, strict=True) if r == top)
        for i, si in enumerate(solved):
            for j, sj in enumerate(solved):
                if si and not sj:
                    pairs += 1
                    inverted += rewards[j] >= rewards[i]
        if len(set(rewards)) == 1:
            continue
        differing += 1
        adv = advantages(rewards, step_std[_batch(g)] if scale == "batch" else None)
        group_mass = sum(abs(a) for a in adv)
        mass += group_mass
        mass_success_varies += group_mass if len(set(solved)) > 1 else 0.0
        mass_near_tie += group_mass if max(rewards) - min(rewards) <= NEAR_TIE else 0.0
        std = step_std[_batch(g)] if scale == "batch" else statistics.stdev(rewards)
        for c in CATEGORIES:
            vals = [float((r.get("by_category") or {}).get(c, 0.0)) for r in g]
            m = statistics.fmean(vals)
            by_category[c] += sum(abs(alpha.get(c, 0.0) / total_weight * (v - m) / (std + 1e-4)) for v in vals)
        # Least-squares projection of the advantage vector on the (centred) success indicator.
        centred = [float(s) - statistics.fmean(map(float, solved)) for s in solved]
        norm = sum(x * x for x in centred)
        var_total += sum(a * a for a in adv)
        if norm > 0:
            coef = sum(a * x for a, x in zip(adv, centred, strict=True)) / norm
            var_success += coef * coef * norm
    episodes = [r for g in groups for r in g]
    failed = [float(r["reward"]) for r in episodes if not r["success"]]
    per_template: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in episodes:
        template = ((r["trajectory"].get("task") or {}).get("metadata") or {}).get("template", "?")
        per_template[template][0] += bool(r["success"])
        per_template[template][1] += 1
    category_total = sum(by_category.values()) or 1.0
    return {
        "groups": len(groups),
        "episodes": len(episodes),
        "training_success": statistics.fmean(bool(r["success"]) for r in episodes) if episodes else 0.0,
        "groups_with_differing_rewards": differing,
        "groups_with_a_solved_episode": with_success,
        "groups_whose_top_reward_is_solved": top_is_success,
        "solved_failed_pairs": pairs,
        "pairs_where_the_failed_scores_at_least_as_high": inverted,
        "failed_episodes": len(failed),
        "failed_mean_reward": statistics.fmean(failed) if failed else 0.0,
        "failed_fraction_with_reward": sum(x > 0 for x in failed) / len(failed) if failed else 0.0,
        "advantage_mass_in_groups_where_success_differs": mass_success_varies / mass if mass else 0.0,
        "advantage_mass_in_near_tied_groups": mass_near_tie / mass if mass else 0.0,
        "advantage_share_by_category": {c: by_category[c] / category_total for c in CATEGORIES},
        "advantage_variance_explained_by_success": var_success / var_total if var_total else 0.0,
        "success_by_template": {t: f"{s}/{n}" for t, (s, n) in sorted(per_template.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="demo folders, GRPO output folders or trajectories.jsonl files")
    ap.add_argument("--group", type=int, default=4, help="episodes per group (num_generations)")
    ap.add_argument("--alpha", type=json.loads, default=None,
                    help="category weights (JSON): rewards are recomputed from the logged category scores, "
                    "to see what another training reward would have rewarded in the same episodes")
    ap.add_argument("--scale", choices=("group", "batch"), default="group", help="TRL's scale_rewards to recompute with")
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "grpo_signal.json")
    args = ap.parse_args()
    if args.alpha is not None and (
        not isinstance(args.alpha, dict) or any(not isinstance(v, (int, float)) or v < 0 for v in args.alpha.values())
    ):
        raise SystemExit(f"--alpha: a JSON object of non-negative weights, got {args.alpha!r}")
    alpha = {**DEFAULT_ALPHA, **(args.alpha or {})}
    if not any(v > 0 for v in alpha.values()):
        raise SystemExit(f"--alpha: at least one weight must be positive, got {alpha}")
    per_run, every = {}, []
    for run in args.runs:
        rows = [json.loads(line) for line in trajectory_log(run).read_text().splitlines() if line.strip()]
        groups = groups_of(rows, args.group)
        if args.alpha:
            groups = rescored(groups, alpha)
        per_run[str(run)] = analyse(groups, alpha, args.scale)
        every += groups
    result = {"alpha": alpha, "scale": args.scale, "all": analyse(every, alpha, args.scale), "runs": per_run}
    a = result["all"]
    print(f"{a['groups']} groups, {a['episodes']} episodes, training success {a['training_success']:.3f}")
    print(f"  rewards differ in {a['groups_with_differing_rewards']}; a solved episode in "
          f"{a['groups_with_a_solved_episode']}, the top reward is a solved one in {a['groups_whose_top_reward_is_solved']}")
    print(f"  (solved, failed) pairs {a['solved_failed_pairs']}, failed scoring at least as high: "
          f"{a['pairs_where_the_failed_scores_at_least_as_high']}")
    print(f"  failed episodes: mean reward {a['failed_mean_reward']:.3f}, {a['failed_fraction_with_reward']:.0%} above 0")
    print(f"  advantage mass: {a['advantage_mass_in_groups_where_success_differs']:.0%} in groups where success "
          f"differs, {a['advantage_mass_in_near_tied_groups']:.0%} in near-tied groups (range <= {NEAR_TIE})")
    print("  advantage share by category: "
          + ", ".join(f"{c} {v:.0%}" for c, v in a["advantage_share_by_category"].items()))
    print(f"  advantage variance explained by success: {a['advantage_variance_explained_by_success']:.0%}")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
