"""Toolspace cold start and call overhead.

1. Cold start of the embedded toolspace (every server up, handshaken and listed), with the
   servers in one hub process over streamable HTTP (default) and one stdio process each.
2. Warm ``call_tool`` latency p50/p95 through ``Toolspace.call`` vs the bare SDK client
   session on the same server (a separate stdio process of the same embedded server), in
   the same run, interleaved so machine noise hits both alike.

Run: ``python benchmarks/toolspace.py [--calls 300] [--repeats 3]``. Prints a table and writes
``benchmarks/results/toolspace.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import atlas_plugins as atlas
from atlas_plugins.envs import EMBEDDED_SERVERS, stdio_command
from atlas_plugins.mcp_compat import StdioServerParameters, connect

RESULTS = Path(__file__).parent / "results" / "toolspace.json"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def cold_start(transport: str, repeats: int) -> dict:
    times, tools = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        ts = atlas.Toolspace.default(transport=transport)
        ts.start()
        times.append(time.perf_counter() - t0)
        tools = len(ts.list_tools())
        ts.close()
    return {"transport": transport, "servers": len(EMBEDDED_SERVERS), "tools": tools, "seconds": times, "median_s": statistics.median(times)}


def pick_call() -> tuple[str, str, dict]:
    """A cheap, stateless tool call on an embedded server."""
    with atlas.Toolspace.default(transport="hub") as ts:
        for server in ("math", "units", "unit_conversion", "timezones"):
            if server in ts.server_names:
                for t in ts.list_tools(server):
                    req = (t.input_schema or {}).get("required") or []
                    props = (t.input_schema or {}).get("properties") or {}
                    args = {}
                    ok = True
                    for name in req:
                        typ = (props.get(name) or {}).get("type")
                        if typ in ("number", "integer"):
                            args[name] = 3
                        elif typ == "array":
                            args[name] = [1, 2, 3]
                        else:
                            ok = False
                    if ok and ts.call(server, t.name, args).ok:
                        return server, t.name, args
    raise SystemExit("no cheap numeric tool found on the embedded servers")


async def bare_latencies(server: str, tool: str, args: dict, n: int) -> list[float]:
    cmd, cmd_args = stdio_command(server)
    async with connect(StdioServerParameters(command=cmd, args=cmd_args)) as session:
        client = session.inner  # the SDK's own client (mcp.Client on 2.x, ClientSession on 1.x)
        for _ in range(20):  # warm-up
            await client.call_tool(tool, args)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await client.call_tool(tool, args)
            out.append((time.perf_counter() - t0) * 1000)
        return out


def toolspace_latencies(server: str, tool: str, args: dict, n: int, transport: str = "stdio") -> list[float]:
    with atlas.Toolspace.default(servers=[server], transport=transport) as ts:
        for _ in range(20):
            ts.call(server, tool, args)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = ts.call(server, tool, args)
            out.append((time.perf_counter() - t0) * 1000)
            assert r.ok, r.error
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    cold = [cold_start("hub", a.repeats), cold_start("stdio", a.repeats)]
    server, tool, args = pick_call()
    # Interleave rounds of both so drift in machine load hits both equally.
    bare, ours, hub = [], [], []
    rounds = 3
    for _ in range(rounds):
        bare += asyncio.run(bare_latencies(server, tool, args, a.calls // rounds))
        ours += toolspace_latencies(server, tool, args, a.calls // rounds)
        # The default transport: the same server inside the hub process, over streamable HTTP.
        hub += toolspace_latencies(server, tool, args, a.calls // rounds, transport="hub")
    calls = {
        "call": f"{server}:{tool}",
        "bare_p50_ms": statistics.median(bare),
        "bare_p95_ms": pct(bare, 0.95),
        "toolspace_p50_ms": statistics.median(ours),
        "toolspace_p95_ms": pct(ours, 0.95),
    }
    calls["hub_p50_ms"] = statistics.median(hub)
    calls["hub_p95_ms"] = pct(hub, 0.95)
    calls["ratio_p50"] = calls["toolspace_p50_ms"] / calls["bare_p50_ms"]
    calls["ratio_p95"] = calls["toolspace_p95_ms"] / calls["bare_p95_ms"]

    print(f"{'cold start':<28}{'servers':>8}{'tools':>7}{'median s':>10}   all runs")
    for c in cold:
        print(f"{'embedded, ' + c['transport']:<28}{c['servers']:>8}{c['tools']:>7}{c['median_s']:>10.2f}   "
              + ", ".join(f"{t:.2f}" for t in c["seconds"]))
    print()
    print(f"warm call {calls['call']} ({len(ours)} calls each)")
    print(f"{'':<22}{'p50 ms':>9}{'p95 ms':>9}")
    print(f"{'bare SDK client':<22}{calls['bare_p50_ms']:>9.3f}{calls['bare_p95_ms']:>9.3f}")
    print(f"{'Toolspace.call':<22}{calls['toolspace_p50_ms']:>9.3f}{calls['toolspace_p95_ms']:>9.3f}")
    print(f"{'ratio':<22}{calls['ratio_p50']:>9.2f}{calls['ratio_p95']:>9.2f}")
    print(f"{'Toolspace.call (hub)':<22}{calls['hub_p50_ms']:>9.3f}{calls['hub_p95_ms']:>9.3f}   (default transport, HTTP)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cold_start": cold, "warm_call": calls, "python": sys.version.split()[0]}, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
