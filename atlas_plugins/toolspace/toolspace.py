"""The toolspace: every MCP server an agent may use, behind one synchronous API.

A background thread runs one asyncio loop that owns every MCP session: sessions are opened
once (all servers concurrently), reused for every call, and closed together. Sync callers
(the agent loop, the CLI, the sandbox bridge) use :meth:`Toolspace.call`; async callers use
:meth:`Toolspace.acall`. Tool failures of every kind come back as a
:class:`~atlas_plugins.types.ToolResult` with ``ok=False`` and a message a small model can act
on; only misconfiguration raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from atlas_plugins.errors import ConfigError, ToolspaceError
from atlas_plugins.toolspace.catalog import dedupe_names, load_catalog, server_from_record
from atlas_plugins.toolspace.config import ServerConfig, ToolspaceConfig, config_from_dict, load_config
from atlas_plugins.toolspace.validation import ArgumentValidator
from atlas_plugins.types import EPISODE_META_KEY, ServerInfo, ToolResult, ToolSpec, split_qualified
from atlas_plugins.values import MAX_JSON_DEPTH, loads_bounded, nesting_exceeds
from atlas_plugins.wire.text import closest, listing, truncate

if TYPE_CHECKING:
    from atlas_plugins.mcp_compat import CallResult, ToolDef
    from atlas_plugins.plugins import PluginManager
    from atlas_plugins.toolspace.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServerProcess:
    """A child process serving MCP servers over HTTP (see :func:`atlas_plugins.envs.hub.serve_app`):
    it prints one JSON line with its ``url`` once it listens and exits when its stdin closes."""

    def __init__(
        self, argv: list[str], *, env: dict[str, str] | None = None, label: str = "the MCP server process"
    ) -> None:
        self.argv, self.env, self.label = list(argv), dict(env or {}), label
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self._errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")

    def start(self, timeout: float) -> str:
        import os

        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errlog,
            text=True,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not line or not line[0].strip():
            self.stop()
            raise ToolspaceError(f"{self.label} did not start within {timeout:.0f}s: {self.stderr_tail()}")
        try:
            self.url = json.loads(line[0])["url"].rstrip("/")
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise ToolspaceError(f"{self.label} printed an unexpected line: {line[0][:200]!r}") from None
        return self.url

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()  # the server exits when its stdin closes
            self.proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def stderr_tail(self, chars: int = 800) -> str:
        try:
            self._errlog.seek(0)
            return self._errlog.read()[-chars:].strip()
        except (OSError, ValueError):
            return ""


class _Hub(ServerProcess):
    """The embedded servers served from one process over streamable HTTP (fast cold start)."""

    def __init__(self, servers: list[str], seed: int) -> None:
        self.servers, self.seed = servers, seed
        super().__init__(
            [sys.executable, "-m", "atlas_plugins.envs.hub", "--port", "0", "--servers", ",".join(servers)],
            env={"ATLAS_ENV_SEED": str(seed)},
            label="the embedded server hub",
        )


class Toolspace:
    """A set of MCP servers (live and catalogue-only) with one namespace ``server:tool``.

    Use as a context manager, or call :meth:`start` / :meth:`close`::

        with atlas.Toolspace.default() as ts:
            print(ts.call("math", "add", {"a": 1, "b": 2}).content)
    """

    def __init__(self, config: ToolspaceConfig | None = None, *, plugin_manager: PluginManager | None = None) -> None:
        self.config = config or ToolspaceConfig()
        self._pm = plugin_manager
        self._servers: dict[str, ServerInfo] = {}
        self._connections: dict[str, Connection] = {}  # live servers only
        self._hub: _Hub | None = None
        self._hub_members: list[str] = []
        self._validators: dict[str, ArgumentValidator] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._restart_lock: asyncio.Lock | None = None
        self.startup_seconds: float | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> Toolspace:
        """From a YAML/TOML file or a Claude-Desktop/Cursor ``{"mcpServers": ...}`` JSON file."""
        cfg = load_config(path)
        return cls(cfg.model_copy(update=overrides) if overrides else cfg)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> Toolspace:
        cfg = config_from_dict(data)
        return cls(cfg.model_copy(update=overrides) if overrides else cfg)

    @classmethod
    def default(
        cls,
        servers: Iterable[str] | None = None,
        *,
        transport: str = "hub",
        seed: int = 0,
        **overrides: Any,
    ) -> Toolspace:
        """The embedded servers (``atlas_plugins/envs``); ``transport`` is ``"hub"`` or ``"stdio"``."""
        from atlas_plugins.envs import EMBEDDED_SERVERS

        names = list(servers) if servers is not None else list(EMBEDDED_SERVERS)
        unknown = [n for n in names if n not in EMBEDDED_SERVERS]
        if unknown:
            raise ConfigError(
                f"unknown embedded server(s) {', '.join(map(repr, unknown))}; available: {', '.join(EMBEDDED_SERVERS)}"
            )
        cfg = ToolspaceConfig(
            servers=[ServerConfig(name=n, embedded=True) for n in names],
            embedded_transport=transport,  # type: ignore[arg-type]
            seed=seed,
            **overrides,
        )
        return cls(cfg)

    def add_catalog(self, source: str | Path | Iterable[dict[str, Any]], *, limit: int | None = None) -> list[str]:
        """Add catalogue-only servers (a JSONL path or records). Returns the names added."""
        if isinstance(source, (str, Path)):
            infos = load_catalog(source, limit=limit)
        else:
            infos = [server_from_record(r) for r in list(source)[:limit]]
        infos = dedupe_names(infos, taken=set(self._servers))
        for info in infos:
            self._servers[info.name] = info
        return [i.name for i in infos]

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Toolspace:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._started:
            self.start()
        return self._submit(coro).result()

    def start(self) -> Toolspace:
        """Start every live server concurrently and list all tools. Idempotent."""
        if self._started:
            return self
        t0 = time.perf_counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="atlas-toolspace", daemon=True)
        self._thread.start()
        self._started = True
        try:
            self._submit(self._start_all()).result()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - t0
        return self

    async def _start_all(self) -> None:
        from atlas_plugins.toolspace.connection import Connection, python_executable

        self._restart_lock = asyncio.Lock()
        cfg = self.config
        embedded = [s for s in cfg.servers if s.embedded and not s.disabled]
        live: list[tuple[ServerConfig, Connection]] = []
        if embedded:
            from atlas_plugins.envs import EMBEDDED_SERVERS, stdio_command, stdio_env

            if cfg.embedded_transport == "hub":
                self._hub_members = [s.name for s in embedded]
                self._hub = _Hub(self._hub_members, cfg.seed)
                url = await asyncio.to_thread(self._hub.start, cfg.connect_timeout)
                for s in embedded:
                    live.append((s, Connection(s.name, url=f"{url}/{s.name}/mcp")))
            else:
                for s in embedded:
                    cmd, args = stdio_command(s.name)
                    env = {**stdio_env(), "ATLAS_ENV_SEED": str(cfg.seed)}
                    live.append((s, Connection(s.name, command=cmd, args=args, env=env)))
            for s in embedded:
                s.summary = s.summary or EMBEDDED_SERVERS[s.name].summary
        for s in cfg.servers:
            if s.disabled or s.embedded:
                continue
            if s.transport == "stdio":
                command = python_executable() if s.command in ("python", "python3") else s.command
                conn = Connection(
                    s.name, command=command, args=s.args, env=s.env, cwd=s.cwd, max_line_bytes=cfg.max_message_bytes
                )
                live.append((s, conn))
            elif s.transport == "http":
                conn = Connection(s.name, url=s.url, headers=s.headers, max_line_bytes=cfg.max_message_bytes)
                live.append((s, conn))
            elif s.catalog:
                for info in dedupe_names(load_catalog(s.catalog, limit=s.limit), taken=set(self._servers)):
                    self._servers[info.name] = info
            else:  # inline tools
                info = server_from_record({"name": s.name, "summary": s.summary, "tools": s.tools})
                self._servers[info.name] = info

        async def open_one(s: ServerConfig, conn: Connection) -> None:
            await conn.start(cfg.connect_timeout)
            try:
                # The listing is bounded too: a server that answers the handshake, then never its
                # tools/list (or with a reply the SDK drops as unparseable), must not hang start().
                async with asyncio.timeout(cfg.connect_timeout):
                    tools = await conn.list_tools()
                summary = s.summary or (conn.client.instructions if conn.client else None) or ""
                self._servers[s.name] = ServerInfo(
                    name=s.name,
                    summary=summary.strip().splitlines()[0] if summary.strip() else "",
                    transport=conn.transport,  # type: ignore[arg-type]
                    tools=[
                        ToolSpec(
                            server=s.name,
                            name=t.name,
                            description=t.description or "",
                            input_schema=t.input_schema or {"type": "object", "properties": {}},
                            output_schema=t.output_schema,
                        )
                        for t in usable_tools(s.name, tools)
                    ],
                )
                self._connections[s.name] = conn
            except BaseException as exc:
                await conn.close()  # not registered, so nothing else would stop its process
                if isinstance(exc, TimeoutError):
                    raise ToolspaceError(
                        f"server {s.name!r} did not list its tools within {cfg.connect_timeout:g}s"
                    ) from None
                raise

        results = await asyncio.gather(*(open_one(s, c) for s, c in live), return_exceptions=True)
        # Servers finish starting in any order; keep the config's order so prompts (server
        # indexes, tool listings) are the same from run to run.
        order = {s.name: i for i, s in enumerate(cfg.servers)}
        self._servers = dict(sorted(self._servers.items(), key=lambda kv: order.get(kv[0], len(order))))
        failures = [
            f"{s.name}: {r}" + (f" (stderr: {tail})" if (tail := c.stderr_tail(300)) else "")
            for (s, c), r in zip(live, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if failures:
            raise ToolspaceError("could not start MCP server(s):\n  " + "\n  ".join(failures))

    def close(self) -> None:
        """Close every session and stop every server process this toolspace started."""
        if self._loop is None:
            return
        if self._loop.is_running():
            try:
                self._submit(self._close_all()).result(timeout=15)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._hub is not None:
            self._hub.stop()
            self._hub = None
        self._loop = None
        self._thread = None
        self._started = False

    async def _close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self._connections.values()), return_exceptions=True)
        self._connections.clear()

    # -- catalogue ---------------------------------------------------------------------------
    @property
    def servers(self) -> list[ServerInfo]:
        if not self._started and any(not s.disabled for s in self.config.servers):
            self.start()
        return list(self._servers.values())

    @property
    def server_names(self) -> list[str]:
        return [s.name for s in self.servers]

    def server(self, name: str) -> ServerInfo:
        servers = {s.name: s for s in self.servers}
        if name not in servers:
            hint = closest(name, servers)
            raise KeyError(self._unknown_server_message(name, hint, list(servers)))
        return servers[name]

    def list_tools(self, server: str | None = None) -> list[ToolSpec]:
        if server is not None:
            return list(self.server(server).tools)
        return [t for s in self.servers for t in s.tools]

    def get_tool(self, qualified_name: str) -> ToolSpec | None:
        try:
            server, tool = split_qualified(qualified_name)
        except ValueError:
            return None
        info = {s.name: s for s in self.servers}.get(server)
        if info is None:
            return None
        return next((t for t in info.tools if t.name == tool), None)

    @staticmethod
    def _unknown_server_message(name: str, hint: list[str], known: list[str]) -> str:
        msg = f"unknown server {name!r}."
        if hint:
            msg += f" Did you mean {' or '.join(repr(h) for h in hint)}?"
        return msg + f" Available servers: {listing(known)}"

    # -- calls -------------------------------------------------------------------------------
    def call(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        episode: str | None = None,
        timeout: float | None = None,
    ) -> ToolResult:
        """Call ``server:tool``. Never raises for tool-level problems: check ``result.ok``."""
        return self._run(self.acall(server, tool, arguments, episode=episode, timeout=timeout))

    def call_qualified(self, name: str, arguments: dict[str, Any] | None = None, **kw: Any) -> ToolResult:
        try:
            server, tool = split_qualified(name)
        except ValueError as exc:
            return ToolResult(ok=False, server="", tool=name, error=str(exc), error_type="unknown_tool")
        return self.call(server, tool, arguments, **kw)

    async def acall(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        episode: str | None = None,
        timeout: float | None = None,
    ) -> ToolResult:
        """Async :meth:`call`. Safe to await from any loop (it hops onto the toolspace's loop)."""
        if self._loop is None or asyncio.get_running_loop() is not self._loop:
            if not self._started:
                await asyncio.to_thread(self.start)
            return await asyncio.wrap_future(
                self._submit(self._acall(server, tool, arguments, episode=episode, timeout=timeout))
            )
        return await self._acall(server, tool, arguments, episode=episode, timeout=timeout)

    async def _acall(self, server: str, tool: str, arguments: dict[str, Any] | None, **kw: Any) -> ToolResult:
        t0 = time.perf_counter()
        try:
            return await self._acall_checked(server, tool, arguments, t0=t0, **kw)
        except Exception as exc:  # noqa: BLE001 - one bad call must not sink an episode or a batch
            # What the server sent (its schema, its result) is untrusted input: a failure in our
            # handling of it is an observation for the model, like the server's own errors.
            log.warning("%s:%s: the call failed on the host: %r", server, tool, exc)
            return _failed(
                server, tool, f"{server}:{tool} failed: {type(exc).__name__}: {str(exc)[:300]}", "internal", t0
            )

    async def _acall_checked(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        episode: str | None,
        timeout: float | None,
        t0: float,
    ) -> ToolResult:
        def fail(error: str, kind: str) -> ToolResult:
            return _failed(server, tool, error, kind, t0)

        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            return fail(
                f"arguments for {server}:{tool} must be a JSON object, got {type(arguments).__name__}",
                "invalid_arguments",
            )
        info = self._servers.get(server)
        if info is None:
            known = list(self._servers)
            return fail(self._unknown_server_message(server, closest(server, known), known), "unknown_server")
        spec = next((t for t in info.tools if t.name == tool), None)
        if spec is None:
            names = [t.name for t in info.tools]
            hint = closest(tool, names)
            msg = f"no tool {tool!r} on server {server!r}."
            if hint:
                msg += f" Did you mean {' or '.join(repr(h) for h in hint)}?"
            msg += f" Its tools: {', '.join(names[:30])}" + (" …" if len(names) > 30 else "")
            return fail(msg, "unknown_tool")
        validator = self._validators.get(spec.qualified_name)
        if validator is None:
            validator = self._validators[spec.qualified_name] = ArgumentValidator(spec)
        problem = validator.check(arguments)
        if problem:
            return fail(problem, "invalid_arguments")
        if info.catalog_only:
            return fail(
                f"server {server!r} is catalogue only (its schemas are known but no process runs it), "
                "so its tools cannot be called here",
                "catalog_only",
            )
        veto = self._plugin_manager().before_tool_call(server, tool, arguments)
        if veto:
            return fail(f"the call {server}:{tool} was {veto}", "vetoed")

        from atlas_plugins.toolspace.connection import ServerExited

        meta = {EPISODE_META_KEY: episode} if episode else None
        limit = timeout if timeout is not None else self.config.call_timeout
        conn = self._connections.get(server)
        if conn is None or not conn.alive or (server in self._hub_members and not (self._hub and self._hub.alive)):
            # The server went away after an earlier call: restart it (within the budget) first.
            if not await self._restart(server):
                tail = self._stderr_tail(server)
                return fail(
                    f"server {server!r} has exited and was not restarted again "
                    f"(restarts used: {conn.restarts if conn else 0} of {self.config.max_restarts})"
                    + (f"; last stderr: {tail}" if tail else ""),
                    "server_exited",
                )
            conn = self._connections[server]
        try:
            # asyncio.timeout (not wait_for): no extra task per call, which is measurable here.
            async with asyncio.timeout(limit):
                result = await conn.call(tool, arguments, meta)
        except TimeoutError:
            return fail(f"{server}:{tool} timed out after {limit:g}s", "timeout")
        except ServerExited as exc:
            # Not retried: the call itself may be what kills the server. The next call restarts it.
            tail = self._stderr_tail(server)
            return fail(
                f"server {server!r} exited while handling {tool!r} ({exc})"
                + (f"; last stderr: {tail}" if tail else ""),
                "server_exited",
            )
        except Exception as exc:  # noqa: BLE001 - any protocol error becomes an observation
            from atlas_plugins.toolspace.connection import describe_error

            return fail(f"{server}:{tool} failed: {describe_error(exc)}", "transport")
        return self._to_result(server, tool, result, t0)

    def _to_result(self, server: str, tool: str, result: CallResult, t0: float) -> ToolResult:
        if result.structured_content is not None and nesting_exceeds(result.structured_content, MAX_JSON_DEPTH):
            # A hostile server's structure would break repr/json.dumps further down (RecursionError).
            return ToolResult(
                ok=False,
                server=server,
                tool=tool,
                content=None,
                text=f"Error: {server}:{tool} returned a value nested deeper than {MAX_JSON_DEPTH} levels",
                error=f"{server}:{tool} returned a value nested deeper than {MAX_JSON_DEPTH} levels",
                error_type="invalid_result",
                elapsed_ms=(time.perf_counter() - t0) * 1000,
            )
        parts = []
        for block in result.content or []:
            kind = getattr(block, "type", "")
            if kind == "text":
                parts.append(block.text)
            elif kind in ("image", "audio"):
                from atlas_plugins.mcp_compat import field  # mime_type (mcp 2.x) or mimeType (1.x)

                parts.append(f"[{kind} {field(block, 'mime_type', '')}]")
            elif kind == "resource":
                res = block.resource
                parts.append(getattr(res, "text", None) or f"[resource {getattr(res, 'uri', '')}]")
            elif kind == "resource_link":
                parts.append(f"[resource link {getattr(block, 'uri', '')}]")
        raw = "\n".join(parts)
        if not raw and result.structured_content is not None:
            raw = json.dumps(result.structured_content, ensure_ascii=False)
        text, truncated = truncate(raw, self.config.max_response_chars)
        if result.is_error:
            return ToolResult(
                ok=False,
                server=server,
                tool=tool,
                content=None,
                text=f"Error: {text}",
                error=text,
                error_type="tool_error",
                truncated=truncated,
                elapsed_ms=(time.perf_counter() - t0) * 1000,
            )
        structured = result.structured_content
        if structured is not None:
            structured = unwrap_structured(structured, self._output_schema(server, tool))
        return ToolResult(
            ok=True,
            server=server,
            tool=tool,
            content=structured if structured is not None else parse_text(raw),
            text=text,
            truncated=truncated,
            elapsed_ms=(time.perf_counter() - t0) * 1000,
        )

    def _output_schema(self, server: str, tool: str) -> dict[str, Any] | None:
        info = self._servers.get(server)
        spec = next((t for t in info.tools if t.name == tool), None) if info else None
        return spec.output_schema if spec else None

    def _plugin_manager(self) -> PluginManager:
        if self._pm is None:
            from atlas_plugins.plugins import get_plugin_manager

            return get_plugin_manager()
        return self._pm

    def _stderr_tail(self, server: str) -> str:
        if server in self._hub_members and self._hub is not None:
            return self._hub.stderr_tail()
        conn = self._connections.get(server)
        return conn.stderr_tail() if conn is not None else ""

    async def _restart(self, server: str) -> bool:
        """Restart a server that went away, at most ``max_restarts`` times per server."""
        assert self._restart_lock is not None
        async with self._restart_lock:
            conn = self._connections.get(server)
            if conn is None:
                return False
            if conn.alive and (server not in self._hub_members or (self._hub and self._hub.alive)):
                return True  # another call already restarted it
            if conn.restarts >= self.config.max_restarts:
                return False
            if server in self._hub_members and self._hub is not None:
                # One hub process serves every embedded server: restart it and reconnect all.
                members = [self._connections[m] for m in self._hub_members if m in self._connections]
                for m in members:
                    await m.close()
                self._hub.stop()
                try:
                    url = await asyncio.to_thread(self._hub.start, self.config.connect_timeout)
                except ToolspaceError:
                    return False
                ok = True
                for m in members:
                    m.restarts += 1
                    m.url = f"{url}/{m.name}/mcp"
                    try:
                        await m.start(self.config.connect_timeout)
                    except Exception:  # noqa: BLE001
                        ok = False
                return ok and conn.alive
            conn.restarts += 1
            await conn.close()
            try:
                await conn.start(self.config.connect_timeout)
            except Exception:  # noqa: BLE001
                return False
            return conn.alive


_BIDI_AND_BREAKS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\u200e\u200f")


def _unsafe_char(c: str) -> bool:
    # Control characters, bidirectional overrides and line separators; joiners (U+200C/D, part
    # of Persian and Indic words and of emoji) and letters newer than this Python's tables stay.
    return unicodedata.category(c) == "Cc" or c in _BIDI_AND_BREAKS


def _failed(server: str, tool: str, error: str, kind: str, t0: float) -> ToolResult:
    """A failed call's result, as the model sees it."""
    return ToolResult(
        ok=False,
        server=server,
        tool=tool,
        error=error,
        error_type=kind,
        text=f"Error: {error}",
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )


def usable_tools(server: str, tools: list[ToolDef]) -> list[ToolDef]:
    """A live server's tools without those no agent can name safely: an empty or over-long name,
    a name with control or format characters (newlines, terminal escapes, bidirectional
    overrides, which would go into prompts and code as they are), or a second tool of the same
    name (a call could not say which). Each one left out is logged."""
    seen: set[str] = set()
    kept = []
    for t in tools:
        name = t.name
        bad = not name or len(name) > 128 or any(_unsafe_char(c) for c in name)
        if bad or name in seen:
            log.warning(
                "server %r: tool %r left out (%s)",
                server,
                name[:80],
                "a duplicate name" if not bad else "an unusable name",
            )
            continue
        seen.add(name)
        kept.append(t)
    return kept


def unwrap_structured(value: Any, output_schema: dict[str, Any] | None) -> Any:
    """Undo the ``{"result": x}`` envelope MCP servers put around non-object results.

    The SDK wraps lists, scalars and ``None`` because structured content must be an object;
    the schema then has exactly one required property, ``result``. The agent wants ``x``.
    """
    if not isinstance(value, dict) or set(value) != {"result"} or not isinstance(output_schema, dict):
        return value
    props = output_schema.get("properties") or {}
    if set(props) == {"result"}:
        return value["result"]
    return value


def parse_text(text: str) -> Any:
    """MCP text content as a Python value: JSON when it parses (within the size and nesting caps
    of :func:`~atlas_plugins.values.loads_bounded`: a server's text is untrusted), else the text."""
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null") or _looks_numeric(stripped):
        try:
            return loads_bounded(stripped)
        except ValueError:
            pass
    return text


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
