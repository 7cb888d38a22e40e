"""Initial context tokens of eager / ISL / ITL / search as the toolspace grows.

Toolspace: the embedded servers alone, then padded with Toucan catalogue servers
(../shared/data/toolspace/toucan_servers.jsonl) to ~500, ~1,000, ~3,000 and all ~6,000 tools.
Tokens: the policy's system text + a task message through SmolLM2's chat template
(atlas_plugins.context.tokens.initial_context_tokens). Ratios are against eager in the same run.

Run: .venv/bin/python benchmarks/context_scaling.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from atlas_plugins.context.tokens import initial_context_tokens
from atlas_plugins.plugins import get_loading_policy
from atlas_plugins.toolspace import Toolspace
from atlas_plugins.toolspace.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[1]
TOUCAN = ROOT.parent / "shared" / "data" / "toolspace" / "toucan_servers.jsonl"
POLICIES = ("eager", "isl", "itl", "search")
TARGETS = (None, 500, 1000, 3000, 10**9)
CONTEXT_LIMIT = 32_768


def main() -> None:
    ts = Toolspace.default()
    ts.start()
    try:
        catalog = load_catalog(TOUCAN)
        rows = []
        added = 0
        for target in TARGETS:
            if target is not None:
                batch = []
                have = len(ts.list_tools())
                while added < len(catalog) and have < target:
                    batch.append(catalog[added])
                    have += len(catalog[added].tools)
                    added += 1
                ts.add_catalog([{"name": s.name, "summary": s.summary, "tools": [t.model_dump() for t in s.tools]} for s in batch])
            n_tools = len(ts.list_tools())
            row = {"servers": len(ts.servers), "tools": n_tools}
            for p in POLICIES:
                t0 = time.perf_counter()
                row[p] = initial_context_tokens(get_loading_policy(p), ts)
                row[f"{p}_count_s"] = round(time.perf_counter() - t0, 3)
            for p in POLICIES[1:]:
                row[f"{p}_vs_eager"] = round(row[p] / row["eager"], 4)
            rows.append(row)
            print(
                f"{row['servers']:>5} servers {n_tools:>5} tools | eager {row['eager']:>9,} | isl {row['isl']:>7,} "
                f"({row['isl_vs_eager']:.2%}) | itl {row['itl']:>6,} ({row['itl_vs_eager']:.2%}) | "
                f"search {row['search']:>6,} ({row['search_vs_eager']:.2%})",
                flush=True,
            )
        fits = [r["tools"] for r in rows if r["eager"] <= CONTEXT_LIMIT]
        first_over = next((r for r in rows if r["eager"] > CONTEXT_LIMIT), None)
        summary = {
            "tokenizer": "SmolLM2-135M-Instruct chat template",
            "context_limit": CONTEXT_LIMIT,
            "eager_fits_up_to_tools": max(fits) if fits else 0,
            "eager_first_over_limit_at_tools": first_over["tools"] if first_over else None,
            "eager_tokens_per_tool_at_full": round(rows[-1]["eager"] / rows[-1]["tools"], 1),
            "itl_vs_eager_at_full": rows[-1]["itl_vs_eager"],
            "goal_itl_le_3pct_at_full": rows[-1]["itl_vs_eager"] <= 0.03,
        }
        print(json.dumps(summary, indent=2))
        out = ROOT / "benchmarks" / "results" / "context_scaling.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
        print(f"wrote {out}", file=sys.stderr)
    finally:
        ts.close()


if __name__ == "__main__":
    main()
