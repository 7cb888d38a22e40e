"""Peak RSS of the demo's GRPO phase and the evaluation after it, under memory settings.

Each case copies the finished early phases of a demo folder (``progress.json``, the warm-start
adapter and the evaluations before and after it), so ``atlas demo`` keeps them and runs only
``--grpo-steps`` GRPO steps and the held-out evaluation after them, in its own process; the
peak is the kernel's ``ru_maxrss`` of that process (what ``/usr/bin/time -v`` prints). Results do
not depend on the memory settings (the script checks that every case got the same GRPO rewards
and evaluation), so a case differs from the others only in memory and time.

    python benchmarks/demo_memory.py DEMO_DIR            # the three cases of BENCHMARKS.md, ~35 min
    python benchmarks/demo_memory.py DEMO_DIR --cases '{"defaults": {}, "trim": {"trim_memory": true}}'

``DEMO_DIR`` is any demo folder that finished its warm start (e.g. one of
``benchmarks/learning.py``); its ``results.json`` or ``progress.json`` gives the seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {
    "defaults": {},
    "trim": {"trim_memory": True},
    "trim+budget": {"trim_memory": True, "memory_budget_gb": 2.5},
}
KEPT = ("progress.json", "warm_start", "eval_before_*", "eval_after_warm_start_*")


def seed_of(folder: Path) -> int:
    phases = json.loads((folder / "progress.json").read_text())["phases"]
    return int(phases["warm_start"]["key"]["seed"])


def run_case(src: Path, name: str, settings: dict, work: Path) -> dict:
    out = work / name
    out.mkdir(parents=True)
    for pattern in KEPT:
        for item in src.glob(pattern):
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    cmd = [
        sys.executable,
        "-m",
        "atlas_plugins.cli",
        "demo",
        "--out",
        str(out),
        "--json",
        "--settings",
        json.dumps(settings),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.stdout is not None
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"case {name} failed (exit {os.waitstatus_to_exitcode(status)}); its folder: {out}")
    res = json.loads((out / "results.json").read_text())
    return {
        "case": name,
        "settings": settings,
        "peak_rss_gib": usage.ru_maxrss / 1024**2,  # KiB on Linux
        "wall_s": wall,
        "grpo_s": res["timings"].get("grpo"),
        "eval_after_s": res["timings"].get("eval_after"),
        "grpo_reward": res["grpo"]["reward"],
        "after": {d: [v["success"], v["reward"]] for d, v in res["evaluations"]["after"].items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_dir", type=Path, help="a demo folder that finished its warm start")
    ap.add_argument("--grpo-steps", type=int, default=3)
    ap.add_argument("--cases", default=json.dumps(CASES), help="JSON: case name -> extra demo settings")
    ap.add_argument("--work", type=Path, default=None, help="where the case folders go (default: a temp dir)")
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "demo_memory.json")
    args = ap.parse_args()
    if not (args.demo_dir / "warm_start" / "adapter").is_dir():
        raise SystemExit(f"{args.demo_dir} has no warm_start/adapter: run atlas demo there first")
    cases = json.loads(args.cases)
    base = {"seed": seed_of(args.demo_dir), "grpo_steps": args.grpo_steps}
    work = args.work or Path(tempfile.mkdtemp(prefix="atlas-demo-memory-"))
    rows = []
    for name, extra in cases.items():
        row = run_case(args.demo_dir, name, base | extra, work)
        rows.append(row)
        print(
            f"{name:12s} peak RSS {row['peak_rss_gib']:.2f} GiB, GRPO {row['grpo_s']:.0f} s, "
            f"evaluation {row['eval_after_s']:.0f} s, results {row['after']}",
            flush=True,
        )
    same = all(r["grpo_reward"] == rows[0]["grpo_reward"] and r["after"] == rows[0]["after"] for r in rows)
    print("every case trained and evaluated identically" if same else "WARNING: the cases' results differ")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps({"demo_dir": str(args.demo_dir), "base": base, "identical": same, "rows": rows}, indent=2)
    )
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
