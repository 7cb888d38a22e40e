"""The ``e2b`` executor: cells run in an E2B cloud sandbox (``e2b-code-interpreter``).

Same session semantics as ``local``: the stdlib-only runner
(:mod:`atlas_plugins.orchestration.sandbox_runner`) is written into the sandbox with
``sandbox.files.write`` and started as a long-lived relay process with
``sandbox.commands.run(cmd, background=True, stdin=True, timeout=0)``. Messages travel as one
JSON object per line: host -> sandbox with ``sandbox.commands.send_stdin(pid, line)``, sandbox
-> host through the ``on_stdout`` callback of ``handle.wait(...)`` running in a reader thread.
Tool calls come back to the host, which makes the MCP call (vetoes apply, MCP credentials
never enter the sandbox) exactly as for the local executor.

The SDK is imported lazily, only when no ``sandbox_factory`` is given. The test suite cannot
reach E2B's cloud; it injects a local stand-in that implements exactly the SDK subset used here
(``files.write``, ``commands.run(..., background=True, stdin=True, timeout=0)`` returning a
handle with ``pid`` and ``wait(on_stdout=, on_stderr=)``, ``commands.send_stdin``,
``commands.kill``, ``kill``) with local processes. ``files.write``, ``send_stdin`` and
``commands.kill`` get the SDK's ``request_timeout`` (seconds), and ``commands.run`` gets
``retain_output=False``; a provider without those parameters is called without them.
"""

from __future__ import annotations

import inspect
import json
import queue
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.orchestration.bridge import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_CONTAINERS,
    BridgedSession,
    CellTimeout,
    ProtocolViolation,
    SandboxDied,
    ToolBridge,
    Transport,
    parse_message,
)
from atlas_plugins.values import printable

if TYPE_CHECKING:
    from atlas_plugins.orchestration.bridge import Message
    from atlas_plugins.toolspace import Toolspace

RUNNER_SOURCE = Path(__file__).resolve().parent.parent / "sandbox_runner.py"
VALUES_SOURCE = Path(__file__).resolve().parents[2] / "values.py"
_DEAD = object()


class E2BOptions(BaseModel):
    """Options of the ``e2b`` executor."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    timeout: float = Field(30.0, gt=0, description="wall-time budget per cell, seconds, tool calls included")
    start_timeout: float = Field(60.0, gt=0)
    template: str | None = None
    sandbox_timeout: int = Field(600, gt=0, description="lifetime of the E2B sandbox, seconds")
    allow_internet_access: bool = False
    api_key: str | None = None
    python: str = "python3"
    runner_path: str = "/tmp/atlas_runner.py"
    cpu_seconds: int = 300
    memory_mb: int = 2048
    max_output_chars: int = 200_000
    response_limit: int = 4000
    max_calls_per_cell: int = 30


def _default_factory(o: E2BOptions) -> Any:
    from e2b_code_interpreter import Sandbox  # lazy: optional dependency, network client

    kwargs: dict[str, Any] = {
        "timeout": o.sandbox_timeout,
        "allow_internet_access": o.allow_internet_access,
        # The SDK's default for each request of this sandbox, seconds (60 otherwise); calls that
        # run inside a cell pass their own, the rest of the cell's budget.
        "request_timeout": o.start_timeout,
    }
    if o.template:
        kwargs["template"] = o.template
    if o.api_key:
        kwargs["api_key"] = o.api_key
    return Sandbox.create(**kwargs)


class E2BTransport(Transport):
    """The runner as a background command in one E2B sandbox, reached over its stdin/stdout."""

    def __init__(self, sandbox: Any, o: E2BOptions) -> None:
        self.sandbox, self.o = sandbox, o
        self.handle: Any = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._partial = ""
        self._stderr: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        # One budget for the whole start, as for the local executor: a stalled connection fails
        # the start after ``start_timeout`` instead of the SDK's 60-s default per request (the
        # bridge waits for the runner's 'ready' within the same budget).
        deadline = time.monotonic() + self.o.start_timeout
        try:
            self._start(deadline)
        except CellTimeout:
            raise  # the bridge names the start budget in its error
        except Exception as exc:
            mapped = _bridge_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _start(self, deadline: float) -> None:
        def write(path: str, text: str) -> None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellTimeout()
            _with_optional(self.sandbox.files.write, path, text, request_timeout=left)

        write(self.o.runner_path, RUNNER_SOURCE.read_text(encoding="utf-8"))
        # The runner imports its value helpers from a copy of atlas_plugins/values.py beside it.
        write(str(Path(self.o.runner_path).with_name("atlas_values.py")), VALUES_SOURCE.read_text(encoding="utf-8"))
        limits = {"cpu_seconds": self.o.cpu_seconds, "memory_bytes": self.o.memory_mb * 1024 * 1024}
        cmd = " ".join(
            [
                shlex.quote(self.o.python),
                "-I",
                "-S",
                "-B",
                "-u",
                shlex.quote(self.o.runner_path),
                "--transport",
                "lines",
                "--limits",
                shlex.quote(json.dumps(limits)),
                "--output-limit",
                str(self.o.max_output_chars),
            ]
        )
        self._queue = queue.Queue()
        self._partial = ""
        # retain_output=False: by default the SDK's handle also keeps every stdout chunk of the
        # command for its result. The relay lives as long as the session and its stdout is the
        # sandbox's side of the bridge, so that copy would grow with everything the sandbox sends.
        # The SDK applies no request timeout to this streaming call (and timeout=0 lets the relay
        # live on), so its start is waited for in a thread, up to the deadline.
        self.handle = _before(
            deadline,
            lambda: _with_optional(
                self.sandbox.commands.run, cmd, background=True, stdin=True, timeout=0, retain_output=False
            ),
            on_late=lambda handle: _with_optional(
                self.sandbox.commands.kill, handle.pid, request_timeout=_STOP_TIMEOUT_S
            ),
        )
        self._reader = threading.Thread(target=self._pump, name="atlas-e2b-reader", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        try:
            self.handle.wait(on_stdout=self._on_stdout, on_stderr=self._on_stderr)
        except Exception as exc:  # noqa: BLE001 - CommandExitException or a lost connection
            self._stderr.append(f"[relay ended: {exc}]")
        self._queue.put(_DEAD)

    def _on_stdout(self, chunk: str) -> None:
        self._partial += chunk
        if "\n" in chunk:
            # One split, not a partition per line: the sandbox picks the chunk, and a chunk of a
            # million empty lines would cost the host's reader thread quadratic time.
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._queue.put(line)
        if len(self._partial) > MAX_MESSAGE_BYTES:
            self._queue.put(ProtocolViolation(f"a line over the {MAX_MESSAGE_BYTES}-byte cap"))
            self._partial = ""

    def _on_stderr(self, chunk: str) -> None:
        self._stderr.append(chunk)
        if sum(len(c) for c in self._stderr) > 20_000:
            self._stderr = self._stderr[-20:]

    def send(self, msg: dict[str, Any], deadline: float | None = None) -> None:
        line = json.dumps(msg, ensure_ascii=True) + "\n"
        # Bounded by the cell's deadline, as the local transport's write is: a stalled sandbox or
        # connection must not hold the host past the cell's budget (the SDK's default is 60 s).
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise CellTimeout()
        try:
            _with_optional(self.sandbox.commands.send_stdin, self.handle.pid, line, request_timeout=left)
        except Exception as exc:
            mapped = _bridge_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def recv(self, deadline: float) -> Message:
        try:
            item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise CellTimeout() from None
        if item is _DEAD:
            self._queue.put(_DEAD)
            raise SandboxDied(self.diagnostics() or "the relay process exited")
        if isinstance(item, Exception):
            raise item
        return parse_message(
            item.encode("utf-8", "surrogatepass"), max_containers=MAX_MESSAGE_CONTAINERS + self.o.max_output_chars
        )

    def diagnostics(self) -> str:
        return printable("".join(self._stderr)[-600:].strip())  # the sandbox wrote it

    def stop(self) -> None:
        if self.handle is not None:
            try:  # bounded: a restart after a stalled connection must not wait the SDK's 60 s
                _with_optional(self.sandbox.commands.kill, self.handle.pid, request_timeout=_STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - already gone, or unreachable
                pass
            if self._reader is not None:
                self._reader.join(timeout=5)
            self.handle = None


_STOP_TIMEOUT_S = 5.0


_OPTIONAL_KWARGS = ("request_timeout", "retain_output")


def _with_optional(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, without those of the SDK's newer keyword arguments
    (``request_timeout``, ``retain_output``) that ``call``'s signature does not take (an older
    SDK, a custom ``sandbox_factory``). Decided from the signature before calling, so a call is
    never made twice. ``None`` values are not passed at all."""
    kwargs = {k: v for k, v in kwargs.items() if not (k in _OPTIONAL_KWARGS and v is None)}
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):  # no signature to read (a C callable): pass what was given
        return call(*args, **kwargs)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k not in _OPTIONAL_KWARGS or k in params}
    return call(*args, **kwargs)


_T = TypeVar("_T")


def _before(deadline: float, call: Callable[[], _T], on_late: Callable[[_T], object]) -> _T:
    """``call()`` in a daemon thread, waited for until ``deadline``: past it, :class:`CellTimeout`,
    and a result that still arrives later is handed to ``on_late`` (to stop what it started)."""
    lock = threading.Lock()
    done = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            value = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
            done.set()
            return
        with lock:
            box["value"] = value
            late = box.get("abandoned", False)
            done.set()
        if late:
            try:
                on_late(value)
            except Exception:  # noqa: BLE001 - best effort: nobody waits for it any more
                pass

    threading.Thread(target=work, name="atlas-e2b-start", daemon=True).start()
    done.wait(max(0.0, deadline - time.monotonic()))
    with lock:
        if not done.is_set():
            box["abandoned"] = True
            raise CellTimeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _bridge_error(exc: Exception) -> Exception:
    """The bridge's name for a failed SDK call, so that ``session.run`` reports it as a cell result.

    Matched by class names, since the SDK is optional and not imported here: a sandbox that is
    gone or unreachable (``SandboxNotRunningException``, ``SandboxUnreachableException``, both
    subclasses of ``TimeoutException``, or ``SandboxNotFoundException``) is :class:`SandboxDied`;
    a request past its timeout is :class:`CellTimeout`; any other SDK or connection error is
    :class:`SandboxDied` too (the relay cannot be reached). Anything else is returned unchanged."""
    names = {c.__name__ for c in type(exc).__mro__}
    gone = {"SandboxNotRunningException", "SandboxUnreachableException", "SandboxNotFoundException"}
    if names & gone:
        return SandboxDied(f"the E2B sandbox is gone or unreachable: {str(exc)[:300]}")
    if "TimeoutException" in names:
        return CellTimeout()
    if names & {"SandboxException", "ConnectError"}:
        return SandboxDied(f"the E2B connection failed: {type(exc).__name__}: {str(exc)[:300]}")
    return exc


class E2BSession(BridgedSession):
    """A :class:`BridgedSession` that also owns (and on close kills) its E2B sandbox."""

    sandbox: Any = None

    def close(self) -> None:
        super().close()
        if self.sandbox is not None:
            try:
                _with_optional(self.sandbox.kill, request_timeout=_STOP_TIMEOUT_S)
            finally:
                self.sandbox = None


class E2BExecutor:
    """Runs ``code_interpreter`` cells in E2B sandboxes (registered ``e2b``).

    ``E2BExecutor(template=..., api_key=..., timeout=30)``; pass ``sandbox_factory`` (a
    callable returning an object with the SDK subset above) to use another sandbox provider or
    a local stand-in. One sandbox per session; a crashed or timed-out relay is restarted in the
    same sandbox (its variables are lost, files in the sandbox stay).
    """

    name = "e2b"

    def __init__(self, *, sandbox_factory: Callable[[], Any] | None = None, **options: Any) -> None:
        self.options = E2BOptions(**options)
        self.sandbox_factory = sandbox_factory or (lambda: _default_factory(self.options))

    def open_session(
        self, toolspace: Toolspace, *, episode: str | None = None, servers: list[str] | None = None
    ) -> E2BSession:
        bridge = ToolBridge(
            toolspace, episode=episode, servers=servers, max_calls_per_cell=self.options.max_calls_per_cell
        )
        sandbox = self.sandbox_factory()
        o = self.options
        try:
            session = E2BSession(
                lambda: E2BTransport(sandbox, o),
                bridge,
                timeout=o.timeout,
                start_timeout=o.start_timeout,
                response_limit=o.response_limit,
                output_limit=o.max_output_chars,
            )
        except BaseException:
            _with_optional(sandbox.kill, request_timeout=_STOP_TIMEOUT_S)
            raise
        session.sandbox = sandbox
        return session


@hookimpl
def atlas_register_executors(register: Register) -> None:
    register("e2b", E2BExecutor)
