"""Benchmark of the ``code_interpreter`` executors.

Measures, in one run on this machine: cold start of a ``local`` (bubblewrap) session, warm
cell latency (p50/p95), the round trip of one tool call through the sandbox bridge vs a direct
``toolspace.call`` (the baseline), and the context tokens (embedded SmolLM2 tokenizer) of one
multi-tool task done with direct ``<tool_call>`` turns vs one ``code_interpreter`` program.

Run: ``.venv/bin/python benchmarks/executor.py [--cells 300] [--starts 15]``.
Writes ``benchmarks/results/executor.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = str(ROOT / "tests" / "servers" / "exec_math_server.py")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


TEXT = ("the quick brown fox jumps over the lazy dog while seven curious otters watch from the riverbank "
        "and a patient heron waits for small silver fish near the old wooden bridge at dawn ") * 3
TASK = ("Split the text below into words, compute statistics (count, sum, mean, min, max) of the word "
        "lengths, then report the mean word length multiplied by the number of words.\n\nText: " + TEXT.strip())


def token_comparison(ts, session) -> dict:
    from atlas_plugins.orchestration import code_interpreter_prompt, code_interpreter_schema
    from atlas_plugins.policy.embedded import load_tokenizer

    tok = load_tokenizer(None)
    def count(msgs: list[dict]) -> int:
        ids = tok.apply_chat_template(msgs, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        return len(ids[0]) if ids and isinstance(ids[0], list) else len(ids)

    tools = [t for t in ts.list_tools("math") if t.name in ("words", "stats", "multiply")]

    # Direct tool calls: schemas in the prompt, one <tool_call> turn per call, every result in context.
    schemas = "\n".join(json.dumps({"name": t.qualified_name, "description": t.description,
                                    "parameters": t.input_schema}) for t in tools)
    msgs = [{"role": "system", "content": "You can call these tools with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>:\n" + schemas},
            {"role": "user", "content": TASK}]
    words = ts.call("math", "words", {"text": TEXT}, episode="bench-direct")
    lengths = [len(w) for w in words.content] if isinstance(words.content, list) else [len(w) for w in eval(words.content)]
    stats = ts.call("math", "stats", {"numbers": lengths}, episode="bench-direct")
    product = ts.call("math", "multiply", {"a": stats.content["mean"], "b": stats.content["count"]}, episode="bench-direct")
    for name, args, res in (("math:words", {"text": TEXT}, words),
                            ("math:stats", {"numbers": lengths}, stats),
                            ("math:multiply", {"a": stats.content["mean"], "b": stats.content["count"]}, product)):
        msgs.append({"role": "assistant", "content": f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"})
        msgs.append({"role": "user", "content": f"<tool_response>{res.text}</tool_response>"})
    value = product.content["result"] if isinstance(product.content, dict) else product.content
    answer = f"<answer>{value}</answer>"
    msgs.append({"role": "assistant", "content": answer})
    direct = count(msgs)

    # One code_interpreter program: intermediate results stay in the sandbox.
    program = ("m = MCPServer('math')\n"
               f"words = m.words(text={TEXT!r})\n"
               "s = m.stats(numbers=[len(w) for w in words])\n"
               "m.multiply(a=s['mean'], b=s['count'])")
    result = session.run(program)
    assert result.ok, result
    ptc_msgs = [{"role": "system", "content": code_interpreter_prompt(ts) + "\n" + json.dumps(code_interpreter_schema())},
                {"role": "user", "content": TASK},
                {"role": "assistant", "content": f"<tool_call>{json.dumps({'name': 'code_interpreter', 'arguments': {'code': program}})}</tool_call>"},
                {"role": "user", "content": f"<tool_response>{result.observation()}</tool_response>"},
                {"role": "assistant", "content": answer}]
    ptc = count(ptc_msgs)
    return {"direct_tokens": direct, "code_interpreter_tokens": ptc, "change": (ptc - direct) / direct,
            "answers_agree": result.value == repr(value)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--starts", type=int, default=15)
    opts = parser.parse_args()

    from atlas_plugins.orchestration.executors.local import LocalExecutor
    from atlas_plugins.toolspace import Toolspace

    ts = Toolspace.from_dict({"servers": {"math": {"command": "python", "args": [SERVER]}}}).start()
    ex = LocalExecutor(max_calls_per_cell=100, timeout=30)  # the in-cell loop below makes 100 calls
    cold = []
    for _ in range(opts.starts):
        t0 = time.perf_counter()
        s = ex.open_session(ts)
        cold.append((time.perf_counter() - t0) * 1000)
        s.close()
    s = ex.open_session(ts, episode="bench")
    s.run("m = MCPServer('math')\nx = 0")
    warm = []
    for i in range(opts.cells):
        t0 = time.perf_counter()
        r = s.run(f"x += {i}\nx")
        warm.append((time.perf_counter() - t0) * 1000)
        assert r.ok
    direct, bridged = [], []
    for _ in range(opts.cells):  # interleaved so both see the same server state and load
        t0 = time.perf_counter()
        assert ts.call("math", "add", {"a": 1, "b": 2}, episode="bench").ok
        direct.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        assert s.run("m.add(a=1, b=2)").ok
        bridged.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    n_loop = min(opts.cells, 100)  # within max_calls_per_cell above
    assert s.run(f"for _ in range({n_loop}):\n    m.add(a=1, b=2)").ok
    in_cell = (time.perf_counter() - t0) * 1000 / n_loop
    tokens = token_comparison(ts, s)
    s.close()
    ts.close()

    res = {
        "cold_start_ms": {"p50": statistics.median(cold), "p95": pct(cold, 0.95)},
        "warm_cell_ms": {"p50": statistics.median(warm), "p95": pct(warm, 0.95)},
        "direct_call_ms": {"p50": statistics.median(direct), "p95": pct(direct, 0.95)},
        "bridged_cell_with_one_call_ms": {"p50": statistics.median(bridged), "p95": pct(bridged, 0.95)},
        "bridge_overhead_ms_p50": statistics.median(bridged) - statistics.median(direct),
        "bridged_call_ratio_p50": statistics.median(bridged) / statistics.median(direct),
        "in_cell_loop_ms_per_call": in_cell,
        "in_cell_loop_overhead_ms": in_cell - statistics.mean(direct),
        "tokens": tokens,
        "goals": {"warm_cell_p50_ms": 20, "bridge_overhead_p50_ms": 2, "cold_start_ms": 500},
        "n": {"cells": opts.cells, "starts": opts.starts},
        "python": sys.version.split()[0],
    }
    out = ROOT / "benchmarks" / "results" / "executor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    rows = [
        ("cold start (bwrap + interpreter)", res["cold_start_ms"], "≤ 500"),
        ("warm cell", res["warm_cell_ms"], "≤ 20"),
        ("direct toolspace.call (baseline)", res["direct_call_ms"], ""),
        ("cell with one bridged call", res["bridged_cell_with_one_call_ms"], ""),
    ]
    print(f"{'measure':40s} {'p50 ms':>9s} {'p95 ms':>9s}  goal")
    for name, d, goal in rows:
        print(f"{name:40s} {d['p50']:9.2f} {d['p95']:9.2f}  {goal}")
    print(f"bridge overhead p50: {res['bridge_overhead_ms_p50']:.2f} ms (x{res['bridged_call_ratio_p50']:.2f} of direct; goal ≤ 2 ms)")
    print(f"in-cell loop: {in_cell:.2f} ms/call, {res['in_cell_loop_overhead_ms']:.2f} ms over the direct mean")
    print(f"context tokens: direct {tokens['direct_tokens']}, code_interpreter {tokens['code_interpreter_tokens']} "
          f"({tokens['change']:+.0%}); answers agree: {tokens['answers_agree']}")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
