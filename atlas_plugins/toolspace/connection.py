"""One live MCP session (stdio or streamable HTTP), owned by a toolspace's event loop.

The official SDK's client is an async context manager whose cancel scopes must be entered
and exited by the same task, so each connection runs in a long-lived task of its own that
opens the session, publishes it, and waits until asked to close. The session comes from
:func:`atlas_plugins.mcp_compat.connect`, the same on mcp 1.x and 2.x.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

from atlas_plugins.mcp_compat import CallResult, Session, StdioServerParameters, ToolDef, connect, implementation
from atlas_plugins.mcp_compat import is_connection_error as _is_connection_error

CLIENT_INFO = implementation("atlas-plugins", "0.1.0")
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
        self.client: Session | None = None
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

    def _target(self) -> StdioServerParameters | str:
        if self.command:
            return StdioServerParameters(
                command=self.command,
                args=self.args,
                # The SDK passes a minimal safe environment; PATH etc. come from it, ours on top.
                env=self.env or None,
                cwd=self.cwd,
            )
        assert self.url is not None
        return self.url

    async def _run(self) -> None:
        try:
            async with connect(
                self._target(),
                client_info=CLIENT_INFO,
                errlog=self._errlog,
                headers=self.headers,
                timeout=30.0,
                read_timeout=300.0,
            ) as client:
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
        except TimeoutError:
            await self.close()
            raise ServerExited(f"server {self.name!r} did not finish its MCP handshake within {timeout:.0f}s") from None
        if self.client is None:
            raise ServerExited(f"server {self.name!r} failed to start: {describe_error(self.error)}")

    async def close(self) -> None:
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            if self.client is not None:  # a live session: let it shut down in order first
                await asyncio.wait({task}, timeout=5.0)
            if not task.done():
                # A handshake still pending never sees _stop: cancel it now. Then wait for the
                # SDK's own shutdown of the process (stdin closed, SIGTERM, SIGKILL: a few seconds)
                # instead of leaving it to a loop that is about to stop, which orphaned servers
                # that ignore SIGTERM.
                task.cancel()
                await asyncio.wait({task}, timeout=8.0)
        self.client = None

    async def list_tools(self) -> list[ToolDef]:
        if self.client is None:
            raise ServerExited(f"server {self.name!r} is not connected")
        return await self.client.list_tools(max_pages=_PAGE_CAP)

    async def call(self, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None) -> CallResult:
        client = self.client
        if client is None or not self.alive:
            raise ServerExited(f"server {self.name!r} is not running")
        try:
            return await client.call_tool(tool, arguments, meta=meta)
        except (TimeoutError, asyncio.CancelledError):
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
