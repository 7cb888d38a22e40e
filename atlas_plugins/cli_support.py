"""Helpers every ``atlas`` command uses: JSON output, failing with a message, opening a toolspace.

A leaf module: the command modules of each area (``<package>/commands.py``) and third-party
command plugins import these from here, never from :mod:`atlas_plugins.cli` (which imports
the command modules, so importing it back would be a cycle). ``atlas_plugins.cli`` re-exports
them for older callers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.text import Text

    from atlas_plugins.toolspace import Toolspace

__all__ = ["ConfigOpt", "JsonOpt", "error_line", "fail", "open_toolspace", "print_json", "shown"]

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
ConfigOpt = typer.Option(
    None, "--config", "-c", help="Toolspace file (YAML/TOML, or JSON with mcpServers). Default: embedded servers."
)


def print_json(data: Any) -> None:
    """JSON to stdout, nothing else (so ``--json`` output can be piped). ASCII only: strings from
    servers and cells may hold C1 controls or bidi overrides, which ``json.dumps`` would pass to
    the terminal raw; as ``\\uXXXX`` escapes they are the same JSON."""
    sys.stdout.write(json.dumps(data, ensure_ascii=True, indent=2, default=str) + "\n")
    sys.stdout.flush()


def shown(text: object, style: str = "") -> Text:
    """``text`` for a rich table cell or line: never read as markup, control characters escaped.

    Why: tool names and descriptions come from MCP servers, errors quote their stderr, and plugin
    names and rubric criteria come from third-party packages. Rich would read ``[/bold]`` in
    such a string as a closing tag (a ``MarkupError`` that ends the command), ``:skull:`` as an
    emoji code and pass an escape sequence to the terminal; a ``Text`` is printed as it is. Also
    for whole outputs (a cell's stdout, a report): ``console.print(shown(text))``.
    """
    from rich.text import Text

    from atlas_plugins.values import printable

    return Text(printable(str(text)), style=style)


def error_line(message: str) -> Text:
    """A red ``error:`` followed by ``message`` as :func:`shown` text (errors quote servers and cells)."""
    from rich.text import Text

    return Text("error: ", style="bold red") + shown(message)


def fail(message: str, *, as_json: bool = False, code: int = 1) -> NoReturn:
    """Print ``{"ok": false, "error": message}`` (``--json``) or a red error line, and exit ``code``."""
    if as_json:
        print_json({"ok": False, "error": message})
    else:
        from rich.console import Console

        Console(stderr=True).print(error_line(message), highlight=False)
    raise typer.Exit(code)


def open_toolspace(config: Path | None, *, as_json: bool = False) -> Toolspace:
    """The toolspace named by ``--config``, or the embedded default, started."""
    from atlas_plugins.errors import AtlasError
    from atlas_plugins.toolspace import Toolspace

    try:
        ts = Toolspace.from_config(config) if config else Toolspace.default()
        ts.start()
    except AtlasError as exc:
        fail(str(exc), as_json=as_json)
    return ts
