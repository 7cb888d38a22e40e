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

Tool output is converted with :mod:`atlas_plugins.values` on both sides: the executor puts a
copy of that file beside this one as ``atlas_values.py``. Nothing here runs on import.

Output a cell prints is also mirrored into a fixed-size file the host passed in
(``--mirror-fd``), so what was printed before a crash (segfault, CPU limit, a blocked system
call) still reaches the model. The host reads it as untrusted text, like everything else.
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
from collections.abc import Callable
from typing import Any

if __package__:  # imported on the host
    from atlas_plugins.values import describe_value, to_python
else:  # run as a script in the sandbox, where the executor put a copy of values.py beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from atlas_values import describe_value, to_python  # type: ignore[no-redef]

    del sys.path[0]

__all__ = ["describe_value", "to_python", "main"]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
VALUE_REPR_CHARS = 20_000
ERROR_CHARS = 20_000  # an honest 9 MB exception message must not overflow the bridge
EXIT_CPU_LIMIT = 152  # 128 + SIGXCPU: the runner's own exit when the CPU-time limit is reached
EXIT_NO_MOUNTS = 71  # the runner could not hand the host its mounts (EX_OSERR): it ends before any cell
_HEADER = struct.Struct(">I")
_MIRROR_HEADER = struct.Struct(">QQ")  # (cell, bytes written) at the start of the mirror


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
        raise TypeError(
            f"tool arguments must be JSON values (str, int, float, bool, None, list, dict): {exc}"
        ) from None
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
    """stdout/stderr of a cell, capped so an output flood cannot exhaust memory, and mirrored
    into the host's crash file (``mirror``: a writable fd of fixed size, or -1)."""

    def __init__(self, limit: int, cell: int = 0, mirror: int = -1, mirror_size: int = 0) -> None:
        self.parts: list[str] = []
        self.limit, self.size, self.dropped = limit, 0, 0
        self.cell, self.mirror, self.mirror_room, self.mirrored = cell, mirror, mirror_size - _MIRROR_HEADER.size, 0
        self._mirror_write(b"")

    def writable(self) -> bool:
        return True

    def write(self, s: object) -> int:  # any object is written as str(s)
        s = str(s)
        room = self.limit - self.size
        if room > 0:
            kept = s[:room]
            self.parts.append(kept)
            self.size += len(kept)
            self._mirror_write(kept.encode("utf-8", "replace"))
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def _mirror_write(self, data: bytes) -> None:
        if self.mirror < 0:
            return
        data = data[: max(0, self.mirror_room - self.mirrored)]
        try:
            if data:
                os.pwrite(self.mirror, data, _MIRROR_HEADER.size + self.mirrored)
                self.mirrored += len(data)
            os.pwrite(self.mirror, _MIRROR_HEADER.pack(self.cell, self.mirrored), 0)
        except OSError:
            self.mirror = -1  # the mirror is a convenience for crashes; never fail a cell over it

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
    name = getattr(exc, "name", None) if isinstance(exc, NameError) else None
    if name:
        close = difflib.get_close_matches(name, list(NAMESPACE), n=1)
        if close and "Did you mean" not in head:
            head += f". Did you mean {close[0]!r}?"
    return ("\n".join(lines) + "\n" + head) if lines else head


NAMESPACE: dict[str, Any] = {}


def _fresh_namespace() -> None:
    import types

    NAMESPACE.clear()
    NAMESPACE.update(
        {"__name__": "__main__", "__builtins__": __builtins__, "MCPServer": MCPServer, "ToolError": ToolError}
    )
    # The paper's prompt imports it as ``from MCPBench import MCPServer``; accept that too.
    for modname in ("MCPBench", "atlas_tools"):
        mod = types.ModuleType(modname)
        mod.MCPServer = MCPServer  # type: ignore[attr-defined]
        mod.ToolError = ToolError  # type: ignore[attr-defined]
        sys.modules[modname] = mod


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"…[{len(text) - limit} more characters]"


def run_cell(cell: int, code: str, output_limit: int, mirror: int = -1, mirror_size: int = 0) -> dict[str, Any]:
    filename = f"<cell {cell}>"
    capture = _Capture(output_limit, cell, mirror, mirror_size)
    value: str | None = None
    error: str | None = None
    error_type: str | None = None
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = capture
    try:
        lines = code.splitlines(keepends=True)
        linecache.cache[filename] = (len(code), None, lines, filename)
        tree = ast.parse(code, filename, "exec")
        tail = tree.body[-1] if tree.body else None
        last = tail if isinstance(tail, ast.Expr) else None
        if last is not None:
            tree.body.pop()
        exec(compile(tree, filename, "exec"), NAMESPACE)
        if last is not None:
            result = eval(compile(ast.Expression(last.value), filename, "eval"), NAMESPACE)
            if result is not None:
                NAMESPACE["_"] = result
                value = _cap(repr(result), VALUE_REPR_CHARS)
    except BridgeError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in a cell are errors too
        error_type, error = _describe_exception(exc)
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


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    """``(error_type, error)`` of a cell's exception, whatever its ``__str__`` does."""
    error_type = _safe(lambda: type(exc).__name__, "Exception")
    return error_type, _cap(_safe(lambda: _format_error(exc, "<cell "), error_type), ERROR_CHARS)


def _safe(fn: Callable[[], object], fallback: str) -> str:
    """``fn()``, or ``fallback`` when it raises anything at all: a hostile ``__str__`` or
    ``__repr__`` may raise SystemExit, and the runner must outlive the cell."""
    try:
        out = fn()
        return out if type(out) is str else fallback
    except BaseException:  # noqa: BLE001
        return fallback


def _apply_limits(limits: dict[str, int]) -> None:
    import resource
    import signal

    table = {
        "memory_bytes": resource.RLIMIT_AS,
        "max_processes": resource.RLIMIT_NPROC,
        "max_file_bytes": resource.RLIMIT_FSIZE,
        "max_open_files": resource.RLIMIT_NOFILE,
    }
    for key, res in table.items():
        if limits.get(key):
            value = int(limits[key])
            resource.setrlimit(res, (value, value))
    if limits.get("cpu_seconds"):
        # The soft limit sends SIGXCPU, which the runner turns into a distinct exit status the
        # host can name; the hard limit a little later kills even code stuck inside C.
        soft = int(limits["cpu_seconds"])
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 2))
        signal.signal(signal.SIGXCPU, lambda *_: os._exit(EXIT_CPU_LIMIT))
    # 1, not 0: a core_pattern that pipes to a root helper (apport, systemd-coredump) ignores the
    # limit, except the value 1, which the kernel reads as "do not start the helper"; for core
    # files, 1 byte is less than the smallest dump. The filter keeps it from being changed.
    resource.setrlimit(resource.RLIMIT_CORE, (1, 1))
    # Kernel memory and scheduling a root host may have raised: each queued signal and POSIX timer
    # is unaccounted kernel memory (the inherited cap is ~100k), POSIX message queues likewise, and
    # no cell needs real-time or raised priorities.
    capped = (
        (resource.RLIMIT_SIGPENDING, 1024),
        (resource.RLIMIT_MSGQUEUE, 0),
        (resource.RLIMIT_RTPRIO, 0),
        (resource.RLIMIT_NICE, 0),
    )
    for res, value in capped:
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):  # already lower than that (a soft limit below it stays)
            pass
    # Writing past the file-size limit raises OSError (EFBIG) instead of killing the interpreter.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# -- seccomp ---------------------------------------------------------------------------------
# The runner is the sandbox's pid 1 and its only process; it installs this filter before any
# model code runs, so every thread model code can ever have is filtered. System calls that only
# an attacker needs fail with EPERM: new processes and program execution; debugging or reading
# other processes (ptrace, process_vm_*, pidfd_getfd, kcmp); kernel attack surface that no cell
# needs (io_uring, bpf, perf_event_open, userfaultfd, keyrings); memory outside the interpreter's
# limits (System V IPC, memfd); namespaces and mounts; clocks, modules, reboot and other host
# administration. Setuid/setgid mode bits are refused on every call
# that sets a mode, and sockets only of the families a network namespace confines (AF_VSOCK is
# refused: it is not namespaced). Numbers per architecture (from the kernel's unistd headers); a
# foreign ABI is killed outright.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENY_COMMON = {  # the numbers shared by x86_64 and aarch64 (the newer, unified system calls)
    "pidfd_send_signal": 424,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_open": 434,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "memfd_secret": 447,
}
_DENY = {
    "x86_64": {
        "fork": 57,
        "vfork": 58,
        "execve": 59,
        "execveat": 322,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "kcmp": 312,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "chroot": 161,
        "unshare": 272,
        "setns": 308,
        "name_to_handle_at": 303,
        "open_by_handle_at": 304,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "reboot": 169,
        "swapon": 167,
        "swapoff": 168,
        "acct": 163,
        "quotactl": 179,
        "iopl": 172,
        "ioperm": 173,
        "settimeofday": 164,
        "clock_settime": 227,
        "clock_adjtime": 305,
        "adjtimex": 159,
        "sethostname": 170,
        "setdomainname": 171,
        "syslog": 103,
        "uselib": 134,
        "personality": 135,
        "fanotify_init": 300,
        "migrate_pages": 256,
        "move_pages": 279,
        "vmsplice": 278,
        "modify_ldt": 154,
        "lookup_dcookie": 212,
        "vhangup": 153,
        "mknod": 133,
        "mknodat": 259,
        # Memory no limit of the interpreter counts: System V shared memory, semaphores and
        # message queues (the sandbox's IPC namespace keeps the kernel's defaults, shmall ~2^64
        # pages), and memfd files (outside every tmpfs cap and RLIMIT_AS).
        "shmget": 29,
        "shmat": 30,
        "shmctl": 31,
        "semget": 64,
        "semop": 65,
        "semctl": 66,
        "shmdt": 67,
        "msgget": 68,
        "msgsnd": 69,
        "msgrcv": 70,
        "msgctl": 71,
        "semtimedop": 220,
        "memfd_create": 319,
        # Kernel AIO contexts count against a machine-wide limit (fs.aio-max-nr, 65,536): one
        # io_setup(65536) would make every host io_setup fail while the sandbox lives.
        "io_setup": 206,
        "io_destroy": 207,
        "io_getevents": 208,
        "io_submit": 209,
        "io_cancel": 210,
        "io_pgetevents": 333,
        # inotify instances count per host uid (fs.inotify.max_user_instances, often 128): a
        # sandbox sharing an unprivileged host's uid could use up the host user's.
        "inotify_init": 253,
        "inotify_init1": 294,
        # Host-wide writeback on demand (fd 1 and 2 are files on the host's disk, so syncfs
        # reaches the host's file system); a cell's own files are on tmpfs and need neither.
        "sync": 162,
        "syncfs": 306,
        "sync_file_range": 277,
    },
    "aarch64": {
        "execve": 221,
        "execveat": 281,
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "kcmp": 272,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "chroot": 51,
        "unshare": 97,
        "setns": 268,
        "name_to_handle_at": 264,
        "open_by_handle_at": 265,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "reboot": 142,
        "swapon": 224,
        "swapoff": 225,
        "acct": 89,
        "quotactl": 60,
        "settimeofday": 170,
        "clock_settime": 112,
        "clock_adjtime": 266,
        "adjtimex": 171,
        "sethostname": 161,
        "setdomainname": 162,
        "syslog": 116,
        "personality": 92,
        "fanotify_init": 262,
        "migrate_pages": 238,
        "move_pages": 239,
        "vmsplice": 75,
        "lookup_dcookie": 18,
        "vhangup": 58,
        "mknodat": 33,
        "msgget": 186,
        "msgctl": 187,
        "msgrcv": 188,
        "msgsnd": 189,
        "semget": 190,
        "semctl": 191,
        "semtimedop": 192,
        "semop": 193,
        "shmget": 194,
        "shmctl": 195,
        "shmat": 196,
        "shmdt": 197,
        "memfd_create": 279,
        "io_setup": 0,
        "io_destroy": 1,
        "io_submit": 2,
        "io_cancel": 3,
        "io_getevents": 4,
        "io_pgetevents": 292,
        "inotify_init1": 26,
        "sync": 81,
        "syncfs": 267,
        "sync_file_range": 84,
    },
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_CLONE_THREAD = 0x00010000
_PRCTL = {"x86_64": 157, "aarch64": 167}
_PR_SET_PDEATHSIG = 1  # clearing it would let the sandbox outlive its host
# Calls that set a file mode and the index of their mode argument: setuid/setgid bits are
# refused. chmod, fchmod, fchmodat, fchmodat2, and the calls that create a file with a mode:
# open, creat and openat (glibc passes mode 0 when no O_CREAT/O_TMPFILE is given).
_CHMOD = {
    "x86_64": {90: 1, 91: 1, 268: 2, 452: 2, 2: 2, 85: 1, 257: 3},
    "aarch64": {52: 1, 53: 2, 452: 2, 56: 3},
}
_S_ISUID_ISGID = 0o6000
_OPENAT2 = 437  # its mode sits in a struct the filter cannot read: ENOSYS (nothing in a cell needs it)
# socket/socketpair: only the families a network namespace confines (and that cells use) are
# allowed. AF_VSOCK in particular is not namespaced: on a VM (Firecracker, QEMU, most clouds) it
# reaches the hypervisor's services whatever the network namespace says.
_SOCKET = {"x86_64": (41, 53), "aarch64": (198, 199)}
_SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK (if_nameindex, getaddrinfo)
_EAFNOSUPPORT = 97
# fallocate: EOPNOTSUPP, and the C library's posix_fallocate falls back to writing, which the
# file-size limit and the tmpfs sizes bound. The kernel checks RLIMIT_FSIZE only when a file's
# size grows, so fallocate(FALLOC_FL_KEEP_SIZE) on fd 1 or 2 (the host-side log file) reserved
# host disk past max_file_mb: 150 MiB in one call under a 1 MiB cap.
_FALLOCATE = {"x86_64": 285, "aarch64": 47}
_EOPNOTSUPP = 95
# The same reservation through ioctl: FS_IOC_RESVSP, FS_IOC_RESVSP64 and FS_IOC_ZERO_RANGE go to
# vfs_fallocate on any file system; XFS_IOC_ALLOCSP and ALLOCSP64 on older XFS.
_IOCTL = {"x86_64": 16, "aarch64": 29}
_IOCTL_PREALLOCATE = (0x40305828, 0x4030582A, 0x40305839, 0x4030580A, 0x40305824)
# fsync/fdatasync succeed without doing anything: a cell's own files are on tmpfs (nothing to
# write back), and on fd 1/2, the host's disk, each call would force a journal commit.
_FSYNC = {"x86_64": (74, 75), "aarch64": (82, 83)}
# File locks: EPERM. Each byte-range lock is kernel memory no limit counts, and an open file
# description's locks (flock, fcntl F_OFD_SETLK) outlive close() while a mapping of the file
# keeps it open: one cell took 631,500 locks on read-only library files (117 MiB of unreclaimable
# kernel memory) with 7 descriptors. Cost: sqlite3 databases in files fail at once with "access
# permission denied" (with ENOLCK sqlite would retry for its whole busy timeout); in-memory ones
# and URI files opened with ?nolock=1 work.
_FLOCK = {"x86_64": 73, "aarch64": 32}
_FCNTL = {"x86_64": 72, "aarch64": 25}
_FCNTL_SET_LOCK = (6, 7, 37, 38)  # F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW (F_GETLK is allowed)
# setrlimit/prlimit64 may not set RLIMIT_CORE (reading it is fine): lowering it from 1 to 0 would
# let a crash start the host's core-dump helper as root (see _apply_limits).
_SETRLIMIT = {"x86_64": 160, "aarch64": 164}
_PRLIMIT64 = {"x86_64": 302, "aarch64": 261}
_RLIMIT_CORE = 4


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """The classic-BPF filter as (code, jt, jf, k) instructions, for ``machine``."""
    ret_allow, ret_kill = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    ret_eperm, ret_enosys = 0x00050000 | 1, 0x00050000 | 38  # SECCOMP_RET_ERRNO | errno
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGE/JSET|K, BPF_RET|K

    def arg(i: int) -> tuple[int, int, int, int]:  # low 32 bits of argument i (little-endian)
        return (ld, 0, 0, 16 + 8 * i)

    def when(nr: int, block: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
        return [(jeq, 0, len(block), nr), *block]  # the block ends in a return

    def one_of(values: tuple[int, ...], matched: int, otherwise: int) -> list[tuple[int, int, int, int]]:
        """Return ``matched`` when the loaded value is one of ``values``, else ``otherwise``."""
        n = len(values)
        return [*[(jeq, n - i, 0, v) for i, v in enumerate(values)], (ret, 0, 0, otherwise), (ret, 0, 0, matched)]

    prog = [(ld, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH[machine]), (ret, 0, 0, ret_kill), (ld, 0, 0, 0)]
    if machine == "x86_64":
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, ret_eperm)]  # the x32 ABI
    for nr in sorted({*_DENY[machine].values(), *_DENY_COMMON.values()}):
        prog += when(nr, [(ret, 0, 0, ret_eperm)])
    prog += when(_CLONE3, [(ret, 0, 0, ret_enosys)])  # ENOSYS: the C library falls back to clone
    prog += when(_OPENAT2, [(ret, 0, 0, ret_enosys)])
    prog += when(_FALLOCATE[machine], [(ret, 0, 0, 0x00050000 | _EOPNOTSUPP)])
    prog += when(_SETRLIMIT[machine], [arg(0), *one_of((_RLIMIT_CORE,), ret_eperm, ret_allow)])
    new_limit = [arg(2), (jeq, 0, 2, 0), (ld, 0, 0, 16 + 8 * 2 + 4), (jeq, 1, 0, 0)]  # both halves of the pointer
    prog += when(
        _PRLIMIT64[machine],
        [
            arg(1),
            (jeq, 0, len(new_limit) + 1, _RLIMIT_CORE),
            *new_limit,
            (ret, 0, 0, ret_eperm),
            (ret, 0, 0, ret_allow),
        ],
    )
    prog += when(_IOCTL[machine], [arg(1), *one_of(_IOCTL_PREALLOCATE, 0x00050000 | _EOPNOTSUPP, ret_allow)])
    for nr in _FSYNC[machine]:
        prog += when(nr, [(ret, 0, 0, 0x00050000)])  # errno 0: returns 0, nothing written back
    prog += when(_FLOCK[machine], [(ret, 0, 0, ret_eperm)])
    prog += when(_FCNTL[machine], [arg(1), *one_of(_FCNTL_SET_LOCK, ret_eperm, ret_allow)])
    for nr in _SOCKET[machine]:
        prog += when(nr, [arg(0), *one_of(_SOCKET_FAMILIES, ret_allow, 0x00050000 | _EAFNOSUPPORT)])
    prog += when(_CLONE[machine], [arg(0), (jset, 1, 0, _CLONE_THREAD), (ret, 0, 0, ret_eperm), (ret, 0, 0, ret_allow)])
    prog += when(
        _PRCTL[machine], [arg(0), (jeq, 0, 1, _PR_SET_PDEATHSIG), (ret, 0, 0, ret_eperm), (ret, 0, 0, ret_allow)]
    )
    for nr, i in _CHMOD[machine].items():
        prog += when(nr, [arg(i), (jset, 0, 1, _S_ISUID_ISGID), (ret, 0, 0, ret_eperm), (ret, 0, 0, ret_allow)])
    prog.append((ret, 0, 0, ret_allow))
    return prog


def _install_seccomp() -> bool:
    """Install :func:`seccomp_program` for this process and every thread it will start.
    Returns False on an architecture the filter does not know (the caller reports it)."""
    import ctypes
    import platform

    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        return False
    prog = seccomp_program(machine)

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


def _send_mounts(fd: int, mounts: list[str]) -> bool:
    """Send the host an ``O_PATH`` descriptor of each mount, then close the socket. Runs before any
    model code: the host counts the mounts' inodes through them (``fstatvfs``), which needs no
    access to this process's ``/proc`` entry. False when a mount cannot be opened or the host
    cannot be reached: the runner then ends, since it must not run uncounted."""
    import socket

    sock = socket.socket(fileno=fd)
    opened: list[int] = []
    try:
        for path in mounts:
            opened.append(os.open(path, os.O_PATH | os.O_DIRECTORY))
        socket.send_fds(sock, [b"mounts"], opened)
        return True
    except OSError:
        return False
    finally:
        for f in opened:
            os.close(f)
        sock.close()


def main(argv: list[str]) -> int:
    import argparse

    global BRIDGE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("fd", "lines"), default="fd")
    parser.add_argument("--rfd", type=int, default=0)
    parser.add_argument("--wfd", type=int, default=1)
    parser.add_argument("--mirror-fd", type=int, default=-1, help="fixed-size file that mirrors each cell's output")
    parser.add_argument("--mirror-size", type=int, default=0)
    parser.add_argument("--limits", default="{}")
    parser.add_argument("--output-limit", type=int, default=200_000)
    parser.add_argument("--seccomp", action="store_true", help="install the system-call filter")
    parser.add_argument("--mounts-fd", type=int, default=-1, help="socket to send the host the mounts' descriptors")
    parser.add_argument("--mounts", default="", help="':'-separated mounts whose files the host counts")
    opts = parser.parse_args(argv)
    if opts.mounts_fd >= 0 and not _send_mounts(opts.mounts_fd, [m for m in opts.mounts.split(":") if m]):
        sys.stderr.write("runner: could not hand the host its mounts' descriptors\n")
        os._exit(EXIT_NO_MOUNTS)
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
        except (EOFError, BridgeError):
            break  # the host is gone, or speaks nonsense: nothing left to serve
        if msg.get("op") == "run" and isinstance(msg.get("code"), str) and isinstance(msg.get("cell"), int):
            try:
                BRIDGE.send(run_cell(msg["cell"], msg["code"], opts.output_limit, opts.mirror_fd, opts.mirror_size))
            except (EOFError, BridgeError, OSError):
                break
        elif msg.get("op") == "exit":
            break
        else:
            BRIDGE.send(
                {"op": "done", "cell": -1, "ok": False, "error": f"runner: unexpected message {str(msg)[:200]}"}
            )
    # os._exit, not a return: threads a cell left running must not keep the sandbox alive.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
