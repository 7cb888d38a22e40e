"""An MCP server whose one tool leaves a mark on the host, for tests/test_sandbox_hostile.py.

``touch(name)`` creates the file ``<dir>/<name>`` (``dir`` is the first command-line argument),
so a test can tell from the host whether a call really reached the server.
Run: ``python tests/servers/marker_server.py DIR`` (stdio).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's atlas_plugins, however installed
from atlas_plugins.mcp_compat import MCPServer  # noqa: E402  (mcp 2.x MCPServer, 1.x FastMCP)

DIR = Path(sys.argv[1])
server = MCPServer("marker", instructions="A tool that leaves a file on the host.")


@server.tool()
def touch(name: str) -> str:
    """Create the marker file ``name`` in the server's directory."""
    (DIR / Path(name).name).write_text("touched")
    return "touched"


if __name__ == "__main__":
    server.run()
