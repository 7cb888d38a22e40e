"""Loading policies over a real embedded toolspace (live MCP servers), token accounting, ``atlas context``."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import typer
from typer.testing import CliRunner

from atlas_plugins.context import prompts
from atlas_plugins.context.base import EpisodeContext, LoadingPolicy
from atlas_plugins.context.tokens import count_chat_tokens, count_text_tokens, initial_context_tokens
from atlas_plugins.errors import AtlasError
from atlas_plugins.plugins import get_loading_policy
from atlas_plugins.toolspace import Toolspace

SERVERS = ["calendar", "email", "files"]
TOUCAN = "../shared/data/toolspace/toucan_servers.jsonl"


def _transport() -> str:
    # The single-process hub is the fast path; stdio is the fallback while it is absent.
    return "hub" if importlib.util.find_spec("atlas_plugins.envs.hub") else "stdio"


@pytest.fixture(scope="module")
def ts():
    space = Toolspace.default(servers=SERVERS, transport=_transport())
    space.start()
    yield space
    space.close()


def _tool_call_re(name: str) -> str:
    return re.escape(prompts.TOOL_CALL_OPEN) + r"\{\"name\":\"" + re.escape(name) + r"\""


def test_builtins_registered_and_satisfy_protocols(ts):
    for name in ("eager", "isl", "itl", "search"):
        pol = get_loading_policy(name)
        assert isinstance(pol, LoadingPolicy)
        assert isinstance(pol.start_episode(ts), EpisodeContext)


def test_eager_shows_every_schema_and_no_meta_tools(ts):
    ctx = get_loading_policy("eager").start_episode(ts)
    system = ctx.system_prompt()
    tools = ts.list_tools()
    assert len(tools) >= 30
    for t in tools:
        assert prompts.render_tool_schema(t) in system
    assert ctx.meta_tools() == []
    assert "<answer>" in system and "<tool_call>" in system
    assert ctx.check_call(tools[0].qualified_name) is None
    assert {t.qualified_name for t in ctx.loaded_tools()} == {t.qualified_name for t in tools}


def test_isl_index_then_fetch_loads_whole_server(ts):
    ctx = get_loading_policy("isl").start_episode(ts)
    system = ctx.system_prompt()
    email = ts.server("email")
    assert email.summary and prompts.one_line(email.summary, 100) in system
    for t in email.tools:  # no schema up front
        assert prompts.render_tool_schema(t) not in system
    assert [m.name for m in ctx.meta_tools()] == ["fetch_tools"]
    target = email.tools[0].qualified_name
    msg = ctx.check_call(target)
    assert msg and "fetch_tools" in msg and '"server":"email"' in msg
    obs = ctx.handle_meta_call("fetch_tools", {"server": "email"})
    for t in email.tools:
        assert prompts.render_tool_schema(t) in obs
    assert ctx.check_call(target) is None
    assert {t.qualified_name for t in ctx.loaded_tools()} == {t.qualified_name for t in email.tools}
    assert ctx.log[-1]["event"] == "load" and ctx.log[-1]["via"] == "fetch_tools"
    assert ctx.handle_meta_call("not_a_meta_tool", {}) is None


def test_itl_names_only_and_loads_exactly_the_selected(ts):
    ctx = get_loading_policy("itl").start_episode(ts)
    system = ctx.system_prompt()
    for name in SERVERS:
        assert f"- {name}\n" in system + "\n"
    assert ts.server("email").summary.split(":")[0] not in system.split("Servers")[1]  # names only
    assert [m.name for m in ctx.meta_tools()] == ["fetch_tools", "get_selected_tools"]
    files = ts.server("files")
    listing = ctx.handle_meta_call("fetch_tools", {"server": "files"})
    for t in files.tools:
        assert f"- files:{t.name}" in listing
        assert prompts.render_tool_schema(t) not in listing  # names, not schemas
    assert ctx.loaded_tools() == []
    chosen = [files.tools[0].name, files.tools[2].name]
    obs = ctx.handle_meta_call("get_selected_tools", {"server": "files", "tools": chosen})
    for t in files.tools:
        assert (prompts.render_tool_schema(t) in obs) == (t.name in chosen)
    assert sorted(t.name for t in ctx.loaded_tools()) == sorted(chosen)
    assert ctx.check_call(f"files:{chosen[0]}") is None
    msg = ctx.check_call(f"files:{files.tools[1].name}")
    assert msg and re.search(_tool_call_re("get_selected_tools"), msg) and files.tools[1].name in msg


def test_budget_evicts_least_recently_used_and_reload_works(ts):
    email = ts.server("email").tools
    ta, tb, tc = (count_text_tokens(prompts.render_tool_schema(t)) for t in email[:3])
    budget = max(ta + tb, ta + tc)  # two fit, three do not
    ctx = get_loading_policy("itl", max_loaded_tokens=budget).start_episode(ts)
    a, b, c = email[0].name, email[1].name, email[2].name
    ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": [a]})
    ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": [b]})
    assert ctx.check_call(f"email:{a}") is None  # a use: now b is the least recently used
    obs = ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": [c]})
    assert ctx.loaded_tokens == ta + tc <= budget
    assert f"email:{b}" in obs and "Unloaded" in obs
    assert not ctx.is_loaded(f"email:{b}") and ctx.is_loaded(f"email:{a}") and ctx.is_loaded(f"email:{c}")
    msg = ctx.check_call(f"email:{b}")
    assert "unloaded to stay within the context budget" in msg and "get_selected_tools" in msg
    assert any(e["event"] == "evict" and f"email:{b}" in e["tools"] for e in ctx.log)
    ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": [b]})  # reload
    assert ctx.check_call(f"email:{b}") is None


def test_bad_inputs_are_observations(ts):
    ctx = get_loading_policy("itl").start_episode(ts)
    unknown = ctx.handle_meta_call("fetch_tools", {"server": "emial"})
    assert "unknown server 'emial'" in unknown
    listed = unknown.split("closest first): ")[1]
    assert listed.startswith("email")  # closest first
    assert all(s in listed for s in SERVERS)
    assert "server" in ctx.handle_meta_call("fetch_tools", {})
    assert "JSON object" in ctx.handle_meta_call("fetch_tools", ["email"])  # type: ignore[arg-type]
    not_list = ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": "send_email"})
    assert "must be a non-empty list" in not_list
    real = ts.server("email").tools[0].name
    typo = ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": [real[:-1] + "x", real]})
    assert f"did you mean '{real}'" in typo.lower() or f"did you mean '{real}'" in typo
    assert ctx.is_loaded(f"email:{real}")  # the good name still loaded
    wrong_server = ctx.handle_meta_call("get_selected_tools", {"server": "email", "tools": [f"files:{real}"]})
    assert "belongs to server 'files'" in wrong_server
    # calls: unqualified, unknown server, unknown tool
    assert "qualified" in ctx.check_call(real) and f"email:{real}" in ctx.check_call(real)
    assert "unknown server 'nope'" in ctx.check_call(f"nope:{real}")
    assert "has no tool" in ctx.check_call("email:definitely_missing")
    assert ctx.check_call("fetch_tools") is None  # meta-tools are always callable


def test_empty_catalogue():
    empty = Toolspace.from_dict({"servers": {}})
    for name in ("eager", "isl", "itl", "search"):
        ctx = get_loading_policy(name).start_episode(empty)
        assert "No tool servers are available" in ctx.system_prompt()
    ctx = get_loading_policy("search").start_episode(empty)
    assert "No servers are available" in ctx.handle_meta_call("fetch_tools", {"server": "x"})
    assert "No tools" in ctx.handle_meta_call("search_tools", {"query": "email"})


def test_duplicate_tool_names_across_servers_are_qualified():
    space = Toolspace.from_dict({"servers": {}})
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    space.add_catalog(
        [
            {"name": "disk-a", "summary": "Disk A", "tools": [{"name": "read_file", "description": "Read from A", "input_schema": schema}]},
            {"name": "disk-b", "summary": "Disk B", "tools": [{"name": "read_file", "description": "Read from B", "input_schema": schema}]},
        ]
    )
    eager = get_loading_policy("eager").start_episode(space).system_prompt()
    assert '"name":"disk-a:read_file"' in eager and '"name":"disk-b:read_file"' in eager
    ctx = get_loading_policy("itl").start_episode(space)
    msg = ctx.check_call("read_file")
    assert "disk-a:read_file" in msg and "disk-b:read_file" in msg
    ctx.handle_meta_call("get_selected_tools", {"server": "disk-b", "tools": ["read_file"]})
    assert ctx.check_call("disk-b:read_file") is None and ctx.check_call("disk-a:read_file") is not None


def test_huge_catalogue_index_stays_compact():
    space = Toolspace.from_dict({"servers": {}})
    space.add_catalog(TOUCAN)
    n_servers, n_tools = len(space.servers), len(space.list_tools())
    assert n_tools > 5000
    itl = get_loading_policy("itl").start_episode(space).system_prompt()
    isl = get_loading_policy("isl").start_episode(space).system_prompt()
    # No schema leaks into the index; ISL summaries are shortened above `compact_above` servers.
    assert '"parameters"' not in itl.split("Helper tools:")[0]
    assert len(isl) < 120 * n_servers and len(itl) < 60 * n_servers
    ctx = get_loading_policy("itl").start_episode(space)
    msg = ctx.handle_meta_call("fetch_tools", {"server": "no-such-server"})
    assert f"({n_servers} in all)" in msg and len(msg) < 2000


def test_task_scopes_servers(ts):
    from atlas_plugins.types import Task

    ctx = get_loading_policy("isl").start_episode(ts, Task(id="t", prompt="p", servers=["email"]))
    assert "- email (" in ctx.system_prompt() and "- files (" not in ctx.system_prompt()
    assert "unknown server" in ctx.handle_meta_call("fetch_tools", {"server": "files"})


def test_search_policy_finds_and_loads(ts):
    ctx = get_loading_policy("search").start_episode(ts)
    names = [m.name for m in ctx.meta_tools()]
    assert names == ["fetch_tools", "get_selected_tools", "search_tools"]
    obs = ctx.handle_meta_call("search_tools", {"query": "send an email message", "k": 3})
    assert "email:" in obs.splitlines()[1]
    assert ctx.loaded_tools() == []  # ITL base: search lists, get_selected_tools loads
    assert "non-empty string 'query'" in ctx.handle_meta_call("search_tools", {"query": ""})
    assert "whole number" in ctx.handle_meta_call("search_tools", {"query": "x", "k": "many"})
    direct = get_loading_policy("search", return_schemas=True, base="isl").start_episode(ts)
    assert [m.name for m in direct.meta_tools()] == ["fetch_tools", "search_tools"]
    out = direct.handle_meta_call("search_tools", {"query": "create a calendar event", "k": 2})
    assert len(direct.loaded_tools()) == 2 and '"parameters"' in out


def test_bad_policy_options_are_clear_errors():
    with pytest.raises(AtlasError, match="max_loaded_tokens"):
        get_loading_policy("itl", max_loaded_tokens=-5)
    with pytest.raises(AtlasError, match="bogus"):
        get_loading_policy("isl", bogus=1)
    with pytest.raises(KeyError, match="unknown retriever 'nope'"):
        get_loading_policy("search", retriever="nope")


def test_token_counts_monotone_through_chat_template(ts):
    counts = {p: initial_context_tokens(get_loading_policy(p), ts) for p in ("eager", "isl", "itl")}
    assert counts["eager"] > counts["isl"] > counts["itl"] > 100
    ctx = get_loading_policy("itl").start_episode(ts)
    # The chat template adds role markers: more than the bare texts.
    assert count_chat_tokens(ctx.system_prompt(), "hi") > count_text_tokens(ctx.system_prompt()) + count_text_tokens("hi")


def test_cli_context(ts):
    from atlas_plugins.context.commands import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["context", "--policy", "itl", "--no-embedded", "--catalog", TOUCAN, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"policy", "servers", "tools", "initial_tokens"}
    assert data["policy"] == "itl" and data["tools"] > 5000 and 1000 < data["initial_tokens"] < 40000
    bad = runner.invoke(app, ["context", "--policy", "itll", "--no-embedded", "--json"])
    assert bad.exit_code == 1 and "did you mean 'itl'" in json.loads(bad.stdout)["error"].lower()
    missing = runner.invoke(app, ["context", "--no-embedded", "--catalog", "nope.jsonl", "--json"])
    assert missing.exit_code == 1 and "nope.jsonl" in json.loads(missing.stdout)["error"]


def test_cli_context_embedded(ts):
    if _transport() != "hub":
        pytest.skip("atlas_plugins.envs.hub is not there yet; `atlas context` starts embedded servers through it")
    from atlas_plugins.context.commands import register

    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["context", "--policy", "eager", "--servers", "email", "--json"])
    assert res.exit_code == 0, res.output
    eager = json.loads(res.stdout)
    assert eager["servers"] == 1 and eager["tools"] == len(ts.server("email").tools)


# -- loading policies are objects --------------------------------------------------------------
def test_core_has_no_per_policy_branches():
    """The shared mechanism knows no policy by name: no ``mode`` anywhere in _core.py."""
    import ast
    from pathlib import Path

    import atlas_plugins.context.policies._core as core

    tree = ast.parse(Path(core.__file__).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert "mode" not in names | attrs | strings
    assert not hasattr(core, "PolicySettings")
    for policy in ("eager", "isl", "itl", "search"):
        assert not any(s == policy for s in strings), policy


@pytest.mark.parametrize("policy,name,args,ok", [
    ("itl", "fetch_tools", [1, 2], False),                              # arguments not an object
    ("itl", "fetch_tools", {"server": "nope"}, False),                  # unknown server
    ("itl", "fetch_tools", {"server": "email"}, True),
    ("itl", "get_selected_tools", {"server": "email", "tools": []}, False),
    ("itl", "get_selected_tools", {"server": "email", "tools": ["bogus"]}, False),
    ("itl", "get_selected_tools", {"server": "email", "tools": ["send_message", "bogus"]}, True),  # partial load
    ("isl", "fetch_tools", {"server": "files"}, True),
    ("search", "search_tools", {"query": ""}, False),
    ("search", "search_tools", {"query": "send an email", "k": "x"}, False),
    ("search", "search_tools", {"query": "send an email"}, True),
])
def test_meta_results_are_typed_and_agree_with_their_text(ts, policy, name, args, ok):
    """``meta_call`` says ok/not ok itself; it matches what the text says, and the string form
    (``handle_meta_call``) is the same text."""
    from atlas_plugins.context.base import meta_result_from_text

    result = get_loading_policy(policy).start_episode(ts).meta_call(name, args)
    assert result is not None and result.ok is ok, result
    assert meta_result_from_text(result.text).ok is ok
    assert (result.error_type == "meta_error") is (not ok)
    again = get_loading_policy(policy).start_episode(ts).handle_meta_call(name, args)
    assert again == result.text
    if ok and name != "fetch_tools" or policy == "isl":
        assert result.loaded or name == "search_tools"


def test_reference_calls_are_each_policys_own(ts):
    solution = [{"server": "email", "tool": "send_message", "arguments": {"to": "a@b.c"}},
                {"server": "files", "tool": "read_file", "arguments": {"path": "x"}},
                {"server": "email", "tool": "list_messages", "arguments": {}}]
    direct = [("email:send_message", {"to": "a@b.c"}), ("files:read_file", {"path": "x"}), ("email:list_messages", {})]
    assert get_loading_policy("eager").reference_calls(solution) == direct
    assert get_loading_policy("isl").reference_calls(solution) == [
        ("fetch_tools", {"server": "email"}), ("fetch_tools", {"server": "files"}), *direct]
    itl = [("fetch_tools", {"server": "email"}), ("get_selected_tools", {"server": "email", "tools": ["send_message", "list_messages"]}),
           ("fetch_tools", {"server": "files"}), ("get_selected_tools", {"server": "files", "tools": ["read_file"]}), *direct]
    assert get_loading_policy("itl").reference_calls(solution) == itl
    assert get_loading_policy("search").reference_calls(solution) == itl
    # Replaying the calls actually loads what each direct call needs.
    for name in ("isl", "itl"):
        ctx = get_loading_policy(name).start_episode(ts, {"servers": ["email", "files"]})
        for call, args in get_loading_policy(name).reference_calls(solution):
            refused = ctx.check_call(call) if ":" in call else None
            assert refused is None, (name, call, refused)
            if ":" not in call:
                assert ctx.meta_call(call, args).ok


def test_a_plugin_writes_a_loading_policy_by_subclassing(ts):
    """A third-party policy: subclass the base classes, register, and the agent's machinery
    (system text, meta-calls, check_call, reference calls) works with it unchanged."""
    import atlas_plugins as atlas
    from atlas_plugins.context.policies import EpisodeBase, LoadingPolicyBase, MetaResult
    from atlas_plugins.context.base import MetaTool
    from atlas_plugins.hookspecs import hookimpl

    class LoadAllEpisode(EpisodeBase):
        """One meta-tool, ``load_everything``, that loads every tool of the episode."""

        def meta_tools(self):
            return [MetaTool(name="load_everything", description="Load all schemas.")]

        def intro(self):
            return "Call load_everything first."

        def load_hint(self, server, tool):
            return "load_everything"

        def meta_load_everything(self, arguments):
            loaded = list(self.tools)
            return MetaResult(text=f"Loaded {len(loaded)} tools.", loaded=loaded, evicted=self._load(loaded, via="load_everything"))

    class LoadAllPolicy(LoadingPolicyBase):
        name = "load_all"
        episode_class = LoadAllEpisode

        def reference_calls(self, solution):
            return [("load_everything", {}), *super().reference_calls(solution)]

    class Plugin:
        @hookimpl
        def atlas_register_loading_policies(self, register):
            register("load_all", LoadAllPolicy)

    name = atlas.register_plugin(Plugin(), name="test-load-all")
    try:
        policy = get_loading_policy("load_all")
        ctx = policy.start_episode(ts, {"servers": ["email"]})
        assert "Call load_everything first." in ctx.system_prompt() and "Servers (1):" in ctx.system_prompt()
        assert "load_everything" in ctx.check_call("email:send_message")
        assert ctx.meta_call("load_everything", {}).ok and ctx.check_call("email:send_message") is None
        assert policy.reference_calls([{"server": "email", "tool": "send_message", "arguments": {}}])[0] == ("load_everything", {})
    finally:
        atlas.unregister_plugin(name)
