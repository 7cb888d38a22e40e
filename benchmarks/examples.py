"""Wall time, peak memory and before/after rewards of the two adapter examples.

Runs ``examples/langgraph_in_place.py`` and ``examples/dspy_react.py`` one after the other, each
in its own process (as a user runs them), and records for each: wall time, the child's peak
resident memory (``os.wait4``'s resource usage of that process), and the
held-out reward / success before, after the warm start and after GRPO, read from the summary
JSON each example writes. The issue's goal: each example ≤ 300 s on CPU with the embedded
defaults.

Run:  python benchmarks/examples.py [--only langgraph|dspy] [--out benchmarks/results/examples.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {"langgraph": "examples/langgraph_in_place.py", "dspy": "examples/dspy_react.py"}


def run_example(name: str, workdir: Path) -> dict:
    out = workdir / name
    log = workdir / f"{name}.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(ROOT / EXAMPLES[name]), "--out", str(out)],
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        try:
            # wait4 reaps the child and gives its own resource usage (peak RSS in KiB on Linux).
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: do not leave the example running
            proc.kill()
            proc.wait()
            raise
    wall = time.perf_counter() - t0
    code = proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
    if code != 0:
        sys.stderr.write(log.read_text()[-6000:])
        raise SystemExit(f"{EXAMPLES[name]} failed with exit code {code}")
    summary = json.loads((out / "summary.json").read_text())
    row = {"example": EXAMPLES[name], "wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}
    for stage in ("before", "warm", "after"):  # "warm" is null when the example skips that evaluation
        row[stage] = {k: summary[stage][k] for k in ("reward", "success", "tool_calls")} if summary.get(stage) else None
    row["warm_start"] = summary.get("warm_start")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(EXAMPLES), default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "examples.json"))
    args = ap.parse_args()
    names = [args.only] if args.only else list(EXAMPLES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="atlas-examples-") as tmp:
        for name in names:
            print(f"running {EXAMPLES[name]} …", flush=True)
            row = run_example(name, Path(tmp))
            rows.append(row)
            b, w, a = row["before"], row["warm"], row["after"]
            warm = f" → warm {w['reward']:.3f}" if w else ""
            print(f"  {row['wall_s']:.0f} s, peak RSS {row['peak_rss_gib']} GiB; reward {b['reward']:.3f}{warm} → "
                  f"after GRPO {a['reward']:.3f}; success {b['success']:.0%} → {a['success']:.0%}", flush=True)
    out = Path(args.out)
    if args.only and out.exists():  # keep the other example's last row
        rows = [r for r in json.loads(out.read_text()).get("examples", []) if r["example"] != rows[0]["example"]] + rows
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "date": time.strftime("%Y-%m-%d"), "goal_s": 300, "examples": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
