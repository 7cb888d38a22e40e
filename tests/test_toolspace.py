"""Toolspace over real MCP servers: a third-party server from PyPI (mcp-server-time) over stdio,
a misbehaving test server (pagination, crash, hang, huge output), and one over streamable HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import atlas_plugins as atlas
from atlas_plugins.cli import app
from atlas_plugins.errors import ConfigError, ToolspaceError
from atlas_plugins.toolspace import load_config
from atlas_plugins.toolspace.validation import python_signature

PAGED = Path(__file__).parent / "servers" / "paged_server.py"
TIME_SERVER = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


@pytest.fixture(scope="module")
def time_ts():
    with atlas.Toolspace.from_dict({"servers": {"time": TIME_SERVER}}) as ts:
        yield ts


@pytest.fixture()
def paged_ts():
    cfg = {"call_timeout": 1.5, "max_response_chars": 500, "servers": {"paged": {"command": sys.executable, "args": [str(PAGED)]}}}
    with atlas.Toolspace.from_dict(cfg) as ts:
        yield ts


def test_third_party_stdio_server_lists_and_calls(time_ts):
    names = {t.qualified_name for t in time_ts.list_tools()}
    assert {"time:get_current_time", "time:convert_time"} <= names
    r = time_ts.call("time", "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
    assert r.ok, r.error
    assert "21:00" in r.content["target"]["datetime"]


def test_unknown_server_tool_and_bad_arguments_are_readable_values(time_ts):
    r = time_ts.call("tmie", "get_current_time", {"timezone": "UTC"})
    assert not r.ok and r.error_type == "unknown_server" and "Did you mean 'time'" in r.error
    r = time_ts.call("time", "get_curent_time", {"timezone": "UTC"})
    assert not r.ok and r.error_type == "unknown_tool" and "Did you mean 'get_current_time'" in r.error
    r = time_ts.call("time", "get_current_time", {})
    assert not r.ok and r.error_type == "invalid_arguments"
    assert "'timezone'" in r.error and "get_current_time(timezone: str (required))" in r.error
    r = time_ts.call("time", "get_current_time", {"timezone": 5})
    assert not r.ok and r.error_type == "invalid_arguments" and "not of type 'string'" in r.error
    r = time_ts.call("time", "get_current_time", {"timezone": "Mars/Olympus"})
    assert not r.ok and r.error_type == "tool_error" and "Mars/Olympus" in r.error
    r = time_ts.call_qualified("no-colon-here", {})
    assert not r.ok and "server:tool" in r.error


def test_pagination_truncation_and_concurrent_calls(paged_ts):
    tools = paged_ts.list_tools("paged")
    assert len(tools) == 13  # 4 real + 9 fillers, served 4 per page
    big = paged_ts.call("paged", "big", {"chars": 5000})
    assert big.ok and big.truncated and big.text.startswith("x" * 500) and "truncated 4500" in big.text

    async def many():
        t0 = time.perf_counter()
        results = await asyncio.gather(*(paged_ts.acall("paged", "hang", {"seconds": 0.5}) for _ in range(6)))
        return results, time.perf_counter() - t0

    results, elapsed = asyncio.run(many())
    assert all(r.ok for r in results)
    assert elapsed < 2.0, f"6 concurrent 0.5 s calls took {elapsed:.2f}s: calls are serialised"


def test_timeout_then_session_still_usable(paged_ts):
    r = paged_ts.call("paged", "hang", {"seconds": 30})
    assert not r.ok and r.error_type == "timeout" and "1.5s" in r.error
    assert paged_ts.call("paged", "echo", {"text": "still here"}).content["echo"] == "still here"


def test_crashing_server_is_restarted_once_then_reported_with_stderr(paged_ts):
    first_pid = paged_ts.call("paged", "echo", {"text": "a"}).content["pid"]
    r = paged_ts.call("paged", "crash", {})
    assert not r.ok and r.error_type == "server_exited"
    assert "'paged'" in r.error and "crashing on purpose" in r.error
    again = paged_ts.call("paged", "echo", {"text": "b"})
    assert again.ok and again.content["pid"] != first_pid  # a fresh process
    paged_ts.call("paged", "crash", {})
    final = paged_ts.call("paged", "echo", {"text": "c"})
    assert not final.ok and final.error_type == "server_exited" and "restarts used: 1 of 1" in final.error


def test_streamable_http_server_with_headers(http_server):
    cfg = {"servers": {"remote": {"url": http_server, "headers": {"X-Test-Token": "secret"}}}}
    with atlas.Toolspace.from_dict(cfg) as ts:
        assert ts.server("remote").transport == "http"
        assert ts.server("remote").summary.startswith("A remote test server")
        assert ts.call("remote", "multiply", {"a": 3, "b": 4}).content == {"product": 12.0}
    bad = atlas.Toolspace.from_dict({"connect_timeout": 10, "servers": {"remote": {"url": http_server}}})
    with pytest.raises(ToolspaceError, match="remote"):
        bad.start()


def test_catalogue_only_servers_from_shared_data(shared_data, time_ts):
    ts = atlas.Toolspace.from_dict({"servers": {"time": TIME_SERVER}})
    with ts:
        added = ts.add_catalog(shared_data / "toucan_servers.jsonl", limit=50)
        assert len(added) == 50
        spec = ts.server(added[0]).tools[0]
        r = ts.call(added[0], spec.name, {})
        # either the schema rejects {} or the call is refused as catalogue-only; never a crash
        assert not r.ok and r.error_type in ("catalog_only", "invalid_arguments")
        assert len(ts.list_tools()) > 100


def test_config_files_yaml_toml_and_mcpservers_json(tmp_path):
    (tmp_path / "ts.yaml").write_text(
        "call_timeout: 5\nservers:\n  time:\n    command: python\n    args: [-m, mcp_server_time]\n"
        "  big:\n    catalog: cat.jsonl\n"
    )
    (tmp_path / "cat.jsonl").write_text(json.dumps({"name": "Weather API", "summary": "s", "tools": [{"name": "t"}]}) + "\n")
    cfg = load_config(tmp_path / "ts.yaml")
    assert cfg.call_timeout == 5 and [s.name for s in cfg.servers] == ["time", "big"]
    assert Path(cfg.servers[1].catalog).is_absolute()

    (tmp_path / "ts.toml").write_text('[servers.remote]\nurl = "http://127.0.0.1:1/mcp"\nheaders = {A = "b"}\n')
    assert load_config(tmp_path / "ts.toml").servers[0].headers == {"A": "b"}

    (tmp_path / "claude.json").write_text(
        json.dumps({"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"X": "1"}}}})
    )
    s = load_config(tmp_path / "claude.json").servers[0]
    assert s.command == "uvx" and s.env == {"X": "1"} and s.transport == "stdio"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("servers:\n  a: {}\n", "servers.a"),
        ("servers:\n  a: {command: x, url: 'http://h'}\n", "exactly one of"),
        ("servers:\n  a: {command: x, bogus: 1}\n", "bogus"),
        ("servers:\n  'a:b': {command: x}\n", "may not contain ':'"),
        ("call_timeout: -1\nservers: {}\n", "call_timeout"),
        ("servers: [1, 2\n", "could not parse"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert needle in str(err.value) and "bad.yaml" in str(err.value)


def test_server_that_fails_to_start_is_named_with_stderr():
    ts = atlas.Toolspace.from_dict(
        {"servers": {"broken": {"command": sys.executable, "args": ["-c", "import sys; sys.stderr.write('no luck here'); sys.exit(2)"]}}}
    )
    with pytest.raises(ToolspaceError) as err:
        ts.start()
    assert "broken" in str(err.value) and "no luck here" in str(err.value)


def test_cli_toolspace_tools_and_call(tmp_path):
    cfg = tmp_path / "ts.json"
    cfg.write_text(json.dumps({"mcpServers": {"time": TIME_SERVER}}))
    runner = CliRunner()
    res = runner.invoke(app, ["toolspace", "tools", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {"server", "tool", "description", "input_schema"} <= set(rows[0])
    res = runner.invoke(
        app, ["toolspace", "call", "time", "get_current_time", "--args", '{"timezone": "UTC"}', "--config", str(cfg), "--json"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True
    res = runner.invoke(app, ["toolspace", "call", "time", "nope", "--config", str(cfg), "--json"])
    out = json.loads(res.stdout)
    assert res.exit_code != 0 and out["ok"] is False and "no tool 'nope'" in out["error"]
    res = runner.invoke(app, ["toolspace", "call", "time", "get_current_time", "--args", "{bad", "--config", str(cfg), "--json"])
    assert res.exit_code != 0 and "not valid JSON" in res.stdout


def test_embedded_default_toolspace_over_the_hub_with_episode_isolation():
    with atlas.Toolspace.default() as ts:
        assert len(ts.servers) >= 12 and len(ts.list_tools()) >= 150
        assert all(s.transport == "http" and s.summary for s in ts.servers)
        from atlas_plugins.envs import EMBEDDED_SERVERS

        assert ts.server_names == list(EMBEDDED_SERVERS)  # config order, not start-up order
        r = ts.call("math", "add", {"numbers": [1, 2, 3.5]})
        assert r.ok and "6.5" in r.text
        wrote = ts.call("notes", "create_note", {"title": "Groceries", "body": "milk"}, episode="ep-a")
        assert wrote.ok, wrote.error
        seen_a = ts.call("notes", "search", {"query": "Groceries"}, episode="ep-a")
        seen_b = ts.call("notes", "search", {"query": "Groceries"}, episode="ep-b")
        assert seen_a.content["total"] == 1 and seen_b.content["total"] == 0


def test_hub_restarts_once_after_it_dies():
    with atlas.Toolspace.default(servers=["math", "notes"]) as ts:
        ts._hub.proc.kill()  # simulate the server process dying under us
        ts._hub.proc.wait()
        r = ts.call("math", "multiply", {"numbers": [6, 7]})
        assert r.ok and "42" in r.text  # restarted transparently
        ts._hub.proc.kill()
        ts._hub.proc.wait()
        again = ts.call("math", "multiply", {"numbers": [6, 7]})
        assert not again.ok and again.error_type == "server_exited"


def test_embedded_servers_over_stdio():
    with atlas.Toolspace.default(servers=["units", "timezones"], transport="stdio") as ts:
        assert {s.transport for s in ts.servers} == {"stdio"}
        assert ts.list_tools("units") and ts.list_tools("timezones")


# -- servers that misbehave at the protocol level (tests/servers/raw_jsonrpc_server.py) ----------
RAW_SERVER = str(Path(__file__).parent / "servers" / "raw_jsonrpc_server.py")


def _raw_toolspace(mode: str, tmp_path: Path, **config: Any) -> tuple[atlas.Toolspace, Path]:
    pidfile = tmp_path / f"{mode}.pid"
    cfg = {"connect_timeout": 3, "call_timeout": 3, **config,
           "servers": {"raw": {"command": sys.executable, "args": [RAW_SERVER, mode, str(pidfile)]}}}
    return atlas.Toolspace.from_dict(cfg), pidfile


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our zombie child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("mode, message", [("hang_list", "did not list its tools within 3s"),
                                           ("err_list", "listing failed on purpose"),
                                           ("hang_init", "did not finish its MCP handshake within 3s")])
def test_a_server_whose_tool_listing_fails_is_reported_and_stopped(tmp_path, mode, message):
    """The handshake succeeds but ``tools/list`` never answers, or fails, or the handshake itself
    never ends and the server ignores SIGTERM: start() reports it within ``connect_timeout`` (a
    listing was waited for for ever), and the server's process is stopped (it was left running)."""
    ts, pidfile = _raw_toolspace(mode, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(ToolspaceError, match=message):
        ts.start()
    assert time.monotonic() - t0 < 15
    ts.close()
    assert _gone(int(pidfile.read_text())), f"the {mode} server outlived its failed start"


@pytest.mark.parametrize("mode", ["bad_ref", "bad_props"])
def test_a_broken_input_schema_leaves_the_arguments_to_the_server(tmp_path, mode):
    """An input schema that cannot be resolved or is not JSON Schema at all: the call still goes
    to the server (no client-side check), and nothing raises out of ``call``."""
    ts, _ = _raw_toolspace(mode, tmp_path)
    with ts:
        r = ts.call("raw", "echo", {"x": "hi"})
        assert r.ok and json.loads(r.text) == {"x": "hi"}, r
        spec = ts.list_tools("raw")[0]
        assert python_signature(spec).startswith("echo(")


def test_a_server_regex_never_runs_on_the_host(tmp_path):
    """``pattern`` is the server's to check: Python's backtracking ``re`` took 4.8 s for this
    pattern on a 38-character argument (doubling per character), on the toolspace's event loop,
    before the call's timeout started."""
    ts, _ = _raw_toolspace("redos", tmp_path)
    with ts:
        t0 = time.monotonic()
        r = ts.call("raw", "echo", {"x": "find cheap flights from paris to rome at noon?"})
        took = time.monotonic() - t0
        assert r.ok, r
        assert took < 2, f"the call took {took:.1f} s"


def test_a_stdout_line_without_end_stops_the_server(tmp_path):
    """The SDK's client buffers a stdout line without bound (and re-copies it per chunk): a server
    that answers with a line that never ends grew the host's memory until the call timed out. The
    relay stops the server once the line passes ``max_message_bytes`` and the call says why."""
    ts, pidfile = _raw_toolspace("long_line", tmp_path, max_message_bytes=1 << 20, call_timeout=60)
    with ts:
        t0 = time.monotonic()
        r = ts.call("raw", "echo", {"x": "hi"})
        took = time.monotonic() - t0
        assert not r.ok and "max_message_bytes" in (r.error or ""), r
        assert took < 30, f"stopped after {took:.1f} s"  # the call timeout is 60 s
        assert _gone(int(pidfile.read_text())), "the server outlived its relay"


def test_a_server_that_floods_stderr_costs_the_host_no_disk(tmp_path):
    """Server stderr went to a temporary file that grew with everything the server wrote (64 MiB
    here; a chatty server fills the disk). Now the host keeps only its tail, and still quotes it."""

    def big_files() -> set[tuple[int, int]]:
        found = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                st = os.stat(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size >= 1 << 20:
                found.add((st.st_dev, st.st_ino))
        return found

    before = big_files()
    ts, _ = _raw_toolspace("stderr_flood", tmp_path, connect_timeout=30)
    with ts:
        assert ts.call("raw", "echo", {"x": "hi"}).ok
        assert big_files() <= before, "a file of the server's stderr grew on the host"
        assert ts._stderr_tail("raw").endswith("flood done")  # the tail an error message would quote


def test_a_daemon_a_server_starts_is_stopped_with_it(tmp_path):
    """A process the server starts that leaves its process group (``setsid``, as a daemon does)
    escaped the SDK's ``killpg`` and lived on after ``close()``; the relay reaps it."""
    ts, pidfile = _raw_toolspace("daemon", tmp_path)
    with ts:
        assert ts.call("raw", "echo", {"x": "hi"}).ok
        daemon = Path(str(pidfile) + ".daemon")
        deadline = time.monotonic() + 20
        while not (daemon.exists() and daemon.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(daemon.read_text())
        assert not _gone(pid, within=0.2)
    try:
        assert _gone(pid), "the server's daemon outlived the toolspace"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


RAW_HTTP_SERVER = str(Path(__file__).parent / "servers" / "raw_http_server.py")


def _peak_rss_reset() -> bool:
    try:  # "5": reset this process's peak RSS (VmHWM), so the next reading is this test's own
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def _raw_http(mode: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    portfile = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, RAW_HTTP_SERVER, mode, str(portfile)])
    deadline = time.monotonic() + 60
    while not (portfile.exists() and portfile.read_text()) and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the test server ({mode}) exited with {proc.returncode}")
        time.sleep(0.05)
    assert portfile.exists(), f"the test server ({mode}) did not publish its port within 60 s"
    return proc, f"http://127.0.0.1:{portfile.read_text()}/mcp"


def test_messages_within_the_limits_pass_unchanged(tmp_path):
    """The relay and the response hook leave well-formed traffic alone: a 50 KB call over stdio
    under a 64 KiB limit, and a server whose every answer is gzip-compressed."""
    ts, _ = _raw_toolspace("ok", tmp_path, max_message_bytes=1 << 16)
    with ts:
        big = "z" * 50_000
        r = ts.call("raw", "echo", {"x": big})
        assert r.ok and big[:3000] in r.text, r.error
    proc, url = _raw_http("gzip_ok", tmp_path)
    try:
        cfg = {"connect_timeout": 20, "max_message_bytes": 1 << 16,
               "servers": {"h": {"url": url, "headers": {"accept-encoding": "br"}}}}
        with atlas.Toolspace.from_dict(cfg) as ts:
            assert [t.name for t in ts.list_tools("h")] == ["echo"]
            r = ts.call("h", "echo", {"x": "hi"})
            assert r.ok and json.loads(r.text) == {"x": "hi"}, r.error
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("mode", ["endless_json", "gzip_bomb", "endless_sse"])
def test_an_http_response_too_large_to_hold_is_dropped(tmp_path, mode):
    """The SDK's HTTP client read a JSON response whole, and inflated gzip without a bound (256 KB
    on the wire became 256 MiB in the host); mcp 1.x also buffered an event without end. Each
    response message now stops at ``max_message_bytes``: the handshake fails, the host's peak
    memory stays where it was."""
    if not _peak_rss_reset():
        pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs), so growth cannot be measured")
    from atlas_plugins.mcp_compat import MCP2

    proc, url = _raw_http(mode, tmp_path)
    try:
        # 2 MiB: above mcp 2.x's own SSE cap of 1 MiB, which the toolspace raises to this limit.
        cfg = {"connect_timeout": 5, "max_message_bytes": 2 << 20, "servers": {"h": {"url": url}}}
        ts = atlas.Toolspace.from_dict(cfg)
        _peak_rss_reset()
        base = _peak_rss_mib()
        with pytest.raises(ToolspaceError) as info:
            ts.start()
        ts.close()
        grew = _peak_rss_mib() - base
        assert grew < 100, f"the host's peak RSS grew by {grew:.0f} MiB for one response"
        if MCP2 and mode != "endless_sse":  # 1.x: the request waits out the handshake timeout
            assert "max_message_bytes" in str(info.value), info.value
    finally:
        proc.kill()
        proc.wait()


def test_a_missing_server_command_is_named(tmp_path):
    cfg = {"connect_timeout": 3, "servers": {"gone": {"command": "atlas-no-such-server-xyz", "args": []}}}
    with pytest.raises(ToolspaceError, match="command not found: 'atlas-no-such-server-xyz'"):
        atlas.Toolspace.from_dict(cfg).start()


def test_tools_no_agent_can_name_are_left_out(tmp_path):
    """Empty names, names with control characters or terminal escapes, and a second tool of the
    same name (which a call could not tell apart) are not offered to the agent."""
    ts, _ = _raw_toolspace("odd_names", tmp_path)
    with ts:
        assert [t.name for t in ts.list_tools("raw")] == ["echo", "ok-name"]
        assert ts.call("raw", "ok-name", {"x": "y"}).ok


def test_argument_checks_of_hostile_schemas_stay_cheap():
    """Client-side checks of a server's schema never run its regexes (also below a nested
    ``$schema``, which would pick the stock validator again) and stop at a step budget when
    ``$ref``/``allOf`` chains fan out (30 levels: 2^30 steps); then the server judges. Ordinary
    schemas are still checked."""
    from atlas_plugins.toolspace.validation import ArgumentValidator
    from atlas_plugins.types import ToolSpec

    def spec(schema: dict) -> ToolSpec:
        return ToolSpec(server="s", name="t", description="", input_schema=schema)

    plain = ArgumentValidator(spec({"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"], "additionalProperties": False}))
    assert "'city' is a required argument" in plain.check({})
    assert plain.check({"city": "Oslo"}) is None
    evil = "^(a+)+$"
    nested = {"type": "object", "properties": {"x": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                                     "pattern": evil}}}
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(30)}
    fan_out = {"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": {**defs, "d30": {}}}
    for schema in ({"type": "object", "properties": {"x": {"type": "string", "pattern": evil}}}, nested, fan_out):
        t0 = time.monotonic()
        assert ArgumentValidator(spec(schema)).check({"x": "a" * 40 + "!"}) is None
        assert time.monotonic() - t0 < 3


HOSTILE_TEXT = "[/bold] ends nothing \x1b]0;pwned\x07\x1b[31m [link=file:///etc/passwd]x[/link] \u202egnp.exe"
_LISTED_SERVER = f'''
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from atlas_plugins.mcp_compat import MCPServer
server = MCPServer("listed")

@server.tool(description={HOSTILE_TEXT!r})
def echo(x: str) -> str:
    return x

server.run()
'''


def test_cli_shows_server_text_as_text_not_markup_or_terminal_escapes(tmp_path):
    """Tool descriptions come from the server, and a failed start quotes its stderr: rich read
    ``[/bold]`` in them as a closing tag (MarkupError: ``atlas toolspace tools`` crashed) and
    passed OSC/CSI sequences and bidi overrides to the terminal. Both commands now print the
    text literally, escapes escaped."""
    server = tmp_path / "listed_server.py"
    server.write_text(_LISTED_SERVER)
    cfg = tmp_path / "ts.json"
    cfg.write_text(json.dumps({"mcpServers": {"listed": {"command": sys.executable, "args": [str(server)]}}}))
    runner = CliRunner()
    res = runner.invoke(app, ["toolspace", "tools", "--config", str(cfg)], terminal_width=400)
    assert res.exit_code == 0, (res.output, res.exception)
    assert "listed:echo" in res.stdout and "[/bold] ends nothing" in res.stdout, res.stdout
    assert "[link=file:///etc/passwd]x[/link]" in res.stdout, res.stdout
    assert not any(ch in res.stdout for ch in "\x1b\x07\u202e"), ascii(res.stdout)
    assert "\\x1b]0;pwned\\x07" in res.stdout and "\\u202e" in res.stdout, ascii(res.stdout)

    failing = tmp_path / "failing_server.py"
    failing.write_text(f"import sys\nsys.stderr.write({HOSTILE_TEXT!r})\nsys.exit(3)\n")
    cfg.write_text(json.dumps({"mcpServers": {"failing": {"command": sys.executable, "args": [str(failing)]}}}))
    res = runner.invoke(app, ["toolspace", "tools", "--config", str(cfg)], terminal_width=400)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert "error:" in res.stderr and "[/bold] ends nothing" in res.stderr, res.stderr
    assert not any(ch in res.stderr for ch in "\x1b\x07\u202e"), ascii(res.stderr)
