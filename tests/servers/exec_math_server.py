"""A tiny MCP server (FastMCP-style ``MCPServer``) for the code_interpreter tests and benchmark.

Tools: ``add(a, b)`` (structured output: a float), ``multiply(a, b)``, ``stats(numbers)`` (a dict
with no declared output schema, returned as JSON text), ``words(text)`` (a list), ``echo(text)``
(a plain string), ``slow(seconds)`` and ``secret_tool()`` (for the veto test).
Run: ``python tests/servers/exec_math_server.py`` (stdio).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's atlas_plugins, however installed
from atlas_plugins.mcp_compat import MCPServer  # noqa: E402  (mcp 2.x MCPServer, 1.x FastMCP)

server = MCPServer("exec-math", instructions="Arithmetic and small statistics for code_interpreter tests.")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@server.tool(structured_output=False)
def stats(numbers: list[float]) -> str:
    """Count, sum, mean, min and max of a list of numbers (JSON text)."""
    n = len(numbers)
    return json.dumps({"count": n, "sum": sum(numbers), "mean": sum(numbers) / n if n else None,
                       "min": min(numbers) if n else None, "max": max(numbers) if n else None})


@server.tool(structured_output=False)
def words(text: str) -> str:
    """Split text into words (a Python list literal)."""
    return repr(text.split())


@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return "done"


@server.tool()
def secret_tool() -> str:
    """A tool that a veto hook blocks in the tests."""
    return "the secret tool ran"


if __name__ == "__main__":
    server.run()
