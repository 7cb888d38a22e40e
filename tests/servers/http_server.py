"""A test MCP server over streamable HTTP: ``python tests/servers/http_server.py [PORT]``.

Without PORT (or with 0) it binds a free loopback port itself and prints ``PORT <n>`` first, so
no other process can take the port between choosing it and binding it.

Requires the header ``X-Test-Token: secret`` on every request (to test configured headers).
"""

from __future__ import annotations

import sys
from pathlib import Path

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's atlas_plugins, however installed
from atlas_plugins.mcp_compat import MCPServer  # noqa: E402  (mcp 2.x MCPServer, 1.x FastMCP)

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
srv = MCPServer("remote", instructions="A remote test server reached over streamable HTTP.")


@srv.tool()
def multiply(a: float, b: float) -> dict:
    """Multiply two numbers."""
    return {"product": a * b}


class RequireToken(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):  # type: ignore[no-untyped-def]
        if request.headers.get("x-test-token") != "secret":
            return PlainTextResponse("missing token", status_code=401)
        return await call_next(request)


if __name__ == "__main__":
    import uvicorn

    app = srv.streamable_http_app()
    app.add_middleware(RequireToken)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
