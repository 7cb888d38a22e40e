"""``atlas eval`` / ``atlas bench``: designs × padding on a suite, through the native agent.

The grid test uses the real embedded SmolLM2-135M (tiny budgets) and the real catalogue of
third-party servers from ../shared for padding; the BFCL test plays BFCL's ground truth through
the native agent (a scripted policy replaying the calls — no model needed to test the plumbing:
multi-turn user messages, the BFCL MCP servers, BFCL's checker as the rubric's TF criterion).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch", reason="the bench tests need the 'train' extra (torch)")

from atlas_plugins.evaluation.bench import find_catalog  # noqa: E402




def _app():
    import typer

    from atlas_plugins.evaluation.commands import register

    app = typer.Typer()
    register(app)
    return app


@pytest.mark.slow
def test_bench_grid_contract_and_eager_overflow(tmp_path):
    try:
        find_catalog()
    except FileNotFoundError as exc:
        pytest.skip(f"padding needs ../shared/data/toolspace: {exc}")
    out = tmp_path / "bench"
    res = CliRunner().invoke(
        _app(),
        ["bench", "--suite", "embedded", "--designs", "eager,itl,itl+ptc", "--padding", "0,60", "--limit", "1",
         "--max-turns", "1", "--max-new-tokens", "8", "--out", str(out), "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    rows = {(r["design"], r["padding"]): r for r in data["results"]}
    assert set(rows) == {(d, p) for d in ("eager", "itl", "itl+ptc") for p in (0, 60)}
    for r in rows.values():
        assert {"design", "padding", "success", "reward", "context_tokens", "turns"} <= set(r)
        assert set(r["scores_0_10"]) == {"TF", "TA", "TG", "PA"}
        assert all(0 <= v <= 10 for v in r["scores_0_10"].values())
    # Eager over 60 extra servers does not fit SmolLM2's 8,192-token context: not played.
    assert rows[("eager", 60)]["context_overflow"] == 1.0 and rows[("eager", 60)]["turns"] == 0
    assert rows[("eager", 60)]["context_tokens"] > 8192
    # ITL starts from the server index: it grows with padding but stays playable.
    assert rows[("itl", 60)]["context_overflow"] == 0.0 and rows[("itl", 60)]["turns"] >= 1
    assert rows[("itl", 0)]["initial_context_tokens"] < rows[("itl", 60)]["initial_context_tokens"] < 8192
    # PTC's prompt lists every server with its tool names (the paper's prompt), distractors too;
    # its code session still opens (only the runnable servers), whether or not the prompt fits.
    assert rows[("itl+ptc", 60)]["context_tokens"] > rows[("itl+ptc", 0)]["context_tokens"]
    assert rows[("itl+ptc", 0)]["turns"] >= 1
    assert (out / "results.md").read_text().count("| base |") == 6
    assert (out / "bench.png").stat().st_size > 1000
    assert len((out / "traj_base_itl_60.jsonl").read_text().splitlines()) == 1


def test_bad_arguments_are_named():
    runner = CliRunner()
    res = runner.invoke(_app(), ["bench", "--suite", "nope", "--json"])
    assert res.exit_code == 1 and "unknown suite 'nope'" in res.stdout
    res = runner.invoke(_app(), ["bench", "--designs", "eager,wide", "--json"])
    assert res.exit_code == 1 and "unknown design 'wide'" in res.stdout
    res = runner.invoke(_app(), ["bench", "--padding", "0,many", "--json"])
    assert res.exit_code == 1 and "--padding" in res.stdout


def test_eval_tasks_file_errors_are_named_before_a_model_loads(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["eval", "--tasks", str(tmp_path / "missing.jsonl"), "--json"])
    assert res.exit_code == 1 and "missing.jsonl: no such file" in res.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    res = runner.invoke(_app(), ["eval", "--tasks", str(bad), "--json"])
    assert res.exit_code == 1 and "bad.jsonl:1: not a valid task" in res.stdout
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    res = runner.invoke(_app(), ["bench", "--tasks", str(empty), "--json"])
    assert res.exit_code == 1 and "holds no tasks" in res.stdout


def test_eval_on_a_task_file_from_another_generator_seed(tmp_path):
    """`atlas eval --tasks FILE` plays that file's tasks (here: freshly generated with seed 7)."""
    from atlas_plugins.envs.taskgen import generate_tasks, write_jsonl

    tasks = [t for t in generate_tasks(seed=7, n_train=0, n_heldout=6) if t.difficulty == 1][:2]
    assert tasks, "seed 7 generated no level-1 task"
    path = write_jsonl(tasks, tmp_path / "seed7.jsonl")
    res = CliRunner().invoke(
        _app(), ["eval", "--tasks", str(path), "--design", "itl", "--limit", "0", "--max-turns", "1",
                 "--max-new-tokens", "4", "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["tasks"] == len(tasks) and row["design"] == "itl" and row["task_ids"] == [t.id for t in tasks]
    played = [json.loads(x)["task_id"] for x in (tmp_path / "out" / "traj_base_itl_0.jsonl").read_text().splitlines()]
    assert played == [t.id for t in tasks]


@pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed (pip install --no-deps bfcl-eval)")
def test_bfcl_ground_truth_through_the_native_agent():
    from atlas_plugins.agent.loop import Agent, AgentConfig
    from atlas_plugins.agent.parsing import format_tool_call
    from atlas_plugins.evaluation.suites import bfcl_multi_turn as bfcl
    from atlas_plugins.policy.embedded import load_tokenizer
    from atlas_plugins.training.evaluate import Scorer
    from atlas_plugins.training.warmstart import ScriptedPolicy

    tasks = [t for t in bfcl.load_tasks(["multi_turn_base"], limit=40) if sum(map(len, bfcl.ground_truth_calls(t))) <= 6]
    task = tasks[0]
    assert task.metadata["followups"], "a multi-turn task"
    per_turn = bfcl.ground_truth_calls(task)

    def script(turns):
        out = []
        for calls in turns:
            out += [format_tool_call(name, args) for name, args in calls]
            out.append("<answer>done</answer>")
        return out

    tokenizer = load_tokenizer(None)
    cfg = AgentConfig(loading="eager", temperature=0.0, max_episode_tokens=60000, max_context_tokens=10**6)
    with bfcl.toolspace() as ts:
        scorer = Scorer(toolspace=ts)
        good = Agent(ScriptedPolicy(tokenizer, script(per_turn)), ts, cfg).run([task])[0]
        assert good.metadata["finish"] == "answer"
        assert len(good.metadata["user_turn_at"]) == len(per_turn)
        assert all(c.ok for c in good.tool_calls), [c.error for c in good.tool_calls if not c.ok]
        assert bfcl.check(task, good)["success"]
        scorer.score(good)
        assert good.scores["benchmark_success"] == 1.0 and good.reward_by_category["TF"] == 1.0

        # Skip the last user turn's calls: BFCL's checker rejects it, and so does the rubric's TF.
        bad_turns = per_turn[:-1] + [[]]
        bad = Agent(ScriptedPolicy(tokenizer, script(bad_turns)), ts, cfg).run([task])[0]
        assert not bfcl.check(task, bad)["success"]
        scorer.score(bad)
        assert bad.scores["benchmark_success"] == 0.0
