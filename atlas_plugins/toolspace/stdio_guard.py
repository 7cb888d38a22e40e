"""A relay between an untrusted stdio MCP server and the host: it bounds what one stdout line may cost.

Why: the MCP SDK's stdio client splits the server's stdout on newlines and keeps everything after
the last one in a string that grows with every chunk (``buffer + chunk``). A server that writes
without ever ending a line therefore grows the *host's* memory without bound, and re-copies the
whole buffer for each 64 KB chunk on the host's event loop. Nothing in the SDK caps it.

What: the host starts ``python -I -S stdio_guard.py MAX_BYTES -- COMMAND ARGS...`` instead of the
server. The guard runs the server as its child with the same stdin, stderr, environment and
working directory, and copies the child's stdout to its own unchanged, chunk by chunk (no added
latency, no parsing). When one line grows past ``MAX_BYTES`` without a newline it kills the child,
says so on stderr (the host reports the server's stderr tail) and exits; the host then sees the
connection end, as with a server that crashed.

It is also the server's *subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``): a process the server
starts that escapes its process group with ``setsid()`` (a daemon), and so the SDK's ``killpg``,
re-parents to the guard when its parent exits, and the guard kills every such descendant when
the server ends, or within a second of being asked to stop. The server itself dies with the
guard (``PR_SET_PDEATHSIG``) if the guard is killed outright.

Not covered: a server that sends many lines each under the limit (each is parsed and dropped, so
memory stays bounded by one line); a descendant that is re-parented elsewhere (another subreaper,
or a process that outlives a ``SIGKILL`` of the guard itself). Stdlib only, and run by path with
``-I -S``: starting it costs a bare interpreter, not the package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

EXIT_LINE_TOO_LONG = 3
_CHUNK = 1 << 16
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


_PRCTL: Callable[..., Any] | None
try:  # loaded before the fork: the child only calls it
    import ctypes

    _PRCTL = ctypes.CDLL(None).prctl
except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None


_GUARD_PID = os.getpid()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: if the guard is killed outright (SIGKILL), the server must not live on without it.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != _GUARD_PID:  # the guard died before the request took effect
            os._exit(1)


def _same_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == os.getpgrp()
    except ProcessLookupError:
        return True  # gone: nothing to forward to


def _children(me: int) -> list[int]:
    """Processes whose parent is ``me`` (from ``/proc``; the parent id follows the command name)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def _stop_descendants() -> None:
    """Kill and reap every process still below the guard. Each round kills the guard's children;
    their own children then re-parent to the guard (its subreaper role) for the next round."""
    me = os.getpid()
    for _ in range(64):
        kids = _children(me)
        if not kids:
            return
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break  # nothing left to reap
            if pid == 0:
                time.sleep(0.005)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(limit: int, argv: list[str]) -> int:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        return _relay(limit, argv)
    finally:
        _stop_descendants()


def _relay(limit: int, argv: list[str]) -> int:
    try:
        child = subprocess.Popen(
            argv, stdin=0, stdout=subprocess.PIPE, stderr=2, close_fds=True, preexec_fn=_die_with_parent
        )
    except OSError as exc:
        sys.stderr.write(f"atlas-plugins stdio guard: cannot start {argv[0]!r}: {exc}\n")
        return 127

    def forward(signum: int, _frame: object) -> None:
        # The SDK signals the whole process group, the server included; a second signal from us
        # would read as "force quit" to servers that treat it so. Forward only what missed it.
        if child.poll() is None and not _same_group(child.pid):
            child.send_signal(signum)
        # The relay ends when the server's stdout closes; a descendant holding it open must not
        # keep the guard (and so the descendants) alive past the SDK's kill escalation.
        signal.setitimer(signal.ITIMER_REAL, 1.0)

    def give_up(_signum: int, _frame: object) -> None:
        _stop_descendants()
        os._exit(143)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    signal.signal(signal.SIGALRM, give_up)
    assert child.stdout is not None
    src = child.stdout.fileno()
    line = 0  # bytes since the last newline
    while True:
        chunk = os.read(src, _CHUNK)  # a signal handler's interruption is retried (PEP 475)
        if not chunk:
            break
        first = chunk.find(b"\n")
        # The line this chunk ends (or continues); later lines in it are shorter than a chunk.
        longest = line + (first if first >= 0 else len(chunk))
        line = len(chunk) - chunk.rfind(b"\n") - 1 if first >= 0 else longest
        if longest > limit:
            child.kill()
            child.wait()
            sys.stderr.write(
                f"atlas-plugins stdio guard: the server wrote a stdout line of over {limit} bytes "
                "without a newline (max_message_bytes); it was stopped\n"
            )
            sys.stderr.flush()
            return EXIT_LINE_TOO_LONG
        try:
            _write_all(1, chunk)
        except (BrokenPipeError, OSError):
            break  # the host has gone: stop the server with us
    if child.poll() is None:
        child.terminate()
    try:
        code = child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        code = child.wait()
    return code if code >= 0 else 128 - code


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: stdio_guard.py MAX_BYTES -- COMMAND [ARGS...]\n")
        return 2
    return relay(int(args[0]), args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
