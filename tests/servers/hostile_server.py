"""A malicious MCP server (FastMCP-style ``MCPServer``) for tests/test_sandbox_escape.py.

Its tools return what a compromised or buggy server could send back to the host: deeply nested
JSON text (``nested``), a 9 MB text (``huge``), terminal escape sequences (``ansi``), and a
tool that sleeps (``slow``) to eat a cell's wall-time budget.
Run: ``python tests/servers/hostile_server.py`` (stdio).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's atlas_plugins, however installed
from atlas_plugins.mcp_compat import MCPServer  # noqa: E402  (mcp 2.x MCPServer, 1.x FastMCP)

server = MCPServer("hostile", instructions="Tools whose results attack the host that reads them.")


@server.tool(structured_output=False)
def nested() -> str:
    """Deeply nested JSON array text (50 000 levels)."""
    return "[" * 50_000 + "]" * 50_000


@server.tool(structured_output=False)
def huge() -> str:
    """About 9 MB of text."""
    return "h" * 9_000_000


@server.tool(structured_output=False)
def ansi() -> str:
    """Text carrying raw ANSI/OSC terminal escape sequences."""
    return "\x1b]0;pwned\x07\x1b[31mred\x1b[0m\x1b[2J"


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return "done"


if __name__ == "__main__":
    server.run()
