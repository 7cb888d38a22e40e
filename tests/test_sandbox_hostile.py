"""Hostile programs against the ``local`` executor, for attack classes the other sandbox tests
(test_sandbox_escape.py, test_sandbox_security.py) leave open.

Each test runs one hostile cell (or forged bridge frames) through the executor's public API and
asserts on a concrete host-side effect: a host env var or file descriptor that is not readable, a
host process still alive, a marker file an MCP server did not write, a host that answers within
its budget, a result the host can encode. Run as root (CI, Docker), which is the case that
matters. Resource-exhaustion probes (memory, disk, CPU floods) are marked ``slow`` (and
``resource_heavy`` in their docstrings): bounded, but not for a machine that is busy.

Attack classes: [F] file system and devices, [P] privileges, [E] environment and inherited fds,
[N] network, [S] signals and host processes, [O] hostile output fed back to the host,
[B] bridge protocol abuse, [R] resources.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from sandbox_procs import own_runner_pids

from atlas_plugins.orchestration.base import CellResult
from atlas_plugins.orchestration.executors.local import LocalExecutor
from atlas_plugins.toolspace import Toolspace

SERVERS = Path(__file__).parent / "servers"
MATH_SERVER = str(SERVERS / "exec_math_server.py")
MARKER_SERVER = str(SERVERS / "marker_server.py")
CANARY = f"atlas-canary-{uuid.uuid4().hex}"
# Host secrets a real CI or training host holds; none may be readable in the sandbox.
SECRET_ENV = ("HF_TOKEN", "E2B_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "WANDB_API_KEY")

BRIDGE_WRITE = "import os, struct, sys\nwfd = int(sys.argv[sys.argv.index('--wfd') + 1])\n"
# Forged bridge frames: _send(obj) writes one length-prefixed frame; _cell() is the running cell.
FORGE = BRIDGE_WRITE + """import json
rfd = int(sys.argv[sys.argv.index('--rfd') + 1])
def _cell():
    f = sys._getframe()
    while f is not None:
        if f.f_code.co_name == 'run_cell' and isinstance(f.f_locals.get('cell'), int):
            return f.f_locals['cell']
        f = f.f_back
    raise RuntimeError('no run_cell frame')
def _frame(payload):
    return struct.pack('>I', len(payload)) + payload
def _send_raw(payload):
    view = memoryview(_frame(payload))
    while view:
        view = view[os.write(wfd, view):]
def _send(obj):
    _send_raw(json.dumps(obj).encode())
def _recv():
    head = b''
    while len(head) < 4:
        head += os.read(rfd, 4 - len(head))
    n, body = struct.unpack('>I', head)[0], b''
    while len(body) < n:
        body += os.read(rfd, n - len(body))
    return json.loads(body)
"""


# -- host-side helpers -------------------------------------------------------------------------
def utf8_clean(obj) -> list[str]:
    """Paths of strings in ``obj`` that cannot be encoded as UTF-8 (lone surrogates)."""
    bad, stack = [], [("", obj)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                bad.append(where or "<root>")
        elif isinstance(item, dict):
            stack += [(f"{where}.{k}", v) for k, v in item.items()] + [(f"{where}.<key>", k) for k in item]
        elif isinstance(item, (list, tuple)):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(item)]
    return bad


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host():
    """Host canaries: secret env vars, an inheritable fd on a secret file, a sleeping host child
    holding the secret in its environment, and a marker MCP server the sandbox may not reach."""
    saved = {k: os.environ.get(k) for k in SECRET_ENV}
    os.environ.update({k: f"{CANARY}-{k}" for k in SECRET_ENV})
    marker_dir = Path(tempfile.mkdtemp(prefix="atlas-hostile-marker-"))
    secret_file = marker_dir / "host-secret.txt"
    secret_file.write_text(CANARY)
    secret_fd = os.open(secret_file, os.O_RDONLY)
    os.set_inheritable(secret_fd, True)  # a careless host leaves fds inheritable
    child = subprocess.Popen(["sleep", "600"], env={"PATH": "/usr/bin:/bin", "HOST_CHILD_SECRET": CANARY})
    ts = Toolspace.from_dict({"servers": {
        "math": {"command": "python", "args": [MATH_SERVER]},
        "marker": {"command": "python", "args": [MARKER_SERVER, str(marker_dir)]},
    }}).start()
    ex = LocalExecutor(timeout=3, memory_mb=512)
    session = ex.open_session(ts, episode="hostile-extra", servers=["math"])  # 'marker' is not allowed
    ctx = {"ts": ts, "ex": ex, "session": session, "child": child, "marker_dir": marker_dir,
           "secret_fd": secret_fd, "secret_file": secret_file}
    try:
        yield ctx
    finally:
        try:
            session.close()
        finally:
            ts.close()
            child.kill()
            child.wait(5)
            os.close(secret_fd)
            for p in marker_dir.iterdir():
                p.unlink()
            marker_dir.rmdir()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextmanager
def fresh(host, **options):
    """A session of its own, for attacks that leave the bridge or the runner in a strange state."""
    ex = LocalExecutor(**{"timeout": 3, "memory_mb": 512, **options})
    session = ex.open_session(host["ts"], servers=["math"])
    try:
        yield session
    finally:
        session.close()


def host_ok(host) -> None:
    """The host is unaffected: tool calls answer, its child lives, its secret file is intact,
    and the marker server was never reached."""
    assert host["ts"].call("math", "add", {"a": 1, "b": 1}).ok
    assert host["child"].poll() is None, "a host process was killed"
    assert host["secret_file"].read_text() == CANARY
    assert [p.name for p in host["marker_dir"].iterdir()] == ["host-secret.txt"], "the marker server was reached"


def run(host, code: str, session=None) -> CellResult:
    s = session if session is not None else host["session"]
    try:
        result = s.run(code)
    except Exception as exc:  # noqa: BLE001 - run() must never raise for hostile code
        pytest.fail(f"session.run raised {type(exc).__name__}: {str(exc)[:300]}")
    assert isinstance(result, CellResult)
    assert CANARY not in result.observation(10**7), "a host secret reached the sandbox"
    host_ok(host)
    return result


def value(result: CellResult):
    assert result.ok, result.error
    return eval(result.value)  # noqa: S307 - a repr produced by our own test cells


# == [E] environment and inherited file descriptors ============================================
def test_host_secret_env_vars_are_not_readable(host):
    """[E] HF_TOKEN, E2B_API_KEY, AWS_* ... set on the host appear in no environment, command line
    or os.environ inside the sandbox."""
    code = ("import os\nseen = {k: v for k, v in os.environ.items()}\nblobs = []\n"
            "for p in os.listdir('/proc'):\n    if p.isdigit() or p in ('self', 'thread-self'):\n"
            "        for f in ('environ', 'cmdline'):\n            try:\n"
            "                blobs.append(open(f'/proc/{p}/{f}', 'rb').read().decode('latin-1'))\n"
            "            except OSError:\n                pass\n"
            f"[k for k in {list(SECRET_ENV)!r} if k in seen], any({CANARY!r} in b for b in blobs), len(blobs)")
    names, leaked, n = value(run(host, code))
    assert n > 0, "no /proc entries were readable (the probe saw nothing)"
    assert names == [] and not leaked, f"host secrets visible in the sandbox: {names}, in /proc: {leaked}"


def test_no_inherited_fds_beyond_the_bridge(host):
    """[E] The sandbox holds only stdin (/dev/null), the host's log for stdout/stderr, the two bridge
    pipes and the output mirror; an inheritable host fd on a secret file is not among them, and no
    fd reads the host's secret."""
    assert os.get_inheritable(host["secret_fd"])
    code = ("import os\nfds = {}\nfor fd in sorted(map(int, os.listdir('/proc/self/fd'))):\n"
            "    try:\n        fds[fd] = os.readlink(f'/proc/self/fd/{fd}')\n    except OSError:\n        continue\n"
            "data = {}\nfor fd in fds:\n    try:\n        data[fd] = os.pread(fd, 200, 0).decode('latin-1')\n"
            "    except OSError:\n        pass\n"
            f"fds, [fd for fd, d in data.items() if {CANARY!r} in d]")
    with fresh(host) as s:
        fds, reads_secret = value(run(host, code, s))
    assert reads_secret == [], f"fds {reads_secret} read the host's secret file"
    kinds = {fd: ("pipe" if t.startswith("pipe:") else "memfd" if t.startswith("/memfd:atlas-output")
                  else "null" if t == "/dev/null" else "log" if fd in (1, 2) else t) for fd, t in fds.items()}
    unexpected = {fd: t for fd, t in kinds.items() if t not in ("pipe", "memfd", "null", "log")
                  and not t.startswith("/proc/")}  # the listdir fd itself
    assert not unexpected, f"unexpected inherited fds in the sandbox: {unexpected}"
    assert sorted(kinds.values()).count("pipe") == 2 and list(kinds.values()).count("memfd") == 1, kinds


# == [S] host processes: /proc/<host pid>, signals, ptrace ======================================
def test_host_processes_are_out_of_reach(host):
    """[S][F] A host child (holding the secret in its environment) and the host test process itself
    cannot be read through /proc/<host pid>, signalled, or opened as a pidfd; the child lives."""
    pids = [host["child"].pid, os.getpid(), os.getppid()]
    code = (f"import os, signal, ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nout = {{}}\nfor pid in {pids!r}:\n"
            "    row = []\n    for f in ('environ', 'cmdline', 'root/etc/hostname', 'mem'):\n        try:\n"
            "            row.append(open(f'/proc/{pid}/{f}', 'rb').read(4096).decode('latin-1'))\n"
            "        except OSError as e:\n            row.append(e.errno)\n"
            "    for sig in (signal.SIGKILL, signal.SIGSTOP, 0):\n        try:\n            os.kill(pid, sig)\n"
            "            row.append('signalled')\n        except OSError as e:\n            row.append(e.errno)\n"
            "    row.append(libc.syscall(434, pid, 0))\n    out[pid] = row\nout")
    with fresh(host) as s:
        seen = value(run(host, code, s))
    time.sleep(0.2)
    assert host["child"].poll() is None, "the sandbox killed a host process"
    for pid, row in seen.items():
        assert CANARY not in json.dumps(row), f"host pid {pid}'s /proc entries are readable: {row}"
        assert "signalled" not in row, f"host pid {pid} could be signalled: {row}"
        assert row[-1] == -1, f"pidfd_open({pid}) succeeded"


# == [F] file system, devices and setuid ========================================================
def test_no_host_devices_or_kernel_interfaces(host):
    """[F] Only the usual character devices exist; /sys, /dev/kmsg, /proc/kcore, /proc/kmsg,
    /proc/sysrq-trigger and host block devices cannot be opened; /proc/self/root is the sandbox's."""
    code = ("import os, stat\ndevs = {}\nfor d, _, fs in os.walk('/dev'):\n    for f in fs:\n"
            "        p = os.path.join(d, f)\n        try:\n            m = os.lstat(p).st_mode\n        except OSError:\n"
            "            continue\n        if stat.S_ISCHR(m) or stat.S_ISBLK(m):\n            devs[p] = 'blk' if stat.S_ISBLK(m) else 'chr'\n"
            "opened = []\nfor p in ('/sys/kernel/notes', '/dev/kmsg', '/proc/kcore', '/proc/kmsg', '/proc/sysrq-trigger',\n"
            "          '/dev/mem', '/dev/vda', '/dev/sda', '/dev/nvme0n1', '/dev/kvm', '/dev/fuse', '/proc/self/fd/1'):\n"
            "    try:\n        os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))\n        opened.append(p)\n    except OSError:\n        pass\n"
            "devs, opened, sorted(os.listdir('/proc/self/root')) == sorted(os.listdir('/'))")
    devs, opened, same_root = value(run(host, code))
    assert opened == [], f"host kernel interfaces or devices open in the sandbox: {opened}"
    assert "blk" not in devs.values(), devs
    assert set(devs) <= {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx",
                         "/dev/pts/ptmx"}, devs  # /dev/pts is the sandbox's own devpts instance
    assert same_root


def test_setuid_helpers_in_the_sandbox_cannot_be_executed(host):
    """[P] Setuid-root helpers visible under /usr/lib (ssh-keysign, polkit, dbus) cannot be executed:
    no_new_privs, an empty bounding set, nosuid mounts and the execve filter each stop them."""
    code = ("import os, stat\nhelpers = []\nfor root in ('/usr/lib', '/opt'):\n    for d, _, fs in os.walk(root):\n"
            "        for f in fs:\n            p = os.path.join(d, f)\n            try:\n                m = os.lstat(p).st_mode\n"
            "            except OSError:\n                continue\n            if stat.S_ISREG(m) and m & 0o6000:\n                helpers.append(p)\n"
            "ran = []\nfor p in helpers[:8]:\n    try:\n        os.execv(p, [p])\n        ran.append(p)\n    except OSError:\n        pass\n"
            "status = {l.split(':')[0]: l.split()[1] for l in open('/proc/self/status') if l.startswith(('NoNewPrivs', 'CapBnd'))}\n"
            "mounts = [l.split()[4] for l in open('/proc/self/mountinfo') if 'nosuid' not in l.split()[5]]\n"
            "ran, status, mounts, len(helpers)")
    with fresh(host, timeout=30) as s:  # walking /usr/lib takes a few seconds on a loaded machine
        ran, status, mounts, _n = value(run(host, code, s))
    assert ran == []
    assert status == {"NoNewPrivs": "1", "CapBnd": "0000000000000000"}, status
    assert mounts == [], f"mounts without nosuid: {mounts}"


def test_files_cannot_be_created_with_setuid_bits(host):
    """[P] open(O_CREAT) and creat() with a setuid/setgid mode are refused like chmod 4755 is:
    the seccomp layer refuses setuid/setgid mode bits on every path that sets a mode."""
    name = f"suid-{uuid.uuid4().hex[:8]}"
    code = (f"import os, ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nmodes = {{}}\n"
            f"for i, (flags, mode) in enumerate([(os.O_CREAT | os.O_WRONLY, 0o4755), (os.O_CREAT | os.O_WRONLY, 0o2755),\n"
            f"                                   (os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o6777)]):\n"
            f"    p = '/session/{name}-%d' % i\n    try:\n        os.close(os.open(p, flags, mode))\n"
            f"        modes[p] = oct(os.stat(p).st_mode & 0o7777)\n    except OSError as e:\n        modes[p] = e.errno\n"
            f"fd = libc.creat(b'/tmp/{name}-creat', 0o4755)\n"
            f"modes['creat'] = oct(os.stat('/tmp/{name}-creat').st_mode & 0o7777) if fd >= 0 else ctypes.get_errno()\n"
            f"modes")
    modes = value(run(host, code))
    carrying = {p: m for p, m in modes.items() if isinstance(m, str) and int(m, 8) & 0o6000}
    assert not carrying, f"files created with setuid/setgid bits: {carrying}"
    assert run(host, f"import os\nos.close(os.open('/session/{name}-plain', os.O_CREAT | os.O_WRONLY, 0o755))\n"
                     f"oct(os.stat('/session/{name}-plain').st_mode & 0o777)").value == "'0o755'"


def test_no_tty_to_inject_keystrokes_into(host):
    """[P] TIOCSTI (fake keystrokes into a terminal) fails on every inherited fd, and there is no
    controlling terminal: /dev/tty cannot be opened."""
    code = ("import fcntl, os, termios\nout = {}\nfor fd in (0, 1, 2):\n    try:\n"
            "        fcntl.ioctl(fd, termios.TIOCSTI, b'x')\n        out[fd] = 'injected'\n    except OSError as e:\n"
            "        out[fd] = e.errno\ntry:\n    os.close(os.open('/dev/tty', os.O_RDWR))\n    out['tty'] = 'opened'\n"
            "except OSError as e:\n    out['tty'] = e.errno\nout, os.getsid(0) == os.getpid()")
    out, own_session = value(run(host, code))
    assert "injected" not in out.values() and out["tty"] != "opened", out
    assert own_session  # --new-session: the sandbox leads its own session


# == [N] network =================================================================================
@contextmanager
def listener(family: int, address):
    """A host listener; yields (its address, the list of accepted peers)."""
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind(address)
    srv.listen(8)
    srv.settimeout(0.1)
    accepted: list = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                accepted.append(srv.accept())
            except OSError:
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield srv.getsockname(), accepted
    finally:
        stop.set()
        thread.join(1)
        srv.close()


def test_host_abstract_unix_socket_is_not_reachable(host):
    """[N] An abstract unix socket on the host (no file, so no mount hides it; scoped by network
    namespace) cannot be connected to from the sandbox."""
    name = f"\0atlas-hostile-{uuid.uuid4().hex}"
    with listener(socket.AF_UNIX, name) as (_, accepted):
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(name)  # the host itself can reach it
        probe.close()
        time.sleep(0.2)
        before = len(accepted)
        code = f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(1)\ns.connect({name!r})\n'connected'"
        r = run(host, code)
        time.sleep(0.2)
        assert not r.ok and r.value != "'connected'", r
        assert len(accepted) == before, "the sandbox connected to a host abstract socket"


def test_host_ipv6_and_any_address_loopback_is_not_reachable(host):
    """[N] Services on the host's ::1 and 0.0.0.0 (an MCP HTTP server, `transformers serve`) cannot be
    reached from the sandbox, whatever address it tries."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        ctx6 = listener(socket.AF_INET6, ("::1", 0))
        addr6, acc6 = ctx6.__enter__()
    except OSError:
        pytest.skip("::1 is not configured on this host")
    try:
        with listener(socket.AF_INET, ("0.0.0.0", 0)) as (addr4, acc4):
            targets = [("::1", addr6[1]), ("127.0.0.1", addr4[1]), ("0.0.0.0", addr4[1]), ("::ffff:127.0.0.1", addr4[1])]
            code = (f"import socket\nout = []\nfor host, port in {targets!r}:\n"
                    "    fam = socket.AF_INET6 if ':' in host else socket.AF_INET\n    s = socket.socket(fam)\n    s.settimeout(1)\n"
                    "    try:\n        s.connect((host, port))\n        out.append((host, 'connected'))\n    except OSError as e:\n"
                    "        out.append((host, e.errno))\n    s.close()\nout")
            r = run(host, code)
            time.sleep(0.2)
            assert acc6 == [] and acc4 == [], "the sandbox reached a host loopback service"
            assert all(res != "connected" for _, res in value(r)), r.value
    finally:
        ctx6.__exit__(None, None, None)


# Socket families whose traffic is not confined by a network namespace (vsock reaches the
# hypervisor, bluetooth the radio) or that are pure kernel attack surface (AF_ALG, RDS, TIPC, ...).
# Only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK (if_nameindex, getaddrinfo) have a use in a cell.
OTHER_FAMILIES = {"AF_VSOCK": 40, "AF_BLUETOOTH": 31, "AF_ALG": 38, "AF_RDS": 21, "AF_TIPC": 30,
                  "AF_QIPCRTR": 42, "AF_XDP": 44, "AF_KCM": 41, "AF_CAN": 29, "AF_PACKET": 17, "AF_KEY": 15}


def test_only_namespaced_socket_families_can_be_opened(host):
    """[N] socket() works for AF_UNIX/AF_INET/AF_INET6/AF_NETLINK only. AF_VSOCK is the one that
    matters on a VM (Firecracker, QEMU, cloud): it is not isolated by the network namespace, so
    without the filter a cell reaches the hypervisor's vsock services (CID 2)."""
    code = (f"import socket\nout = {{}}\nfor name, fam in {OTHER_FAMILIES!r}.items():\n    for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET, socket.SOCK_RAW):\n"
            "        try:\n            socket.socket(fam, typ).close()\n            out[name] = 'opened'\n            break\n"
            "        except OSError as e:\n            out.setdefault(name, e.errno)\n"
            "ok = []\nfor fam in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):\n"
            "    typ = socket.SOCK_RAW if fam == socket.AF_NETLINK else socket.SOCK_STREAM\n    socket.socket(fam, typ).close()\n    ok.append(fam)\n"
            "out, [n for _, n in socket.if_nameindex()]")
    out, ifaces = value(run(host, code))
    opened = sorted(name for name, res in out.items() if res == "opened")
    assert opened == [], f"the sandbox can open sockets of families {opened}"
    assert ifaces == ["lo"]


# == [O] hostile output fed back to the host ====================================================
SURROGATE_DONE = FORGE + ("_send_raw(b'{\"op\": \"done\", \"cell\": %d, \"ok\": false, \"stdout\": \"out\\\\ud800\", '\n"
                          "          b'\"value\": \"\\\\udfff\", \"error\": \"err\\\\udc80\", \"error_type\": \"E\\\\ud83d\"}' % _cell())\n"
                          "import time\ntime.sleep(2)")


def test_lone_surrogates_from_the_sandbox_do_not_reach_the_host(host):
    """[O] A forged 'done' whose strings hold lone surrogates (valid JSON escapes, not UTF-8) gives a
    CellResult the host can encode: writing it to a log, a JSON file or a tokenizer must not raise."""
    with fresh(host) as s:
        r = run(host, SURROGATE_DONE, s)
        bad = utf8_clean(r.model_dump())
        assert not bad, f"CellResult fields the host cannot encode as UTF-8: {bad}"
        r.observation(10**6).encode("utf-8")
        # The runner's own late 'done' for the forged cell makes the next cell restart; the one after works.
        again = run(host, "1 + 1", s)
        assert (again if again.ok else run(host, "1 + 1", s)).value == "2"


def test_lone_surrogates_in_forged_tool_arguments_do_not_reach_the_host(host):
    """[O] A forged call whose arguments hold a lone surrogate gets an answer, and the host's own
    record of the call (CellResult.tool_calls, which goes into trajectories) stays encodable."""
    code = FORGE + ("_send_raw(b'{\"op\": \"call\", \"id\": 9, \"server\": \"math\", \"tool\": \"echo\", \"kwargs\": {\"text\": \"a\\\\ud800b\"}}')\n"
                    "reply = _recv()\n(reply['id'], reply['ok'])")
    with fresh(host) as s:
        r = run(host, code, s)
        assert value(r)[0] == 9, r
        assert r.tool_calls, "the host made no call"
        bad = utf8_clean(r.model_dump())
        assert not bad, f"CellResult fields the host cannot encode as UTF-8: {bad}"


def test_e2b_honest_print_of_a_lone_surrogate_reaches_the_host_encodable(host, tmp_path):
    """[O] Over E2B's ASCII line transport even an honest print('\\ud800') arrives as a JSON escape;
    the CellResult must still be encodable as UTF-8 (checked against the local SDK stand-in)."""
    from test_executor import StandInSandbox  # the stand-in of the E2B SDK subset the executor uses

    from atlas_plugins.orchestration.executors.e2b import E2BExecutor

    ex = E2BExecutor(sandbox_factory=StandInSandbox, python=sys.executable, runner_path=str(tmp_path / "runner.py"),
                     timeout=5)
    s = ex.open_session(host["ts"], servers=["math"])
    try:
        r = run(host, "print('a\\ud800b')\n'\\udfff'", s)
        assert r.ok, r.error
        bad = utf8_clean(r.model_dump())
        assert not bad, f"CellResult fields the host cannot encode as UTF-8: {bad}"
    finally:
        s.close()


def test_cli_exec_survives_lone_surrogates(host, tmp_path):
    """[O] `atlas exec --json` (the host process) prints one JSON line for a cell that forges lone
    surrogates, never a UnicodeEncodeError traceback."""
    code = tmp_path / "cell.py"
    code.write_text(SURROGATE_DONE)
    cfg = tmp_path / "toolspace.yaml"
    cfg.write_text(f"servers:\n  math: {{command: {sys.executable}, args: [{MATH_SERVER}]}}\n")
    proc = subprocess.run([sys.executable, "-m", "atlas_plugins.cli", "exec", "--code", str(code), "--config", str(cfg),
                           "--timeout", "5", "--json"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-500:]
    assert set(json.loads(lines[0])) >= {"ok", "stdout", "error"}


def test_invalid_utf8_frame_is_refused(host):
    """[O] A frame with raw invalid UTF-8 bytes is a protocol violation (interpreter restarted), not a
    host exception."""
    code = FORGE + "_send_raw(b'{\"op\": \"done\", \"cell\": %d, \"ok\": true, \"stdout\": \"\\xff\\xfe\\xc3\"}' % _cell())\nimport time\ntime.sleep(2)"
    with fresh(host) as s:
        r = run(host, code, s)
        assert not r.ok and r.restarted and "not JSON" in (r.error or ""), r
        assert run(host, "2 + 2", s).value == "4"


def test_fake_frames_on_stdout_and_stderr_are_only_output(host):
    """[O][B] Bridge frames printed or written to fds 1/2 are output (or dropped), never messages:
    the cell's own value comes back and the interpreter is not restarted."""
    fake = {"op": "done", "cell": 1, "ok": True, "value": "'FORGED'"}
    code = (f"import json, os, struct\np = json.dumps({fake!r}).encode()\nframe = struct.pack('>I', len(p)) + p\n"
            "print(p.decode())\nos.write(1, frame)\nos.write(2, frame + b'\\n' + p + b'\\n')\n'real'")
    with fresh(host) as s:
        r = run(host, code, s)
        assert r.ok and r.value == "'real'" and not r.restarted, r
        assert run(host, "'again'", s).value == "'again'"


def test_forged_ready_during_a_cell_is_refused(host):
    """[B] A 'ready' forged in the middle of a cell is refused (restart), not taken as a new interpreter."""
    code = FORGE + "_send({'op': 'ready', 'pid': 1, 'python': '3', 'seccomp': False})\nimport time\ntime.sleep(2)"
    with fresh(host) as s:
        r = run(host, code, s)
        assert not r.ok and r.restarted and "ready" in (r.error or ""), r


def test_forged_mirror_header_is_capped(host):
    """[O] The crash mirror is sandbox-writable: a forged header claiming 2**62 bytes, then a crash,
    gives capped output, not a host read of the whole claim."""
    code = ("import os, struct, sys, ctypes\nmfd = int(sys.argv[sys.argv.index('--mirror-fd') + 1])\n"
            "size = os.fstat(mfd).st_size\nos.pwrite(mfd, b'M' * (size - 16), 16)\n"
            "f = sys._getframe()\nwhile f.f_code.co_name != 'run_cell':\n    f = f.f_back\n"
            "os.pwrite(mfd, struct.pack('>QQ', f.f_locals['cell'], 2 ** 62), 0)\nctypes.string_at(0)")
    with fresh(host, max_output_chars=5000) as s:
        r = run(host, code, s)
        assert not r.ok and r.restarted, r
        assert 0 < len(r.stdout) < 6000, len(r.stdout)


# == [B] bridge protocol abuse ===================================================================
def test_forged_call_to_a_server_outside_the_session_is_refused(host):
    """[B] A session opened with servers=['math'] cannot reach the toolspace's 'marker' server, not
    through MCPServer, not with forged 'server'/'info'/'call' frames: no marker file appears."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    code = FORGE + (f"out = []\nfor req in ({{'op': 'server', 'id': 1, 'server': 'marker'}},\n"
                    f"            {{'op': 'info', 'id': 2, 'server': 'marker', 'tools': None}},\n"
                    f"            {{'op': 'call', 'id': 3, 'server': 'marker', 'tool': 'touch', 'kwargs': {{'name': {name!r}}}}},\n"
                    f"            {{'op': 'call', 'id': 4, 'server': 'marker', 'tool': 'touch', 'args': [{name!r}]}}):\n"
                    "    _send(req)\n    rep = _recv()\n    out.append((rep['id'], rep['ok']))\nout")
    with fresh(host) as s:
        r = run(host, code, s)
        api = run(host, f"MCPServer('marker').touch(name={name!r})", s)
    assert value(r) == [(1, False), (2, False), (3, False), (4, False)], r.value
    assert not api.ok and "unknown server 'marker'" in api.error, api.error
    assert not (host["marker_dir"] / name).exists(), "a disallowed MCP server was called"
    assert r.tool_calls == [] and api.tool_calls == []


def test_huge_numbers_and_non_finite_floats_in_forged_calls(host):
    """[B] Forged calls with a 5000-digit integer (over Python's int-string limit), a 4000-digit one,
    NaN and Infinity neither crash the host nor leave the cell without an answer."""
    with fresh(host) as s:
        big = FORGE + "_send_raw(b'{\"op\": \"call\", \"id\": 1, \"server\": \"math\", \"tool\": \"add\", \"kwargs\": {\"a\": ' + b'9' * 5000 + b', \"b\": 1}}')\nimport time\ntime.sleep(2)"
        r = run(host, big, s)
        assert not r.ok and r.restarted, r
        for a in ("9" * 4000, "NaN", "Infinity", "-Infinity", "1e999"):
            code = FORGE + ("_send_raw(b'{\"op\": \"call\", \"id\": 5, \"server\": \"math\", \"tool\": \"add\", \"kwargs\": {\"a\": A, \"b\": 1}}')\n"
                            "rep = _recv()\n(rep['id'], rep['ok'])").replace("A, ", f"{a}, ")
            r = run(host, code, s)
            assert r.ok and value(r)[0] == 5, (a[:20], r.error)
        assert run(host, "MCPServer('math').add(a=1, b=2)", s).value == "3.0"


def test_bridge_request_flood_is_bounded_by_the_cell_budget(host):
    """[B][R] 20 000 forged 'server'/'info' requests (uncounted by the tool-call cap) with a thread
    draining the replies end within the cell's wall-time budget; the host answers meanwhile."""
    code = FORGE + ("import threading\ngot = [0]\ndef drain():\n    while True:\n        _recv()\n        got[0] += 1\n"
                    "threading.Thread(target=drain, daemon=True).start()\n"
                    "reqs = [json.dumps({'op': 'info', 'id': i, 'server': 'math', 'tools': ['add']} if i % 2 else\n"
                    "                   {'op': 'server', 'id': i, 'server': 'math'}).encode() for i in range(20000)]\n"
                    "for p in reqs:\n    os.write(wfd, _frame(p))\nimport time\ntime.sleep(30)")
    with fresh(host, timeout=3) as s:
        t0 = time.monotonic()
        r = run(host, code, s)
        elapsed = time.monotonic() - t0
        assert elapsed < 10, f"the host served the flood for {elapsed:.1f}s under a 3 s budget"
        assert not r.ok, r
        assert run(host, "1", s).value == "1"


def test_unread_replies_do_not_hang_the_host(host):
    """[B][R] Forged requests whose replies the sandbox never reads fill the host->sandbox pipe; the
    host's write must still end at the cell's wall-time budget instead of blocking forever."""
    code = FORGE + ("p = b''.join(_frame(json.dumps({'op': 'server', 'id': i, 'server': 'math'}).encode()) for i in range(3000))\n"
                    "view = memoryview(p)\nwhile view:\n    view = view[os.write(wfd, view):]\nimport time\ntime.sleep(60)")
    fired = threading.Event()

    def watchdog() -> None:  # unblock a hung host: kill the sandbox, the host's write then fails (EPIPE)
        fired.set()
        for pid in own_runner_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # run() stays on this thread: bwrap's --die-with-parent is tied to the thread that started it.
    with fresh(host) as s:
        timer = threading.Timer(15, watchdog)
        timer.start()
        try:
            r = run(host, code, s)
        finally:
            timer.cancel()
        assert not fired.is_set(), "session.run() was still blocked writing replies 12 s after its 3 s budget"
        assert not r.ok and r.restarted and "time limit" in (r.error or ""), r
        assert run(host, "7", s).value == "7"


# == [R] resource exhaustion (resource_heavy: run only on an idle machine) ======================
@pytest.mark.slow  # resource_heavy
def test_stderr_flood_to_the_host_log_is_bounded(host):
    """[R] resource_heavy. fds 1/2 of the runner are a host temp file (the sandbox's stdout/stderr
    log). 300 MB written there stops at the file-size limit (RLIMIT_FSIZE), so the host disk
    gets at most max_file_mb per interpreter; the cell is not killed by SIGXFSZ."""
    with fresh(host, timeout=30, max_file_mb=16) as s:
        before = own_runner_pids()
        code = ("import os\nn = 0\ntry:\n    for _ in range(300):\n        os.write(2, b'e' * 1048576)\n        n += 1\n"
                "except OSError as e:\n    err = e.errno\nelse:\n    err = None\n(n, err)")
        r = run(host, code, s)
        sizes = []
        for pid in before:
            try:
                sizes.append(os.stat(f"/proc/{pid}/fd/2").st_size)
            except OSError:
                pass
        n, err = value(r)
    assert err == errno.EFBIG and n <= 16, (n, err)
    assert sizes and max(sizes) <= 16 * 2**20, sizes


@pytest.mark.slow  # resource_heavy
def test_tool_call_argument_flood_is_bounded_on_the_host(host):
    """[R] resource_heavy. 30 calls with 7 MB of arguments each: the host's record of the calls
    (CellResult.tool_calls, kept in trajectories) must not hold 200 MB per cell."""
    code = "m = MCPServer('math')\nfor _ in range(30):\n    try:\n        m.echo(text='a' * 7_000_000)\n    except Exception:\n        pass\n'done'"
    with fresh(host, timeout=60) as s:
        r = run(host, code, s)
    held = len(json.dumps(r.tool_calls))
    assert held < 10 * 2**20, f"the host holds {held / 2**20:.0f} MiB of tool-call arguments for one cell"


@pytest.mark.slow  # resource_heavy
@pytest.mark.parametrize("where", ["cell", "thread"])
def test_empty_file_flood_on_tmpfs_is_bounded(host, where):
    """[R] resource_heavy. Empty files cost a tmpfs no bytes, only inodes (~1 KB of kernel memory
    each, not charged to the interpreter's memory limit; measured 1.6 million in 20 s without a
    guard). The host counts them and stops the sandbox past ``max_files``, also when the flood
    runs in a thread a cell left behind (it resumes in the next cell)."""
    flood = ("import os, time\ndef flood():\n    n, t0 = 0, time.monotonic()\n    while time.monotonic() - t0 < 8:\n"
             "        os.close(os.open(f'/tmp/{n}', os.O_CREAT | os.O_WRONLY))\n        n += 1\n    return n\n")
    with fresh(host, timeout=10, max_files=5_000) as s:
        t0 = time.monotonic()
        if where == "cell":
            r = run(host, flood + "flood()", s)
        else:
            assert run(host, flood + "import threading\nthreading.Thread(target=flood).start()\n'started'", s).ok
            time.sleep(1)  # the interpreter is stopped between cells: the flood waits for the next one
            r = run(host, "import time\ntime.sleep(3)\nlen(__import__('os').listdir('/tmp'))", s)
        took = time.monotonic() - t0
        assert r.restarted and "files and directories on /tmp" in (r.error or ""), r
        assert took < 6, f"the flood ran {took:.1f} s before the host stopped it"
        assert run(host, "len(__import__('os').listdir('/tmp'))", s).value == "0"  # a fresh interpreter


@pytest.mark.slow  # resource_heavy
def test_memory_bomb_through_many_threads_and_buffers(host):
    """[R] resource_heavy. Pipes, socketpairs and threads each holding buffers stay within the
    interpreter's address-space limit: the cell fails, the host survives."""
    code = ("import os, socket, threading\nkeep = []\ntry:\n    for _ in range(30):\n        a, b = socket.socketpair()\n"
            "        a.setblocking(False)\n        try:\n            while True:\n                a.send(b'x' * 65536)\n"
            "        except BlockingIOError:\n            pass\n        keep.append((a, b))\n"
            "    blobs = [bytearray(64 * 2**20) for _ in range(64)]\nexcept (OSError, MemoryError) as e:\n    err = type(e).__name__\n"
            "else:\n    err = None\nerr")
    with fresh(host, timeout=20) as s:
        r = run(host, code, s)
        # Contained inside the interpreter (MemoryError/OSError) or by killing it; either way the
        # host answered (run() checks) and the next cell runs.
        assert r.value in ("'MemoryError'", "'OSError'") or r.restarted, r
        assert run(host, "3", s).value == "3"


def test_memory_outside_the_interpreter_limits_is_refused(host):
    """[R] System V shared memory, semaphores and message queues, and memfd files, hold memory no
    rlimit of the interpreter counts (measured before the fix: 1 GiB of detached SysV segments and
    1 GiB of memfds from an interpreter limited to 256 MB, still held after the cell). The calls
    fail with EPERM; ctypes callbacks (libffi closures, which may try memfd first) still work."""
    code = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
got = {}
for name, args in (("shmget", (0, ctypes.c_size_t(1 << 20), 0o1600)), ("semget", (0, 8, 0o1600)),
                   ("msgget", (0, 0o1600))):
    ctypes.set_errno(0)
    got[name] = (getattr(libc, name)(*args), ctypes.get_errno())
try:
    os.memfd_create("held")
    got["memfd_create"] = (0, 0)
except OSError as e:
    got["memfd_create"] = (-1, e.errno)
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
arr = (ctypes.c_int * 4)(3, 1, 4, 2)
libc.qsort(arr, 4, ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
got["qsort"] = list(arr)
got"""
    got = value(run(host, code))
    for name in ("shmget", "semget", "msgget", "memfd_create"):
        assert got[name] == (-1, errno.EPERM), (name, got[name])
    assert got["qsort"] == [1, 2, 3, 4]


def test_bridge_refuses_surrogate_bytes_and_non_utf8_encodings():
    """[O] ``json.loads(bytes)`` decodes raw surrogate bytes with 'surrogatepass' and accepts
    UTF-16/32, so a forged message could carry lone surrogates with no ``\\u`` escape at all."""
    from atlas_plugins.orchestration.bridge import ProtocolViolation, parse_message

    raw = b'{"op": "info", "id": 1, "server": "math", "x": "\xed\xa0\x80"}'
    with pytest.raises(ProtocolViolation, match="not JSON"):
        parse_message(raw)
    utf16 = '{"op": "info", "id": 1, "server": "m\\ud800"}'.encode("utf-16")
    with pytest.raises(ProtocolViolation, match="not JSON"):
        parse_message(utf16)


# == [H] the host's own circumstances: busy fd tables, worker threads ============================
def test_sandbox_works_when_the_host_has_fds_past_1024(host):
    """[H] A busy host (many sessions, sockets, MCP servers) hands out fd numbers above 1024, which
    ``select`` cannot wait on (ValueError). Starting a sandbox, a cell, a timed-out cell and
    stopping must all work with bridge fds that high."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 1200: fd numbers past 1024 cannot be reached here")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200 if hard == resource.RLIM_INFINITY else min(hard, 4096), hard))
    filler: list[int] = []
    try:
        while not filler or filler[-1] < 1030:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        with fresh(host, timeout=2) as s:
            assert value(run(host, "6 * 7", s)) == 42
            slow = run(host, "import time\ntime.sleep(30)", s)
            assert not slow.ok and "time" in (slow.error or "").lower(), slow
            assert value(run(host, "1 + 1", s)) == 2
        # close() ran stop(): no sandbox of this session is left.
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sandbox_outlives_the_worker_thread_that_started_it(host):
    """[H] bubblewrap's --die-with-parent fires when the *thread* that forked it exits. A session
    first used from a worker thread (a LangGraph ToolNode's pool, ``asyncio.to_thread``) must keep
    its interpreter, and its variables, after that thread is gone."""
    from concurrent.futures import ThreadPoolExecutor

    ex = LocalExecutor(timeout=3, memory_mb=512)
    with ThreadPoolExecutor(max_workers=1) as pool:  # shut down (its thread joined) on exit
        s = pool.submit(ex.open_session, host["ts"], servers=["math"]).result()
        try:
            assert pool.submit(run, host, "x = 41\nx", s).result().value == "41"
        except BaseException:
            s.close()
            raise
    try:
        time.sleep(1.0)  # PR_SET_PDEATHSIG's SIGKILL would have landed by now
        again = run(host, "x + 1", s)
        assert not again.restarted, again
        assert value(again) == 42
    finally:
        s.close()


def test_a_forked_host_child_can_start_sandboxes(host):
    """[H] A host process that forks after using a sandbox (multiprocessing's "fork" start method,
    forked data-loader workers): the child starts its own sandboxes. The parent's sandbox starter
    thread does not exist in the child, so it must not wait on it."""
    assert value(run(host, "1")) == 1  # this process has started sandboxes already
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 3
        try:
            s = LocalExecutor(timeout=5, memory_mb=512).open_session(host["ts"], servers=[])
            try:
                code = 0 if s.run("6 * 7").value == "42" else 4
            finally:
                s.close()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, f"the forked child failed (status {status})"
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("a forked child hung starting a sandbox")


def test_sandboxes_of_a_thread_still_running_after_main_returns_keep_working():
    """[H] A non-daemon thread that still runs cells after the main thread has returned keeps its
    sandbox: nothing tied to the main thread's exit may kill sandboxes before the process ends."""
    script = (
        "import threading, time\n"
        "from atlas_plugins.orchestration.executors.local import LocalExecutor\n"
        "from atlas_plugins.toolspace import Toolspace\n"
        "ts = Toolspace.from_dict({'servers': {}}).start()\n"
        "started = threading.Event()\n"
        "def worker():\n"
        "    s = LocalExecutor(timeout=5, memory_mb=512).open_session(ts, servers=[])\n"
        "    s.run('x = 20')\n"
        "    started.set()\n"
        "    time.sleep(2.0)\n"
        "    r = s.run('x * 2 + 2')\n"
        "    print('AFTER-MAIN', r.value, r.restarted, flush=True)\n"
        "    s.close()\n"
        "threading.Thread(target=worker).start()\n"
        "started.wait(60)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "AFTER-MAIN 42 False" in proc.stdout, (proc.stdout + proc.stderr)[-2000:]


# -- found by review (2026-12-02): machine-wide kernel state, hostile text, amplification ------------
@pytest.mark.parametrize("call", ["io_setup", "inotify_init1"])
def test_kernel_objects_counted_outside_the_sandbox_are_refused(host, call):
    """[R] Kernel AIO contexts count against one machine-wide limit (fs.aio-max-nr, 65,536): a
    sandbox holding them all made every host io_setup fail while it lived. inotify instances
    count per host uid (a sandbox of an unprivileged host shares its uid). Both are refused."""
    import platform

    numbers = {"io_setup": {"x86_64": 206, "aarch64": 0}, "inotify_init1": {"x86_64": 294, "aarch64": 26}}
    nr = numbers[call].get(platform.machine())
    if nr is None:
        pytest.skip(f"no {call} number known for {platform.machine()}")
    args = "64, ctypes.byref(ctx)" if call == "io_setup" else "0"
    code = (f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nctx = ctypes.c_ulong(0)\n"
            f"rc = libc.syscall({nr}, {args})\n(rc, ctypes.get_errno())")
    r = run(host, code)
    assert r.value == f"(-1, {errno.EPERM})", r
    host_ok(host)


def test_terminal_escapes_from_the_sandbox_never_reach_the_host_log_raw(host, caplog):
    """[O] A crashing interpreter's stderr is quoted in the cell's error and the host's warning;
    an OSC/CSI sequence in it must arrive as visible escapes, not as bytes a terminal runs."""
    code = "import os\nos.write(2, b'\\x1b]0;PWNED\\x07\\x1b[31mred')\nos._exit(3)"
    with fresh(host) as s, caplog.at_level("WARNING"):
        r = run(host, code, s)
    assert r.restarted and "PWNED" in (r.error or ""), r
    assert "\x1b" not in r.error and "\x07" not in r.error and "\\x1b" in r.error, r.error
    logged = [rec.getMessage() for rec in caplog.records if "PWNED" in rec.getMessage()]
    assert logged and not any("\x1b" in m or "\x07" in m for m in logged), logged


def test_bidi_overrides_from_the_sandbox_are_shown_as_escapes(host):
    """[O] Trojan Source (CVE-2021-42574): a right-to-left override or an isolate in a cell's
    output would make the line a terminal or a log viewer shows differ from the text the model and
    the host hold; the observation shows them escaped, and ordinary non-ASCII text unchanged."""
    code = "print('total = 5 \\u202e01 \\u2066x\\u2069 \\u200f\\u2028next, caf\\u00e9')"
    r = run(host, code)
    assert r.ok, r
    seen = r.observation()
    assert not any(ch in seen for ch in "\u202e\u2066\u2069\u200f\u2028"), ascii(seen)
    assert "\\u202e01" in seen and "\\u2066x\\u2069" in seen and "café" in seen, ascii(seen)


def test_invisible_format_characters_from_the_sandbox_are_shown_as_escapes(host):
    """[O] Zero-width characters and Unicode tag characters (U+E0000-7F) render as nothing, so a
    cell could hide text in its output that a language model reads and a person reviewing the
    transcript does not see ("ASCII smuggling"); the observation shows each one as an escape."""
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "rm -rf")
    code = f"print('ok\\u200b\\u200d\\ufeff{ascii(hidden)[1:-1]} done, \\U0001f44d')"
    r = run(host, code)
    assert r.ok, r
    seen = r.observation()
    assert all(unicodedata.category(ch) != "Cf" for ch in seen), ascii(seen)
    assert "ok\\u200b\\u200d\\ufeff\\U000e0072\\U000e006d" in seen and "\U0001f44d" in seen, ascii(seen)


def test_printable_escapes_every_format_and_separator_character_of_this_python():
    """[O] The escape table is written out by hand; this checks it against the running Python's
    Unicode database, so a newer Unicode with new format characters fails here instead of
    letting them through. Tab and newline are the only controls kept."""
    from atlas_plugins.values import printable

    kept = [f"U+{c:04X}" for c in range(sys.maxunicode + 1)
            if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp") and chr(c) not in "\t\n"
            and printable(chr(c)) == chr(c)]
    assert not kept, kept
    hiders = "\u034f\u115f\u1160\u3164\uffa0\U000e0100\U000e01ef"  # render as nothing, other categories
    assert all(printable(ch) != ch for ch in hiders), [ascii(ch) for ch in hiders if printable(ch) == ch]
    assert printable("\u2764\ufe0f") == "\u2764\ufe0f"  # an emoji's presentation selector stays
    assert printable("caf\u00e9 \u65e5\u672c \U0001f44d\tx\n") == "caf\u00e9 \u65e5\u672c \U0001f44d\tx\n"


def test_a_huge_argument_does_not_ride_on_every_later_error_hint(host):
    """[O] The first successful call of a tool becomes the example in later error hints; its
    arguments are the sandbox's own, so a 3 MB one must be cut there (it reached every later
    TypeError/IndexError message of the session, 6 MB each, past the error cap)."""
    from atlas_plugins.orchestration.sandbox_runner import ERROR_CHARS

    with fresh(host, timeout=20) as s:
        r = run(host, "m = MCPServer('math')\nn = m.stats(numbers=[1] * 1_000_000)\n[][1]", s)
        assert r.error and "hint:" in r.error and "IndexError" in r.error, r
        assert len(r.error) < ERROR_CHARS + 2000, len(r.error)


def test_a_flood_of_made_up_argument_names_costs_the_host_little():
    """[O] A schema with additionalProperties: false and a call with 200,000 made-up keys: the
    validation message names a few of them, not all (all of them, spell-checked: seconds of host
    CPU and a message of megabytes per call)."""
    from atlas_plugins.toolspace.validation import ArgumentValidator
    from atlas_plugins.types import ToolSpec

    spec = ToolSpec(server="s", name="search", description="", input_schema={
        "type": "object", "properties": {"query": {"type": "string"}}, "additionalProperties": False})
    message = ArgumentValidator(spec).check({f"quer{i}": 0 for i in range(200_000)})
    assert message is not None and "and 199990 more" in message, (message or "")[:500]
    assert len(message) < 4000, len(message)
    wrong = ArgumentValidator(spec).check({"query": ["x" * 1_000_000]})
    assert wrong is not None and len(wrong) < 4000, len(wrong or "")


def test_bridge_messages_with_millions_of_containers_are_refused_before_parsing():
    """[B] 8 MiB of "[{},{},...]" parsed into 2.8 million objects held 375 MB of host memory per
    message; the frame is refused by a bracket count first. A tool result of Python-literal text is
    decoded only when short (1 M characters of "(0,0,...)" cost 0.96 s and 472 MB in literal_eval)."""
    from atlas_plugins.orchestration.bridge import MAX_MESSAGE_BYTES, ProtocolViolation, parse_message
    from atlas_plugins.values import MAX_LITERAL_CHARS, to_python

    body = "[" + ",".join(["{}"] * 2_000_000) + "]"
    frame = json.dumps({"op": "call", "id": 1, "server": "math", "tool": "add", "args": [], "kwargs": {"a": 0}})
    frame = frame[:-2] + ', "b": ' + body + "}}"
    assert len(frame) < MAX_MESSAGE_BYTES
    with pytest.raises(ProtocolViolation, match="objects and lists"):
        parse_message(frame.encode())
    ok = parse_message(json.dumps({"op": "done", "cell": 1, "ok": True, "stdout": "{}" * 1000}).encode())
    assert ok.op == "done"
    literal = "(" + "0," * (MAX_LITERAL_CHARS // 2) + ")"
    assert to_python(literal) == literal  # stays text
    assert to_python("(1, 2)") == (1, 2)


def test_files_are_counted_when_the_host_may_not_look_into_the_sandbox(tmp_path):
    """[R] Docker runs root without CAP_SYS_PTRACE: such a host may not read another uid's
    ``/proc/<pid>/root``, and the file guard used to give up with a warning (3,000 files past a
    limit of 100 were kept). The runner hands the host its mounts' descriptors instead."""
    if os.geteuid() != 0:
        pytest.skip("needs root: only a root host runs the sandbox as another uid")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot drop CAP_SYS_PTRACE for the host")
    probe = subprocess.run([setpriv, "--bounding-set=-sys_ptrace", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop CAP_SYS_PTRACE here: {probe.stderr.strip()[:300]}")
    script = tmp_path / "host.py"
    script.write_text(
        "import os\n"
        "from atlas_plugins.orchestration.executors.local import LocalExecutor\n"
        "from atlas_plugins.toolspace import Toolspace\n"
        "ts = Toolspace.from_dict({'servers': {}}).start()\n"
        "s = LocalExecutor(timeout=10, memory_mb=512, max_files=100).open_session(ts, servers=[])\n"
        "pid1 = s._transport._child_pid\n"
        "try:\n"
        "    os.stat(f'/proc/{pid1}/root/tmp')\n"
        "    print('PROC-READABLE')\n"
        "except OSError:\n"
        "    print('PROC-DENIED')\n"
        "r = s.run(\"import os, time\\nfor i in range(3000):\\n    open(f'/tmp/f{i}', 'w').close()\\n\"\n"
        "          \"time.sleep(2)\\nlen(os.listdir('/tmp'))\")\n"
        "print('RESULT', r.restarted, repr(r.error))\n"
        "print('AFTER', s.run(\"len(__import__('os').listdir('/tmp'))\").value)\n"
        "s.close(); ts.close()\n"
    )
    proc = subprocess.run([setpriv, "--bounding-set=-sys_ptrace", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert "PROC-DENIED" in out, f"the host could still read /proc/<pid>/root; the case is not tested:\n{out[-2000:]}"
    assert "RESULT True" in out and "files and directories on /tmp" in out, out[-2000:]
    assert "AFTER 0" in out, out[-2000:]


def test_a_raised_output_cap_raises_the_bracket_cap_with_it(host):
    """[B] The bracket cap counts inside strings, and a 'done' message carries the whole stdout:
    a user who raises max_output_chars may print 600,000 brackets and get them back."""
    with fresh(host, timeout=20, max_output_chars=1_000_000) as s:
        r = run(host, "print('[{' * 300_000)", s)
    assert r.ok and not r.restarted and r.stdout.count("[{") == 300_000, (r.error or "")[:300]


def test_a_thread_left_spinning_uses_no_cpu_between_cells(host):
    """[R] A cell that starts a busy thread and returns at once: the thread ran on between cells,
    outside every cell's time budget (measured: 1.8 CPU-s in the 2 s after the cell returned).
    The interpreter is stopped between cells; the thread runs again inside the next cell."""
    code = ("import threading, time\nticks = [0]\ndef spin():\n    while True:\n        ticks[0] += 1\n"
            "threading.Thread(target=spin, daemon=True).start()\ntime.sleep(0.2)\n'started'")
    with fresh(host, timeout=10) as s:
        assert run(host, code, s).value == "'started'"
        pid = s._transport._child_pid
        tick = os.sysconf("SC_CLK_TCK")

        def cpu_s() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

        before = cpu_s()
        time.sleep(1.5)
        idle = cpu_s() - before
        assert idle < 0.3, f"the interpreter used {idle:.2f} CPU-s between cells"
        first = int(run(host, "ticks[0]", s).value)
        second = int(run(host, "import time\ntime.sleep(0.3)\nticks[0]", s).value)
        assert second > first, "the thread did not run again inside a cell"


# == found by a red-team pass as root (2026-12-03) ==============================================
def test_fallocate_cannot_reserve_host_disk_past_the_file_size_limit(host):
    """[R] fd 1 and 2 are a host temp file. The kernel checks RLIMIT_FSIZE only when a file grows,
    so fallocate(FALLOC_FL_KEEP_SIZE) on fd 1 reserved 150 MiB of host disk under a 1 MiB
    max_file_mb; the filter answers EOPNOTSUPP, also to the ioctls that reserve the same way
    (FS_IOC_RESVSP64), and plain writes still work (to the cap)."""
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]\n"
            "out = []\nfor mode in (0, 1):\n    ctypes.set_errno(0)\n"
            "    out.append((libc.fallocate(1, mode, 0, 150 * 2**20), ctypes.get_errno()))\n"
            "import fcntl, struct\ntry:\n    fcntl.ioctl(1, 0x4030582a, struct.pack('hh4xqqii16x', 0, 0, 0, 150 << 20, 0, 0))\n"
            "    out.append((0, 0))\nexcept OSError as e:\n    out.append((-1, e.errno))\n"
            "print('x' * 1000)\n(out, os.fstat(1).st_blocks * 512)")
    with fresh(host, max_file_mb=1) as s:
        r = run(host, code, s)
        calls, allocated = value(r)
        assert calls == [(-1, errno.EOPNOTSUPP)] * 3, calls
        assert allocated < 2**20, f"{allocated} bytes of host disk behind a 1 MiB cap"
        assert "x" * 1000 in r.stdout


def test_file_locks_are_refused_so_they_cannot_pin_kernel_memory(host):
    """[R] Each byte-range lock is kernel memory no limit counts, and an open file description's
    locks outlive close() while a mapping of the file keeps it: one cell held 631,500 locks
    (117 MiB of unreclaimable kernel memory) with 7 descriptors. Setting a lock (flock, F_SETLK,
    F_OFD_SETLK) fails with EPERM (ENOLCK would make sqlite3 retry for its whole busy timeout);
    asking about one (F_GETLK) still works."""
    code = ("import errno, fcntl, os, struct\nfd = os.open('/session/f', os.O_RDWR | os.O_CREAT)\n"
            "lock = struct.pack('hhqqi4x', fcntl.F_RDLCK, 0, 0, 1, 0)\nout = {}\n"
            "for name, call in (('flock', lambda: fcntl.flock(fd, fcntl.LOCK_SH)),\n"
            "                   ('setlk', lambda: fcntl.fcntl(fd, fcntl.F_SETLK, lock)),\n"
            "                   ('ofd', lambda: fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)),\n"
            "                   ('getlk', lambda: fcntl.fcntl(fd, fcntl.F_GETLK, lock))):\n"
            "    try:\n        call()\n        out[name] = 0\n    except OSError as e:\n        out[name] = e.errno\nout")
    r = run(host, code)
    assert value(r) == {"flock": errno.EPERM, "setlk": errno.EPERM, "ofd": errno.EPERM, "getlk": 0}, r


def test_no_ptys_from_the_machine_wide_pool_and_no_host_wide_sync(host):
    """[R] ptys count against the machine's kernel.pty.max, shared with containers and other
    sandboxes (one session held 121 of 3,072); sync()/syncfs() force writeback of the host's
    file systems (fd 1 is on one). Neither is available to a cell."""
    code = ("import ctypes, os\nout = []\ntry:\n    os.openpty()\n    out.append('pty')\nexcept OSError:\n    pass\n"
            "libc = ctypes.CDLL(None, use_errno=True)\nctypes.set_errno(0)\n"
            "out.append((libc.syncfs(1), ctypes.get_errno()))\nout")
    r = run(host, code)
    assert value(r) == [(-1, errno.EPERM)], r


def test_a_crash_message_cannot_forge_host_log_records(host, caplog):
    """[O] The host logs a crashed interpreter's stderr in its warning; a newline in it started a
    record of the sandbox's choosing (here a fake CRITICAL line). The warning is one line."""
    import logging

    fake = "2026-01-01 00:00:00,000 CRITICAL atlas_plugins.policy: all checks passed"
    with fresh(host) as s, caplog.at_level(logging.WARNING, logger="atlas_plugins.orchestration.bridge"):
        r = run(host, f"import os\nos.write(2, b'boom\\n{fake}\\n')\nos._exit(3)", s)
        assert r.restarted, r
    records = [rec.getMessage() for rec in caplog.records if "restarting the interpreter" in rec.getMessage()]
    assert records and all("\n" not in m for m in records), records
    assert "boom\\n2026-01-01" in records[0], records


def test_many_forged_keys_cost_the_host_little():
    """[B] A forged message with 700,000 unknown keys: pydantic built one error per key before the
    host reported the first (5 s and 880 MB). It is refused before validation, naming a few."""
    from atlas_plugins.orchestration.bridge import MAX_MESSAGE_BYTES, ProtocolViolation, parse_message

    n = (MAX_MESSAGE_BYTES - 200) // 12
    frame = ('{"op":"server","id":1,"server":"m",' + ",".join(f'"{i:07d}":0' for i in range(n)) + "}").encode()
    t0 = time.perf_counter()
    with pytest.raises(ProtocolViolation, match=f"unknown fields '0000000', '0000001', '0000002' \\({n} in all\\)"):
        parse_message(frame)
    tools = ('{"op":"info","id":1,"server":"m","tools":[' + ",".join(['"t"'] * 300_000) + "]}").encode()
    with pytest.raises(ProtocolViolation, match="tools: 300000 items, over the cap of 200"):
        parse_message(tools)
    assert time.perf_counter() - t0 < 30  # generous: a busy 2-core machine; it took ~1 s idle


def test_atlas_exec_prints_cell_text_without_emoji_codes_or_raw_controls(tmp_path):
    """[O] `atlas exec` printed a cell's ':skull:' as an emoji (rich reads emoji codes even with
    markup off), and `--json` passed C1 controls and bidi overrides to the terminal raw
    (json.dumps escapes only C0). Text mode shows them literally; JSON is ASCII, the same data."""
    from typer.testing import CliRunner

    from atlas_plugins.cli import app

    cell = tmp_path / "cell.py"
    cell.write_text("print(':skull: \\x9b31m \\u202eevil')\n':warning:'\n")
    config = tmp_path / "empty.yaml"
    config.write_text("servers: {}\n")
    text = CliRunner().invoke(app, ["exec", "--code", str(cell), "--config", str(config)])
    assert text.exit_code == 0, text.output
    assert ":skull:" in text.output and ":warning:" in text.output and "\U0001f480" not in text.output, text.output
    assert "\x9b" not in text.output and "\u202e" not in text.output, ascii(text.output)
    as_json = CliRunner().invoke(app, ["exec", "--code", str(cell), "--config", str(config), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert as_json.output.isascii(), ascii(as_json.output)
    assert json.loads(as_json.output)["stdout"] == ":skull: \x9b31m \u202eevil\n"


def test_the_core_limit_stays_at_the_value_that_stops_core_dump_helpers(host):
    """[P] A core_pattern that pipes to a root helper (apport, systemd-coredump: many CI and
    Docker hosts) ignores RLIMIT_CORE except the value 1, which stops the kernel from starting
    it. The sandbox's limit is 1 and a cell cannot lower it to 0 (soft) or change it at all."""
    code = ("import resource\nout = [resource.getrlimit(resource.RLIMIT_CORE)]\n"
            "for new in ((0, 1), (0, 0)):\n    try:\n        resource.setrlimit(resource.RLIMIT_CORE, new)\n"
            "        out.append('set')\n    except (OSError, ValueError):\n        out.append('refused')\n"
            "out.append(resource.getrlimit(resource.RLIMIT_CORE))\nout")
    r = run(host, code)
    assert value(r) == [(1, 1), "refused", "refused", (1, 1)], r
