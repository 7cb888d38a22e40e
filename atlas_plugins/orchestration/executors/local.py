"""The ``local`` executor: model code runs in a child interpreter inside bubblewrap.

What the sandbox guarantees (each layer holds on its own, so no single mistake is an escape):

* **No host privileges, even when the host runs as root.** bubblewrap itself is started as an
  unprivileged host uid: the caller's own uid, or, when the caller is root, a fresh uid per
  session from an unused range (``0x70000000`` and up, no passwd entry). Inside, the code runs
  as uid 65534 of a private user namespace with no capabilities (``--cap-drop ALL``) and
  nested user namespaces disabled. Kernel checks that trust uid 0 (``/proc/sys`` writes, files
  owned by root) do not apply; ``RLIMIT_NPROC`` binds, so threads are capped per session.
* **One process, filtered from its first instruction of model code.** The runner is the
  sandbox's pid 1 (``--as-pid-1``: no bubblewrap init to ptrace). It applies its rlimits and a
  seccomp filter before reading the first cell; every thread model code can start inherits both.
  The filter refuses new processes and ``execve``, ``ptrace``, ``process_vm_*``, ``pidfd_*``,
  io_uring, kernel AIO and inotify instances (counted machine-wide or per host uid), bpf, perf
  events, userfaultfd, keyrings, mounts and namespaces, setuid/setgid mode
  bits (chmod and file creation alike), sockets outside AF_UNIX/INET/INET6/NETLINK (AF_VSOCK
  is not confined by a network namespace: it reaches a VM's hypervisor), clearing the
  parent-death signal, file locks (``flock``, ``fcntl`` lock commands: kernel memory no limit
  counts), ``fallocate`` (it reserves disk past ``RLIMIT_FSIZE``; writes still work), host-wide
  ``sync``/``syncfs``, changing ``RLIMIT_CORE`` (held at 1, the value that keeps a piped
  ``core_pattern`` from starting the host's root core-dump helper), and host administration calls (list:
  :func:`~atlas_plugins.orchestration.sandbox_runner.seccomp_program`).
* **A file system with nothing of the host.** An empty root, remounted read-only, with
  read-only binds of only the shared libraries (``/usr/lib*``), ``/etc/ld.so.cache`` and the
  Python runtime (at ``/opt/python``, its ``site-packages`` absent), the runner (copied in from
  memory, never a host path), a private ``/proc`` with ``/proc/sys`` read-only, a read-only
  ``/dev`` with the usual device nodes and no ptys (they come from a machine-wide pool), and
  three size-capped tmpfs mounts: ``/tmp``,
  ``/dev/shm`` and ``/session`` (the working directory). No file the sandbox can name is on the
  host: ``/session`` vanishes with the sandbox, and no mount lets setuid or device files act. (Its
  stdout and stderr go to an unlinked host temp file, capped by ``max_file_mb``.)
* **No network** (a private network namespace with an unconfigured loopback), a private ipc,
  uts and cgroup namespace, an empty environment but ``PATH``/``HOME``/``LANG``.
* **Bounded resources**: CPU seconds, address space, threads, file size and open files per
  interpreter (rlimits); bytes per tmpfs; a wall-time budget per cell that includes its tool
  calls; output, value and error sizes capped on the host. Memory that no rlimit counts is refused
  by the seccomp filter: System V shared memory, semaphores and message queues, and memfd files.
* **Reaped on close**: the host kills pid 1 (which takes the whole pid namespace with it), waits
  for it to exit, then waits for bubblewrap.

* **Files counted from the host.** Empty files cost a tmpfs no bytes, only ~1 KB of kernel memory
  each (not charged to the interpreter's address space), and bubblewrap cannot set a tmpfs's
  inode count; a cell measured 1.6 million empty files in 20 s. Before any model code runs, the
  runner hands the host an ``O_PATH`` descriptor of each of the three mounts over a socket; a
  host thread reads their inode use (``fstatvfs``) four times a second and stops the sandbox
  once one holds more than ``max_files`` (also between cells: a cell's thread can outlive it).
  Descriptors, not ``/proc/<pid 1>/root``: a root host without ``CAP_SYS_PTRACE`` (Docker's
  default) may not look into another uid's process. If the descriptors do not arrive, the
  sandbox is stopped: it never runs without the file limit.

Not covered: CPU and memory *bandwidth* are shared with the host; timing side channels are not
addressed. Between cells the interpreter is stopped (``SIGSTOP`` to pid 1, ``SIGCONT`` before
the next cell), so a thread a cell leaves running uses no CPU outside a cell's budget. Where a machine has cgroup v2 delegation, a ``pids.max``/``memory.max`` cgroup
around bubblewrap would add a second cap.

Tool calls travel over two pipes as length-prefixed JSON to the host, which makes the MCP call
(see :mod:`atlas_plugins.orchestration.bridge`); the host treats every byte from the sandbox as
hostile.

Where bubblewrap cannot run, opening a session raises :class:`SandboxUnavailable`, unless
``unsafe_no_sandbox=True``: then the runner is a plain child process with rlimits only (and a
loud warning).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from atlas_plugins.errors import AtlasError
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
from atlas_plugins.orchestration.sandbox_runner import EXIT_CPU_LIMIT
from atlas_plugins.values import printable

if TYPE_CHECKING:
    from atlas_plugins.orchestration.bridge import Message
    from atlas_plugins.toolspace import Toolspace

RUNNER_SOURCE = Path(__file__).resolve().parent.parent / "sandbox_runner.py"
VALUES_SOURCE = Path(__file__).resolve().parents[2] / "values.py"
_HEADER_SIZE = 4
_MIRROR_HEADER = 16  # sandbox_runner._MIRROR_HEADER: (cell, bytes written), two big-endian u64
SANDBOX_UID_BASE = 0x70000000  # per-session host uids for root callers: [base, base + 2**24)
_INNER_UID = 65534  # the uid model code sees inside its user namespace
_VIEW_LAYOUT = 1  # version of the runtime view's layout (see _runtime_for_other_uid)


class SandboxUnavailable(AtlasError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


class LocalOptions(BaseModel):
    """Options of the ``local`` executor (``get_executor("local", **options)``)."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(10.0, gt=0, description="wall-time budget per cell, seconds, tool calls included")
    start_timeout: float = Field(15.0, gt=0, description="seconds to wait for a new interpreter")
    cpu_seconds: int = Field(120, gt=0, description="CPU seconds per interpreter (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=64, description="address space per interpreter (RLIMIT_AS)")
    max_processes: int = Field(16, ge=1, description="threads of the sandbox's uid (RLIMIT_NPROC)")
    max_file_mb: int = Field(64, ge=1, description="largest file the code may write (RLIMIT_FSIZE)")
    max_open_files: int = Field(64, ge=16, description="open file descriptors (RLIMIT_NOFILE)")
    session_mb: int = Field(64, ge=1, description="size of /session, the working directory (a tmpfs)")
    tmp_mb: int = Field(64, ge=1, description="size of /tmp (a tmpfs); /dev/shm gets a quarter of it")
    max_files: int = Field(
        20_000,
        ge=100,
        description="files and directories per tmpfs mount; the host checks 4 times a second and "
        "stops the sandbox past it (empty files cost no bytes, only kernel memory)",
    )
    max_output_chars: int = Field(200_000, ge=1000, description="stdout kept per cell (capped on the host too)")
    response_limit: int = Field(4000, ge=100, description="characters of observation the model sees")
    max_calls_per_cell: int = Field(30, ge=1, description="tool calls one cell may make")
    uid: int | None = Field(
        None,
        ge=1,
        description="host uid to run the sandbox as; default: the caller's, "
        "or a fresh unprivileged uid per session when the caller is root (never 0)",
    )
    unsafe_no_sandbox: bool = Field(
        False, description="run without bubblewrap (rlimits only); never for untrusted code"
    )
    bwrap: str = Field("bwrap", description="the bubblewrap executable")


log = logging.getLogger(__name__)

#: The sandbox's tmpfs mounts (see ``_bwrap_command``), whose files the host counts.
_TMPFS_MOUNTS = ("/tmp", "/session", "/dev/shm")


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


def _sandbox_uid(o: LocalOptions) -> int | None:
    """The host uid bubblewrap runs as; None means the caller's own (an unprivileged caller)."""
    if o.uid is not None:
        if o.uid == 0:
            raise AtlasError("the sandbox never runs as uid 0")
        return o.uid if o.uid != os.geteuid() else None
    if os.geteuid() != 0:
        return None
    # A fresh uid per session: sessions cannot signal or out-count (RLIMIT_NPROC) each other.
    return SANDBOX_UID_BASE + secrets.randbelow(1 << 24)


def _traversable_by_others(path: Path) -> bool:
    """Whether a uid that owns nothing can reach ``path`` (every directory on the way o+x)."""
    for p in (path, *path.parents):
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _runtime_for_other_uid(prefix: Path, exe: Path) -> Path:
    """A copy of the Python runtime that an unprivileged uid can read: ``prefix`` itself when it
    can reach it, else a tree of hard links (copies across file systems) in a root-owned 0755
    directory under ``/var/tmp``, made once per runtime. bubblewrap resolves bind sources as the
    uid it runs as, so a runtime under ``/root`` (pyenv, CI) cannot be bound directly."""
    if _traversable_by_others(prefix):
        return prefix
    stdlib = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    st = os.stat(exe)
    # The key changes with the runtime and with this layout (bump _VIEW_LAYOUT when it changes).
    key = hashlib.sha256(
        f"{_VIEW_LAYOUT}|{prefix}|{exe}|{st.st_ino}|{st.st_mtime_ns}|{sys.version}".encode()
    ).hexdigest()[:16]
    parent = Path("/var/tmp") if os.path.isdir("/var/tmp") else Path(tempfile.gettempdir())
    view = parent / f"atlas-python-{key}"
    if _trusted_dir(view):
        return view
    build = Path(tempfile.mkdtemp(prefix=f".atlas-python-{key}-", dir=parent))
    try:
        skip = {stdlib / "site-packages", stdlib / "test"}
        for src in [exe, *_walk_files(prefix / "lib", skip)]:
            dst = build / src.relative_to(prefix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        (build / (stdlib / "site-packages").relative_to(prefix)).mkdir(parents=True, exist_ok=True)  # empty, as usual
        for d in (build, *[p for p in build.rglob("*") if p.is_dir() and not p.is_symlink()]):
            os.chmod(d, 0o755)
        try:
            os.rename(build, view)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not _trusted_dir(view):
                raise
            shutil.rmtree(build, ignore_errors=True)  # another process made the same view first
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return view


def _walk_files(root: Path, skip: set[Path]) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        out += [here / f for f in filenames]
        out += [here / d for d in dirnames if (here / d).is_symlink()]
    return out


def _trusted_dir(path: Path) -> bool:
    """An existing directory owned by us and writable by nobody else (not a squatter's)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return path.is_dir() and not path.is_symlink() and st.st_uid == os.geteuid() and not st.st_mode & 0o022


_SIGNAL_REASONS = {
    "SIGKILL": "killed: the hard CPU-time limit or the machine's memory ran out",
    "SIGSEGV": "segmentation fault: the code crashed the interpreter (ctypes or a C extension)",
    "SIGSYS": "a system call the sandbox does not allow",
    "SIGXCPU": "the CPU-time limit was reached",
    "SIGABRT": "aborted by the C library",
    "SIGBUS": "bus error: bad memory access",
    "SIGFPE": "arithmetic fault in C code",
    "SIGILL": "illegal instruction",
    "SIGXFSZ": "the file-size limit was reached",
}


def describe_exit(code: int, cpu_seconds: int) -> str:
    """A model-readable cause for an interpreter's exit status. bubblewrap reports a child killed
    by signal N as 128 + N; ``subprocess`` reports it as -N."""
    if code == EXIT_CPU_LIMIT:
        return f"the CPU-time limit ({cpu_seconds} s per interpreter) was reached"
    signum = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else None
    if signum is None:
        return f"exit status {code}"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return f"exit status {code}"
    reason = _SIGNAL_REASONS.get(name, "killed by a signal")
    if name == "SIGKILL":
        reason = f"killed: the hard CPU-time limit ({cpu_seconds} s per interpreter) or the machine's memory ran out"
    return f"{reason} ({name})"


class LocalTransport(Transport):
    """One sandboxed runner process, its two bridge pipes and its crash-output mirror."""

    def __init__(self, options: LocalOptions) -> None:
        self.o = options
        self.proc: subprocess.Popen[bytes] | None = None
        self.session_dir: str | None = None  # only without a sandbox: the runner's cwd on the host
        self._rfd = self._wfd = -1
        self._mirror = -1
        self._pidfd = -1
        self._child_pid: int | None = None
        self._buf = b""
        self._log = tempfile.TemporaryFile()
        self._guard_stop = threading.Event()
        self._breach: str | None = None  # why the file guard stopped the sandbox
        self._mounts_sock: socket.socket | None = None  # host end: the runner sends its mounts' fds
        self._mounts_child_fd = -1

    # -- process ---------------------------------------------------------------------------
    def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._rfd, self._wfd = from_child_r, to_child_w
        self._mirror = _sealed_memfd("atlas-output", _MIRROR_HEADER + 4 * self.o.max_output_chars)
        info_r = info_w = -1
        keep: list[int] = []  # fds only the child needs; closed here once it has them
        try:
            if self.o.unsafe_no_sandbox:
                cmd, env, cwd, user = self._unsafe_command(to_child_r, from_child_w)
            else:
                info_r, info_w = os.pipe()
                self._mounts_sock, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                self._mounts_child_fd = child_end.detach()
                cmd, keep, user = self._bwrap_command(to_child_r, from_child_w, info_w)
                keep = [*keep, self._mounts_child_fd]
                env, cwd = {"PATH": "/usr/bin:/bin"}, "/"
            self.proc = _spawn(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(to_child_r, from_child_w, self._mirror, *keep, *([info_w] if info_w >= 0 else [])),
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group, killed as a whole
                **user,
            )
        except BaseException:
            if info_r >= 0:  # the read end is ours alone until _watch_child takes it
                os.close(info_r)
            raise
        finally:
            for fd in (to_child_r, from_child_w, info_w, *keep):
                if fd >= 0:
                    os.close(fd)
            if self._mounts_child_fd >= 0 and self._mounts_child_fd not in keep:  # _bwrap_command failed
                os.close(self._mounts_child_fd)
            self._mounts_child_fd = -1
        os.set_blocking(self._rfd, False)
        # Non-blocking too: a sandbox that stops reading must not hold the host in os.write()
        # past the cell's budget (see send()).
        os.set_blocking(self._wfd, False)
        if info_r >= 0:
            self._watch_child(info_r)
        elif self.proc is not None:
            self._child_pid = self.proc.pid

    def _watch_child(self, info_r: int) -> None:
        """Read bubblewrap's ``--info-fd`` report and hold a pidfd on the sandbox's pid 1."""
        deadline = time.monotonic() + self.o.start_timeout
        data = b""
        try:
            while not data.rstrip().endswith(b"}") and time.monotonic() < deadline:
                if not _readable(info_r, min(0.5, max(0.0, deadline - time.monotonic()))):
                    if self.proc is not None and self.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(info_r, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(info_r)
        try:
            self._child_pid = int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return  # bubblewrap failed before spawning; recv() reports its stderr
        try:
            self._pidfd = os.pidfd_open(self._child_pid)
        except (OSError, AttributeError):
            self._pidfd = -1
        sock, self._mounts_sock = self._mounts_sock, None
        if self._pidfd < 0 and sock is not None:
            # No pidfd (a kernel before 5.3, or no descriptors left): the guard could not kill
            # safely, and the sandbox never runs without its file limit.
            sock.close()
            self._breach = "stopped: the host cannot hold a pidfd on the sandbox, so it cannot guard its files"
            if self.proc is not None and self.proc.poll() is None:  # pid 1 is bwrap's child: still ours
                try:
                    os.kill(self._child_pid, signal.SIGKILL)
                except OSError:
                    pass
            return
        if self._pidfd >= 0 and sock is not None:  # the guard kills through a pidfd only: never a reused pid
            self._guard_stop.clear()
            # Its own duplicate, closed by the thread: stop() closing ours must not leave the guard
            # holding a number that another session's pidfd may take next.
            threading.Thread(
                target=self._guard_files,
                args=(os.dup(self._pidfd), sock),
                daemon=True,
                name="atlas-file-guard",
            ).start()
        elif sock is not None:
            sock.close()

    def _guard_files(self, pidfd: int, sock: socket.socket) -> None:
        """Stop the sandbox once a tmpfs holds more than ``max_files`` inodes (see module docs)."""
        fds: list[int] = []
        try:
            exited = select.poll()
            exited.register(pidfd, select.POLLIN)  # poll, not select: fd numbers may exceed 1024
            fds, why = self._receive_mounts(sock)
            if len(fds) != len(_TMPFS_MOUNTS):
                # pid 1 gone: it died on its own (recv() reports why). Alive: never run uncounted.
                # Its socket closes a moment before its pidfd turns readable: wait that moment.
                if not exited.poll(500) and not self._guard_stop.is_set():
                    self._stop_sandbox(pidfd, f"stopped: the host cannot count the sandbox's files ({why})")
                return
            self._count_files(pidfd, exited, fds)
        finally:
            for fd in (*fds, pidfd):
                os.close(fd)
            sock.close()

    def _receive_mounts(self, sock: socket.socket) -> tuple[list[int], str]:
        """The tmpfs descriptors the runner sends first thing (before any model code runs)."""
        sock.settimeout(self.o.start_timeout)
        try:
            _msg, fds, flags, _addr = socket.recv_fds(sock, 64, len(_TMPFS_MOUNTS))
        except OSError as exc:
            return [], f"no mount descriptors from the runner: {exc}"
        for fd in fds:  # recv_fds does not set close-on-exec: no host child may inherit them
            os.set_inheritable(fd, False)
        if flags & socket.MSG_CTRUNC:
            return fds, "the host is out of file descriptors (the runner's were cut off)"
        if len(fds) != len(_TMPFS_MOUNTS):
            return fds, f"the runner sent {len(fds)} mount descriptors, not {len(_TMPFS_MOUNTS)}"
        return fds, ""

    def _count_files(self, pidfd: int, exited: select.poll, fds: list[int]) -> None:
        while not self._guard_stop.wait(0.25):
            if exited.poll(0):
                return  # pid 1 has exited
            for mount, fd in zip(_TMPFS_MOUNTS, fds, strict=True):
                try:
                    st = os.fstatvfs(fd)
                except OSError as exc:
                    self._stop_sandbox(pidfd, f"stopped: the host cannot count the files on {mount} ({exc})")
                    return
                used = st.f_files - st.f_ffree
                if used > self.o.max_files:
                    self._stop_sandbox(
                        pidfd,
                        f"stopped: {used} files and directories on {mount}, over the sandbox's limit of "
                        f"{self.o.max_files}",
                    )
                    return

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)  # every thread of pid 1, the sandbox's only process

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._pidfd >= 0:  # through the pidfd only: never a reused pid
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except OSError:
                pass  # gone: the next recv() reports why

    def _stop_sandbox(self, pidfd: int, why: str) -> None:
        self._breach = why
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass

    def _bwrap_command(self, rfd: int, wfd: int, info_fd: int) -> tuple[list[str], list[int], dict[str, Any]]:
        bwrap = shutil.which(self.o.bwrap)
        if bwrap is None:
            raise SandboxUnavailable(
                f"bubblewrap ({self.o.bwrap!r}) is not installed, so model code cannot be sandboxed. "
                "Install it (Debian/Ubuntu: apt-get install bubblewrap) or, only for trusted code, pass "
                "unsafe_no_sandbox=True (CLI: --unsafe-no-sandbox) to run with resource limits only."
            )
        uid = _sandbox_uid(self.o)
        prefix, exe = _python_runtime()
        runtime = prefix if uid is None else _runtime_for_other_uid(prefix, exe)
        runner_fd = _data_fd("atlas-runner", RUNNER_SOURCE.read_bytes())  # never a host path
        values_fd = _data_fd("atlas-values", VALUES_SOURCE.read_bytes())
        keep = [runner_fd, values_fd]
        mb = 1024 * 1024
        args = [
            bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid",
            str(_INNER_UID),
            "--gid",
            str(_INNER_UID),
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--info-fd",
            str(info_fd),
        ]
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
            args += ["--ro-bind", str(runtime), py_root]
        stdlib = f"lib/python{sys.version_info.major}.{sys.version_info.minor}"
        if os.path.isdir(runtime / stdlib / "site-packages"):
            args += [
                "--tmpfs",
                f"{py_root}/{stdlib}/site-packages",
                "--remount-ro",
                f"{py_root}/{stdlib}/site-packages",
            ]
        args += [
            "--proc",
            "/proc",
            "--ro-bind",
            "/proc/sys",
            "/proc/sys",  # bwrap leaves sysctls writable for uid 0
            "--dev",
            "/dev",
            # Over bwrap's devpts: ptys come from a machine-wide pool (kernel.pty.max, shared
            # with containers and other sandboxes; one session held 121), and no cell needs one.
            "--size",
            "4096",
            "--tmpfs",
            "/dev/pts",
            "--size",
            str(max(1, self.o.tmp_mb // 4) * mb),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(self.o.tmp_mb * mb),
            "--tmpfs",
            "/tmp",
            "--size",
            str(self.o.session_mb * mb),
            "--perms",
            "0700",
            "--tmpfs",
            "/session",
            "--ro-bind-data",
            str(runner_fd),
            "/opt/atlas/runner.py",
            "--ro-bind-data",
            str(values_fd),
            "/opt/atlas/atlas_values.py",
            "--remount-ro",
            "/dev/pts",
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--chdir",
            "/session",
            "--clearenv",
            "--setenv",
            "PATH",
            f"{py_root}/bin:/usr/bin",
            "--setenv",
            "HOME",
            "/session",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "LD_LIBRARY_PATH",
            f"{py_root}/lib",
            "--setenv",
            "PYTHONDONTWRITEBYTECODE",
            "1",
            "--",
            python,
            "-I",
            "-S",
            "-B",
            "/opt/atlas/runner.py",
            *self._runner_args(rfd, wfd),
        ]
        user: dict[str, Any] = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        return args, keep, user

    def _runner_args(self, rfd: int, wfd: int) -> list[str]:
        return [
            "--transport",
            "fd",
            "--rfd",
            str(rfd),
            "--wfd",
            str(wfd),
            "--mirror-fd",
            str(self._mirror),
            "--mirror-size",
            str(os.fstat(self._mirror).st_size),
            "--limits",
            json.dumps(_limits(self.o)),
            "--output-limit",
            str(self.o.max_output_chars),
            "--seccomp",
            *(
                ["--mounts-fd", str(self._mounts_child_fd), "--mounts", ":".join(_TMPFS_MOUNTS)]
                if self._mounts_child_fd >= 0
                else []
            ),
        ]

    def _unsafe_command(self, rfd: int, wfd: int) -> tuple[list[str], dict[str, str], str, dict[str, Any]]:
        warnings.warn(
            "code_interpreter runs WITHOUT a sandbox (unsafe_no_sandbox=True): model code can read and write "
            "your files and reach the network; only resource limits apply. Never use this with untrusted code.",
            RuntimeWarning,
            stacklevel=4,
        )
        sys.stderr.write("WARNING: atlas code_interpreter is running WITHOUT a sandbox (--unsafe-no-sandbox)\n")
        self.session_dir = tempfile.mkdtemp(prefix="atlas-exec-")
        runner = Path(self.session_dir) / ".atlas_runner.py"
        runner.write_bytes(RUNNER_SOURCE.read_bytes())
        (Path(self.session_dir) / "atlas_values.py").write_bytes(VALUES_SOURCE.read_bytes())
        env = {"PATH": "/usr/bin:/bin", "HOME": self.session_dir, "LANG": "C.UTF-8"}
        return [sys.executable, "-I", "-S", "-B", str(runner), *self._runner_args(rfd, wfd)], env, self.session_dir, {}

    # -- bridge ------------------------------------------------------------------------------
    def send(self, msg: dict[str, Any], deadline: float | None = None) -> None:
        """Write one message; raise CellTimeout once ``deadline`` (default: one cell budget from
        now) passes. The sandbox controls whether it reads: forged requests whose replies it
        never reads fill the pipe, and a blocking write would then hang the host forever."""
        data = json.dumps(msg, ensure_ascii=False).encode("utf-8")
        data = len(data).to_bytes(_HEADER_SIZE, "big") + data
        if deadline is None:
            deadline = time.monotonic() + self.o.timeout
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._wfd, view) :]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                raise SandboxDied(self._death()) from None  # say why it died (the file guard, a crash)
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellTimeout()
            writable = select.poll()  # poll, not select: fd numbers may exceed 1024
            writable.register(self._wfd, select.POLLOUT)
            writable.poll(min(left, 0.5) * 1000)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellTimeout()
            if not _readable(self._rfd, min(left, 0.5)):
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

    def recv(self, deadline: float) -> Message:
        self._fill(_HEADER_SIZE, deadline)
        size = int.from_bytes(self._buf[:_HEADER_SIZE], "big")
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolViolation(f"message header announces {size} bytes, over the {MAX_MESSAGE_BYTES}-byte cap")
        self._fill(_HEADER_SIZE + size, deadline)
        payload = self._buf[_HEADER_SIZE : _HEADER_SIZE + size]
        self._buf = self._buf[_HEADER_SIZE + size :]
        return parse_message(payload, max_containers=MAX_MESSAGE_CONTAINERS + self.o.max_output_chars)

    def _death(self) -> str:
        if self.proc is None:
            return "no process"
        if self._breach:
            return self._breach
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the bridge closed"
        detail = self.diagnostics()
        return describe_exit(code, self.o.cpu_seconds) + (f": {detail}" if detail and code > 0 and code < 128 else "")

    def diagnostics(self) -> str:
        try:
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - 600))
            return printable(self._log.read().decode("utf-8", "replace").strip())  # the sandbox wrote it
        except (OSError, ValueError):
            return ""

    def crash_output(self, cell: int) -> str:
        """What ``cell`` printed, read back from the mirror (untrusted: the sandbox can write it)."""
        if self._mirror < 0:
            return ""
        try:
            head = os.pread(self._mirror, _MIRROR_HEADER, 0)
            seen, size = int.from_bytes(head[:8], "big"), int.from_bytes(head[8:16], "big")
            if seen != cell:
                return ""
            room = os.fstat(self._mirror).st_size - _MIRROR_HEADER
            data = os.pread(self._mirror, min(size, room), _MIRROR_HEADER)
        except OSError:
            return ""
        return data.decode("utf-8", "replace")

    def stop(self) -> None:
        """Kill the sandbox's pid 1 (its pid namespace dies with it), wait until it has exited,
        then reap bubblewrap and close everything."""
        self._guard_stop.set()
        if self._mounts_sock is not None:  # bubblewrap failed before the guard took it
            self._mounts_sock.close()
            self._mounts_sock = None
        if self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except OSError:
                pass  # already gone
        elif self._child_pid is not None and self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self._child_pid, signal.SIGKILL)
            except OSError:
                pass
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
        if self._pidfd >= 0:
            _readable(self._pidfd, 5)  # readable once pid 1 has exited
        for fd in (self._rfd, self._wfd, self._pidfd, self._mirror):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = self._pidfd = self._mirror = -1
        self._child_pid = None
        self._buf = b""
        if self.session_dir:
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self.session_dir = None
        self._log.close()


def _data_fd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` becomes readable (or hung up) within ``timeout_s``. poll, not select: a busy
    host (many sessions, sockets, MCP servers) hands out fd numbers past select's 1024."""
    waiter = select.poll()
    waiter.register(fd, select.POLLIN)
    return bool(waiter.poll(max(0.0, timeout_s) * 1000))


class _SpawnJob:
    def __init__(self, cmd: list[str], kwargs: dict[str, Any]) -> None:
        self.cmd, self.kwargs = cmd, kwargs
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class _Spawner:
    """One daemon thread that starts every sandbox (see :func:`_spawn`). A daemon thread, not a
    ``ThreadPoolExecutor``: the executor's workers are joined when the main thread returns, before
    other non-daemon threads are, which would kill sandboxes those threads are still using."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_SpawnJob] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="atlas-sandbox-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job.proc = subprocess.Popen(job.cmd, **job.kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.error = exc
            finally:
                job.done.set()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _reset_spawner_in_child() -> None:
    # A forked child (multiprocessing's "fork", DataLoader workers) has no spawner thread, only
    # the parent's object: a job queued on it would wait forever.
    global _spawner, _spawner_lock
    _spawner, _spawner_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_reset_spawner_in_child)


def _spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` on one thread that lives as long as the process.

    bubblewrap's ``--die-with-parent`` is ``PR_SET_PDEATHSIG``, which fires when the *thread* that
    forked it exits, not the process. A sandbox first used from a worker thread (a LangGraph
    ``ToolNode``'s pool, ``asyncio.to_thread``, a user's ``ThreadPoolExecutor``) was killed as soon as
    that pool shut down, and its interpreter state with it. Started from this thread, it dies
    when the host process does, which is what ``--die-with-parent`` is there for."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
        spawner = _spawner
    job = _SpawnJob(cmd, kwargs)
    spawner.jobs.put(job)
    try:
        job.done.wait()
    except BaseException:
        # Interrupted (Ctrl-C) while Popen runs on the other thread: let it finish before the
        # caller closes the fds it passes (a reused number would reach bubblewrap), then kill
        # and reap what it started, which nobody else holds.
        job.done.wait()
        if job.proc is not None:
            try:
                os.killpg(job.proc.pid, signal.SIGKILL)
            except OSError:
                job.proc.kill()
            job.proc.wait()
        raise
    if job.error is not None:
        raise job.error
    assert job.proc is not None
    return job.proc


def _sealed_memfd(name: str, size: int) -> int:
    """A zeroed in-memory file of exactly ``size`` bytes that nobody can grow or shrink."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd


class LocalExecutor:
    """Runs ``code_interpreter`` cells in a bubblewrap sandbox on this machine (registered ``local``).

    ``LocalExecutor(timeout=10, memory_mb=1024, unsafe_no_sandbox=False, ...)`` — see
    :class:`LocalOptions` and, for what the sandbox holds against, this module's docstring.
    ``open_session(toolspace, episode=..., servers=[...])`` returns a persistent session; each
    server of the toolspace (or of ``servers``) is ``MCPServer(name)``. Sessions share nothing:
    not processes, not files, not the output examples ``get_tools_info`` shows.
    """

    name = "local"

    def __init__(self, **options: Any) -> None:
        self.options = LocalOptions(**options)

    def open_session(
        self, toolspace: Toolspace, *, episode: str | None = None, servers: list[str] | None = None
    ) -> BridgedSession:
        o = self.options
        bridge = ToolBridge(toolspace, episode=episode, servers=servers, max_calls_per_cell=o.max_calls_per_cell)
        try:
            return BridgedSession(
                lambda: LocalTransport(o),
                bridge,
                timeout=o.timeout,
                start_timeout=o.start_timeout,
                response_limit=o.response_limit,
                output_limit=o.max_output_chars,
            )
        except SandboxUnavailable:
            raise
        except AtlasError as exc:
            if o.unsafe_no_sandbox:
                raise
            hint = (
                "As root, the sandbox runs as an unprivileged uid, which needs unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0). "
                if os.geteuid() == 0
                else "Enable unprivileged user namespaces or run where bwrap works. "
            )
            raise SandboxUnavailable(
                f"bubblewrap could not create the sandbox here ({exc}). {hint}Only for trusted code, pass "
                "unsafe_no_sandbox=True (CLI: --unsafe-no-sandbox) to run with resource limits only."
            ) from None


@hookimpl
def atlas_register_executors(register: Register) -> None:
    register("local", LocalExecutor)
