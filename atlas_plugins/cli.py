"""The ``atlas`` command line. Every command takes ``--json`` for machine-readable output.

This file holds only ``atlas plugins`` and ``atlas toolspace``. Every other command comes
through the ``atlas_register_commands`` hook: each extension area's ``<package>/commands.py``
is a built-in plugin implementing it, exactly as a third-party plugin that adds
``atlas <command>`` does (see :meth:`atlas_plugins.plugins.PluginManager.add_commands`).
Command modules use the helpers of :mod:`atlas_plugins.cli_support`, re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from atlas_plugins.cli_support import ConfigOpt, JsonOpt, error_line, fail, open_toolspace, print_json, shown
from atlas_plugins.plugins import BUILTIN_COMMAND_MODULES, get_plugin_manager

__all__ = ["COMMAND_MODULES", "app", "fail", "main", "open_toolspace", "print_json"]

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

#: The built-in command plugins (each implements ``atlas_register_commands``).
COMMAND_MODULES = BUILTIN_COMMAND_MODULES


@app.command("plugins")
def plugins_cmd(as_json: bool = JsonOpt) -> None:
    """List the registered components of every extension point, with their plugin and distribution."""
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
            name = shown(row["name"])
            if row.get("conflict"):
                name.append(" (conflict)", style="red")
            table.add_row(kind, name, shown(row["plugin"]), shown(row["distribution"]))
    console.print(table)
    for b in data["broken"]:
        err_console.print(
            Text("broken plugin ", style="yellow") + shown(f"{b['plugin']} ({b['distribution']}): {b['error']}"),
            highlight=False,
        )


@toolspace_app.command("tools")
def toolspace_tools(
    config: Path | None = ConfigOpt,
    server: str | None = typer.Option(None, "--server", "-s", help="Only this server's tools."),
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
            first_line = next((line for line in (t.description or "").splitlines() if line.strip()), "")[:100]
            table.add_row(shown(t.qualified_name), shown(first_line))
        console.print(table)
    finally:
        ts.close()


@toolspace_app.command("call")
def toolspace_call(
    server: str = typer.Argument(..., help="Server name."),
    tool: str = typer.Argument(..., help="Tool name on that server."),
    args: str = typer.Option("{}", "--args", "-a", help="Arguments as a JSON object."),
    config: Path | None = ConfigOpt,
    episode: str | None = typer.Option(None, "--episode", help="Episode id (embedded servers keep state per episode)."),
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
        console.print(shown(result.text))
    else:
        err_console.print(error_line(result.error or ""), highlight=False)
    if not result.ok:
        raise typer.Exit(1)


# Built-in areas first, then third-party plugins; a broken one is reported, not fatal.
get_plugin_manager().add_commands(app)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
