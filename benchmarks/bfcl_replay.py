"""Replay every BFCL multi-turn task's ground truth through the BFCL MCP server and score it.

For each task (800 over the four categories): every ground-truth call is sent over MCP with the
episode id ``f"{task.id}-{10 hex}"`` (the native agent's form), the same call is run in-process on a
BFCL instance built the way BFCL's executor builds it (the baseline), the two result texts are
compared, and the recorded calls (as a trajectory, split by user turn) go through
``bfcl_multi_turn.check`` — BFCL's own multi-turn checker.

Reports: server cold start, tools per class, the fraction of tasks whose replay the checker
accepts, the fraction of calls whose MCP result equals the direct result, argument-validation
rejections, and call latency p50/p90 over MCP vs direct (ratio). JSON goes to
``benchmarks/results/bfcl_replay.json``.

    .venv/bin/python benchmarks/bfcl_replay.py [--limit N]   # N tasks per category (default all)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

from atlas_plugins.evaluation.suites import bfcl_multi_turn as bfcl
from atlas_plugins.evaluation.suites.bfcl_server import (
    BFCL_SERVERS,
    bfcl_toolspace,
    find_entry,
    new_instance,
    render_result,
)
from atlas_plugins.toolspace import Toolspace
from atlas_plugins.toolspace.toolspace import truncate
from atlas_plugins.types import ToolCallRecord, Trajectory, split_qualified

RESULTS = Path(__file__).parent / "results" / "bfcl_replay.json"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="tasks per category (default: all 200)")
    args = ap.parse_args()

    tasks = bfcl.load_tasks(limit=args.limit)
    t0 = time.perf_counter()
    ts = bfcl_toolspace()
    ts.start()
    cold_start = time.perf_counter() - t0
    tools_per_class = {s.name: len(s.tools) for s in ts.servers}

    mcp_ms: list[float] = []
    direct_ms: list[float] = []
    n_calls = same = rejected = 0
    mismatches: list[dict] = []
    by_cat: dict[str, list[int]] = {}
    failures: list[dict] = []
    try:
        for task in tasks:
            entry = find_entry(task.id)
            episode = f"{task.id}-0123456789"
            direct = {}  # class name -> instance, as BFCL's executor builds them
            records: list[ToolCallRecord] = []
            starts: list[int] = []
            turn = 0
            for i, calls in enumerate(bfcl.ground_truth_calls(task)):
                starts.append(turn)
                for name, arguments in calls:
                    server, tool = split_qualified(name)
                    cls = BFCL_SERVERS[server].class_name
                    turn += 1
                    t = time.perf_counter()
                    res = ts.call(server, tool, arguments, episode=episode)
                    mcp_ms.append((time.perf_counter() - t) * 1000)
                    inst = direct.get(cls) or direct.setdefault(cls, new_instance(cls, entry))
                    t = time.perf_counter()
                    try:
                        # BFCL classes keep (and later mutate) list arguments: give them a copy.
                        expected = render_result(getattr(inst, tool)(**copy.deepcopy(arguments)))
                    except Exception as exc:  # noqa: BLE001 - BFCL's own error text
                        expected = f"Error during execution: {exc}"
                    direct_ms.append((time.perf_counter() - t) * 1000)
                    n_calls += 1
                    got = res.text if res.ok else (res.error or "")
                    if res.error_type == "invalid_arguments":
                        rejected += 1
                    # The toolspace truncates long results (max_response_chars); compare likewise.
                    if got == truncate(expected, ts.config.max_response_chars)[0]:
                        same += 1
                    elif len(mismatches) < 20:
                        mismatches.append({"task": task.id, "call": name, "arguments": arguments,
                                           "mcp": got[:300], "direct": expected[:300]})
                    records.append(ToolCallRecord(turn=turn, name=name, arguments=arguments, ok=res.ok,
                                                  result=res.text[:200], error=res.error, error_type=res.error_type))
                turn += 1  # the agent's answer closes the user turn
            traj = Trajectory(task_id=task.id, tool_calls=records, metadata={"user_turn_at": starts})
            verdict = bfcl.check(task, traj)
            by_cat.setdefault(task.metadata["bfcl_category"], []).append(int(verdict["success"]))
            if not verdict["success"] and len(failures) < 20:
                failures.append({"task": task.id, **{k: verdict["details"].get(k) for k in ("error_type", "error_message")}})
    finally:
        ts.close()

    # Reference point in the same run: the embedded hub (same transport) on a trivial tool.
    hub_ms: list[float] = []
    with Toolspace.default(servers=["math"]) as hub:
        for _ in range(51):
            t = time.perf_counter()
            hub.call("math", "evaluate", {"expression": "1+2"}, episode="bench")
            hub_ms.append((time.perf_counter() - t) * 1000)

    accepted = sum(sum(v) for v in by_cat.values())
    out = {
        "tasks": len(tasks),
        "server_cold_start_s": round(cold_start, 3),
        "tools_per_class": tools_per_class,
        "checker_accepts": accepted,
        "checker_accept_fraction": round(accepted / len(tasks), 4),
        "accept_fraction_by_category": {k: round(sum(v) / len(v), 4) for k, v in by_cat.items()},
        "calls": n_calls,
        "mcp_equals_direct_fraction": round(same / n_calls, 4),
        "argument_rejections": rejected,
        "call_ms_p50_mcp": round(pct(mcp_ms, 0.5), 3),
        "call_ms_p90_mcp": round(pct(mcp_ms, 0.9), 3),
        "call_ms_p50_direct": round(pct(direct_ms, 0.5), 4),
        "mcp_over_direct_p50": round(pct(mcp_ms, 0.5) / max(pct(direct_ms, 0.5), 1e-6), 1),
        "embedded_hub_call_ms_p50": round(pct(hub_ms[1:], 0.5), 3),
        "mismatches": mismatches,
        "failures": failures,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")

    print(f"{'metric':<34} value")
    for key in ("tasks", "server_cold_start_s", "checker_accept_fraction", "calls", "mcp_equals_direct_fraction",
                "argument_rejections", "call_ms_p50_mcp", "call_ms_p90_mcp", "call_ms_p50_direct", "mcp_over_direct_p50", "embedded_hub_call_ms_p50"):
        print(f"{key:<34} {out[key]}")
    for cat, frac in out["accept_fraction_by_category"].items():
        print(f"  accept {cat:<27} {frac}")
    print("tools per class: " + ", ".join(f"{k} {v}" for k, v in tools_per_class.items()))
    print(f"mean MCP call {statistics.mean(mcp_ms):.2f} ms; wrote {RESULTS}")


if __name__ == "__main__":
    main()
