"""The ``atlas`` command line. Every command takes ``--json`` for machine-readable output.

Commands of each extension area live next to that area (``<package>/commands.py`` with a
``register(app)`` function) and are wired in here, so this file stays an index.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from atlas_plugins.values import printable

app = typer.Typer(
    name="atlas",
    help="Small language models in large MCP tool spaces: context control, code-mode tools, rubric GRPO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
toolspace_app = typer.Typer(help="Inspect and call the tools of a toolspace.", no_args_is_help=True)
app.add_typer(toolspace_app, name="toolspace")

console = Console(stderr=False)
err_console = Console(stderr=True)

#: Modules that add commands (each has ``register(app)``). Each imports only typer at module
#: level; heavy imports happen inside the commands.
COMMAND_MODULES = (
    "atlas_plugins.context.commands",
    "atlas_plugins.orchestration.commands",
    "atlas_plugins.rewards.commands",
    "atlas_plugins.envs.commands",
    "atlas_plugins.training.commands",
    "atlas_plugins.evaluation.commands",
)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
ConfigOpt = typer.Option(
    None, "--config", "-c", help="Toolspace file (YAML/TOML, or JSON with mcpServers). Default: embedded servers."
)


def print_json(data: Any) -> None:
    """JSON to stdout, nothing else (so ``--json`` output can be piped)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, *, as_json: bool = False, code: int = 1) -> None:
    if as_json:
        print_json({"ok": False, "error": message})
    else:
        err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def open_toolspace(config: Optional[Path], *, as_json: bool = False) -> Any:
    """The toolspace named by ``--config``, or the embedded default."""
    from atlas_plugins.errors import AtlasError
    from atlas_plugins.toolspace import Toolspace

    try:
        ts = Toolspace.from_config(config) if config else Toolspace.default()
        ts.start()
    except AtlasError as exc:
        fail(str(exc), as_json=as_json)
    return ts


@app.command("plugins")
def plugins_cmd(as_json: bool = JsonOpt) -> None:
    """List the registered components of every extension point, with their plugin and distribution."""
    from atlas_plugins.plugins import get_plugin_manager

    data = get_plugin_manager().describe()
    if as_json:
        print_json(data)
        return
    table = Table(title="atlas-plugins components")
    for col in ("extension point", "name", "plugin", "distribution"):
        table.add_column(col)
    for kind, rows in data.items():
        if kind == "broken":
            continue
        for row in rows:
            name = row["name"] + (" [red](conflict)[/]" if row.get("conflict") else "")
            table.add_row(kind, name, row["plugin"], row["distribution"])
    console.print(table)
    for b in data["broken"]:
        err_console.print(f"[yellow]broken plugin[/] {b['plugin']} ({b['distribution']}): {b['error']}")


@toolspace_app.command("tools")
def toolspace_tools(
    config: Optional[Path] = ConfigOpt,
    server: Optional[str] = typer.Option(None, "--server", "-s", help="Only this server's tools."),
    as_json: bool = JsonOpt,
) -> None:
    """List every tool: server, name, description and input schema."""
    ts = open_toolspace(config, as_json=as_json)
    try:
        try:
            tools = ts.list_tools(server)
        except KeyError as exc:
            fail(str(exc.args[0]), as_json=as_json)
        if as_json:
            print_json(
                [
                    {"server": t.server, "tool": t.name, "description": t.description, "input_schema": t.input_schema}
                    for t in tools
                ]
            )
            return
        table = Table(title=f"{len(tools)} tools on {len({t.server for t in tools})} servers")
        table.add_column("tool", style="bold")
        table.add_column("description")
        for t in tools:
            table.add_row(t.qualified_name, (t.description or "").splitlines()[0][:100] if t.description else "")
        console.print(table)
    finally:
        ts.close()


@toolspace_app.command("call")
def toolspace_call(
    server: str = typer.Argument(..., help="Server name."),
    tool: str = typer.Argument(..., help="Tool name on that server."),
    args: str = typer.Option("{}", "--args", "-a", help="Arguments as a JSON object."),
    config: Optional[Path] = ConfigOpt,
    episode: Optional[str] = typer.Option(None, "--episode", help="Episode id (embedded servers keep state per episode)."),
    as_json: bool = JsonOpt,
) -> None:
    """Call one tool. Exits non-zero when the call is not ok."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        fail(f"--args is not valid JSON ({exc.msg} at position {exc.pos}): {args!r}", as_json=as_json)
    if not isinstance(arguments, dict):
        fail(f"--args must be a JSON object, got {type(arguments).__name__}", as_json=as_json)
    ts = open_toolspace(config, as_json=as_json)
    try:
        result = ts.call(server, tool, arguments, episode=episode)
    finally:
        ts.close()
    if as_json:
        print_json({"ok": result.ok, "content": result.content if result.ok else None, "error": result.error})
    elif result.ok:  # a server's text is untrusted: no raw terminal escapes, no rich markup
        console.print(printable(result.text), markup=False, highlight=False)
    else:
        err_console.print(f"[bold red]error:[/] {escape(printable(result.error or ''))}")
    if not result.ok:
        raise typer.Exit(1)


def _register_area_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_area_commands()


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
