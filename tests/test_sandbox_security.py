"""Hostile programs against the ``local`` executor: each must be contained with a clear error
and leave the host unaffected. Containment comes from processes and namespaces (bubblewrap,
seccomp, rlimits, the host-side bridge validation), never from inspecting the code."""

from __future__ import annotations

import os
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest

import atlas_plugins as atlas
from atlas_plugins.hookspecs import hookimpl
from atlas_plugins.orchestration.executors.local import LocalExecutor
from atlas_plugins.toolspace import Toolspace

SERVER = str(Path(__file__).parent / "servers" / "exec_math_server.py")
PROJECT = Path(__file__).resolve().parents[1]
SECRET = f"atlas-secret-{uuid.uuid4().hex}"
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))


class VetoPlugin:
    @hookimpl
    def atlas_before_tool_call(self, server, tool, arguments):
        return "blocked by the security test policy" if tool == "secret_tool" else None


@pytest.fixture(scope="module")
def host():
    """Host-side canaries: secret files, a secret env var, a listening socket."""
    tmp_secret = Path(f"/tmp/atlas-host-secret-{uuid.uuid4().hex}.txt")
    proj_secret = PROJECT / f".atlas-test-secret-{uuid.uuid4().hex}.txt"
    for p in (tmp_secret, proj_secret):
        p.write_text(SECRET)
    os.environ["ATLAS_TEST_SECRET"] = SECRET
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    name = atlas.register_plugin(VetoPlugin(), name="security-test-veto")
    ts = Toolspace.from_dict({"servers": {"math": {"command": "python", "args": [SERVER]}}}).start()
    ex = LocalExecutor(timeout=3, memory_mb=512)
    session = ex.open_session(ts, episode="hostile")
    ctx = {"tmp_secret": tmp_secret, "proj_secret": proj_secret, "port": listener.getsockname()[1],
           "accepted": accepted, "session": session, "ts": ts}
    yield ctx
    session.close()
    ts.close()
    atlas.unregister_plugin(name)
    stop.set()
    thread.join(1)
    listener.close()
    del os.environ["ATLAS_TEST_SECRET"]
    for p in (tmp_secret, proj_secret):
        p.unlink(missing_ok=True)


def run(host, code: str):
    result = host["session"].run(code)
    # The host is unaffected: it still answers tool calls, its secrets are intact, nothing leaked.
    assert host["ts"].call("math", "add", {"a": 1, "b": 1}).ok
    assert host["tmp_secret"].read_text() == SECRET and host["proj_secret"].read_text() == SECRET
    assert SECRET not in result.observation(10**7)
    return result


def contained(result, *needles: str, restarted: bool | None = None):
    """Failed with an error that names the cause."""
    assert not result.ok, result
    assert any(n in result.error for n in needles), result.error
    if restarted is not None:
        assert result.restarted is restarted, result


# -- file system ---------------------------------------------------------------------------------
def test_read_host_tmp_secret(host):
    contained(run(host, f"open({str(host['tmp_secret'])!r}).read()"), "FileNotFoundError")


def test_read_project_secret(host):
    contained(run(host, f"open({str(host['proj_secret'])!r}).read()"), "FileNotFoundError")


def test_list_project_and_work(host):
    contained(run(host, f"import os\nos.listdir({str(PROJECT)!r})"), "FileNotFoundError")


def test_read_root_home(host):
    contained(run(host, "import os\nos.listdir('/root')"), "FileNotFoundError")


def test_read_etc_shadow_and_passwd(host):
    contained(run(host, "open('/etc/shadow').read()"), "FileNotFoundError")
    contained(run(host, "open('/etc/passwd').read()"), "FileNotFoundError")


def test_read_venv_site_packages(host):
    contained(run(host, f"import os\nos.listdir({SITE_PACKAGES!r})"), "FileNotFoundError")


def test_runtime_site_packages_hidden_and_project_not_importable(host):
    r = run(host, "import os, sys\n[p for p in os.listdir(f'/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages')]")
    assert r.ok and r.value == "[]", r
    contained(run(host, "import atlas_plugins"), "ModuleNotFoundError")
    contained(run(host, "import pydantic"), "ModuleNotFoundError")


def test_root_holds_only_sandbox_paths(host):
    r = run(host, "import os\nsorted(os.listdir('/'))")
    assert r.ok and set(eval(r.value)) <= {"dev", "etc", "lib", "lib32", "lib64", "opt", "proc", "session", "tmp", "usr"}, r.value
    r = run(host, "import os\nsorted(os.listdir('/usr'))")
    assert set(eval(r.value)) <= {"lib", "lib32", "lib64"}, r.value  # no /usr/bin: no shell to run


def test_write_outside_session_is_refused(host):
    contained(run(host, "open('/usr/lib/atlas-pwned', 'w').write('x')"), "Read-only file system", "PermissionError")
    contained(run(host, "open('/opt/atlas/runner.py', 'a').write('x')"), "Read-only file system", "PermissionError")
    assert not Path("/usr/lib/atlas-pwned").exists()


def test_private_tmp_does_not_reach_host_tmp(host):
    name = f"atlas-sandbox-{uuid.uuid4().hex}"
    r = run(host, f"open('/tmp/{name}', 'w').write('x')\nopen('/session/{name}', 'w').write('y')")
    assert r.ok, r
    assert not Path(f"/tmp/{name}").exists()


def test_proc_shows_only_the_sandbox(host):
    r = run(host, "import os\n[p for p in os.listdir('/proc') if p.isdigit()]")
    assert r.ok and len(eval(r.value)) <= 3, r.value
    r = run(host, "import os\nos.listdir('/proc/1/root')")
    assert SECRET not in r.observation() and "work" not in (r.value or "")


# -- environment ----------------------------------------------------------------------------------
def test_host_environment_is_cleared(host):
    r = run(host, "import os\ndict(os.environ)")
    assert r.ok and "ATLAS_TEST_SECRET" not in r.value and set(eval(r.value)) <= {
        "PATH", "HOME", "LANG", "LD_LIBRARY_PATH", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE", "PWD"}, r.value
    r = run(host, "open('/proc/self/environ', 'rb').read()")
    assert r.ok and b"ATLAS_TEST_SECRET" not in eval(r.value)


# -- network --------------------------------------------------------------------------------------
def test_no_connection_to_host_loopback(host):
    code = f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {host['port']}))"
    contained(run(host, code), "OSError", "ConnectionRefusedError", "Network is unreachable")
    assert host["accepted"] == []


def test_no_internet(host):
    code = "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=1)"
    contained(run(host, code), "Network is unreachable", "OSError", "timed out")
    contained(run(host, "import socket\nsocket.getaddrinfo('example.com', 80)"), "gaierror", "OSError")


def test_only_loopback_interface(host):
    r = run(host, "import socket\n[n for _, n in socket.if_nameindex()]")
    assert r.ok and eval(r.value) == ["lo"], r.value


# -- processes ------------------------------------------------------------------------------------
def test_spawn_shell(host):
    contained(run(host, "import subprocess\nsubprocess.run(['sh', '-c', 'id'])"), "FileNotFoundError", "PermissionError")
    contained(run(host, "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'print(1)'])"), "PermissionError")


def test_os_system_cannot_run_anything(host):
    r = run(host, "import os\nos.system('id > /session/out')")
    assert r.ok and r.value != "0", r
    assert "FileNotFoundError" in run(host, "open('/session/out').read()").error


def test_fork_is_refused(host):
    contained(run(host, "import os\nos.fork()"), "PermissionError", "Operation not permitted")


def test_fork_bomb(host):
    contained(run(host, "import os\nwhile True:\n    os.fork()"), "PermissionError", "Operation not permitted")


def test_exec_is_refused(host):
    contained(run(host, "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'pass'])"), "PermissionError")


def test_multiprocessing_is_refused(host):
    contained(run(host, "import multiprocessing as mp\np = mp.Process(target=print)\np.start()"),
              "PermissionError", "OSError", "Operation not permitted")


def test_thread_bomb_is_bounded(host):
    code = "import threading, time\nts = []\nfor _ in range(100000):\n    t = threading.Thread(target=time.sleep, args=(30,), daemon=True)\n    t.start()\n    ts.append(t)"
    contained(run(host, code), "RuntimeError", "MemoryError", "can't start new thread", "time limit", restarted=None)
    assert host["session"].run("1 + 1").value == "2"


# -- resources ------------------------------------------------------------------------------------
def test_memory_bomb_single_allocation(host):
    contained(run(host, "x = bytearray(8 * 1024 ** 3)"), "MemoryError")


def test_memory_bomb_growing(host):
    contained(run(host, "xs = []\nwhile True:\n    xs.append(bytearray(10 ** 7))"), "MemoryError")
    assert host["session"].run("del xs\n2 + 2").value == "4"


def test_infinite_loop_hits_wall_time(host):
    contained(run(host, "while True:\n    pass"), "time limit", restarted=True)
    assert host["session"].run("3").value == "3"


def test_sleeping_forever_hits_wall_time(host):
    contained(run(host, "import time\ntime.sleep(10 ** 6)"), "time limit", restarted=True)


def test_output_flood_is_capped(host):
    r = run(host, "for i in range(300_000):\n    print('flood', i)")
    assert r.ok and "more characters of output dropped" in r.stdout and len(r.stdout) < 250_000
    assert len(r.observation()) < 4200


def test_raw_fd_flood_does_not_reach_the_model(host):
    r = run(host, "import os\nfor _ in range(200):\n    os.write(2, b'x' * 65536)\n'ok'")
    assert r.ok and r.value == "'ok'" and "xxxx" not in r.observation()


def test_huge_file_in_session_is_refused(host):
    contained(run(host, "f = open('/session/big', 'wb')\nfor _ in range(200):\n    f.write(b'x' * 1024 * 1024)\n    f.flush()"),
              "File too large", "OSError")


def test_deep_recursion(host):
    contained(run(host, "def f(n):\n    return f(n + 1)\nf(0)"), "RecursionError")


# -- signals --------------------------------------------------------------------------------------
def test_kill_parent(host):
    r = run(host, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)")
    assert not r.ok and (r.restarted or "PermissionError" in r.error), r
    assert os.getpid() and host["session"].run("1").value == "1"


def test_kill_everything(host):
    r = run(host, "import os, signal\nos.kill(-1, signal.SIGKILL)\nimport time\ntime.sleep(5)")
    # Only the sandbox's own pid namespace is in reach: nothing to signal, or the sandbox dies.
    assert not r.ok and (r.restarted or "ProcessLookupError" in r.error), r
    assert host["session"].run("MCPServer('math').add(a=1, b=2)").value == "3.0"


def test_sys_exit_is_an_error_not_an_escape(host):
    contained(run(host, "import sys\nsys.exit(0)"), "SystemExit", restarted=False)


# -- ctypes -----------------------------------------------------------------------------------------
def test_ctypes_raw_fork_syscall(host):
    r = run(host, "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n(libc.syscall(57), ctypes.get_errno())")
    assert r.ok and r.value in ("(-1, 1)", "(-1, 38)"), r  # x86_64 fork: EPERM


def test_ctypes_new_user_namespace(host):
    code = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n(libc.unshare(0x10000000), ctypes.get_errno())"
    r = run(host, code)
    assert r.ok and r.value.startswith("(-1,"), r


def test_ctypes_segfault(host):
    contained(run(host, "import ctypes\nctypes.string_at(0)"), "crashed", restarted=True)
    assert host["session"].run("5").value == "5"


# -- the bridge -------------------------------------------------------------------------------------
BRIDGE_WRITE = "import os, struct, sys\nwfd = int(sys.argv[sys.argv.index('--wfd') + 1])\n"


def test_forged_unknown_op(host):
    code = BRIDGE_WRITE + "p = b'{\"op\": \"shell\", \"cmd\": \"id\"}'\nos.write(wfd, struct.pack('>I', len(p)) + p)\nimport time\ntime.sleep(1)"
    contained(run(host, code), "invalid bridge message (unknown op 'shell'", restarted=True)


def test_oversized_bridge_header(host):
    code = BRIDGE_WRITE + "os.write(wfd, b'\\xff\\xff\\xff\\xff')\nimport time\ntime.sleep(1)"
    r = run(host, code)
    contained(r, "over the", restarted=True)


def test_malformed_json_on_bridge(host):
    code = BRIDGE_WRITE + "p = b'{not json'\nos.write(wfd, struct.pack('>I', len(p)) + p)\nimport time\ntime.sleep(1)"
    contained(run(host, code), "not JSON", restarted=True)


def test_forged_call_with_wrong_types(host):
    code = BRIDGE_WRITE + "import json\np = json.dumps({'op': 'call', 'id': 'x', 'server': 1, 'tool': [], 'kwargs': 5}).encode()\nos.write(wfd, struct.pack('>I', len(p)) + p)\nimport time\ntime.sleep(1)"
    contained(run(host, code), "invalid 'call' message", restarted=True)


def test_forged_done_for_another_cell(host):
    code = BRIDGE_WRITE + "import json\np = json.dumps({'op': 'done', 'cell': 999999, 'ok': True, 'value': 'forged'}).encode()\nos.write(wfd, struct.pack('>I', len(p)) + p)\nimport time\ntime.sleep(1)"
    r = run(host, code)
    contained(r, "while cell", restarted=True)
    assert r.value != "forged"


def test_vetoed_tool(host):
    r = run(host, "MCPServer('math').secret_tool()")
    contained(r, "blocked by the security test policy", restarted=False)
    assert "the secret tool ran" not in r.observation()


def test_forged_call_to_vetoed_tool_is_still_vetoed(host):
    code = (BRIDGE_WRITE + "import json\nrfd = int(sys.argv[sys.argv.index('--rfd') + 1])\n"
            "p = json.dumps({'op': 'call', 'id': 777, 'server': 'math', 'tool': 'secret_tool'}).encode()\n"
            "os.write(wfd, struct.pack('>I', len(p)) + p)\n"
            "n = struct.unpack('>I', os.read(rfd, 4))[0]\njson.loads(os.read(rfd, n))")
    r = run(host, code)
    assert r.ok and "blocked by the security test policy" in r.value and "'ok': False" in r.value, r
    assert "the secret tool ran" not in r.observation()


def test_unknown_server_lists_available(host):
    contained(run(host, "MCPServer('../../etc')"), "unknown server '../../etc'", "Available servers: math")
