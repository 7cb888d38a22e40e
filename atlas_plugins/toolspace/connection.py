"""One live MCP session (stdio or streamable HTTP), owned by a toolspace's event loop.

The official SDK's ``mcp.Client`` is an async context manager whose cancel scopes must be
entered and exited by the same task, so each connection runs in a long-lived task of its
own that opens the session, publishes it, and waits until asked to close.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, Implementation, Tool

CLIENT_INFO = Implementation(name="atlas-plugins", version="0.1.0")
_PAGE_CAP = 1000  # a server that paginates forever cannot hang start-up


class ServerExited(Exception):
    """The server's process or connection went away."""


class Connection:
    """A reusable session with one server. All methods run on the toolspace's loop."""

    def __init__(
        self,
        name: str,
        *,
        command: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command, self.args, self.env, self.cwd = command, list(args or []), dict(env or {}), cwd
        self.url, self.headers = url, dict(headers or {})
        self.client: Client | None = None
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") if command else None
        self.restarts = 0

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    @property
    def alive(self) -> bool:
        return self.client is not None and self._task is not None and not self._task.done()

    def _transport(self) -> Any:
        if self.command:
            params = StdioServerParameters(
                command=self.command,
                args=self.args,
                # The SDK passes a minimal safe environment; PATH etc. come from it, ours on top.
                env=self.env or None,
                cwd=self.cwd,
            )
            return stdio_client(params, errlog=self._errlog)
        assert self.url is not None
        http_client = httpx2.AsyncClient(headers=self.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        return streamable_http_client(self.url, http_client=http_client)

    async def _run(self) -> None:
        try:
            async with Client(self._transport(), client_info=CLIENT_INFO, cache=None) as client:
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - recorded, reported by start()/call()
            self.error = exc
        finally:
            self.client = None
            self._ready.set()

    async def start(self, timeout: float) -> None:
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.error = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mcp:{self.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise ServerExited(f"server {self.name!r} did not finish its MCP handshake within {timeout:.0f}s") from None
        if self.client is None:
            raise ServerExited(f"server {self.name!r} failed to start: {describe_error(self.error)}")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
            except (asyncio.TimeoutError, Exception):
                self._task.cancel()
        self.client = None

    async def list_tools(self) -> list[Tool]:
        if self.client is None:
            raise ServerExited(f"server {self.name!r} is not connected")
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(_PAGE_CAP):
            page = await self.client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call(self, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None) -> CallToolResult:
        client = self.client
        if client is None or not self.alive:
            raise ServerExited(f"server {self.name!r} is not running")
        try:
            return await client.call_tool(tool, arguments, meta=meta)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if not self.alive or _is_connection_error(exc):
                # Mark it dead now (the session task only notices on close) so the next call restarts it.
                self.client = None
                self._stop.set()
                raise ServerExited(describe_error(exc)) from exc
            raise

    def stderr_tail(self, chars: int = 800) -> str:
        if self._errlog is None:
            return ""
        try:
            self._errlog.flush()
            size = self._errlog.seek(0, os.SEEK_END)
            self._errlog.seek(max(0, size - chars * 4))
            return self._errlog.read()[-chars:].strip()
        except (OSError, ValueError):
            return ""


def _is_connection_error(exc: BaseException) -> bool:
    import anyio

    from mcp.shared.exceptions import MCPError

    if isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
        return True
    if isinstance(exc, MCPError) and getattr(exc, "code", None) == -32000:  # CONNECTION_CLOSED
        return True
    if isinstance(exc, httpx2.TransportError):
        return True
    return False


def describe_error(exc: BaseException | None) -> str:
    """Flatten exception groups (anyio task groups raise them) into one readable line."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_error(e) for e in exc.exceptions)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


def python_executable() -> str:
    return sys.executable
