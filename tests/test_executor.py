"""code_interpreter: session semantics, value conversion, error rewriting, the local executor,
the e2b executor's bridge (against a local stand-in of the E2B SDK: E2B's cloud cannot be
reached from the test machine) and ``atlas exec``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import atlas_plugins as atlas
from atlas_plugins.orchestration import code_interpreter_prompt, code_interpreter_schema
from atlas_plugins.orchestration.executors.e2b import E2BExecutor
from atlas_plugins.orchestration.executors.local import LocalExecutor, SandboxUnavailable
from atlas_plugins.toolspace import Toolspace

SERVER = str(Path(__file__).parent / "servers" / "exec_math_server.py")
CONFIG = {"servers": {"math": {"command": "python", "args": [SERVER]}}}


@pytest.fixture(scope="module")
def ts():
    with Toolspace.from_dict(CONFIG) as toolspace:
        yield toolspace


@pytest.fixture(scope="module")
def session(ts):
    s = atlas.get_executor("local", timeout=5).open_session(ts, episode="test-exec")
    yield s
    s.close()


def test_registered_and_import_is_light():
    names = {row["name"] for row in atlas.get_plugin_manager().describe()["executors"]}
    assert {"local", "e2b"} <= names
    out = subprocess.run(
        [sys.executable, "-c", "import atlas_plugins.orchestration, sys; print('e2b' in sys.modules, 'torch' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False False"


def test_state_persists_and_last_expression(session):
    assert session.run("x = 40\ny = 2").ok
    r = session.run("print('sum:', x + y)\nx + y")
    assert r.ok and r.stdout == "sum: 42\n" and r.value == "42"
    assert r.observation() == "sum: 42\n42"
    assert session.run("x = None").value is None  # an assignment has no value


def test_tool_results_become_python_values(session):
    r = session.run("m = MCPServer('math')\nv = m.add(a=1, b=2)\n(v, type(v).__name__)")
    assert r.ok and r.value == "(3.0, 'float')", r  # structured {"result": 3.0} unwrapped
    assert session.run("s = m.stats(numbers=[1, 2, 3])\ns['mean']").value == "2.0"  # JSON text -> dict
    assert session.run("w = m.words(text='a b c')\n(w, type(w).__name__)").value == "(['a', 'b', 'c'], 'list')"  # repr -> literal_eval
    assert session.run("m.echo(text='plain words')").value == "'plain words'"
    assert session.run("m.add(1, 2)").value == "3.0"  # positional arguments follow the signature
    r = session.run("from MCPBench import MCPServer as S\nS('math').multiply(a=3, b=4)")
    assert r.value == "12.0" and [c["tool"] for c in r.tool_calls] == ["multiply"]


def test_get_tools_info_signatures_formats_and_examples(ts):
    s = LocalExecutor().open_session(ts)
    try:
        before = s.run("m = MCPServer('math')\nm.get_tools_info(['stats'])").value
        assert "stats(numbers: list[float] (required))" in before and "not known yet" in before
        s.run("m.stats(numbers=[2, 4])")
        after = s.run("m.get_tools_info(['stats', 'add', 'ad'])").value
        assert '{"count": int, "sum": float, "mean": float' in after  # learned from the first call
        assert "example: stats(numbers=[2, 4]) ->" in after
        assert "add(a: float (required), b: float (required))" in after and "returns: float" in after  # output_schema
        assert "no tool 'ad' on 'math'; did you mean 'add'?" in after
    finally:
        s.close()


@pytest.mark.parametrize(
    "code, expected",
    [
        ("m.ad(a=1, b=2)", "no tool 'ad' on 'math'. Did you mean 'add'?"),
        ("m.add(x=1, b=2)", "Signature: add(a: float (required), b: float (required))"),
        ("m.add(a='one', b=2)", "'one' is not of type 'number'"),
        ("m.add(1, 2, 3)", "with keyword arguments; signature: add("),
        ("MCPServer('mth')", "unknown server 'mth'. Did you mean 'math'? Available servers: math"),
        ("r = m.echo(text='hi')\nr['x']", "hint: you indexed a str as if it were a dict or list; math.echo(...) returned a str"),
        ("r = m.words(text='a b')\nr['first']", "math.words(...) returned a list; its output format is list[str]"),
        ("m.add(a={1, 2}, b=1)", "arguments['a'] is a set; tool arguments must be"),
        ("undefined_name + 1", "NameError: name 'undefined_name' is not defined"),
        ("def f(:\n  pass", "SyntaxError"),
    ],
)
def test_errors_are_rewritten_for_small_models(session, code, expected):
    session.run("m = MCPServer('math')")
    r = session.run(code)
    assert not r.ok and expected in r.error, r.error
    assert not r.restarted


def test_timeout_restarts_with_state_lost_note(ts):
    s = LocalExecutor(timeout=1.0).open_session(ts)
    try:
        s.run("kept = 1")
        r = s.run("while True:\n    pass")
        assert not r.ok and r.restarted and "1s time limit" in r.error and "state" not in r.error.split(";")[0]
        assert "every variable" in r.error
        assert "NameError" in s.run("kept").error  # state really was lost
        assert s.run("MCPServer('math').add(a=2, b=2)").value == "4.0"  # and the new session works
        # Tool-call time counts against the cell's budget: the call gets only the time left.
        t0 = time.monotonic()
        slow = s.run("MCPServer('math').slow(seconds=4)")
        assert not slow.ok and "1s time limit (tool calls included)" in slow.error, slow
        assert time.monotonic() - t0 < 3.0  # cut at the budget, not after the 4 s call
        assert slow.tool_calls and slow.tool_calls[0]["error_type"] == "timeout"
    finally:
        s.close()


def test_crash_restarts(session):
    r = session.run("import os\nos._exit(3)")
    assert r.restarted and "crashed" in r.error and "exit status 3" in r.error
    assert session.run("1 + 1").value == "2"


def test_episode_and_tool_call_log(session, ts):
    r = session.run("MCPServer('math').add(a=5, b=6)")
    assert len(r.tool_calls) == 1
    call = dict(r.tool_calls[0])
    assert "11" in call.pop("text")  # the result text, for rubrics that check grounding
    assert call == {"server": "math", "tool": "add", "arguments": {"a": 5, "b": 6}, "ok": True, "error": None,
                    "error_type": None, "content_type": "float"}
    assert session.episode == "test-exec"


def test_observation_truncated_to_response_limit(ts):
    s = LocalExecutor(response_limit=500).open_session(ts)
    try:
        r = s.run("print('y' * 5000)\n'z' * 3000")
        assert r.ok and len(s.observe("'q' * 3000")) < 600
        assert "[truncated" in r.observation(500)
    finally:
        s.close()


def test_servers_restriction_and_bad_names(ts):
    with pytest.raises(atlas.ConfigError, match="unknown or catalogue-only server.*'nope'.*available: math"):
        LocalExecutor().open_session(ts, servers=["nope"])
    with pytest.raises(Exception, match="timeout"):
        LocalExecutor(timeout=-1)


def test_missing_bwrap_is_refused_unless_opted_out(ts):
    with pytest.raises(SandboxUnavailable, match="is not installed.*unsafe_no_sandbox=True"):
        LocalExecutor(bwrap="bwrap-that-does-not-exist").open_session(ts)
    with pytest.warns(RuntimeWarning, match="WITHOUT a sandbox"):
        s = LocalExecutor(unsafe_no_sandbox=True).open_session(ts)
    try:
        assert s.run("MCPServer('math').add(a=1, b=1)").value == "2.0"
    finally:
        s.close()


def test_prompt_and_schema(ts):
    schema = code_interpreter_schema()
    assert schema["function"]["name"] == "code_interpreter"
    assert schema["function"]["parameters"]["required"] == ["code"]
    text = code_interpreter_prompt(ts)
    assert "MCPServer('server name')" in text and "get_tools_info" in text
    assert "- math" in text and "add, multiply, stats, words, echo" in text


# -- e2b: the executor's real SDK calls, against a local stand-in of that SDK subset ----------
class _StandInHandle:
    """Like e2b's CommandHandle: ``pid`` and ``wait(on_stdout=, on_stderr=)`` (text chunks); with
    ``retain_output`` (the SDK's default) it also keeps every stdout chunk, as the SDK's does."""

    def __init__(self, proc: subprocess.Popen[bytes], retain_output: bool = True) -> None:
        self.proc, self.pid = proc, proc.pid
        self.retained: list[str] | None = [] if retain_output else None

    def wait(self, on_stdout: Callable[[str], None], on_stderr: Callable[[str], None]) -> Any:
        def pump(stream: Any, cb: Callable[[str], None], keep: list[str] | None) -> None:
            for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
                text = chunk.decode("utf-8", "replace")
                if keep is not None:
                    keep.append(text)
                cb(text)

        err = threading.Thread(target=pump, args=(self.proc.stderr, on_stderr, None), daemon=True)
        err.start()
        pump(self.proc.stdout, on_stdout, self.retained)
        err.join(2)
        code = self.proc.wait()
        if code != 0:
            raise RuntimeError(f"CommandExitException: exit code {code}")  # what the SDK raises
        return code


class _StandInCommands:
    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.handles: list[_StandInHandle] = []

    def run(self, cmd: str, background: bool, stdin: bool, timeout: float, request_timeout: float | None = None,
            *, retain_output: bool = True) -> _StandInHandle:
        assert background is True and stdin is True and timeout == 0
        proc = subprocess.Popen(["/bin/bash", "-l", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # envd runs `/bin/bash -l -c cmd` too
        self.procs[proc.pid] = proc
        self.handles.append(_StandInHandle(proc, retain_output))
        return self.handles[-1]

    def send_stdin(self, pid: int, data: str, request_timeout: float | None = None) -> None:
        assert request_timeout is None or request_timeout > 0  # the SDK's per-request timeout, seconds
        proc = self.procs[pid]
        proc.stdin.write(data.encode())
        proc.stdin.flush()

    def kill(self, pid: int, request_timeout: float | None = None) -> bool:
        proc = self.procs.pop(pid, None)
        if proc is None or proc.poll() is not None:
            return False
        proc.kill()
        proc.wait()
        return True


class _StandInFiles:
    def write(self, path: str, data: str, request_timeout: float | None = None) -> None:
        assert request_timeout is None or request_timeout > 0
        Path(path).write_text(data)


class StandInSandbox:
    """Local processes behind the subset of ``e2b_code_interpreter.Sandbox`` the executor uses."""

    def __init__(self) -> None:
        self.commands, self.files, self.killed = _StandInCommands(), _StandInFiles(), False

    def kill(self) -> None:
        for pid in list(self.commands.procs):
            self.commands.kill(pid)
        self.killed = True


def test_e2b_executor_bridge_over_stand_in(ts, tmp_path):
    boxes: list[StandInSandbox] = []

    def factory() -> StandInSandbox:
        boxes.append(StandInSandbox())
        return boxes[-1]

    ex = E2BExecutor(sandbox_factory=factory, python=sys.executable, runner_path=str(tmp_path / "runner.py"), timeout=2)
    s = ex.open_session(ts, episode="e2b-ep")
    try:
        assert s.run("m = MCPServer('math')\nt = m.add(a=1, b=2)").ok
        r = s.run("print('out')\nm.stats(numbers=[t, 3])['sum']")
        assert r.ok and r.value == "6.0" and r.stdout == "out\n", r
        assert "no tool 'ad' on 'math'" in s.run("m.ad(a=1)").error
        r = s.run("import os\nos.write(1, b'not a bridge message')\n1")  # stray fd-1 writes go to stderr
        assert r.ok and r.value == "1"
        r = s.run("while True: pass")
        assert r.restarted and "time limit" in r.error
        assert s.run("MCPServer('math').multiply(a=2, b=5)").value == "10.0"
    finally:
        s.close()
    assert len(boxes) == 1 and boxes[0].killed and not boxes[0].commands.procs


class TimeoutException(Exception):
    """What e2b's SDK raises when a request outlives its ``request_timeout`` (same class name)."""


class _StalledCommands(_StandInCommands):
    """A connection that takes no stdin: every send blocks until the SDK's request timeout (its
    default is 60 s), as a stalled E2B connection does."""

    def send_stdin(self, pid: int, data: str, request_timeout: float | None = None) -> None:
        time.sleep(60 if request_timeout is None else request_timeout)
        raise TimeoutException("canceled: request timed out")


def _session_over(commands: type[_StandInCommands], ts, tmp_path, episode: str, files: type[_StandInFiles] = _StandInFiles,
                  boxes: list[StandInSandbox] | None = None, **options: Any):
    """An E2B session on stand-in sandboxes whose ``commands`` and ``files`` misbehave as given."""

    def factory() -> StandInSandbox:
        box = StandInSandbox()
        box.commands, box.files = commands(), files()
        if boxes is not None:
            boxes.append(box)
        return box

    options = {"python": sys.executable, "runner_path": str(tmp_path / "runner.py"), "timeout": 2, **options}
    return E2BExecutor(sandbox_factory=factory, **options).open_session(ts, episode=episode)


def test_e2b_send_is_bounded_by_the_cell_budget(ts, tmp_path):
    """A stalled connection costs a cell its budget, not the SDK's 60-s default per message."""

    s = _session_over(_StalledCommands, ts, tmp_path, "e2b-stalled")
    try:
        t0 = time.monotonic()
        r = s.run("1 + 1")
        took = time.monotonic() - t0
        assert took < 10, f"a stalled send held the host {took:.0f} s"
        assert not r.ok, r
    finally:
        s.close()


class SandboxNotRunningException(TimeoutException):
    """e2b's: the sandbox was killed or timed out (a subclass of its TimeoutException)."""


class _GoneCommands(_StandInCommands):
    def send_stdin(self, pid: int, data: str, request_timeout: float | None = None) -> None:
        raise SandboxNotRunningException("sandbox is not running")


def test_e2b_sdk_errors_become_cell_results(ts, tmp_path):
    """An SDK error on a write (the sandbox is gone) is a failed cell, never an exception out of
    ``session.run``."""

    s = _session_over(_GoneCommands, ts, tmp_path, "e2b-gone")
    try:
        r = s.run("1 + 1")
        assert not r.ok and "gone or unreachable" in (r.error or ""), r
    finally:
        s.close()


class _StalledFiles(_StandInFiles):
    """Uploads that never finish: every write blocks until the SDK's request timeout."""

    def write(self, path: str, data: str, request_timeout: float | None = None) -> None:
        time.sleep(60 if request_timeout is None else request_timeout)
        raise TimeoutException("canceled: request timed out")


class _SlowFiles(_StandInFiles):
    """Uploads that succeed, each taking all the time it is given: one budget must cover all."""

    def write(self, path: str, data: str, request_timeout: float | None = None) -> None:
        time.sleep(60 if request_timeout is None else request_timeout)
        super().write(path, data, request_timeout)


class _StalledRunCommands(_StandInCommands):
    """A command stream that never opens (the SDK has no request timeout for this call)."""

    def run(self, cmd: str, background: bool, stdin: bool, timeout: float, request_timeout: float | None = None,
            *, retain_output: bool = True) -> _StandInHandle:
        time.sleep(30)
        return super().run(cmd, background, stdin, timeout, request_timeout, retain_output=retain_output)


@pytest.mark.parametrize(
    "commands, files",
    [(_StandInCommands, _StalledFiles), (_StandInCommands, _SlowFiles), (_StalledRunCommands, _StandInFiles)],
    ids=["upload-stalls", "uploads-slow", "command-stalls"],
)
def test_e2b_start_is_bounded_by_start_timeout(ts, tmp_path, commands, files):
    """A sandbox whose uploads or command start stall fails the start after ``start_timeout`` in
    all, with a clear error, not after the SDK's 60 s per request; the sandbox is killed."""
    from atlas_plugins.errors import AtlasError

    boxes: list[StandInSandbox] = []
    t0 = time.monotonic()
    with pytest.raises(AtlasError, match="start_timeout=2s"):
        _session_over(commands, ts, tmp_path, "e2b-slow-start", files=files, boxes=boxes, start_timeout=2)
    took = time.monotonic() - t0
    assert took < 6, f"a stalled start held the host {took:.0f} s"
    assert len(boxes) == 1 and boxes[0].killed


def test_e2b_relay_output_is_not_kept_by_the_sdk(ts, tmp_path):
    """The relay's stdout carries everything the sandbox sends for the whole session; the SDK's
    handle must not keep a second copy of it (``retain_output=False``)."""
    boxes: list[StandInSandbox] = []
    s = _session_over(_StandInCommands, ts, tmp_path, "e2b-retain", boxes=boxes)
    try:
        for _ in range(3):
            assert s.run("print('x' * 100_000)").ok
    finally:
        s.close()
    handles = boxes[0].commands.handles
    assert handles and all(h.retained is None for h in handles)


class _OlderCommands(_StandInCommands):
    """A provider (an older SDK, a custom factory) without ``request_timeout``/``retain_output``."""

    def run(self, cmd: str, background: bool, stdin: bool, timeout: float) -> _StandInHandle:  # type: ignore[override]
        return super().run(cmd, background, stdin, timeout)

    def send_stdin(self, pid: int, data: str) -> None:  # type: ignore[override]
        super().send_stdin(pid, data)

    def kill(self, pid: int) -> bool:  # type: ignore[override]
        return super().kill(pid)


class _OlderFiles(_StandInFiles):
    def write(self, path: str, data: str) -> None:  # type: ignore[override]
        super().write(path, data)


def test_e2b_provider_without_the_newer_sdk_arguments(ts, tmp_path):
    s = _session_over(_OlderCommands, ts, tmp_path, "e2b-older", files=_OlderFiles)
    try:
        assert s.run("MCPServer('math').add(a=2, b=3)").value == "5.0"
        assert s.run("while True: pass").restarted  # kill without request_timeout, then a new relay
        assert s.run("1 + 1").value == "2"
    finally:
        s.close()


def test_e2b_sdk_is_lazy_and_named():
    from atlas_plugins.orchestration.executors import e2b

    src = Path(e2b.__file__).read_text()
    assert "from e2b_code_interpreter import Sandbox" in src.split("def _default_factory", 1)[1]
    assert atlas.get_executor("e2b").name == "e2b"  # constructing it imports no SDK and needs no key


# -- CLI ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    from atlas_plugins.orchestration.commands import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps Typer in multi-command mode, like `atlas`
        pass

    cfg = tmp_path_factory.mktemp("cfg") / "toolspace.json"
    cfg.write_text(json.dumps({"mcpServers": {"math": {"command": sys.executable, "args": [SERVER]}}}))
    return app, cfg


def test_cli_exec_json(cli, tmp_path):
    app, cfg = cli
    code = tmp_path / "cell.py"
    code.write_text("m = MCPServer('math')\nprint('hi')\nm.add(a=2, b=3)")
    res = CliRunner().invoke(app, ["exec", "--code", str(code), "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"ok", "value", "stdout", "error", "elapsed_ms"}
    assert data["ok"] and data["value"] == "5.0" and data["stdout"] == "hi\n"


def test_cli_exec_failures(cli, tmp_path):
    app, cfg = cli
    code = tmp_path / "bad.py"
    code.write_text("1/0")
    res = CliRunner().invoke(app, ["exec", "--code", str(code), "--config", str(cfg), "--json"])
    assert res.exit_code == 1 and "ZeroDivisionError" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(app, ["exec", "--code", str(tmp_path / "missing.py"), "--config", str(cfg), "--json"])
    assert res.exit_code == 1 and "cannot read --code" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(app, ["exec", "--code", str(code), "--executor", "nope", "--config", str(cfg), "--json"])
    assert res.exit_code == 1 and "nope" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(app, ["exec", "--code", str(code), "--executor", "e2b", "--unsafe-no-sandbox", "--json"])
    assert res.exit_code == 1 and "local executor only" in json.loads(res.stdout)["error"]
