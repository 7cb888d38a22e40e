"""Serve many embedded servers from one process over streamable HTTP, each at ``/<name>/mcp``.

    python -m atlas_plugins.envs.hub [--host 127.0.0.1] [--port 0] [--servers a,b] [--seed N]

Importing mcp costs ~0.85 s of CPU per process, so one hub starts far faster than a dozen
stdio processes. Once it accepts connections it prints one JSON line to stdout,
``{"url": "http://127.0.0.1:PORT", "servers": [...]}``, then serves until killed (SIGINT or
SIGTERM) or, when stdin is a pipe, until stdin is closed (so it dies with its parent).
"""

import argparse
import importlib
import json
import os
import socket
import stat
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.routing import Mount

from atlas_plugins.mcp_compat import http_app

from . import EMBEDDED_SERVERS
from ._base import build_quietly, env_seed


def build_app(names: list[str], seed: int = 0, host: str = "127.0.0.1") -> tuple[Starlette, dict[str, Any]]:
    """A Starlette app mounting each server's streamable-HTTP app at /<name>; returns (app, servers)."""
    servers = {n: build_quietly(importlib.import_module(EMBEDDED_SERVERS[n].module).build, seed) for n in names}
    routes = [Mount(f"/{n}", app=http_app(srv, path="/mcp", host=host)) for n, srv in servers.items()]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Mounted apps' own lifespans do not run, so start every session manager here.
        async with AsyncExitStack() as stack:
            for srv in servers.values():
                await stack.enter_async_context(srv.session_manager.run())
            yield

    return Starlette(routes=routes, lifespan=lifespan), servers


def parse_names(value: str | None) -> list[str]:
    if not value:
        return list(EMBEDDED_SERVERS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in EMBEDDED_SERVERS]
    if unknown:
        raise SystemExit(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(EMBEDDED_SERVERS)}")
    return list(dict.fromkeys(names))


def _bind(host: str, port: int) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if info[0] in (socket.AF_INET, socket.AF_INET6):
        # Accepted sockets inherit this: without it, small responses wait for the client's
        # delayed ACK (Nagle), measured ~50 ms per tool call instead of a few ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(info[4])
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def _stdin_is_pipe() -> bool:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def serve(names: list[str], host: str, port: int, seed: int) -> None:
    app, _ = build_app(names, seed, host)
    await serve_app(app, names, host, port, label="hub")


async def serve_app(app: Starlette, names: list[str], host: str, port: int, *, label: str = "server") -> None:
    """Serve an ASGI app with uvicorn on ``host:port`` (0 = a free port), print one JSON line
    ``{"url", "servers"}`` once it listens, and exit when stdin (a pipe from the parent) closes.

    Shared by every multi-server MCP process here (this hub, the BFCL suite's server) so the
    parent-side :class:`~atlas_plugins.toolspace.toolspace.ServerProcess` can drive them alike.
    """
    import uvicorn

    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    if _stdin_is_pipe():  # die with the parent: it closes our stdin

        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read(65536):
                    pass
            except (OSError, ValueError):
                pass
            server.should_exit = True

        threading.Thread(target=watch_stdin, name=f"{label}-stdin-watch", daemon=True).start()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.005)
        url_host = f"[{host}]" if ":" in host else host
        sys.stdout.write(json.dumps({"url": f"http://{url_host}:{bound}", "servers": names}) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m atlas_plugins.envs.hub", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--servers", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--seed", type=int, default=None, help="world seed (default: $ATLAS_ENV_SEED or 0)")
    args = ap.parse_args(argv)
    names = parse_names(args.servers)
    seed = env_seed() if args.seed is None else args.seed
    try:
        anyio.run(serve, names, args.host, args.port, seed)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
