"""``atlas exec``: run one ``code_interpreter`` cell with the toolspace's servers available."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from atlas_plugins.hookspecs import hookimpl


def register(app: typer.Typer) -> None:
    """Add ``exec`` to an ``atlas``-style Typer app."""

    @app.command("exec")
    def exec_cmd(
        code: Path = typer.Option(..., "--code", help="File with the Python code of one cell ('-' for stdin)."),
        executor: str = typer.Option("local", "--executor", "-e", help="Executor name (local, e2b, or a plugin's)."),
        config: Path | None = typer.Option(
            None,
            "--config",
            "-c",
            help="Toolspace file (YAML/TOML, or JSON with mcpServers). Default: embedded servers.",
        ),
        timeout: float = typer.Option(10.0, "--timeout", help="Wall-time limit of the cell, seconds."),
        unsafe_no_sandbox: bool = typer.Option(
            False,
            "--unsafe-no-sandbox",
            help="local executor only: run WITHOUT bubblewrap (rlimits only). Trusted code only.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Run one cell; print {ok, value, stdout, error, elapsed_ms}. Exits non-zero when not ok."""
        from rich.console import Console

        from atlas_plugins.cli_support import error_line, shown
        from atlas_plugins.errors import AtlasError

        def fail(message: str) -> None:
            if as_json:
                sys.stdout.write(
                    json.dumps({"ok": False, "value": None, "stdout": "", "error": message, "elapsed_ms": 0.0}) + "\n"
                )
            else:
                Console(stderr=True).print(error_line(message), highlight=False)
            raise typer.Exit(1)

        try:
            source = sys.stdin.read() if str(code) == "-" else code.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read --code {str(code)!r}: {exc.strerror or exc}")
        options: dict[str, Any] = {"timeout": timeout}
        if unsafe_no_sandbox:
            if executor != "local":
                fail(f"--unsafe-no-sandbox applies to the local executor only, not {executor!r}")
            options["unsafe_no_sandbox"] = True
        from atlas_plugins.plugins import get_executor
        from atlas_plugins.toolspace import Toolspace

        try:
            ex = get_executor(executor, **options)
        except (KeyError, TypeError, ValueError) as exc:
            fail(f"cannot create executor {executor!r}: {exc.args[0] if exc.args else exc}")
        ts = None
        session = None
        try:
            ts = Toolspace.from_config(config) if config else Toolspace.default()
            ts.start()
            session = ex.open_session(ts)
            result = session.run(source)
        except AtlasError as exc:
            fail(str(exc))
        finally:
            if session is not None:
                session.close()
            if ts is not None:
                ts.close()
        if as_json:
            data = {
                "ok": result.ok,
                "value": result.value,
                "stdout": result.stdout,
                "error": result.error,
                "elapsed_ms": round(result.elapsed_ms, 3),
            }
            # ASCII only: the cell's text may hold C1 controls or bidi overrides (the same JSON).
            sys.stdout.write(json.dumps(data, ensure_ascii=True) + "\n")
        else:
            # Cell output is untrusted: terminal escapes are shown, never sent raw to the terminal,
            # and rich markup and emoji codes in it are printed literally.
            console = Console()
            if result.stdout:
                console.print(shown(result.stdout.rstrip("\n")))
            if result.value is not None:
                console.print(shown(result.value))
            if result.error:
                Console(stderr=True).print(error_line(result.error), highlight=False)
            Console(stderr=True).print(f"[dim]{result.elapsed_ms:.1f} ms[/]")
        if not result.ok:
            raise typer.Exit(1)


@hookimpl
def atlas_register_commands(app: typer.Typer) -> None:
    """This area's commands reach ``atlas`` through the same hook as a third-party plugin's."""
    register(app)
