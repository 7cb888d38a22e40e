"""``EpisodeEnv``: one episode's tool surface, shared by the native agent, LangGraph and DSPy.

Real embedded MCP servers and the real local sandbox; the rules are checked in the order
``act`` applies them."""

from __future__ import annotations

import pytest

from atlas_plugins.agent.env import CODE_TOOL, EpisodeEnv
from atlas_plugins.agent.parsing import EXPECTED_FORMAT
from atlas_plugins.plugins import get_executor, get_loading_policy
from atlas_plugins.toolspace import Toolspace
from atlas_plugins.types import Task

TASK = Task(id="env-1", prompt="Add 2 and 3.", servers=["math"])


@pytest.fixture(scope="module")
def ts():
    space = Toolspace.default(servers=["math", "notes"]).start()
    yield space
    space.close()


def test_itl_episode_loads_before_calling(ts):
    with EpisodeEnv(ts, TASK, loading=get_loading_policy("itl"), episode_id="env-itl", call_format=EXPECTED_FORMAT) as env:
        assert "fetch_tools" in env.system_text() and "math" in env.system_text() and "notes" not in env.system_text()
        assert [t.name for t in env.tools() if t.kind == "meta"] == ["fetch_tools", "get_selected_tools"]
        refused = env.act("math:add", {"numbers": [2, 3]})
        assert refused.kind == "refused" and not refused.ok and refused.error_type == "not_loaded"
        assert "get_selected_tools" in refused.text
        meta = env.act("get_selected_tools", {"server": "math", "tools": ["add"]})
        assert meta.kind == "meta" and meta.ok and meta.error_type is None
        bad = env.act("get_selected_tools", {"server": "math", "tools": ["nope"]})
        assert bad.kind == "meta" and not bad.ok and bad.error_type == "meta_error" and bad.error == bad.text
        done = env.act("math:add", {"numbers": [2, 3]})
        assert done.kind == "mcp" and done.ok and done.result is not None and "5" in done.text
        assert any(e["event"] == "load" for e in env.log)


def test_unknown_names_and_missing_code_tool(ts):
    env = EpisodeEnv(ts, TASK, loading=get_loading_policy("itl"), episode_id="env-unknown", call_format=EXPECTED_FORMAT)
    unknown = env.act("add", {})
    assert unknown.error_type == "unknown_tool" and "helper tools: fetch_tools, get_selected_tools" in unknown.text
    assert unknown.text.endswith(f"Format: {EXPECTED_FORMAT}")
    code = env.act(CODE_TOOL, {"code": "1"})
    assert not code.ok and code.text == f"Error: {CODE_TOOL} is not available in this episode; call tools directly."
    # A chat-API runner (LangGraph) is not taught the text format, so none is quoted.
    chat = EpisodeEnv(ts, TASK, loading=get_loading_policy("itl"), episode_id="env-chat")
    assert "Format:" not in chat.act("add", {}).text and "call tools directly" not in chat.act(CODE_TOOL, {}).text


def test_ptc_episode_runs_code_and_refuses_everything_else(ts):
    ex = get_executor("local")
    with EpisodeEnv(ts, TASK, loading=get_loading_policy("itl"), executor=ex, episode_id="env-ptc",
                    call_format=EXPECTED_FORMAT) as env:
        assert env.ptc and CODE_TOOL in env.system_text() and "MCPServer" in env.system_text()
        assert [t.kind for t in env.tools()][0] == "code" and not any(t.kind == "meta" for t in env.tools())
        for name in ("fetch_tools", "math:add", "add"):
            obs = env.act(name, {"server": "math"})
            assert obs.kind == "refused" and obs.error_type == "unknown_tool" and "inside code_interpreter" in obs.text
        assert env.act(CODE_TOOL, {"code": "  "}).error_type == "invalid_arguments"
        cell = env.act(CODE_TOOL, {"code": "MCPServer('math').add(numbers=[2, 3])"})
        assert cell.kind == "code" and cell.ok and cell.text == "{'result': 5}"
        assert [c["tool"] for c in cell.inner_calls] == ["add"]
        records = cell.records(turn=1, name=CODE_TOOL, arguments={}, limit=4000)
        assert [r.name for r in records] == [CODE_TOOL, "math:add"] and records[1].ok
        # Only the task's servers are reachable from code.
        other = env.act(CODE_TOOL, {"code": "MCPServer('notes')"})
        assert not other.ok and "unknown server 'notes'" in other.text
    assert env.session is None  # closed


def test_without_a_loading_policy_every_live_tool_is_callable_and_cut(ts):
    env = EpisodeEnv(ts, None, loading=None, episode_id="env-free", max_response_chars=120)
    assert env.system_text() == "" and all(t.kind == "mcp" for t in env.tools())
    for i in range(3):
        assert env.act("notes:create_note", {"title": f"t{i}", "body": "x" * 200}).ok
    listed = env.act("notes:list_items", {})
    assert listed.ok and len(listed.text) <= 120 + 60 and "truncated" in listed.text
