"""Retrieval quality and speed: the 95 LiveMCPBench queries over LiveMCPBench + Toucan (~6.5k tools).

Scoring (duplicate tool names): LiveMCPBench annotates gold tools by *name* only and names repeat
across servers (``read_file`` ...). A hit counts for a gold name when its tool name equals it,
on any server ("any server exposing the gold name"); each gold name is credited once.
recall@k = found gold names in top k / gold names; NDCG@10 with binary gain, a gold name's
first occurrence only; all@10 = every gold name in the top 10. Queries whose gold names are all
absent from the catalogue are skipped (reported).

Timings: index build (first, then cached) and per-query latency (p50/p95, one query at a time,
after 3 warm-up queries that are not benchmark queries, so the dense query cache never serves a
timed query), with the ratio to bm25 flat measured in the same run. torch runs on ``--threads``
threads (default 1: the shared 2-core box; more threads contend with other jobs).

Rows: each retriever flat and two-level with its default options, plus ``hybrid`` with
``query_precision="int8"`` (the faster-query trade-off). Settings chosen on these same queries
are listed in benchmarks/notes/context.md. Queries are also scored by a fixed split (sha256 of
the query id, even = half A, odd = half B) so a setting picked on A can be checked on B.

Run: .venv/bin/python benchmarks/retrieval.py [--threads 1] [--only hybrid] [--top-servers 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from atlas_plugins.plugins import get_retriever
from atlas_plugins.toolspace.catalog import dedupe_names, load_catalog

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "toolspace"
CONFIGS: list[tuple[str, bool, dict]] = [
    *((name, tl, {}) for name in ("bm25", "dense", "hybrid") for tl in (False, True)),
    ("hybrid", False, {"dense": {"query_precision": "int8"}}),
]
WARMUP = ["list the files in my home folder", "what is the weather tomorrow", "send a short email to a friend"]


def half(query_id: str) -> str:
    """Fixed split of the queries for tune-on-one-half / report-the-other checks."""
    return "A" if int(hashlib.sha256(query_id.encode()).hexdigest(), 16) % 2 == 0 else "B"


def score(hits: list[str], gold: list[str]) -> dict[str, float]:
    gold_set = list(dict.fromkeys(gold))
    first_rank: dict[str, int] = {}
    for i, name in enumerate(hits):
        if name in gold_set and name not in first_rank:
            first_rank[name] = i + 1
    rec = lambda k: sum(1 for r in first_rank.values() if r <= k) / len(gold_set)  # noqa: E731
    dcg = sum(1 / math.log2(r + 1) for r in first_rank.values() if r <= 10)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gold_set), 10)))
    return {"recall@5": rec(5), "recall@10": rec(10), "ndcg@10": dcg / idcg, "all@10": float(rec(10) == 1.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--only", choices=["bm25", "dense", "hybrid"], help="run only this retriever's rows")
    ap.add_argument("--top-servers", type=int, default=None, help="top_servers for two-level rows (default: the retrievers' default)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cache = Path(tempfile.mkdtemp(prefix="atlas-bench-cache-"))
    os.environ["ATLAS_CACHE_DIR"] = str(cache)  # cold first build, then a cached one
    try:
        servers = dedupe_names(load_catalog(DATA / "livemcpbench_servers.jsonl") + load_catalog(DATA / "toucan_servers.jsonl"))
        tools = [t for s in servers for t in s.tools]
        summaries = {s.name: s.summary for s in servers}
        names = {t.name for t in tools}
        queries = [json.loads(line) for line in open(DATA / "livemcpbench_queries.jsonl", encoding="utf-8")]
        usable = [q for q in queries if any(g in names for g in q["gold_tools"])]
        print(f"{len(tools)} tools on {len(servers)} servers; {len(usable)}/{len(queries)} queries with a gold tool present")
        results = []
        for name, tl, extra in CONFIGS:
            if args.only and name != args.only:
                continue
            opts = dict(extra, two_level=tl)
            if tl and args.top_servers:
                opts["top_servers"] = args.top_servers
            r = get_retriever(name, **opts)
            t0 = time.perf_counter()
            r.index(tools, summaries)
            first = time.perf_counter() - t0
            r2 = get_retriever(name, **opts)
            t0 = time.perf_counter()
            r2.index(tools, summaries)
            cached = time.perf_counter() - t0
            for text in WARMUP:
                r.search(text, 10)
            lat, metrics = [], []
            for q in usable:
                t0 = time.perf_counter()
                hits = r.search(q["query"], 10)
                lat.append((time.perf_counter() - t0) * 1000)
                metrics.append(score([h.tool for h in hits], q["gold_tools"]) | {"half": half(q["id"])})
            keys = [m for m in metrics[0] if m != "half"]
            row = {
                "retriever": name,
                "two_level": tl,
                "options": extra,
                **{m: round(statistics.mean(x[m] for x in metrics), 4) for m in keys},
                **{
                    f"recall@10_half{h}": round(statistics.mean(x["recall@10"] for x in metrics if x["half"] == h), 4)
                    for h in ("A", "B")
                },
                "p50_ms": round(statistics.median(lat), 2),
                "p95_ms": round(sorted(lat)[int(0.95 * (len(lat) - 1))], 2),
                "index_first_s": round(first, 2),
                "index_first_was_cached": r.last_index_cached,
                "index_cached_s": round(cached, 3),
                "index_second_was_cached": r2.last_index_cached,
            }
            results.append(row)
            label = name + ("+" + ",".join(f"{v}" for d in extra.values() for v in d.values()) if extra else "")
            print(
                f"{label:>11} {'2-level' if tl else 'flat':>7} | R@5 {row['recall@5']:.3f} R@10 {row['recall@10']:.3f} "
                f"NDCG@10 {row['ndcg@10']:.3f} all@10 {row['all@10']:.3f} | p50 {row['p50_ms']:.2f} ms "
                f"p95 {row['p95_ms']:.2f} ms | build {first:.1f}s (first{', cached' if r.last_index_cached else ''}) "
                f"/ {cached:.2f}s (cached={r2.last_index_cached})",
                flush=True,
            )
        base = next((x for x in results if x["retriever"] == "bm25" and not x["two_level"]), None)
        hyb = next((x for x in results if x["retriever"] == "hybrid" and not x["two_level"] and not x["options"]), None)
        for x in results:
            x["p50_vs_bm25_flat"] = round(x["p50_ms"] / base["p50_ms"], 2) if base and base["p50_ms"] else None
        summary = {
            "tools": len(tools),
            "servers": len(servers),
            "queries_scored": len(usable),
            "queries_total": len(queries),
            "scoring": "tool-name level: a hit matches a gold name on any server",
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "query_halves": {h: sum(1 for q in usable if half(q["id"]) == h) for h in ("A", "B")},
            "top_servers": args.top_servers,
            "hybrid_minus_bm25_recall@10_points": round(100 * (hyb["recall@10"] - base["recall@10"]), 1) if hyb and base else None,
        }
        print(json.dumps(summary, indent=2))
        out = ROOT / "benchmarks" / "results" / ("retrieval.json" if not args.only and not args.top_servers else f"retrieval-{args.only or 'all'}-ts{args.top_servers}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": results, "summary": summary}, indent=2))
        print(f"wrote {out}", file=sys.stderr)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
