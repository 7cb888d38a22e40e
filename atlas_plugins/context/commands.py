"""``atlas context`` and ``atlas retrieve``: context-control commands.

* ``atlas context --policy itl [--config F] [--catalog F.jsonl ...] [--tokenizer PATH] --json``
  prints ``{"policy", "servers", "tools", "initial_tokens"}``: the tokens of the policy's
  initial context (system text + a task message through the tokenizer's chat template) over
  the embedded toolspace (or ``--config``) plus every catalogue given.
* ``atlas retrieve --catalog F.jsonl --queries Q.jsonl --retriever bm25 --k 5 [--two-level] --json``
  prints ``[{"id", "hits": [{"server", "tool", "score"}, ...]}, ...]``; queries are JSONL
  ``{"id", "query"}``. Catalogue only: no server is started.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from atlas_plugins.cli_support import fail, print_json, shown
from atlas_plugins.hookspecs import hookimpl


def read_queries(path: Path) -> list[dict[str, str]]:
    """JSONL ``{"id", "query"}`` lines; raises ``ValueError`` naming the file and line."""
    if not path.is_file():
        raise ValueError(f"queries file {str(path)!r} does not exist")
    out: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("query"), str):
                raise ValueError(f"{path}:{lineno}: each line needs a string 'query' (and an 'id')")
            out.append({"id": str(rec.get("id", lineno)), "query": rec["query"]})
    return out


def register(app: typer.Typer) -> None:
    """Add ``context`` and ``retrieve`` to an ``atlas``-style Typer app."""

    @app.command("context")
    def context_cmd(
        policy: str = typer.Option(
            "itl", "--policy", "-p", help="Loading policy (eager, isl, itl, search, or a plugin's)."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="Toolspace file (YAML/TOML or mcpServers JSON). Default: embedded servers."
        ),
        catalog: list[Path] = typer.Option(
            [], "--catalog", help="JSONL catalogue of extra (catalogue-only) servers; repeatable."
        ),
        servers: str | None = typer.Option(
            None, "--servers", help="Comma-separated embedded servers to start (default: all). Ignored with --config."
        ),
        no_embedded: bool = typer.Option(False, "--no-embedded", help="Start no embedded server: catalogues only."),
        tokenizer: str | None = typer.Option(
            None, "--tokenizer", help="HF tokenizer path/id (default: embedded SmolLM2)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Initial context tokens of a loading policy over a toolspace."""
        from atlas_plugins.context.tokens import initial_context_tokens
        from atlas_plugins.errors import AtlasError
        from atlas_plugins.plugins import get_loading_policy
        from atlas_plugins.toolspace import Toolspace

        try:
            pol = get_loading_policy(policy)
        except (AtlasError, KeyError) as exc:
            fail(str(exc), as_json=as_json)
        ts = None
        try:
            if config is not None:
                ts = Toolspace.from_config(config)
            elif no_embedded:
                ts = Toolspace.from_dict({"servers": {}})
            else:
                names = [s.strip() for s in servers.split(",") if s.strip()] if servers else None
                ts = Toolspace.default(servers=names)
            for path in catalog:
                ts.add_catalog(path)
            ts.start()
            try:
                tokens = initial_context_tokens(pol, ts, None, tokenizer)
            except OSError as exc:  # transformers raises OSError for a tokenizer it cannot find
                fail(f"cannot load tokenizer {tokenizer!r}: {exc}", as_json=as_json)
            data = {
                "policy": policy,
                "servers": len(ts.servers),
                "tools": sum(len(s.tools) for s in ts.servers),
                "initial_tokens": tokens,
            }
        except AtlasError as exc:
            fail(str(exc), as_json=as_json)
        finally:
            if ts is not None:
                ts.close()
        if as_json:
            print_json(data)
        else:
            from rich.console import Console

            Console().print(
                f"[bold]{policy}[/]: {data['initial_tokens']:,} initial context tokens "
                f"({data['servers']} servers, {data['tools']} tools)"
            )

    @app.command("retrieve")
    def retrieve_cmd(
        catalog: list[Path] = typer.Option(..., "--catalog", help="JSONL catalogue to index; repeatable."),
        queries: Path = typer.Option(..., "--queries", help='JSONL of {"id", "query"} lines.'),
        retriever: str = typer.Option(
            "bm25", "--retriever", "-r", help="Retriever (bm25, dense, hybrid, or a plugin's)."
        ),
        k: int = typer.Option(5, "--k", "-k", min=1, help="Hits per query."),
        two_level: bool = typer.Option(
            False, "--two-level", help="Rank servers first, then tools inside the best ones."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Rank catalogue tools for each query (no server is started)."""
        from atlas_plugins.errors import AtlasError
        from atlas_plugins.plugins import get_retriever
        from atlas_plugins.toolspace.catalog import dedupe_names, load_catalog

        try:
            qs = read_queries(queries)
            infos = dedupe_names([s for path in catalog for s in load_catalog(path)])
            r = get_retriever(retriever, two_level=two_level)
            r.index([t for s in infos for t in s.tools], {s.name: s.summary for s in infos})
            results = [{"id": q["id"], "hits": [h.model_dump() for h in r.search(q["query"], k)]} for q in qs]
        except (AtlasError, KeyError, ValueError) as exc:
            fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc), as_json=as_json)
        if as_json:
            print_json(results)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{retriever}{' (two-level)' if two_level else ''}, k={k}")
        table.add_column("query")
        table.add_column("hits")
        for q, res in zip(qs, results, strict=True):
            table.add_row(
                shown(q["query"][:60]),
                shown("\n".join(f"{h['server']}:{h['tool']} ({h['score']:.3f})" for h in res["hits"])),
            )
        Console().print(table)


@hookimpl
def atlas_register_commands(app: typer.Typer) -> None:
    """This area's commands reach ``atlas`` through the same hook as a third-party plugin's."""
    register(app)
