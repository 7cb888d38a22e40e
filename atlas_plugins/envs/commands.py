"""``atlas tasks``: generate and inspect the seeded task sets of the embedded toolspace.

::

    atlas tasks generate [--seed S] [--n-train N] [--n-heldout M] [--env-seed E] --out FILE.jsonl [--json]
    atlas tasks show [--split train|heldout] [--limit K] [--file FILE.jsonl] [--json]

``generate --json`` prints ``{"train", "heldout", "dropped", "out"}`` (task counts, candidates that
failed the solvability filter, the written path). ``show --json`` prints
``{"file", "split", "total", "tasks": [Task, ...]}`` (``total`` before ``--limit``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from atlas_plugins.cli_support import shown
from atlas_plugins.hookspecs import hookimpl


def register(app: typer.Typer) -> None:
    tasks_app = typer.Typer(help="Generate and inspect seeded tasks for the embedded toolspace.", no_args_is_help=True)
    app.add_typer(tasks_app, name="tasks")

    @tasks_app.command("generate")
    def generate_cmd(
        out: Path = typer.Option(..., "--out", help="Output JSONL file (one Task per line)."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed (templates, parameters, paraphrases)."),
        n_train: int = typer.Option(240, "--n-train", help="Number of train tasks."),
        n_heldout: int = typer.Option(60, "--n-heldout", help="Number of held-out tasks."),
        env_seed: int = typer.Option(0, "--env-seed", help="World seed of the servers (Toolspace.default(seed=...))."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Generate verified tasks (each reference solution is run against the real servers)."""
        from atlas_plugins.envs.taskgen import generate, write_jsonl

        if n_train < 0 or n_heldout < 0:
            typer.echo(f"error: --n-train and --n-heldout must be >= 0 (got {n_train}, {n_heldout})", err=True)
            raise typer.Exit(2)
        if out.exists() and out.is_dir():
            typer.echo(f"error: --out {str(out)!r} is a directory; give a .jsonl file path", err=True)
            raise typer.Exit(2)
        try:
            report = generate(seed, n_train, n_heldout, env_seed=env_seed)
            path = write_jsonl(report.tasks, out)
        except (RuntimeError, ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        n_tr = sum(t.split == "train" for t in report.tasks)
        n_ho = sum(t.split == "heldout" for t in report.tasks)
        if as_json:
            typer.echo(json.dumps({"train": n_tr, "heldout": n_ho, "dropped": report.dropped, "out": str(path)}))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=shown(f"tasks (seed {seed}, env seed {env_seed}) -> {path}"))
        for col in ("split", "level 1", "level 2", "level 3"):
            table.add_column(col)
        for split, by_level in report.counts().items():
            table.add_row(split, *(str(by_level.get(str(lv), 0)) for lv in (1, 2, 3)))
        console = Console()
        console.print(table)
        console.print(
            f"dropped by the solvability filter: {report.dropped}"
            + (
                f" ({', '.join(f'{k} x{v}' for k, v in sorted(report.drop_reasons.items()))})"
                if report.drop_reasons
                else ""
            )
        )

    @tasks_app.command("show")
    def show_cmd(
        split: str | None = typer.Option(None, "--split", help="train or heldout (default: both)."),
        limit: int = typer.Option(20, "--limit", help="Show at most this many tasks (0: all)."),
        file: Path | None = typer.Option(None, "--file", help="Task JSONL file (default: the shipped seed-0 set)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Show tasks of the default set (or of --file)."""
        from atlas_plugins.envs.taskgen import DEFAULT_TASKS_PATH, load_tasks

        if split not in (None, "train", "heldout"):
            typer.echo(f"error: --split must be 'train' or 'heldout', got {split!r}", err=True)
            raise typer.Exit(2)
        if limit < 0:
            typer.echo(f"error: --limit must be >= 0, got {limit}", err=True)
            raise typer.Exit(2)
        path = file or DEFAULT_TASKS_PATH
        try:
            tasks = load_tasks(path, split)
        except (FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        listed = tasks[:limit] if limit else tasks
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "file": str(path),
                        "split": split,
                        "total": len(tasks),
                        "tasks": [t.model_dump(mode="json") for t in listed],
                    },
                    ensure_ascii=True,  # task text is untrusted: no raw C1 or bidi controls
                )
            )
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=shown(f"{len(listed)} of {len(tasks)} task(s) from {path}"))
        for col in ("id", "split", "lvl", "servers", "prompt", "checked by"):
            table.add_column(col)
        for t in listed:
            check = f"answer: {t.answer}" if t.answer is not None else f"{len(t.expected_state or [])} end state(s)"
            table.add_row(
                shown(t.id), str(t.split), str(t.difficulty), shown(",".join(t.servers)), shown(t.prompt), shown(check)
            )
        Console().print(table)


@hookimpl
def atlas_register_commands(app: typer.Typer) -> None:
    """This area's commands reach ``atlas`` through the same hook as a third-party plugin's."""
    register(app)
