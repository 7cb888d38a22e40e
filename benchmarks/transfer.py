"""Transfer: the adapters of finished `atlas demo` runs on tasks of another generator seed.

A demo trains on the default task set and evaluates on its 27 level-1 held-out tasks. This asks
whether the adapter learned the skill or those tasks: it generates a fresh task set with
``atlas tasks generate --seed N``, keeps its held-out tasks up to ``--max-difficulty`` (all of
them: no subset is chosen), reports how many share a template and parameters with a default
training or held-out task, and evaluates each demo's final adapter on them under each design
with the demo's evaluation caps (greedy, 6 turns, 128 tokens per turn), one process at a time.

    python benchmarks/transfer.py --seed 7 DEMO_DIR [DEMO_DIR ...]   # ~2-4 min per adapter and design

An evaluation whose output folder already holds ``results.json`` is read, not run again.
Results: ``benchmarks/results/transfer_seed<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def atlas(*args: str) -> list[str]:
    return [sys.executable, "-m", "atlas_plugins.cli", *args]


def overlap(tasks: list[dict]) -> dict[str, int]:
    """Tasks that share a template and parameters (or the prompt) with a default task."""
    from atlas_plugins.envs.taskgen import load_default_tasks

    def key(template: object, params: object) -> tuple[object, str]:
        return template, json.dumps(params, sort_keys=True)

    default = load_default_tasks()
    keys = {split: {key(t.metadata.get("template"), t.metadata.get("params")) for t in default if t.split == split}
            for split in ("train", "heldout")}
    prompts = {split: {t.prompt for t in default if t.split == split} for split in ("train", "heldout")}
    out = {}
    for split in ("train", "heldout"):
        out[f"same_template_and_params_as_default_{split}"] = sum(
            key(t["metadata"].get("template"), t["metadata"].get("params")) in keys[split] for t in tasks)
        out[f"same_prompt_as_default_{split}"] = sum(t["prompt"] in prompts[split] for t in tasks)
    out["templates"] = len({t["metadata"].get("template") for t in tasks})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demos", type=Path, nargs="+", help="finished `atlas demo --out` folders (each with adapter/)")
    ap.add_argument("--seed", type=int, default=7, help="generator seed of the fresh task set")
    ap.add_argument("--max-difficulty", type=int, default=1)
    ap.add_argument("--designs", default="itl,itl+ptc")
    ap.add_argument("--work", type=Path, default=None, help="folder for the task file and evaluations "
                    "(default: next to the first demo)")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    for demo in args.demos:
        if not (demo / "adapter" / "adapter_config.json").is_file():
            raise SystemExit(f"{demo}: no adapter/ (is it a finished `atlas demo --out` folder?)")
    work = args.work or args.demos[0].parent
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    every = work / f"seed{args.seed}_all.jsonl"
    if not every.is_file():
        subprocess.run(atlas("tasks", "generate", "--seed", str(args.seed), "--out", str(every)), check=True, env=env,
                       stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in every.read_text().splitlines() if line.strip()]
    tasks = [t for t in rows if t["split"] == "heldout" and t["difficulty"] <= args.max_difficulty]
    task_file = work / f"seed{args.seed}_heldout_l{args.max_difficulty}.jsonl"
    task_file.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    report: dict = {"seed": args.seed, "tasks": len(tasks), "overlap": overlap(tasks), "runs": []}
    print(f"{len(tasks)} held-out tasks of generator seed {args.seed}; overlap with the default set: "
          f"{report['overlap']}", flush=True)
    for demo in args.demos:
        for design in [d.strip() for d in args.designs.split(",") if d.strip()]:
            out = work / f"seed{args.seed}_eval_{demo.name}_{design.replace('+', '_')}"
            if not (out / "results.json").is_file():
                subprocess.run(atlas("eval", "--tasks", str(task_file), "--design", design, "--adapter",
                                     str(demo / "adapter"), "--limit", "0", "--max-turns", "6", "--max-new-tokens",
                                     "128", "--out", str(out)), check=True, env=env, stdout=subprocess.DEVNULL)
            cell = json.loads((out / "results.json").read_text())["results"][0]
            row = {"demo": str(demo), "design": design, "success": cell["success"], "reward": cell["reward"],
                   "tasks": cell["tasks"], "wall_s": cell.get("wall_s")}
            report["runs"].append(row)
            print(f"{demo.name} {design}: success {row['success']:.3f}, reward {row['reward']:.3f} "
                  f"({row['tasks']} tasks)", flush=True)
    json_out = args.json_out or HERE / "results" / f"transfer_seed{args.seed}.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2))
    print(f"wrote {json_out}")


if __name__ == "__main__":
    main()
