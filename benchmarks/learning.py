"""Learning: the default `atlas demo` over several seeds — held-out reward/success before and after.

Each seed runs `atlas demo --seed S --json` in its own process (so peak memory is that process's
max RSS, read from the OS after it exits). Prints a table per design with mean ± std over seeds
and the relative change of the mean held-out reward; writes benchmarks/results/learning.json.

    python benchmarks/learning.py --seeds 0,1,2          # ~100 min per seed on 2 idle cores
    python benchmarks/learning.py --collect DIR [DIR ...]  # the table from finished demo folders
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_seed(seed: int, out: Path, extra: list[str]) -> dict:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-m", "atlas_plugins.cli", "demo", "--out", str(out), "--seed", str(seed), "--json", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    # ru_maxrss of RUSAGE_CHILDREN is the largest child's peak (KiB on Linux); children run
    # one at a time, so a growth means this child set a new maximum.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    results = json.loads((out / "results.json").read_text())
    return {
        "seed": seed,
        "wall_s": wall,
        "peak_rss_mib": peak_kib / 1024 if peak_kib > before else None,
        "timings": results["timings"],
        "kept_phases": results.get("kept_phases", []),
        "grpo": results.get("grpo"),
        **{tag: results["evaluations"].get(tag) for tag in TAGS},
    }


TAGS = ("before", "after_warm_start", "after")


def collect(folder: Path) -> dict:
    """One demo folder's evaluations: ``results.json`` of a finished demo, else the phases a
    stopped one finished (``progress.json``; wall time and GRPO curve then unknown)."""
    if (folder / "results.json").is_file():
        res = json.loads((folder / "results.json").read_text())
        return {
            "seed": res["settings"]["seed"],
            "wall_s": res["wall_s"],
            "peak_rss_mib": None,
            "timings": res["timings"],
            "kept_phases": res.get("kept_phases", []),
            "grpo": res.get("grpo"),
            "folder": str(folder),
            **{tag: res["evaluations"].get(tag) for tag in TAGS},
        }
    phases = json.loads((folder / "progress.json").read_text())["phases"]
    evals: dict[str, dict] = {}
    seed = 0
    for name, entry in phases.items():
        if name.startswith("eval/"):
            _, tag, design = name.split("/", 2)
            evals.setdefault(tag, {})[design] = entry["result"]
            seed = entry["key"].get("seed", seed)
    return {
        "seed": seed,
        "wall_s": float("nan"),
        "peak_rss_mib": None,
        "timings": {},
        "grpo": None,
        "folder": str(folder),
        "partial": True,
        **{tag: evals.get(tag) for tag in TAGS},
    }


def funnel(path: Path) -> dict:
    """How far each held-out episode of one evaluation file got along its reference solution:
    listed the right server's tools, loaded the right tool's schema (ITL), called a right tool,
    solved it (every TF criterion met, as ``rubric.is_success``). Read from the episodes the demo
    wrote (``eval_<tag>_<design>.jsonl``)."""
    from atlas_plugins.envs.taskgen import HELDOUT_TEMPLATES
    from atlas_plugins.rewards.rubric import FULL_SCORE  # the threshold rubric.is_success applies

    counts = {
        "episodes": 0,
        "listed_right_server": 0,
        "loaded_right_tool": 0,
        "called_right_tool": 0,
        "solved": 0,
        # Held-out tasks of templates that training also has, apart from the templates that are
        # never trained (HELDOUT_TEMPLATES): the part of the score a recipe can move by what it
        # trains. Reported beside the whole set, never instead of it.
        "episodes_seen_template": 0,
        "solved_seen_template": 0,
    }
    for line in path.read_text().splitlines():
        ep = json.loads(line)
        solution = ep["task"]["metadata"].get("reference_solution") or []
        servers, tools = {s["server"] for s in solution}, {f"{s['server']}:{s['tool']}" for s in solution}
        listed = loaded = called = False
        for call in ep["tool_calls"]:
            args = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
            if call.get("name") == "fetch_tools" and args.get("server") in servers:
                listed = True
            elif call.get("name") == "get_selected_tools" and isinstance(args.get("tools"), list):
                loaded |= any(f"{args.get('server')}:{t}" in tools for t in args["tools"])
            elif call.get("name") == "code_interpreter":
                code = str(args.get("code", ""))
                called |= any(f".{t.split(':', 1)[1]}(" in code for t in tools)
            elif call.get("name") in tools:
                called = True
        counts["episodes"] += 1
        counts["listed_right_server"] += listed
        counts["loaded_right_tool"] += loaded
        counts["called_right_tool"] += called
        solved = (ep.get("reward_by_category") or {}).get("TF", 0.0) >= FULL_SCORE  # as is_success
        counts["solved"] += solved
        if ep["task"]["metadata"].get("template") not in HELDOUT_TEMPLATES:
            counts["episodes_seen_template"] += 1
            counts["solved_seen_template"] += solved
    return counts


def summarize(runs: list[dict]) -> dict:
    designs = list(runs[0]["before"])
    table = {}
    for d in designs:
        row = {}
        for tag in TAGS:
            if any(r.get(tag) is None or d not in r[tag] for r in runs):
                continue  # e.g. --settings '{"eval_warm_start": false}'
            for key in ("reward", "success", "context_tokens"):
                vals = [r[tag][d][key] for r in runs]
                row[f"{tag}_{key}"] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals), "values": vals}
        if "after_reward" in row:
            b, a = row["before_reward"]["mean"], row["after_reward"]["mean"]
            row["relative_reward_change"] = (a - b) / b if b > 0 else None
            row["absolute_reward_change"] = a - b
        table[d] = row
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=None, help="keep the demo folders here (default: a temp dir)")
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "learning.json")
    ap.add_argument(
        "--collect",
        type=Path,
        nargs="+",
        default=None,
        help="summarize finished `atlas demo` folders (their results.json) instead of running",
    )
    ap.add_argument("extra", nargs="*", help="extra `atlas demo` flags after --")
    args = ap.parse_args()
    runs = []
    if args.collect:
        for folder in args.collect:
            runs.append(collect(folder))
        seeds = [r["seed"] for r in runs]
        root = Path(args.collect[0]).parent
    else:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        root = args.out or Path(tempfile.mkdtemp(prefix="atlas-learning-"))
        for seed in seeds:
            print(f"seed {seed} …", flush=True)
            runs.append(run_seed(seed, root / f"seed{seed}", args.extra))
            r = runs[-1]
            print(f"  {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mib'] or float('nan'):.0f} MiB", flush=True)
    table = summarize(runs)

    def cell(row: dict, key: str) -> str:
        v = row.get(key)
        return "–" if v is None else f"{v['mean']:.3f} ± {v['std']:.3f}"

    print(
        "\n| design | reward base | reward warm start | reward after GRPO | relative (base→GRPO) | "
        "success base | success warm start | success after GRPO |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for d, row in table.items():
        rel = row.get("relative_reward_change")
        print(
            f"| {d} | {cell(row, 'before_reward')} | {cell(row, 'after_warm_start_reward')} | {cell(row, 'after_reward')} | "
            f"{'–' if 'after_reward' not in row else 'n/a (base 0)' if rel is None else f'{rel:+.0%}'} | {cell(row, 'before_success')} | "
            f"{cell(row, 'after_warm_start_success')} | {cell(row, 'after_success')} |"
        )
    if args.collect:
        print(
            "\nHow far the held-out episodes got (right server listed / right schema loaded / right tool "
            "called / TF met), per folder and evaluation:"
        )
        for folder in args.collect:
            for f in sorted(Path(folder).glob("eval_*.jsonl")):
                c = funnel(f)
                print(
                    f"  {Path(folder).name}/{f.stem}: {c['episodes']} episodes: {c['listed_right_server']} / "
                    f"{c['loaded_right_tool']} / {c['called_right_tool']} / {c['solved']}; "
                    f"solved {c['solved_seen_template']} of the {c['episodes_seen_template']} of trained templates"
                )
    for r in runs:
        g = r.get("grpo") or {}
        kept = r.get("kept_phases") or []
        times = ", ".join(f"{k} kept" if k in kept else f"{k} {v:.0f} s" for k, v in r["timings"].items())
        print(
            f"seed {r['seed']}: wall {r['wall_s']:.0f} s{' in the last run' if kept else ''} ({times}); "
            f"GRPO reward per step {[round(x, 3) for x in g.get('reward', [])]}"
        )
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"seeds": seeds, "runs": runs, "table": table, "out": str(root)}, indent=2))
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
