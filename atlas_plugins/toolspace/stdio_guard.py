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

Not covered: a server that sends many lines each under the limit (each is parsed and dropped, so
memory stays bounded by one line). Stdlib only, and run by path with ``-I -S``: starting it costs
a bare interpreter, not the package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

EXIT_LINE_TOO_LONG = 3
_CHUNK = 1 << 16


_PRCTL: Callable[..., Any] | None
try:  # loaded before the fork: the child only calls it
    import ctypes

    _PRCTL = ctypes.CDLL(None).prctl
except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: if the guard is killed outright (SIGKILL), the server must not live on without it.
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(limit: int, argv: list[str]) -> int:
    try:
        child = subprocess.Popen(
            argv, stdin=0, stdout=subprocess.PIPE, stderr=2, close_fds=True, preexec_fn=_die_with_parent
        )
    except OSError as exc:
        sys.stderr.write(f"atlas-plugins stdio guard: cannot start {argv[0]!r}: {exc}\n")
        return 127

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    assert child.stdout is not None
    src = child.stdout.fileno()
    line = 0  # bytes since the last newline
    while True:
        try:
            chunk = os.read(src, _CHUNK)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
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
