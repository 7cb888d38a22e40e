"""The ``bfcl-multi-turn`` suite: BFCL API classes over real MCP, BFCL's own checker.

Needs the bfcl-eval wheel (``pip install --no-deps bfcl-eval``); skipped with that reason otherwise.
"""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest

if importlib.util.find_spec("bfcl_eval") is None:
    pytest.skip("bfcl-eval is not installed (pip install --no-deps bfcl-eval)", allow_module_level=True)

from atlas_plugins.evaluation.suites import SUITES
from atlas_plugins.evaluation.suites import bfcl_multi_turn as bfcl
from atlas_plugins.evaluation.suites.bfcl_server import (
    BFCL_SERVERS,
    find_entry,
    func_docs,
    new_instance,
    render_result,
    task_id_of_episode,
    to_json_schema,
)
from atlas_plugins.types import ToolCallRecord, Trajectory, split_qualified


@pytest.fixture(scope="module")
def ts():
    from atlas_plugins.evaluation.suites.bfcl_server import bfcl_toolspace

    with bfcl_toolspace() as space:
        yield space


@pytest.fixture(scope="module")
def tasks():
    return bfcl.load_tasks()


def _by_id(tasks, task_id):
    return next(t for t in tasks if t.id == task_id)


def _trajectory(task, calls_per_turn) -> Trajectory:
    """A trajectory as the native agent records it: one model turn per call, one answer per user turn."""
    records, starts, turn = [], [], 0
    for calls in calls_per_turn:
        starts.append(turn)
        for name, args in calls:
            turn += 1
            records.append(ToolCallRecord(turn=turn, name=name, arguments=args))
        turn += 1
    return Trajectory(task_id=task.id, tool_calls=records, metadata={"user_turn_at": starts})


# --------------------------------------------------------------------------- tasks


def test_task_counts_and_shape(tasks):
    assert SUITES["bfcl-multi-turn"] == bfcl.__name__
    assert len(tasks) == 800
    cats = {}
    for t in tasks:
        cats[t.metadata["bfcl_category"]] = cats.get(t.metadata["bfcl_category"], 0) + 1
    assert cats == {c: 200 for c in bfcl.MULTI_TURN_CATEGORIES}
    # --limit N means N tasks in all, round-robin over the categories.
    few = bfcl.load_tasks(["base", "miss_func"], limit=3)
    assert [t.id for t in few] == ["multi_turn_base_0", "multi_turn_miss_func_0", "multi_turn_base_1"]

    t = _by_id(tasks, "multi_turn_base_0")
    entry = find_entry(t.id)
    assert t.prompt == entry["question"][0][0]["content"]
    assert t.metadata["followups"] == [q[0]["content"] for q in entry["question"][1:]]
    assert set(t.servers) == {"gorilla_file_system", "twitter_api"}
    assert t.metadata["suite"] == "bfcl-multi-turn"
    assert {"tool": "gorilla_file_system:mkdir", "arguments": {"dir_name": "temp"}} in t.metadata["expected_tools"]

    # miss_func: the empty release turn gets BFCL's own user message; held-back tools are named.
    mf = _by_id(tasks, "multi_turn_miss_func_0")
    assert mf.metadata["followups"][2] == bfcl.ADDITIONAL_FUNCTION_PROMPT
    assert mf.metadata["held_back_tools"] == {"3": ["gorilla_file_system:sort"]}

    with pytest.raises(ValueError, match="unknown BFCL multi-turn category 'nope'"):
        bfcl.load_tasks(["nope"])


def test_template_rubric_from_ground_truth(tasks):
    from atlas_plugins import get_rubric_provider

    rubric = get_rubric_provider("template").rubric_for(_by_id(tasks, "multi_turn_base_0"))
    text = json.dumps(rubric.model_dump() if hasattr(rubric, "model_dump") else rubric, default=str)
    assert "gorilla_file_system:diff" in text and "previous_report.pdf" in text


def test_schema_conversion():
    assert to_json_schema({"type": "dict", "properties": {"x": {"type": "float"}, "t": {"type": "tuple"},
                                                          "a": {"type": "any"}}}) == {
        "type": "object", "properties": {"x": {"type": "number"}, "t": {"type": "array"}, "a": {}}}
    with pytest.raises(ValueError, match=r"parameters.q: unknown BFCL type 'quux'"):
        to_json_schema({"type": "dict", "properties": {"q": {"type": "quux"}}})
    assert task_id_of_episode("multi_turn_base_7-0a1b2c3d4e") == "multi_turn_base_7"


# --------------------------------------------------------------------------- server


def test_tools_listed_per_class(ts):
    assert [s.name for s in ts.servers] == list(BFCL_SERVERS)
    for server in BFCL_SERVERS:
        names = [t.name for t in ts.list_tools(server)]
        assert names == [d["name"] for d in func_docs(server)], server
    cd = ts.get_tool("gorilla_file_system:cd")
    assert cd.input_schema["type"] == "object" and cd.input_schema["required"] == ["folder"]
    assert ts.get_tool("math_api:add").input_schema["properties"]["a"]["type"] == "number"


@pytest.mark.parametrize("task_id", ["multi_turn_base_0", "multi_turn_base_51", "multi_turn_miss_param_110",
                                     "multi_turn_long_context_160", "multi_turn_base_150"])
def test_ground_truth_over_mcp_matches_direct(ts, tasks, task_id):
    task = _by_id(tasks, task_id)
    entry = find_entry(task_id)
    episode = f"{task_id}-0123456789"
    direct: dict = {}
    n = 0
    for calls in bfcl.ground_truth_calls(task):
        for name, args in calls:
            server, tool = split_qualified(name)
            res = ts.call(server, tool, args, episode=episode)
            cls = BFCL_SERVERS[server].class_name
            inst = direct.get(cls) or direct.setdefault(cls, new_instance(cls, entry))
            try:
                expected = render_result(getattr(inst, tool)(**copy.deepcopy(args)))
            except Exception as exc:  # noqa: BLE001
                expected = f"Error during execution: {exc}"
            got = res.text if res.ok else res.error
            assert got == expected[: len(got)] if res.truncated else got == expected, (name, args)
            n += 1
    assert n > 0


def test_episode_isolation_and_task_state(ts):
    a, b = "multi_turn_base_0-00000000aa", "multi_turn_base_0-00000000bb"
    assert ts.call("gorilla_file_system", "cd", {"folder": "document"}, episode=a).ok
    assert ts.call("gorilla_file_system", "mkdir", {"dir_name": "only_in_a"}, episode=a).ok
    ls_a = ts.call("gorilla_file_system", "ls", {}, episode=a).content["current_directory_content"]
    ls_b = ts.call("gorilla_file_system", "ls", {}, episode=b).content["current_directory_content"]
    assert "only_in_a" in ls_a
    assert ls_b == ["document", "archive"]  # task 0's initial state, untouched by episode a
    # A different task's episode starts from that task's initial_config.
    other = ts.call("gorilla_file_system", "ls", {}, episode="multi_turn_base_1-00000000cc")
    assert other.content["current_directory_content"] != ls_b


def test_bad_arguments_are_error_results(ts):
    ep = "multi_turn_base_0-00000000dd"
    missing = ts.call("gorilla_file_system", "cd", {}, episode=ep)
    assert not missing.ok and missing.error_type == "invalid_arguments" and "folder" in missing.error
    extra = ts.call("gorilla_file_system", "pwd", {"bogus": 1}, episode=ep)  # passes the schema, the class rejects it
    assert not extra.ok and extra.error_type == "tool_error"
    assert "Error during execution" in extra.error and "bogus" in extra.error
    refused = ts.call("gorilla_file_system", "cd", {"folder": "no_such_dir"}, episode=ep)
    assert not refused.ok and "No such file or directory" in refused.error
    assert ts.call("math_api", "add", {"a": 2, "b": 3}, episode=ep).content == {"result": 5}  # server still up


# --------------------------------------------------------------------------- checker


def test_check_accepts_ground_truth_sample(tasks):
    sample = [t for t in tasks if int(t.id.rsplit("_", 1)[1]) % 29 == 0]
    assert len(sample) >= 20 and len({t.metadata["bfcl_category"] for t in sample}) == 4
    for task in sample:
        verdict = bfcl.check(task, _trajectory(task, bfcl.ground_truth_calls(task)))
        assert verdict["success"], (task.id, verdict["details"])


def test_check_rejects_corrupted_trajectories(tasks):
    task = _by_id(tasks, "multi_turn_base_0")
    gt = bfcl.ground_truth_calls(task)
    # Drop the mkdir of turn 0: the file system state differs from the ground truth's.
    dropped = [[c for c in turn if c[0] != "gorilla_file_system:mkdir"] for turn in gt]
    v = bfcl.check(task, _trajectory(task, dropped))
    assert not v["success"] and v["details"]["error_type"] == "multi_turn:instance_state_mismatch"
    # Alter one argument (grep for the wrong pattern): the response check fails.
    altered = [[(n, {**a, "pattern": "nothing"} if n.endswith(":grep") else a) for n, a in turn] for turn in gt]
    v = bfcl.check(task, _trajectory(task, altered))
    assert not v["success"] and v["details"]["error_type"] == "multi_turn:execution_response_mismatch"
    # Stopping before the last user turn is a failure, as in BFCL's runner.
    v = bfcl.check(task, _trajectory(task, gt[:-1]))
    assert not v["success"] and v["details"]["error_type"] == "multi_turn:force_terminated"
    # The same correct trajectory twice: checks are independent (BFCL caches instances by name).
    assert bfcl.check(task, _trajectory(task, gt))["success"]
    assert bfcl.check(task, _trajectory(task, gt))["success"]
    # As a rubric ``python`` check (func(trajectory)): 1.0 / 0.0.
    assert bfcl.check_score(_trajectory(task, gt)) == 1.0
    assert bfcl.check_score(_trajectory(task, dropped)) == 0.0


def test_check_ignores_meta_tools_and_refuses_unsafe_calls(tasks):
    task = _by_id(tasks, "multi_turn_base_0")
    traj = _trajectory(task, bfcl.ground_truth_calls(task))
    traj.tool_calls.insert(0, ToolCallRecord(turn=1, name="fetch_tools", arguments={"server": "gorilla_file_system"}))
    traj.tool_calls.insert(1, ToolCallRecord(turn=1, name="gorilla_file_system:ls",
                                             arguments={"a=__import__('os').getpid(), b": 1}))
    v = bfcl.check(task, traj)
    assert v["success"], v["details"]
    assert len(v["details"]["skipped_calls"]) == 1 and "not a Python identifier" in v["details"]["skipped_calls"][0]["reason"]
    assert bfcl.to_call_string("cd", {"folder": "a'b"}) == "cd(folder=\"a'b\")"
