"""Host-side process helpers of the sandbox tests (``test_sandbox_escape``, ``test_sandbox_hostile``).

Every lookup is limited to this process's descendants where it matters: the suite runs on several
pytest-xdist workers, and one worker must never count or kill another's sandboxes.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

#: The runner's path inside the sandbox, on its command line.
RUNNER_PATH = b"/opt/atlas/runner.py"


def argv_of(pid: int | str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def runner_pids() -> set[int]:
    """Host pids of sandboxed interpreters (the runner, not the bwrap processes around it)."""
    out = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            argv = argv_of(p)
            if argv and os.path.basename(argv[0]) != b"bwrap" and any(RUNNER_PATH in a for a in argv):
                out.add(int(p))
    return out


def pids_matching(needle: bytes) -> set[int]:
    """This process's descendants whose command line contains ``needle``."""
    parent: dict[int, int] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                parent[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass

    def ours(pid: int) -> bool:
        for _ in range(64):  # a bounded walk up the tree
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
            if pid <= 1:
                return False
        return False

    return {pid for pid in parent if ours(pid) and any(needle in a for a in argv_of(pid))}


def own_runner_pids() -> set[int]:
    """:func:`runner_pids` started by this process (not another test worker's sandboxes)."""
    return runner_pids() & pids_matching(RUNNER_PATH)


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def in_background(fn):
    """Run fn() in a thread; returns (thread, box) where box['result'] / box['error'] is filled."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box
