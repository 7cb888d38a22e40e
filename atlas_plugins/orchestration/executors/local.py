"""The ``local`` executor: model code runs in a child interpreter inside bubblewrap.

Isolation is by process and namespaces, not by inspecting the code:

* ``bwrap --unshare-all`` (own user, pid, network — no interfaces but an unconfigured loopback
  —, ipc, uts and cgroup namespaces), ``--die-with-parent``, ``--new-session``;
* the file system is an empty tmpfs root with read-only binds of only ``/usr/lib*`` (shared
  libraries) and the Python runtime (``sys.base_prefix``, mounted at ``/opt/python`` with its
  ``site-packages`` hidden), the runner script (``--ro-bind-data``, never a host path), a
  private ``/proc``, ``/dev`` and ``/tmp`` (tmpfs), and one private writable session directory
  at ``/session``. Nothing else of the host is visible: not host ``/tmp``, ``/root``, home,
  ``/work``, the project, the venv or ``/etc``;
* ``--clearenv`` with only ``PATH``/``HOME``/``LANG``/``LD_LIBRARY_PATH`` set;
* resource limits set by the runner before any model code runs (CPU seconds, address space,
  processes, file size, open files); the host enforces wall time per cell and kills the
  whole sandbox when it is exceeded; output is capped on both sides;
* a seccomp filter, installed by the runner before any model code runs, refuses every new
  process (``fork``/``vfork``/non-thread ``clone``/``execve``): no shells, no subprocesses, no
  fork bombs, even when the host runs as root (the kernel exempts uid 0 from ``RLIMIT_NPROC``).
  Threads still work.

Tool calls travel over two pipes as length-prefixed JSON to the host, which makes the MCP
call (see :mod:`atlas_plugins.orchestration.bridge`).

Where bubblewrap cannot run, opening a session raises :class:`SandboxUnavailable`, unless
``unsafe_no_sandbox=True``: then the runner is a plain child process with rlimits only (and a
loud warning).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from atlas_plugins.errors import AtlasError
from atlas_plugins.hookspecs import hookimpl
from atlas_plugins.orchestration.bridge import (
    BridgedSession,
    CellTimeout,
    OutputFormats,
    ProtocolViolation,
    SandboxDied,
    ToolBridge,
    Transport,
    parse_message,
)

RUNNER_SOURCE = Path(__file__).resolve().parent.parent / "sandbox_runner.py"
_HEADER_SIZE = 4


class SandboxUnavailable(AtlasError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


class LocalOptions(BaseModel):
    """Options of the ``local`` executor (``get_executor("local", **options)``)."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(10.0, gt=0, description="wall-time limit per cell, seconds (tool-call time excluded)")
    start_timeout: float = Field(15.0, gt=0)
    cpu_seconds: int = Field(120, gt=0, description="CPU seconds per interpreter (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=64, description="address space (RLIMIT_AS)")
    max_processes: int = Field(16, ge=1, description="processes/threads of the sandbox user (RLIMIT_NPROC)")
    max_file_mb: int = Field(64, ge=1, description="largest file the code may write (RLIMIT_FSIZE)")
    max_open_files: int = Field(64, ge=16)
    max_output_chars: int = Field(200_000, ge=1000, description="stdout kept per cell inside the sandbox")
    response_limit: int = Field(4000, ge=100, description="characters of observation the model sees")
    max_calls_per_cell: int = Field(100, ge=1)
    unsafe_no_sandbox: bool = Field(False, description="run without bubblewrap (rlimits only); never for untrusted code")
    bwrap: str = "bwrap"


def _limits(o: LocalOptions) -> dict[str, int]:
    return {
        "cpu_seconds": o.cpu_seconds,
        "memory_bytes": o.memory_mb * 1024 * 1024,
        "max_processes": o.max_processes,
        "max_file_bytes": o.max_file_mb * 1024 * 1024,
        "max_open_files": o.max_open_files,
    }


def _python_runtime() -> tuple[Path, Path]:
    """(runtime prefix, interpreter path inside it) of the interpreter running the host."""
    prefix = Path(sys.base_prefix).resolve()
    exe = Path(sys.executable).resolve()
    if not exe.is_relative_to(prefix):  # a venv's python links to the base interpreter
        exe = (prefix / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}").resolve()
    return prefix, exe


class LocalTransport(Transport):
    """One sandboxed runner process and its two bridge pipes."""

    def __init__(self, options: LocalOptions) -> None:
        self.o = options
        self.proc: subprocess.Popen[bytes] | None = None
        self.session_dir: str | None = None
        self._rfd = self._wfd = -1
        self._buf = b""
        self._log = tempfile.TemporaryFile()

    # -- process ---------------------------------------------------------------------------
    def start(self) -> None:
        self.session_dir = tempfile.mkdtemp(prefix="atlas-exec-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        keep: list[int] = []  # fds only the child needs
        try:
            if self.o.unsafe_no_sandbox:
                cmd, env, user = self._unsafe_command(to_child_r, from_child_w)
                cwd: str | None = self.session_dir
            else:
                cmd, keep, user = self._bwrap_command(to_child_r, from_child_w)
                env, cwd = {"PATH": "/usr/bin:/bin"}, "/"
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(to_child_r, from_child_w, *keep),
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group, killed as a whole
                **user,
            )
        finally:
            for fd in (to_child_r, from_child_w, *keep):
                os.close(fd)
        self._rfd, self._wfd = from_child_r, to_child_w
        os.set_blocking(self._rfd, False)

    def _bwrap_command(self, rfd: int, wfd: int) -> tuple[list[str], list[int], dict[str, Any]]:
        bwrap = shutil.which(self.o.bwrap)
        if bwrap is None:
            raise SandboxUnavailable(
                f"bubblewrap ({self.o.bwrap!r}) is not installed, so model code cannot be sandboxed. "
                "Install it (Debian/Ubuntu: apt-get install bubblewrap) or, only for trusted code, pass "
                "unsafe_no_sandbox=True (CLI: --unsafe-no-sandbox) to run with resource limits only."
            )
        prefix, exe = _python_runtime()
        assert self.session_dir is not None
        runner_fd = os.memfd_create("atlas-runner")  # the runner never exists as a host path
        os.write(runner_fd, RUNNER_SOURCE.read_bytes())
        os.lseek(runner_fd, 0, os.SEEK_SET)
        keep = [runner_fd]
        args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--hostname", "sandbox"]
        for d in ("/usr/lib", "/usr/lib64", "/usr/lib32"):
            if os.path.isdir(d) and not os.path.islink(d):
                args += ["--ro-bind", d, d]
        for d in ("/lib", "/lib64", "/lib32"):
            if os.path.islink(d):
                args += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                args += ["--ro-bind", d, d]
        if os.path.exists("/etc/ld.so.cache"):
            args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        if prefix == Path("/usr"):
            py_root, python = "/usr", str(exe)
        else:
            py_root = "/opt/python"
            python = f"{py_root}/{exe.relative_to(prefix)}"
            args += ["--ro-bind", str(prefix), py_root]
        stdlib = f"lib/python{sys.version_info.major}.{sys.version_info.minor}"
        if os.path.isdir(prefix / stdlib / "site-packages"):
            args += ["--tmpfs", f"{py_root}/{stdlib}/site-packages"]  # hide the runtime's installed packages
        args += [
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--bind", self.session_dir, "/session", "--chdir", "/session",
            "--ro-bind-data", str(runner_fd), "/opt/atlas/runner.py",
            "--clearenv",
            "--setenv", "PATH", f"{py_root}/bin:/usr/bin",
            "--setenv", "HOME", "/session",
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "LD_LIBRARY_PATH", f"{py_root}/lib",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--", python, "-I", "-S", "-B", "/opt/atlas/runner.py",
            *self._runner_args(rfd, wfd),
        ]
        return args, keep, {}

    def _runner_args(self, rfd: int, wfd: int) -> list[str]:
        return ["--transport", "fd", "--rfd", str(rfd), "--wfd", str(wfd),
                "--limits", json.dumps(_limits(self.o)), "--output-limit", str(self.o.max_output_chars), "--seccomp"]

    def _unsafe_command(self, rfd: int, wfd: int) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        warnings.warn(
            "code_interpreter runs WITHOUT a sandbox (unsafe_no_sandbox=True): model code can read and write "
            "your files and reach the network; only resource limits apply. Never use this with untrusted code.",
            RuntimeWarning,
            stacklevel=4,
        )
        sys.stderr.write("WARNING: atlas code_interpreter is running WITHOUT a sandbox (--unsafe-no-sandbox)\n")
        assert self.session_dir is not None
        runner = Path(self.session_dir) / ".atlas_runner.py"
        runner.write_bytes(RUNNER_SOURCE.read_bytes())
        env = {"PATH": "/usr/bin:/bin", "HOME": self.session_dir, "LANG": "C.UTF-8"}
        return [sys.executable, "-I", "-S", "-B", str(runner), *self._runner_args(rfd, wfd)], env, {}

    # -- bridge ------------------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, ensure_ascii=False).encode("utf-8")
        data = len(data).to_bytes(_HEADER_SIZE, "big") + data
        view = memoryview(data)
        while view:
            n = os.write(self._wfd, view)
            view = view[n:]

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellTimeout()
            ready, _, _ = select.select([self._rfd], [], [], min(left, 0.5))
            if not ready:
                if self.proc is not None and self.proc.poll() is not None:
                    raise SandboxDied(self._death())
                continue
            try:
                chunk = os.read(self._rfd, max(65536, n - len(self._buf)))
            except BlockingIOError:
                continue
            if not chunk:
                raise SandboxDied(self._death())
            self._buf += chunk

    def recv(self, deadline: float) -> Any:
        self._fill(_HEADER_SIZE, deadline)
        size = int.from_bytes(self._buf[:_HEADER_SIZE], "big")
        from atlas_plugins.orchestration.bridge import MAX_MESSAGE_BYTES

        if size > MAX_MESSAGE_BYTES:
            raise ProtocolViolation(f"message header announces {size} bytes, over the {MAX_MESSAGE_BYTES}-byte cap")
        self._fill(_HEADER_SIZE + size, deadline)
        payload = self._buf[_HEADER_SIZE : _HEADER_SIZE + size]
        self._buf = self._buf[_HEADER_SIZE + size :]
        return parse_message(payload)

    def _death(self) -> str:
        if self.proc is None:
            return "no process"
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the bridge closed"
        if code < 0:
            name = signal.Signals(-code).name
            why = {"SIGXCPU": "CPU-time limit", "SIGKILL": "killed", "SIGSEGV": "segmentation fault"}.get(name, name)
            return f"{why}, signal {name}"
        detail = self.diagnostics()
        return f"exit status {code}" + (f": {detail}" if detail else "")

    def diagnostics(self) -> str:
        try:
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - 600))
            return self._log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = -1
        self._buf = b""
        if self.session_dir:
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self.session_dir = None
        self._log.close()


class LocalExecutor:
    """Runs ``code_interpreter`` cells in a bubblewrap sandbox on this machine (registered ``local``).

    ``LocalExecutor(timeout=10, memory_mb=1024, unsafe_no_sandbox=False, ...)`` — see
    :class:`LocalOptions`. ``open_session(toolspace, episode=..., servers=[...])`` returns a
    persistent session; each server of the toolspace (or of ``servers``) is ``MCPServer(name)``.
    """

    name = "local"

    def __init__(self, **options: Any) -> None:
        self.options = LocalOptions(**options)
        self.formats = OutputFormats()

    def open_session(self, toolspace: Any, *, episode: str | None = None, servers: list[str] | None = None) -> BridgedSession:
        bridge = ToolBridge(toolspace, episode=episode, servers=servers, formats=self.formats,
                            max_calls_per_cell=self.options.max_calls_per_cell)
        o = self.options
        try:
            return BridgedSession(lambda: LocalTransport(o), bridge, timeout=o.timeout,
                                  start_timeout=o.start_timeout, response_limit=o.response_limit)
        except SandboxUnavailable:
            raise
        except AtlasError as exc:
            if o.unsafe_no_sandbox:
                raise
            raise SandboxUnavailable(
                f"bubblewrap could not create the sandbox here ({exc}). Enable unprivileged user namespaces "
                "or run where bwrap works; only for trusted code, pass unsafe_no_sandbox=True "
                "(CLI: --unsafe-no-sandbox) to run with resource limits only."
            ) from None


@hookimpl
def atlas_register_executors(register: Any) -> None:
    register("local", LocalExecutor)
