"""One live MCP session (stdio or streamable HTTP), owned by a toolspace's event loop.

The official SDK's client is an async context manager whose cancel scopes must be entered
and exited by the same task, so each connection runs in a long-lived task of its own that
opens the session, publishes it, and waits until asked to close. The session comes from
:func:`atlas_plugins.mcp_compat.connect`, the same on mcp 1.x and 2.x.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from atlas_plugins.mcp_compat import CallResult, Session, StdioServerParameters, ToolDef, connect, implementation
from atlas_plugins.mcp_compat import is_connection_error as _is_connection_error

CLIENT_INFO = implementation("atlas-plugins", "0.1.0")
_PAGE_CAP = 1000  # a server that paginates forever cannot hang start-up
GUARD = Path(__file__).with_name("stdio_guard.py")


class StderrTail:
    """The last ``keep`` bytes a server process wrote to its stderr, nothing more.

    The server's stderr is the write end of a pipe (``file``, what the SDK hands the process); a
    daemon thread drains the read end into a bounded buffer, so a server that logs without end
    neither fills the host's disk (a temporary file did) nor blocks on a full pipe. Every read of
    the pipe happens under one lock, by the thread or by :meth:`tail` itself, so the tail holds
    everything written before it was asked for (what a crashed server said last) in order."""

    def __init__(self, keep: int = 64 * 1024) -> None:
        read_fd, write_fd = os.pipe()  # both close-on-exec: only the server gets it, as its fd 2
        os.set_blocking(read_fd, False)
        self.file = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
        self._pipe = _Pipe(read_fd, keep)
        # The thread holds only the pipe, not self: when the connection goes, so does the write
        # end, and the thread ends at EOF once every process holding it has exited.
        threading.Thread(target=self._pipe.drain, daemon=True, name="mcp-stderr").start()
        weakref.finalize(self, self.file.close)

    def tail(self, chars: int = 800) -> str:
        with self._pipe.lock:
            self._pipe.read_available()
            data = bytes(self._pipe.buf[-chars * 4 :])
        return data.decode("utf-8", errors="replace")[-chars:].strip()


class _Pipe:
    def __init__(self, fd: int, keep: int) -> None:
        self.fd, self.keep = fd, keep
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.closed = False

    def read_available(self) -> None:
        """Read what the pipe holds now, without blocking (the caller holds ``lock``)."""
        while not self.closed:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # EOF: every writer has gone
                self.closed = True
                os.close(self.fd)
                return
            self.buf += data
            if len(self.buf) > self.keep:
                del self.buf[: len(self.buf) - self.keep]

    def drain(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self.closed:
            poller.poll()  # readable, or hung up
            with self.lock:
                self.read_available()


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
        max_line_bytes: int | None = None,
    ) -> None:
        """``max_line_bytes``: the most one message may take. A stdio server runs behind
        :mod:`~atlas_plugins.toolspace.stdio_guard`, which stops it when one stdout line outgrows
        this; an HTTP server's responses are cut there (:mod:`~atlas_plugins.http_limits`).
        None: no limit (trusted servers)."""
        self.name = name
        self.command, self.args, self.env, self.cwd = command, list(args or []), dict(env or {}), cwd
        self.url, self.headers = url, dict(headers or {})
        self.max_line_bytes = max_line_bytes
        self.client: Session | None = None
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._errlog = StderrTail() if command else None
        self.restarts = 0

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    @property
    def alive(self) -> bool:
        return self.client is not None and self._task is not None and not self._task.done()

    def _target(self) -> StdioServerParameters | str:
        if self.command:
            command, args = self.command, self.args
            if self.max_line_bytes is not None:
                # -I -S: a bare interpreter for the relay (no site, no PYTHON* variables); the
                # server itself gets the environment unchanged.
                command, args = sys.executable, ["-I", "-S", str(GUARD), str(self.max_line_bytes), "--", command, *args]
            return StdioServerParameters(
                command=command,
                args=args,
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
                errlog=self._errlog.file if self._errlog is not None else None,
                headers=self.headers,
                timeout=30.0,
                read_timeout=300.0,
                max_message_bytes=self.max_line_bytes if self.url else None,
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
        if self.command and self.max_line_bytes is not None and not _findable(self.command, self.env, self.cwd):
            # Behind the guard the spawn itself succeeds; say what the SDK's spawn would have said.
            raise ServerExited(f"server {self.name!r} failed to start: command not found: {self.command!r}")
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
        return self._errlog.tail(chars) if self._errlog is not None else ""


def _findable(command: str, env: dict[str, str], cwd: str | None) -> bool:
    """Whether the spawn would find ``command``: on the PATH the server's environment gives, or as
    a path (a relative one from the server's working directory, where exec looks for it)."""
    if os.sep in command and cwd and not os.path.isabs(command):
        command = os.path.join(cwd, command)
    return shutil.which(command, path=env.get("PATH", os.environ.get("PATH"))) is not None


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
