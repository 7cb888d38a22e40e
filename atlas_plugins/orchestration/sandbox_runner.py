"""The sandbox side of ``code_interpreter``: one stdlib-only script, run inside the sandbox.

The host never imports model code; it copies this file into the sandbox (bubblewrap:
``--ro-bind-data``; E2B: ``files.write``) and runs it with an isolated interpreter
(``python -I -S``). It keeps one namespace across cells (Jupyter-like) and talks to the host
over a *bridge*: two framings of the same JSON messages.

* ``fd`` transport (local executor): 4-byte big-endian length + UTF-8 JSON, on two pipe fds
  the host passes in (``--rfd``/``--wfd``).
* ``lines`` transport (E2B): one JSON object per line on stdin/stdout (E2B's process API
  carries text). The original fds 0/1 are moved away first, so a stray ``os.write(1, ...)``
  from model code lands on stderr, not in the bridge.

Messages (host -> sandbox): ``{"op": "run", "cell": n, "code": str}``,
``{"op": "result", "id": n, "ok": bool, "content": any, "error": str}``.
Messages (sandbox -> host): ``ready``, ``server``/``call``/``info`` requests (each with an
``id``), ``done``. The host treats everything it receives as untrusted: model code runs in
this process and can write anything on the bridge fds.

The host also imports :func:`to_python` and :func:`describe_value` from this module (so both
sides convert tool output the same way); nothing else here runs on import.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import linecache
import os
import struct
import sys
import traceback
from typing import Any

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
VALUE_REPR_CHARS = 20_000
_HEADER = struct.Struct(">I")


# -- value helpers (shared with the host) ---------------------------------------------------
def to_python(content: Any) -> Any:
    """A tool result as a Python value: already-decoded JSON stays; text goes through
    ``ast.literal_eval`` (Python reprs such as ``{'a': 1}`` or ``(1, 2)``), else stays text."""
    if not isinstance(content, str):
        return content
    text = content.strip()
    if not text or len(text) > 1_000_000 or text[0] not in "[{(\"'-0123456789TFN":
        return content
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return content


def describe_value(value: Any, depth: int = 0) -> str:
    """A compact type sketch of a value: ``{"total": float, "items": list[{"id": str}]}``."""
    if depth > 3:
        return "..."
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "None"
    if isinstance(value, (int, float, str)):
        return type(value).__name__
    if isinstance(value, dict):
        items = list(value.items())
        inner = ", ".join(f"{json.dumps(str(k))}: {describe_value(v, depth + 1)}" for k, v in items[:12])
        return "{" + inner + (", ..." if len(items) > 12 else "") + "}"
    if isinstance(value, (list, tuple)):
        name = type(value).__name__
        return f"{name}[{describe_value(value[0], depth + 1)}]" if value else f"{name} (empty)"
    return type(value).__name__


# -- the bridge ---------------------------------------------------------------------------
class BridgeError(Exception):
    """The host answered something this runner cannot use, or the bridge closed."""


class Bridge:
    def __init__(self, transport: str, rfd: int, wfd: int) -> None:
        self.transport, self.rfd, self.wfd = transport, rfd, wfd
        self._buf = b""

    def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False, default=repr).encode("utf-8", "replace")
        if self.transport == "lines":
            data = json.dumps(obj, ensure_ascii=True, default=repr).encode("ascii") + b"\n"
        else:
            data = _HEADER.pack(len(data)) + data
        view = memoryview(data)
        while view:
            n = os.write(self.wfd, view)
            view = view[n:]

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = os.read(self.rfd, max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError("bridge closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self) -> dict[str, Any]:
        if self.transport == "lines":
            while b"\n" not in self._buf:
                if len(self._buf) > MAX_MESSAGE_BYTES:
                    raise BridgeError("oversized message from host")
                chunk = os.read(self.rfd, 65536)
                if not chunk:
                    raise EOFError("bridge closed")
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\n")
            payload = line
        else:
            (size,) = _HEADER.unpack(self._read(_HEADER.size))
            if size > MAX_MESSAGE_BYTES:
                raise BridgeError("oversized message from host")
            payload = self._read(size)
        msg = json.loads(payload)
        if not isinstance(msg, dict):
            raise BridgeError("host sent a non-object message")
        return msg


BRIDGE: Bridge | None = None
_NEXT_ID = 0


def _request(op: str, **fields: Any) -> Any:
    """One request/response round trip to the host; raises ToolError when it says not ok."""
    global _NEXT_ID
    assert BRIDGE is not None
    _NEXT_ID += 1
    rid = _NEXT_ID
    try:
        BRIDGE.send({"op": op, "id": rid, **fields})
    except (TypeError, ValueError) as exc:  # pragma: no cover - default=repr makes this rare
        raise TypeError(f"tool arguments must be JSON values (str, int, float, bool, None, list, dict): {exc}") from None
    reply = BRIDGE.recv()
    if reply.get("op") != "result" or reply.get("id") != rid:
        raise BridgeError(f"unexpected reply from host: {str(reply)[:200]}")
    if not reply.get("ok"):
        raise ToolError(str(reply.get("error") or "tool call failed"))
    return reply.get("content")


class ToolError(Exception):
    """A tool call failed (unknown tool, invalid arguments, server error, blocked by policy)."""


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; tool arguments are JSON, keys must be str")
            _check_json(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; tool arguments must be str, int, float, bool, None, list or dict"
    )


class ToolsInfo(str):
    """Text whose repr is itself, so ``m.get_tools_info([...])`` prints readably as a cell value."""

    def __repr__(self) -> str:
        return str(self)


class MCPServer:
    """One MCP server of the toolspace: ``m = MCPServer('math'); m.add(a=1, b=2)``."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"MCPServer(name) takes the server name as a str, got {type(name).__name__}")
        tools = _request("server", server=name)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_tools", list(tools or []))

    def __repr__(self) -> str:
        return f"MCPServer({self._name!r})  # tools: {', '.join(self._tools)}"

    def __dir__(self) -> list[str]:
        return ["get_tools_info", "tools", *self._tools]

    @property
    def tools(self) -> list[str]:
        """The tool names of this server."""
        return list(self._tools)

    def get_tools_info(self, tools: list[str] | str | None = None) -> ToolsInfo:
        """Python signatures, output formats and an example for the named tools (all if None)."""
        if isinstance(tools, str):
            tools = [tools]
        if tools is not None:
            _check_json(tools, "tools")
        return ToolsInfo(_request("info", server=self._name, tools=tools))

    def __getattr__(self, tool: str) -> Any:
        if tool.startswith("__"):
            raise AttributeError(tool)
        server = self._name

        def call(*args: Any, **kwargs: Any) -> Any:
            _check_json(list(args), "positional arguments")
            _check_json(kwargs, "arguments")
            return to_python(_request("call", server=server, tool=tool, args=list(args), kwargs=kwargs))

        call.__name__ = tool
        call.__qualname__ = f"{server}.{tool}"
        return call


# -- running cells ------------------------------------------------------------------------
class _Capture(io.TextIOBase):
    """stdout/stderr of a cell, capped so an output flood cannot exhaust memory."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        s = str(s)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n…[{self.dropped} more characters of output dropped]"
        return out


def _format_error(exc: BaseException, filename_prefix: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(filename_prefix)]
    lines = []
    for f in frames[-3:]:
        src = (f.line or "").strip()
        lines.append(f"line {f.lineno}: {src}" if src else f"line {f.lineno}")
    head = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, SyntaxError):
        head = f"SyntaxError: {exc.msg} (line {exc.lineno})"
        if exc.text:
            head += f": {exc.text.strip()}"
        return head
    if isinstance(exc, NameError) and getattr(exc, "name", None):
        close = difflib.get_close_matches(exc.name, list(NAMESPACE), n=1)
        if close and "Did you mean" not in head:
            head += f". Did you mean {close[0]!r}?"
    return ("\n".join(lines) + "\n" + head) if lines else head


NAMESPACE: dict[str, Any] = {}


def _fresh_namespace() -> None:
    import types

    NAMESPACE.clear()
    NAMESPACE.update({"__name__": "__main__", "__builtins__": __builtins__, "MCPServer": MCPServer, "ToolError": ToolError})
    # The paper's prompt imports it as ``from MCPBench import MCPServer``; accept that too.
    for modname in ("MCPBench", "atlas_tools"):
        mod = types.ModuleType(modname)
        mod.MCPServer = MCPServer  # type: ignore[attr-defined]
        mod.ToolError = ToolError  # type: ignore[attr-defined]
        sys.modules[modname] = mod


def run_cell(cell: int, code: str, output_limit: int) -> dict[str, Any]:
    filename = f"<cell {cell}>"
    capture = _Capture(output_limit)
    value: str | None = None
    error: str | None = None
    error_type: str | None = None
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = capture
    try:
        lines = code.splitlines(keepends=True)
        linecache.cache[filename] = (len(code), None, lines, filename)
        tree = ast.parse(code, filename, "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), NAMESPACE)
        if last is not None:
            result = eval(compile(ast.Expression(last.value), filename, "eval"), NAMESPACE)
            if result is not None:
                NAMESPACE["_"] = result
                value = repr(result)
                if len(value) > VALUE_REPR_CHARS:
                    value = value[:VALUE_REPR_CHARS] + f"…[{len(value) - VALUE_REPR_CHARS} more characters]"
    except BridgeError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in a cell are errors too
        error_type = type(exc).__name__
        try:
            error = _format_error(exc, "<cell ")
        except Exception:  # noqa: BLE001 - a hostile __str__ must not kill the runner
            error = error_type
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    return {
        "op": "done",
        "cell": cell,
        "ok": error is None,
        "value": value,
        "stdout": capture.text(),
        "error": error,
        "error_type": error_type,
    }


def _apply_limits(limits: dict[str, int]) -> None:
    import resource
    import signal

    table = {
        "cpu_seconds": resource.RLIMIT_CPU,
        "memory_bytes": resource.RLIMIT_AS,
        "max_processes": resource.RLIMIT_NPROC,
        "max_file_bytes": resource.RLIMIT_FSIZE,
        "max_open_files": resource.RLIMIT_NOFILE,
    }
    for key, res in table.items():
        if limits.get(key):
            value = int(limits[key])
            resource.setrlimit(res, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Writing past the file-size limit raises OSError (EFBIG) instead of killing the interpreter.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# seccomp: refuse new processes (threads stay allowed). Syscall numbers per architecture.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENY = {
    "x86_64": {"fork": 57, "vfork": 58, "execve": 59, "execveat": 322},
    "aarch64": {"execve": 221, "execveat": 281},
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_CLONE_THREAD = 0x00010000


def _install_seccomp() -> bool:
    """Install a filter that makes fork/vfork/execve/execveat and non-thread clone fail with
    EPERM (clone3 with ENOSYS, so the C library falls back to clone for threads). Returns
    False on an architecture this filter does not know (the caller reports it)."""
    import ctypes
    import platform

    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        return False
    ret_allow = 0x7FFF0000
    ret_eperm = 0x00050000 | 1
    ret_enosys = 0x00050000 | 38
    ret_kill = 0x80000000  # SECCOMP_RET_KILL_PROCESS
    ld_w_abs, jeq_k, jge_k, jset_k, ret_k = 0x20, 0x15, 0x35, 0x45, 0x06
    prog: list[tuple[int, int, int, int]] = [
        (ld_w_abs, 0, 0, 4),  # arch
        (jeq_k, 1, 0, _AUDIT_ARCH[machine]),
        (ret_k, 0, 0, ret_kill),  # foreign ABI: never allowed
        (ld_w_abs, 0, 0, 0),  # syscall number
    ]
    if machine == "x86_64":
        prog += [(jge_k, 0, 1, 0x40000000), (ret_k, 0, 0, ret_eperm)]  # x32 ABI
    for nr in _DENY[machine].values():
        prog += [(jeq_k, 0, 1, nr), (ret_k, 0, 0, ret_eperm)]
    prog += [(jeq_k, 0, 1, _CLONE3), (ret_k, 0, 0, ret_enosys)]
    prog += [
        (jeq_k, 0, 3, _CLONE[machine]),
        (ld_w_abs, 0, 0, 16),  # low 32 bits of clone's flags
        (jset_k, 1, 0, _CLONE_THREAD),
        (ret_k, 0, 0, ret_eperm),
        (ret_k, 0, 0, ret_allow),
    ]

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    filters = (SockFilter * len(prog))(*[SockFilter(*ins) for ins in prog])
    fprog = SockFprog(len(prog), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True


def main(argv: list[str]) -> int:
    import argparse

    global BRIDGE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("fd", "lines"), default="fd")
    parser.add_argument("--rfd", type=int, default=0)
    parser.add_argument("--wfd", type=int, default=1)
    parser.add_argument("--limits", default="{}")
    parser.add_argument("--output-limit", type=int, default=200_000)
    parser.add_argument("--seccomp", action="store_true", help="refuse new processes (threads stay allowed)")
    opts = parser.parse_args(argv)
    _apply_limits(json.loads(opts.limits))
    seccomp = _install_seccomp() if opts.seccomp else False
    rfd, wfd = opts.rfd, opts.wfd
    if opts.transport == "lines":
        # Move the bridge off fds 0/1: stdin becomes /dev/null, stdout goes to stderr.
        rfd, wfd = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(2, 1)
        os.close(null)
    BRIDGE = Bridge(opts.transport, rfd, wfd)
    _fresh_namespace()
    BRIDGE.send({"op": "ready", "pid": os.getpid(), "python": sys.version.split()[0], "seccomp": seccomp})
    while True:
        try:
            msg = BRIDGE.recv()
        except EOFError:
            return 0
        if msg.get("op") == "run" and isinstance(msg.get("code"), str) and isinstance(msg.get("cell"), int):
            BRIDGE.send(run_cell(msg["cell"], msg["code"], opts.output_limit))
        elif msg.get("op") == "exit":
            return 0
        else:
            BRIDGE.send({"op": "done", "cell": -1, "ok": False, "error": f"runner: unexpected message {str(msg)[:200]}"})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
