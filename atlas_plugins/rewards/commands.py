"""``atlas rubric``: build rubrics for tasks, or validate a rubric file.

::

    atlas rubric --task task.json [--provider template] --json
    atlas rubric --tasks tasks.jsonl --provider llm --opt model=gpt-4o-mini --json
    atlas rubric --validate rubric.yaml [--json]

With ``--json`` the output is: for ``--task`` one rubric object; for ``--tasks`` a list of
``{"task_id", "rubric"}``; for ``--validate`` ``{"valid": bool, "file", "criteria",
"categories", "error"}``. The default provider is ``static`` for tasks carrying a rubric and
``template`` otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from atlas_plugins.cli_support import shown
from atlas_plugins.errors import AtlasError
from atlas_plugins.hookspecs import hookimpl


def _load_tasks(task: Path | None, tasks: Path | None) -> list[dict[str, Any]]:
    if task is not None:
        if not task.is_file():
            raise AtlasError(f"task file {str(task)!r} does not exist")
        try:
            data = json.loads(task.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AtlasError(f"{task}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise AtlasError(f"{task}: expected one task object, got {type(data).__name__}")
        return [data]
    assert tasks is not None
    if not tasks.is_file():
        raise AtlasError(f"tasks file {str(tasks)!r} does not exist")
    out = []
    for n, line in enumerate(tasks.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AtlasError(f"{tasks}:{n}: not valid JSON ({exc})") from None
    return out


def _parse_opts(opts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in opts:
        key, sep, val = o.partition("=")
        if not sep or not key:
            raise AtlasError(f"--opt expects KEY=VALUE, got {o!r}")
        try:
            out[key] = json.loads(val)  # numbers, booleans, JSON objects
        except json.JSONDecodeError:
            out[key] = val
    return out


def register(app: typer.Typer) -> None:
    @app.command("rubric")
    def rubric_cmd(
        task: Path | None = typer.Option(None, "--task", help="A task JSON file."),
        tasks: Path | None = typer.Option(None, "--tasks", help="A JSONL file of tasks."),
        provider: str | None = typer.Option(
            None, "--provider", help="Rubric provider (default: static if the task has a rubric, else template)."
        ),
        opt: list[str] = typer.Option([], "--opt", help="Provider option KEY=VALUE (repeatable)."),
        validate: Path | None = typer.Option(None, "--validate", help="Validate a rubric YAML/JSON file."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Print the rubric of task(s), or validate a rubric file."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from atlas_plugins.rewards.rubric import Rubric

        console = Console()
        if validate is not None:
            try:
                r = Rubric.from_file(validate)
            except AtlasError as exc:
                if as_json:
                    typer.echo(json.dumps({"valid": False, "file": str(validate), "error": str(exc)}))
                else:
                    typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "valid": True,
                            "file": str(validate),
                            "criteria": len(r.criteria),
                            "categories": r.categories(),
                            "error": None,
                        }
                    )
                )
            else:
                console.print(
                    Text("valid", style="green")
                    + shown(f": {validate} ({len(r.criteria)} criteria; categories {', '.join(r.categories())})"),
                    highlight=False,
                )
            return
        if (task is None) == (tasks is None):
            typer.echo("error: give exactly one of --task FILE.json, --tasks FILE.jsonl or --validate FILE", err=True)
            raise typer.Exit(2)
        try:
            from atlas_plugins.plugins import get_plugin_manager

            records = _load_tasks(task, tasks)
            options = _parse_opts(opt)
            pm = get_plugin_manager()
            cache: dict[str, Any] = {}
            results = []
            for rec in records:
                name = provider or ("static" if isinstance(rec, dict) and rec.get("rubric") is not None else "template")
                if name not in cache:
                    cache[name] = pm.create("rubric_providers", name, **options)
                r = cache[name].rubric_for(rec)
                results.append((rec.get("id") if isinstance(rec, dict) else None, r))
        except (AtlasError, ValueError, TypeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if as_json:
            if task is not None:
                typer.echo(json.dumps(results[0][1].to_dict()))
            else:
                typer.echo(json.dumps([{"task_id": tid, "rubric": r.to_dict()} for tid, r in results]))
            return
        for tid, r in results:
            table = Table(title=shown(f"rubric for {tid} ({r.source})"))
            for col in ("id", "cat", "w", "kind", "criterion"):
                table.add_column(col)
            for c in r.criteria:  # a rubric provider's text: shown as it is, never as markup
                what = shown(c.description or c.name)
                if c.check is not None:
                    what.append_text(shown(f"  {c.check.type}", style="dim"))
                table.add_row(shown(c.id), shown(c.category), str(c.weight), shown(c.kind), what)
            console.print(table)


@hookimpl
def atlas_register_commands(app: typer.Typer) -> None:
    """This area's commands reach ``atlas`` through the same hook as a third-party plugin's."""
    register(app)
