"""Sandbox-escape attacks (found by a hostile model) against the ``local`` executor.

Each test is one hostile program (a model-written cell, a forged bridge frame or a malicious MCP
server) and asserts on the outcome: the attack did not work, the cell came back as a
``CellResult`` and the host survived and still answers. The bracketed number in each docstring is
the attack class of the issue: [1] code runs as host root, [2] seccomp/rlimits bypassed through
pid 1, [3] setuid files, [4] hostile input crashes the host, [5] budgets, [6] the host trusts
the sandbox's numbers, [7] cross-episode leaks, [8] smaller findings (leftovers, syscalls, host
paths, terminal escapes, model-facing messages).

CI runs as root (uid 0), which is the case these tests are about. Nothing here writes to a
host sysctl: the /proc/sys checks only *open* the files.
"""

from __future__ import annotations

import errno
import glob
import os
import platform
import stat
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from sandbox_procs import in_background, kill_pids, own_runner_pids, pids_matching, runner_pids

from atlas_plugins.orchestration.base import CellResult
from atlas_plugins.orchestration.executors.local import LocalExecutor
from atlas_plugins.toolspace import Toolspace

SERVERS = Path(__file__).parent / "servers"
MATH_SERVER = str(SERVERS / "exec_math_server.py")
HOSTILE_SERVER = str(SERVERS / "hostile_server.py")
PROJECT = Path(__file__).resolve().parents[1]
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
X86_64 = platform.machine() == "x86_64"
x86_only = pytest.mark.skipif(not X86_64, reason="raw x86_64 syscall numbers / machine code")

BRIDGE_WRITE = "import os, struct, sys\nwfd = int(sys.argv[sys.argv.index('--wfd') + 1])\n"
# A forged bridge frame for the *current* cell: the cell number is the runner's run_cell(cell=...)
# local, and also in the cell's code filename '<cell N>'.
FORGE = BRIDGE_WRITE + """import json
def _cell():
    f = sys._getframe()
    while f is not None:
        if f.f_code.co_name == 'run_cell' and isinstance(f.f_locals.get('cell'), int):
            return f.f_locals['cell']
        f = f.f_back
    return int(sys._getframe().f_code.co_filename.strip('<>').split()[-1])
def _send(obj):
    p = json.dumps(obj).encode()
    view = memoryview(struct.pack('>I', len(p)) + p)
    while view:
        view = view[os.write(wfd, view):]
"""
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


# -- host-side helpers -------------------------------------------------------------------------
def pids_with_comm(name: str) -> set[int]:
    out = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if Path(f"/proc/{p}/comm").read_text().strip() == name:
                    out.add(int(p))
            except OSError:
                pass
    return out


def host_uids(pid: int) -> list[int]:
    """Real, effective, saved and fs uid of a process as the host sees them."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


def exec_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "atlas-exec-*"))) | set(glob.glob("/tmp/atlas-exec-*"))


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host():
    ts = Toolspace.from_dict({"servers": {
        "math": {"command": "python", "args": [MATH_SERVER]},
        "hostile": {"command": "python", "args": [HOSTILE_SERVER]},
    }}).start()
    ex = LocalExecutor(timeout=3, memory_mb=512)
    session = ex.open_session(ts, episode="escape")
    ctx = {"ts": ts, "ex": ex, "session": session, "core_pattern": CORE_PATTERN.read_text()}
    yield ctx
    try:
        session.close()
    finally:
        ts.close()


@pytest.fixture(scope="module")
def roomy(host):
    """A session with a wall-time limit long enough to write hundreds of MiB (quota tests)."""
    session = LocalExecutor(timeout=20, memory_mb=512).open_session(host["ts"], episode="escape-roomy")
    yield session
    session.close()


@contextmanager
def fresh(host, **options):
    """A session of its own (for attacks that leave the bridge or pid 1 in a strange state)."""
    ex = LocalExecutor(**{"timeout": 3, "memory_mb": 512, **options}) if options else host["ex"]
    session = ex.open_session(host["ts"])
    try:
        yield session
    finally:
        session.close()


def host_ok(host) -> None:
    """The host is unaffected: it still answers tool calls and its core_pattern is unchanged."""
    assert host["ts"].call("math", "add", {"a": 1, "b": 1}).ok
    assert CORE_PATTERN.read_text() == host["core_pattern"]


def run(host, code: str, session=None) -> CellResult:
    s = session if session is not None else host["session"]
    try:
        result = s.run(code)
    except Exception as exc:  # noqa: BLE001 - run() must never raise for hostile code
        pytest.fail(f"session.run raised {type(exc).__name__}: {str(exc)[:300]}")
    assert isinstance(result, CellResult)
    host_ok(host)
    return result


def value(result: CellResult):
    assert result.ok, result.error
    return eval(result.value)  # noqa: S307 - a repr produced by our own test cells


def state_survives(host, session=None) -> None:
    r = run(host, "keep + 1", session)
    assert r.ok and r.value == "42", f"interpreter state was lost: {r.error or r.value}"


# == [1] code as host root ===================================================================
def session_file_on_host(name: str) -> list[str]:
    """Host paths of /session/<name> of any live sandbox (its host directory, or through /proc/<pid>/root)."""
    paths = {f for d in exec_dirs() for f in glob.glob(os.path.join(d, name))}
    paths |= {f"/proc/{pid}/root/session/{name}" for pid in runner_pids()}
    return sorted(p for p in paths if os.path.lexists(p))


def test_files_written_in_sandbox_are_not_host_root_owned(host):
    """[1] Code as host root: a file the sandbox writes is not owned by host uid 0 (the host's view, not uid_map)."""
    # (/proc/self/uid_map inside is no proof: with bwrap's nested user namespace it is relative to bwrap's own.)
    name = f"owner-{uuid.uuid4().hex[:10]}"
    r = run(host, f"open('/session/{name}', 'w').write('x')\nimport os\n(os.getuid(), open('/proc/self/uid_map').read())")
    assert r.ok, r.error
    owners = {}
    for f in session_file_on_host(name):
        try:
            owners[f] = os.stat(f).st_uid
        except OSError:
            pass
    run(host, f"import os\nos.unlink('/session/{name}')")
    assert owners, "could not find the file from the host"
    assert 0 not in owners.values(), f"sandbox files are host-root owned: {owners} (uid, uid_map inside: {r.value})"


def test_runner_process_is_not_host_root(host):
    """[1] Code as host root: the sandboxed interpreter's host-visible uid is not 0."""
    marker = "ax" + uuid.uuid4().hex[:12]
    code = f"open('/proc/self/comm', 'w').write({marker!r})\nimport time\ntime.sleep(2)\n'slept'"
    thread, box = in_background(lambda: host["session"].run(code))
    found: dict[int, list[int]] = {}
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and not found:
        time.sleep(0.1)
        for pid in pids_with_comm(marker):
            try:
                found[pid] = host_uids(pid)
            except OSError:
                pass
    if not found:  # renaming refused: fall back to every runner process this test process started
        for pid in own_runner_pids():
            try:
                found[pid] = host_uids(pid)
            except OSError:
                pass
    thread.join(10)
    host_ok(host)
    assert found, "could not find the sandboxed interpreter on the host"
    assert all(0 not in uids for uids in found.values()), f"sandbox processes run as host root: {found}"


def test_no_effective_capabilities(host):
    """[1] Code as host root: the sandboxed interpreter has no effective capabilities (CapEff 0)."""
    r = run(host, "[l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'CapAmb'))]")
    cap_eff, cap_prm, cap_amb = value(r)
    assert int(cap_eff, 16) == 0, f"CapEff {cap_eff}"
    assert int(cap_prm, 16) == 0 and int(cap_amb, 16) == 0, (cap_prm, cap_amb)


def test_host_sysctls_cannot_be_opened_for_writing(host):
    """[1] Code as host root: /proc/sys (core_pattern, drop_caches, pid_max, panic, ip_forward) is not writable."""
    paths = ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/pid_max",
             "/proc/sys/kernel/panic", "/proc/sys/net/ipv4/ip_forward"]
    # Only open (no O_TRUNC, nothing written): a successful open is the finding.
    code = f"import os\nopened = []\nfor p in {paths!r}:\n    try:\n        os.close(os.open(p, os.O_WRONLY))\n        opened.append(p)\n    except OSError:\n        pass\nopened"
    r = run(host, code)
    assert value(r) == [], f"host sysctls writable from the sandbox: {r.value}"
    assert CORE_PATTERN.read_text() == host["core_pattern"]


# == [2] seccomp / rlimits bypass through pid 1 ================================================
def test_every_sandbox_process_is_seccomp_filtered(host):
    """[2] Seccomp bypass through pid 1: every process in the sandbox has Seccomp: 2."""
    code = ("import os\nout = {}\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
            "            out[int(p)] = [l.split()[1] for l in open(f'/proc/{p}/status') if l.startswith('Seccomp:')][0]\n"
            "        except (OSError, IndexError):\n            pass\nout")
    seen = value(run(host, code))
    assert seen, "no process visible in /proc"
    assert all(v == "2" for v in seen.values()), f"unfiltered processes in the sandbox: {seen}"


def test_pid1_memory_cannot_be_written(host):
    """[2] Seccomp bypass through pid 1: /proc/1/mem cannot be opened for writing (unless pid 1 is the filtered runner)."""
    code = ("import os\ntry:\n    os.close(os.open('/proc/1/mem', os.O_WRONLY))\n    opened = True\nexcept OSError:\n    opened = False\n"
            "seccomp1 = [l.split()[1] for l in open('/proc/1/status') if l.startswith('Seccomp:')]\n(opened, os.getpid(), seccomp1)")
    opened, pid, seccomp1 = value(run(host, code))
    assert not opened or (pid == 1 and seccomp1 == ["2"]), f"/proc/1/mem writable; pid 1 Seccomp {seccomp1}, runner pid {pid}"


@x86_only
def test_ptrace_attach_pid1_is_refused(host):
    """[2] Seccomp bypass through pid 1: ptrace(PTRACE_ATTACH, 1) fails."""
    code = LIBC + ("r = libc.syscall(101, 16, 1, 0, 0)\ne = ctypes.get_errno()\n"
                   "if r == 0:\n    import time\n    time.sleep(0.1)\n    libc.syscall(101, 17, 1, 0, 0)\n(r, e)")
    with fresh(host) as s:
        rc, err = value(run(host, code, s))
    assert rc == -1, f"PTRACE_ATTACH on pid 1 succeeded (errno {err})"


def test_sandbox_dies_on_close_even_without_pdeathsig(host):
    """[2] rlimits/lifetime bypass: after clearing PR_SET_PDEATHSIG and keeping a thread alive, close() still ends the sandbox."""
    marker = "ax" + uuid.uuid4().hex[:12]
    before = own_runner_pids()
    code = LIBC + (f"try:\n    open('/proc/self/comm', 'w').write({marker!r})\n    named = True\nexcept OSError:\n    named = False\n"
                   "libc.prctl(1, 0, 0, 0, 0)\nimport threading, time\n"
                   "threading.Thread(target=time.sleep, args=(30,)).start()\nnamed")
    leftover: set[int] = set()
    mine: set[int] = set()

    def survivors() -> set[int]:
        # By the marker name when the cell could set it, else the runners this session started
        # (their pids, taken while they were ours: a survivor is re-parented away from us).
        return pids_with_comm(marker) if named else {p for p in mine if os.path.exists(f"/proc/{p}")}

    try:
        with fresh(host) as s:
            named = run(host, code, s).value == "True"
            mine = own_runner_pids() - before
        deadline = time.monotonic() + 2
        leftover = survivors()
        while leftover and time.monotonic() < deadline:
            time.sleep(0.1)
            leftover = survivors()
        assert not leftover, f"sandbox processes outlived session.close(): {sorted(leftover)}"
    finally:
        kill_pids(leftover)


# == [3] setuid ==============================================================================
def test_setuid_copy_of_python_is_not_setuid_root_on_host(host):
    """[3] Setuid: a setuid copy of the interpreter in /session is not setuid-root on the host."""
    name = f"py-{uuid.uuid4().hex[:10]}"
    code = (f"import os, shutil, sys\nshutil.copy(sys.executable, '/session/{name}')\n"
            f"try:\n    os.chmod('/session/{name}', 0o4755)\n    done = True\nexcept OSError:\n    done = False\ndone")
    r = run(host, code)
    chmod_worked = r.ok and r.value == "True"
    bad, seen = [], []
    for f in session_file_on_host(name):
        try:
            st = os.stat(f)
        except OSError:
            continue
        seen.append(f)
        if st.st_uid == 0 and st.st_mode & stat.S_ISUID:
            bad.append(f"{f} (mode {oct(st.st_mode)})")
            if not f.startswith("/proc/"):
                os.unlink(f)  # never leave a setuid-root interpreter on the host
    run(host, f"import os\nos.unlink('/session/{name}') if os.path.exists('/session/{name}') else None")
    assert not bad, f"setuid-root file on the host: {bad}"
    assert not chmod_worked or seen, "chmod 4755 worked in the sandbox but the file was not found from the host"


# == [4] hostile input crashes the host ==========================================================
def test_forged_deeply_nested_json_frame(host):
    """[4] Host crash on hostile input: a forged bridge frame of 100 000-deep JSON is a CellResult, not an exception."""
    code = BRIDGE_WRITE + "p = b'[' * 100000 + b']' * 100000\nos.write(wfd, struct.pack('>I', len(p)) + p)\nimport time\ntime.sleep(1)"
    with fresh(host) as s:
        r = run(host, code, s)
        assert not r.ok
        assert run(host, "1 + 1", s).value == "2"


def test_hostile_server_nested_json_via_toolspace(host):
    """[4] Host crash on hostile input: a tool returning 50 000-deep JSON text does not make ts.call raise."""
    try:
        result = host["ts"].call("hostile", "nested", {})
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"ts.call raised {type(exc).__name__}: {str(exc)[:200]}")
    assert result is not None
    host_ok(host)


def test_hostile_server_nested_json_via_cell(host):
    """[4] Host crash on hostile input: MCPServer('hostile').nested() in a cell comes back as a CellResult."""
    with fresh(host) as s:
        run(host, "keep = 41", s)
        r = run(host, "x = MCPServer('hostile').nested()\nlen(str(x))", s)
        assert isinstance(r, CellResult)
        assert run(host, "1 + 1", s).value == "2"


def test_hostile_server_huge_result_via_cell(host):
    """[4] Host crash on hostile input: a 9 MB tool result neither kills the interpreter nor floods the model."""
    run(host, "keep = 41")
    r = run(host, "x = MCPServer('hostile').huge()\nlen(x)")
    assert len(r.observation(10**8)) < 1_000_000
    state_survives(host)


def test_hostile_server_ansi_result_is_not_shown_raw(host):
    """[4] Hostile MCP output: a tool's ANSI/OSC escapes printed by the cell reach the model without raw ESC/BEL."""
    r = run(host, "print(MCPServer('hostile').ansi())")
    obs = r.observation(10**6)
    assert "\x1b" not in obs and "\x07" not in obs, repr(obs)


# == [5] budgets ===============================================================================
def test_cell_wall_time_includes_tool_call_time(host):
    """[5] Budgets: tool-call time counts against the cell's wall time (4 x 1.5 s calls, 3 s limit)."""
    t0 = time.monotonic()
    r = host["session"].run("m = MCPServer('math')\nfor _ in range(4):\n    m.slow(seconds=1.5)\n'finished'")
    elapsed = time.monotonic() - t0
    host_ok(host)
    assert elapsed < 5, f"the cell ran {elapsed:.1f}s under a 3s limit"
    assert not r.ok and "time" in (r.error or "").lower(), r


QUOTA_CELL = """import os
d = {d!r}
if not os.path.isdir(d):
    result = ('absent', None)
else:
    written, err = 0, None
    try:
        for i in range(20):
            with open(os.path.join(d, f'q{{i}}'), 'wb') as f:
                for _ in range(32):
                    f.write(b'\\0' * 1048576)
                    f.flush()
                    written += 1
    except OSError as e:
        err = e.errno
    finally:
        for i in range(20):
            try:
                os.unlink(os.path.join(d, f'q{{i}}'))
            except OSError:
                pass
    result = (written, err)
result"""
QUOTA_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _quota(host, roomy, d: str) -> None:
    written, err = value(run(host, QUOTA_CELL.format(d=d), roomy))
    if written == "absent":
        return
    assert err in QUOTA_ERRNOS and written < 600, f"wrote {written} MiB to {d} (errno {err}) without hitting a quota"


def test_tmp_is_size_capped(host, roomy):
    """[5] Budgets: /tmp in the sandbox has a total size quota (20 files x 32 MiB)."""
    _quota(host, roomy, "/tmp")


def test_dev_shm_is_size_capped(host, roomy):
    """[5] Budgets: /dev/shm in the sandbox has a total size quota (20 files x 32 MiB)."""
    _quota(host, roomy, "/dev/shm")


def test_session_dir_is_size_capped(host, roomy):
    """[5] Budgets: /session (a host directory) has a total size quota (20 files x 32 MiB)."""
    _quota(host, roomy, "/session")


def test_thread_bomb_with_small_stacks_is_bounded(host):
    """[5] Budgets: a 3000-thread bomb with 32 KiB stacks fails early (RLIMIT_NPROC works for the sandbox user)."""
    code = ("import threading\nthreading.stack_size(32768)\nev = threading.Event()\nn = 0\ntry:\n"
            "    for _ in range(3000):\n        threading.Thread(target=ev.wait, args=(10,), daemon=True).start()\n        n += 1\n"
            "except (RuntimeError, MemoryError, OSError):\n    pass\nfinally:\n    ev.set()\nn")
    r = run(host, code)
    started = int(r.value) if r.ok else None
    assert started is not None and started < 200, f"{started} threads started (error: {r.error})"


@pytest.fixture
def embedded():
    """Fresh embedded servers (their own hub process), closed afterwards."""
    made: list[Toolspace] = []

    def make(*names: str, **cfg) -> Toolspace:
        ts = Toolspace.from_dict({"servers": {n: {"embedded": True} for n in names}, **cfg}).start()
        made.append(ts)
        return ts

    yield make
    for ts in made:
        ts.close()


def test_math_evaluate_power_tower_is_bounded(embedded):
    """[5] Budgets: math:evaluate('((9**1000)**1000)**24') errors within 5 s and other calls answer meanwhile."""
    before = pids_matching(b"atlas_plugins.envs.hub")
    ts = embedded("math", call_timeout=6)
    try:
        t0 = time.monotonic()
        thread, box = in_background(lambda: ts.call("math", "evaluate", {"expression": "((9**1000)**1000)**24"}))
        time.sleep(0.3)
        other = ts.call("math", "add", {"numbers": [1, 2]}, timeout=2)
        thread.join(8)
        elapsed = time.monotonic() - t0
    finally:
        # A hub stuck in the computation would hold up ts.close() for ~20 s: end the one this test started.
        kill_pids(pids_matching(b"atlas_plugins.envs.hub") - before)
    result = box.get("result")
    assert result is not None and not result.ok, box
    assert elapsed < 5, f"evaluate took {elapsed:.1f}s ({result.error})"
    assert other.ok, f"another call did not answer meanwhile: {other.error}"


def test_files_copy_cannot_grow_without_bound(embedded):
    """[5] Budgets: doubling a workspace folder with files:copy/move hits a quota before 256 MiB."""
    ts = embedded("files")
    ep = "escape-quota"
    assert ts.call("files", "write_file", {"path": "g/a.txt", "content": "x" * 1_000_000}, episode=ep).ok
    size, failure = 1_000_000, None
    try:
        for i in range(15):
            for tool, args in (("copy", {"source": "g", "destination": "h"}),
                               ("move", {"source": "h", "destination": f"g/c{i}"})):
                res = ts.call("files", tool, args, episode=ep)
                if not res.ok:
                    failure = f"{tool}: {res.error}"
                    break
            if failure:
                break
            details = ts.call("files", "get_details", {"path": "g"}, episode=ep)
            size = details.content["size_bytes"] if details.ok else size * 2
            if size > 256 * 2**20:
                break
    finally:
        ts.call("files", "delete", {"path": "g", "recursive": True}, episode=ep)
        ts.call("files", "delete", {"path": "h", "recursive": True}, episode=ep)
    assert failure is not None, f"the workspace grew to {size / 2**20:.0f} MiB without a quota error"
    assert size <= 256 * 2**20


# == [6] the host trusts the sandbox's numbers =================================================
def test_forged_done_frame_with_7mb_output_is_capped(host):
    """[6] Host trusts the sandbox: a forged 'done' with 7 MB of stdout/value is capped host-side."""
    code = FORGE + ("_send({'op': 'done', 'cell': _cell(), 'ok': True, 'stdout': 'A' * 3_400_000, 'value': 'B' * 3_400_000})\n"
                    "import time\ntime.sleep(1)")
    with fresh(host) as s:
        r = run(host, code, s)
    assert len(r.observation(10**8)) < 1_000_000, len(r.observation(10**8))
    assert len(r.stdout) < 300_000 and len(r.value or "") < 300_000, (len(r.stdout), len(r.value or ""))


def test_raised_stdout_limit_is_still_capped(host):
    """[6] Host trusts the sandbox: sys.stdout.limit = 10**9 then a 7 MB print is still capped host-side."""
    r = run(host, "import sys\nsys.stdout.limit = 10 ** 9\nprint('y' * 7_000_000)")
    assert len(r.stdout) < 300_000, len(r.stdout)
    assert len(r.observation(10**8)) < 1_000_000


def test_forged_done_ok_true_with_error_is_not_ok(host):
    """[6] Host trusts the sandbox: a forged 'done' with ok=True and an error string is reported as not ok."""
    code = FORGE + "_send({'op': 'done', 'cell': _cell(), 'ok': True, 'error': 'forged failure'})\nimport time\ntime.sleep(1)"
    with fresh(host) as s:
        r = run(host, code, s)
    assert not r.ok and r.error, r


def test_cell_result_with_error_is_never_ok():
    """[6] Host trusts the sandbox: a CellResult carrying an error is never ok."""
    assert CellResult(ok=True, error="boom").ok is False


# == [7] cross-episode leak =====================================================================
def test_tool_examples_do_not_leak_across_episodes(host):
    """[7] Cross-episode leak: a call's arguments in episode A never show in episode B's get_tools_info."""
    ex = LocalExecutor(timeout=3, memory_mb=512)  # one executor, two episodes
    a = ex.open_session(host["ts"], episode="escape-A")
    b = ex.open_session(host["ts"], episode="escape-B")
    try:
        ra = run(host, "MCPServer('math').add(a=123456.789, b=1)", a)
        assert ra.ok, ra.error
        rb = run(host, "print(MCPServer('math').get_tools_info(['add']))", b)
    finally:
        a.close()
        b.close()
    assert "123456.789" not in rb.observation(10**6) and "123457.789" not in rb.observation(10**6), rb.stdout


# == [8] smaller findings =======================================================================
def host_dir_of(host, session) -> str | None:
    """The host directory behind this session's /session (found by a marker file), or None."""
    marker = f".escape-{uuid.uuid4().hex}"
    run(host, f"open('/session/{marker}', 'w').close()", session)
    found = [d for d in exec_dirs() if os.path.exists(os.path.join(d, marker))]
    run(host, f"import os\nos.unlink('/session/{marker}')", session)
    return found[0] if len(found) == 1 else None


def close_and_find_leftovers(host, sessions_and_cells, private_tmp: Path) -> tuple[list[str], list[str]]:
    """Open a session per cell, run it, close it; returns (close() errors, directories left behind).

    The sessions make their temporary directories under ``private_tmp`` (``tempfile.tempdir``),
    so what is left there is theirs, never another test process's live session."""
    errors, mine = [], []
    saved, tempfile.tempdir = tempfile.tempdir, str(private_tmp)
    try:
        for ex, cell in sessions_and_cells:
            s = ex.open_session(host["ts"])
            try:
                mine.append(host_dir_of(host, s))
                run(host, cell, s)
            finally:
                try:
                    s.close()
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        tempfile.tempdir = saved
    found = set(glob.glob(str(private_tmp / "atlas-exec-*"))) | {d for d in mine if d}
    left = sorted(d for d in found if os.path.exists(d))
    for d in left:
        subprocess.run(["rm", "-rf", d], check=False)
    return errors, left


def test_closed_sessions_leave_no_directories(host, tmp_path):
    """[8] Leftovers: five closed sessions with hostile leftovers (chmod 0, fifo, symlinks, socket) leave no atlas-exec-* dir."""
    ex = LocalExecutor(timeout=3, memory_mb=512)
    cells = [
        "os.makedirs('/session/a/b', exist_ok=True)\nos.chmod('/session/a/b', 0)\nos.chmod('/session/a', 0)",
        "os.mkfifo('/session/fifo')",
        "os.symlink('/', '/session/root-link')\nos.symlink('/session', '/session/self-link')",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind('/session/sock')",
        "open('/session/f', 'w').write('x')\nos.chmod('/session', 0o500)",
    ]
    errors, left = close_and_find_leftovers(host, [(ex, "import os\n" + c) for c in cells], tmp_path)
    assert not errors, f"session.close() raised: {errors}"
    assert not left, f"session directories left behind: {left}"


def test_deep_directory_tree_does_not_break_close(host, tmp_path):
    """[8] Leftovers: a 3000-deep directory tree in /session neither makes close() raise nor survives it."""
    cell = "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nos.chdir('/session')"
    errors, left = close_and_find_leftovers(host, [(host["ex"], cell)], tmp_path)
    assert not errors, f"session.close() raised: {errors}"
    assert not left, f"session directories left behind: {left}"


def test_io_uring_setup_is_refused(host):
    """[8] Syscalls: io_uring_setup (nr 425) returns -1."""
    code = LIBC + "params = ctypes.create_string_buffer(120)\nfd = libc.syscall(425, 4, params)\nif fd >= 0:\n    os.close(fd)\nfd"
    assert value(run(host, code)) == -1


def test_pidfd_getfd_is_refused(host):
    """[8] Syscalls: pidfd_getfd (nr 438) cannot steal a file descriptor (from pid 1 or itself)."""
    code = LIBC + ("got = []\nfor pid in (1, os.getpid()):\n    pfd = libc.syscall(434, pid, 0)\n"
                   "    fd = libc.syscall(438, pfd, 0, 0) if pfd >= 0 else -1\n    got.append(fd)\n"
                   "    for x in (fd, pfd):\n        if x >= 0:\n            os.close(x)\ngot")
    assert value(run(host, code)) == [-1, -1]


def test_no_host_paths_in_proc(host):
    """[8] Host paths: /proc/1/cmdline and /proc/self/mountinfo name neither the project (/work) nor the host session dir."""
    r = run(host, "(open('/proc/1/cmdline', 'rb').read().decode('utf-8', 'replace'), open('/proc/self/mountinfo').read())")
    cmdline, mountinfo = value(r)
    needles = {"/work", str(PROJECT), "atlas-exec-"} | {os.path.basename(d) for d in exec_dirs()}
    transport = getattr(host["session"], "_transport", None)
    if getattr(transport, "session_dir", None):
        needles.add(transport.session_dir)
    for text, where in ((cmdline, "/proc/1/cmdline"), (mountinfo, "/proc/self/mountinfo")):
        hits = sorted(n for n in needles if n and n in text)
        assert not hits, f"{where} shows host paths {hits}"


def test_printed_terminal_escapes_are_not_shown_raw(host):
    """[8] Terminal escapes: a cell printing OSC/CSI sequences yields an observation without raw ESC/BEL."""
    r = run(host, "print('\\x1b]0;pwned\\x07\\x1b[2J')")
    obs = r.observation(10**6)
    assert "\x1b" not in obs and "\x07" not in obs, repr(obs)


def test_terminal_escapes_in_errors_are_not_shown_raw(host):
    """[8] Terminal escapes: an exception message carrying OSC/CSI sequences yields an observation without raw ESC/BEL."""
    r = run(host, "raise ValueError('\\x1b]0;pwned\\x07\\x1b[2J')")
    assert not r.ok
    obs = r.observation(10**6)
    assert "\x1b" not in obs and "\x07" not in obs, repr(obs)


def test_segfault_message_names_the_cause(host):
    """[8] Model-facing messages: a segfault is reported as a segmentation fault, not just 'exit status 139'."""
    r = run(host, "import ctypes\nctypes.string_at(0)")
    assert not r.ok and "segmentation fault" in (r.error or "").lower(), r.error
    assert run(host, "5").value == "5"


def test_cpu_limit_message_names_the_cause(host):
    """[8] Model-facing messages: hitting the CPU-time limit says so, not just 'exit status 137/152'."""
    with fresh(host, timeout=5, cpu_seconds=1) as s:
        r = run(host, "while True:\n    pass", s)
    assert not r.ok and "cpu" in (r.error or "").lower(), r.error


@x86_only
def test_blocked_syscall_message_names_the_cause(host):
    """[8] Model-facing messages: a seccomp kill (i386 int 0x80 -> SIGSYS) is named, not just 'exit status 159'."""
    code = ("import ctypes, mmap\nbuf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "buf.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')  # mov eax, 20 (getpid); int 0x80; ret\n"
            "addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\nctypes.CFUNCTYPE(ctypes.c_int)(addr)()")
    r = run(host, code)
    assert not r.ok
    if r.restarted:  # the process was killed: the message must say why
        words = ("sigsys", "seccomp", "system call", "syscall")
        assert any(w in (r.error or "").lower() for w in words), r.error


def test_huge_exception_message_is_capped_and_keeps_state(host):
    """[8] Model-facing messages: a 9 MB exception message is a capped error, not 'invalid bridge message', and state survives."""
    run(host, "keep = 41")
    r = run(host, "raise ValueError('x' * 9_000_000)")
    assert not r.ok and r.error
    assert len(r.error) < 100_000, len(r.error)
    assert "invalid bridge message" not in r.error, r.error[:300]
    state_survives(host)


def test_exception_str_raising_systemexit_keeps_interpreter(host):
    """[8] Model-facing messages: an exception whose __str__ raises SystemExit does not kill the interpreter."""
    run(host, "keep = 41")
    r = run(host, "class E(Exception):\n    def __str__(self):\n        raise SystemExit(3)\nraise E()")
    assert not r.ok
    state_survives(host)


def test_output_before_a_crash_is_kept(host):
    """[8] Model-facing messages: output printed before a segfault is still shown."""
    r = run(host, "print('before-crash')\nimport ctypes\nctypes.string_at(0)")
    assert not r.ok
    assert "before-crash" in r.stdout or "before-crash" in (r.error or ""), r


# == more layers: each one holds on its own ==================================================
@x86_only
@pytest.mark.parametrize("name,nr,args", [
    ("mount", 165, "b'none', b'/tmp', b'tmpfs', 0, None"),
    ("unshare(CLONE_NEWNS)", 272, "0x00020000"),
    ("setns", 308, "0, 0"),
    ("chroot", 161, "b'/tmp'"),
    ("bpf", 321, "0, None, 0"),
    ("perf_event_open", 298, "None, 0, -1, -1, 0"),
    ("userfaultfd", 323, "0"),
    ("keyctl", 250, "0, 0"),
    ("process_vm_readv", 310, "1, None, 0, None, 0, 0"),
    ("pidfd_open", 434, "1, 0"),
])
def test_attack_surface_syscalls_are_refused(host, name, nr, args):
    """[2][8] System calls only an attacker needs fail with EPERM, even when called raw."""
    r = run(host, LIBC + f"(libc.syscall({nr}, {args}), ctypes.get_errno())")
    assert value(r) == (-1, errno.EPERM), f"{name}: {r.value}"


def test_setuid_bits_are_refused_even_on_own_files(host):
    """[3] chmod with setuid/setgid bits fails; plain chmod still works."""
    r = run(host, "import os\nopen('/session/s', 'w').close()\nos.chmod('/session/s', 0o755)\n"
                  "try:\n    os.chmod('/session/s', 0o4755)\n    out = 'allowed'\nexcept PermissionError:\n    out = 'refused'\n"
                  "out, oct(os.stat('/session/s').st_mode & 0o7777)")
    assert value(r) == ("refused", "0o755")


def test_root_and_dev_are_read_only(host):
    """[5] The sandbox's root and /dev are not writable tmpfs (they would be an unbounded quota)."""
    r = run(host, "out = []\nfor p in ('/x', '/dev/x', '/opt/x', '/etc/x'):\n    try:\n        open(p, 'w')\n"
                  "        out.append(p)\n    except OSError:\n        pass\nout")
    assert value(r) == []
    assert run(host, "open('/dev/null', 'w').write('ok')").ok  # device nodes still work


def test_many_sessions_get_distinct_host_uids(host):
    """[1][5] Concurrent sessions of a root host run as different unprivileged uids, so one cannot
    signal another or use up its thread limit."""
    if os.geteuid() != 0:
        pytest.skip("only a root host allocates per-session uids (this run is not root)")
    with fresh(host) as a, fresh(host) as b:
        uids = [value(run(host, "import os\nopen('/session/u', 'w').close()\n'ok'", s)) for s in (a, b)]
        owners = {os.stat(f"/proc/{pid}/root/session/u").st_uid for pid in runner_pids()
                  if os.path.exists(f"/proc/{pid}/root/session/u")}
    assert uids == ["ok", "ok"] and 0 not in owners and len(owners) >= 2


HOSTILE_CELLS = {
    "nested frame": FORGE + "p = b'[' * 100000 + b']' * 100000\n"
                    "os.write(wfd, struct.pack('>I', len(p)) + p)\nimport time\ntime.sleep(1)",
    "forged 7 MB done": FORGE + "_send({'op': 'done', 'cell': _cell(), 'ok': True, 'stdout': 'x' * 7_000_000})",
    "nested MCP result": "MCPServer('hostile').nested()",
    "huge MCP result": "MCPServer('hostile').huge()",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "SystemExit from __str__": "class E(Exception):\n    def __str__(self):\n        raise SystemExit(3)\nraise E()",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CELLS))
def test_atlas_exec_answers_json_for_hostile_cells(host, tmp_path, case):
    """[4] The CLI (the host process) survives every hostile frame and MCP result and prints
    exactly one JSON object, never a traceback."""
    import json
    import sys

    code = tmp_path / "cell.py"
    code.write_text(HOSTILE_CELLS[case])
    cfg = tmp_path / "toolspace.yaml"
    cfg.write_text(f"servers:\n  hostile: {{command: {sys.executable}, args: [{HOSTILE_SERVER}]}}\n")
    proc = subprocess.run([sys.executable, "-m", "atlas_plugins.cli", "exec", "--code", str(code), "--config", str(cfg),
                           "--timeout", "5", "--json"], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-500:]
    data = json.loads(lines[0])
    assert set(data) >= {"ok", "value", "stdout", "error"} and len(lines[0]) < 1_000_000
    assert proc.returncode in (0, 1)
