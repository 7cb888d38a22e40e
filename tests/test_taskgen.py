"""The seeded task generator (atlas_plugins.envs.taskgen): real servers, real rubric, real judge."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import atlas_plugins as atlas
from atlas_plugins.envs import taskgen
from atlas_plugins.envs.commands import register
from atlas_plugins.envs.taskgen import (
    DEFAULT_TASKS_PATH,
    HELDOUT_TEMPLATES,
    TEMPLATES,
    dumps_jsonl,
    generate,
    load_default_tasks,
    split_of,
    state_holds,
)
from atlas_plugins.types import Task, ToolCallRecord, Trajectory


@pytest.fixture(scope="module")
def fresh() -> taskgen.GenerationReport:
    """A fresh default generation (seed 0, 240 + 60), shared by the module."""
    return generate(0, 240, 60)


@pytest.fixture(scope="module")
def default_tasks() -> list[Task]:
    return load_default_tasks()


# --------------------------------------------------------------------------- determinism, shipped file


def test_shipped_file_equals_fresh_generation(fresh: taskgen.GenerationReport) -> None:
    assert DEFAULT_TASKS_PATH.read_text(encoding="utf-8") == dumps_jsonl(fresh.tasks), (
        "atlas_plugins/envs/data/tasks_seed0.jsonl is stale: regenerate it with "
        "`atlas tasks generate --seed 0 --out atlas_plugins/envs/data/tasks_seed0.jsonl`")
    # the filter is live (out-of-stock cart picks are dropped) but rare
    assert fresh.dropped == sum(fresh.drop_reasons.values()) and fresh.dropped <= 10, fresh.drop_reasons


def test_same_seed_is_byte_identical_and_seeds_differ() -> None:
    a, b, c = (dumps_jsonl(generate(s, 40, 10).tasks) for s in (7, 7, 8))
    assert a == b
    assert a != c
    assert len(a.splitlines()) == 50


def test_default_loader_and_split_filter(default_tasks: list[Task]) -> None:
    train, held = load_default_tasks("train"), load_default_tasks("heldout")
    assert len(train) == 240 and len(held) == 60 and len(default_tasks) == 300
    assert all(t.split == "train" for t in train) and all(t.split == "heldout" for t in held)
    with pytest.raises(ValueError, match="split must be"):
        load_default_tasks("test")


# --------------------------------------------------------------------------- split, mix, shape


def test_split_is_disjoint_and_holds_out_whole_templates(default_tasks: list[Task]) -> None:
    train = [t for t in default_tasks if t.split == "train"]
    held = [t for t in default_tasks if t.split == "heldout"]
    ids = [t.id for t in default_tasks]
    assert len(set(ids)) == len(ids), "task ids must be unique"
    assert not {t.id for t in train} & {t.id for t in held}
    key = lambda t: (t.metadata["template"], json.dumps(t.metadata["params"], sort_keys=True))  # noqa: E731
    assert not {key(t) for t in train} & {key(t) for t in held}
    train_templates = {t.metadata["template"] for t in train}
    held_templates = {t.metadata["template"] for t in held}
    assert 2 <= len(HELDOUT_TEMPLATES) <= 3
    assert not HELDOUT_TEMPLATES & train_templates, "held-out-only templates leaked into train"
    assert HELDOUT_TEMPLATES <= held_templates
    assert held_templates - HELDOUT_TEMPLATES, "held-out should also test seen templates with new parameters"
    # the split is a pure function of (template, params)
    for t in default_tasks:
        assert t.split == split_of(t.metadata["template"], t.metadata["params"])


def test_difficulty_mix(default_tasks: list[Task]) -> None:
    for split, n in (("train", 240), ("heldout", 60)):
        c = Counter(t.difficulty for t in default_tasks if t.split == split)
        assert c == {1: round(n * 0.45), 2: round(n * 0.35), 3: n - round(n * 0.45) - round(n * 0.35)}, (split, c)
    # every template is used, level-3 tasks span at least two servers, and templates are varied
    used = Counter(t.metadata["template"] for t in default_tasks)
    assert set(used) == set(TEMPLATES)
    per_level = Counter(TEMPLATES[name].level for name in TEMPLATES)
    assert per_level[1] >= 12 and per_level[2] >= 8 and per_level[3] >= 6
    for t in default_tasks:
        assert t.difficulty == TEMPLATES[t.metadata["template"]].level
        if t.difficulty == 1:
            assert len(t.metadata["reference_solution"]) == 1 and len(t.servers) == 1
        if t.difficulty == 3:
            assert len(t.servers) >= 2


def test_task_metadata_contract(default_tasks: list[Task]) -> None:
    prompts_per_template: dict[str, set[str]] = {}
    for t in default_tasks:
        md = t.metadata
        ref = md["reference_solution"]
        assert ref and all(set(c) == {"server", "tool", "arguments"} for c in ref)
        assert [e["tool"] for e in md["expected_tools"]] == [f"{c['server']}:{c['tool']}" for c in ref]
        for e, c in zip(md["expected_tools"], ref):
            assert e["arguments"].items() <= c["arguments"].items()  # a subset of the real call
        assert md["hint_server"] == t.servers == list(dict.fromkeys(c["server"] for c in ref))
        assert (t.answer is not None) or t.expected_state, f"{t.id}: neither answer nor expected_state"
        if t.answer is not None:
            assert md["answer_match"] == "contains" and t.answer.strip()
        prompts_per_template.setdefault(md["template"], set()).add(t.prompt.split(" ")[0])
    # paraphrases: most templates show more than one phrasing (first word as a cheap proxy)
    assert sum(len(v) > 1 for v in prompts_per_template.values()) >= len(TEMPLATES) // 2
    kinds = Counter(t.metadata["kind"] for t in default_tasks)
    assert kinds["read"] >= 60 and kinds["write"] >= 60, kinds


def test_level1_prompts_are_short(default_tasks: list[Task]) -> None:
    lengths = [len(t.prompt.split()) for t in default_tasks if t.difficulty == 1]
    assert max(lengths) <= 20, max(lengths)


# --------------------------------------------------------------------------- rubric + re-verification


def test_template_rubric_for_every_task(default_tasks: list[Task]) -> None:
    provider = atlas.get_rubric_provider("template")
    for t in default_tasks:
        r = provider.rubric_for(t)
        ids = {c.id for c in r.criteria}
        assert {"TF", "TA", "TG"} <= set(r.categories())
        if t.answer is not None:
            assert "answer_correct" in ids
        for i in range(len(t.expected_state or [])):
            assert f"end_state_{i + 1}" in ids
        assert all(f"calls_{k}" in ids for k in range(1, len(t.metadata["expected_tools"]) + 1))
        # every criterion of a generated task is an exact check: no LM judge needed
        assert all(c.kind == "check" for c in r.criteria), [c.id for c in r.criteria if c.kind != "check"]


def _sample(tasks: list[Task], per_level: dict[int, int]) -> list[Task]:
    rng = random.Random(0)
    out: list[Task] = []
    for level, k in per_level.items():
        pool = [t for t in tasks if t.difficulty == level]
        out += rng.sample(pool, k)
    return out


def _episode(ts: Any, t: Task, episode: str) -> Trajectory:
    calls = []
    for turn, c in enumerate(t.metadata["reference_solution"]):
        r = ts.call(c["server"], c["tool"], c["arguments"], episode=episode)
        calls.append(ToolCallRecord(turn=turn, name=f"{c['server']}:{c['tool']}", arguments=c["arguments"],
                                    ok=r.ok, result=r.observation(), error=r.error))
    facts = ([t.answer] if t.answer is not None else []) + list(t.metadata.get("answer_contains", []))
    answer = f"The answer is {', '.join(facts)}." if facts else "Done."
    return Trajectory(task_id=t.id, task=t.model_dump(), tool_calls=calls, final_answer=answer,
                      metadata={"episode_id": episode})


def test_reference_solutions_reverify_through_toolspace(default_tasks: list[Task]) -> None:
    """~30 tasks across all levels: each reference solution, run through a real
    ``Toolspace.default`` in its own episode, earns full marks from the template rubric scored by
    the ``rules`` judge; and doing nothing does not reach the expected end state."""
    sample = _sample(default_tasks, {1: 12, 2: 10, 3: 8})
    servers = sorted({s for t in sample for s in t.servers} | {s for t in sample for st in t.expected_state or [] for s in [st["server"]]})
    provider, judge = atlas.get_rubric_provider("template"), atlas.get_judge("rules")
    with atlas.Toolspace.default(servers=servers, seed=0) as ts:
        for t in sample:
            # before: the end state does not hold (a judge reading an untouched episode gives < 1)
            for i, st in enumerate(t.expected_state or []):
                r = ts.call(st["server"], st["tool"], st["arguments"], episode=f"reverify-before-{t.id}")
                assert not (r.ok and state_holds(st["expect"], r.content, r.text)), f"{t.id}: state {i} holds before"
            traj = _episode(ts, t, f"reverify-{t.id}")
            assert all(c.ok for c in traj.tool_calls), [(c.name, c.error) for c in traj.tool_calls]
            rubric = provider.rubric_for(t)
            res = judge.score(rubric, traj, toolspace=ts)
            assert not res.unscored, res.unscored
            assert all(v == 1.0 for v in res.scores.values()), (t.id, res.scores)
            # a negative control: a wrong answer / an untouched episode fails the TF checks
            bad = Trajectory(task_id=t.id, task=t.model_dump(), tool_calls=[], final_answer="I don't know",
                             metadata={"episode_id": f"reverify-empty-{t.id}"})
            bad_scores = judge.score(rubric, bad, toolspace=ts).scores
            tf = [bad_scores[c.id] for c in rubric.criteria if c.category == "TF"]
            assert tf and max(tf) < 1.0, (t.id, bad_scores)


def test_solvability_filter_drops_bad_candidates() -> None:
    """A candidate whose reference call fails, whose answer is wrong, or whose end state holds
    before it runs is rejected by the verifier (run against the real in-process servers)."""
    import asyncio

    from atlas_plugins.envs.taskgen import Call, Draft, _Runner, verify_draft, state

    async def run() -> list[str | None]:
        async with _Runner(0) as r:
            good = Draft({}, "p", [Call("math", "multiply", {"numbers": [37, 12]})], answer="444")
            wrong = Draft({}, "p", [Call("math", "multiply", {"numbers": [37, 12]})], answer="445")
            failing = Draft({}, "p", [Call("shop", "add_to_cart", {"sku": "SKU-NOPE"})])
            already = Draft({}, "p", [Call("notes", "list_items", {})],
                            expected_state=[state("notes", "list_items", {}, {"total": 6})])
            return [await verify_draft(r, d, episode=f"filter-{i}") for i, d in enumerate((good, wrong, failing, already))]

    ok, wrong, failing, already = asyncio.run(run())
    assert ok is None
    assert wrong and "does not appear" in wrong
    assert failing and "failed" in failing and "SKU-NOPE" in failing
    assert already and "already holds" in already


# --------------------------------------------------------------------------- CLI


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_generate_json(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    r = CliRunner().invoke(_app(), ["tasks", "generate", "--seed", "3", "--n-train", "20", "--n-heldout", "6",
                                    "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data == {"train": 20, "heldout": 6, "dropped": data["dropped"], "out": str(out)}
    assert isinstance(data["dropped"], int)
    assert out.read_text(encoding="utf-8") == dumps_jsonl(generate(3, 20, 6).tasks)


def test_cli_show_and_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(_app(), ["tasks", "show", "--split", "heldout", "--limit", "5", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["split"] == "heldout" and data["total"] == 60 and len(data["tasks"]) == 5
    assert all(Task.model_validate(t).split == "heldout" for t in data["tasks"])
    r = CliRunner().invoke(_app(), ["tasks", "show"])
    assert r.exit_code == 0 and "task(s)" in r.output
    r = CliRunner().invoke(_app(), ["tasks", "show", "--split", "test"])
    assert r.exit_code != 0 and "--split" in r.output
    r = CliRunner().invoke(_app(), ["tasks", "show", "--file", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 1 and "not found" in r.output
    r = CliRunner().invoke(_app(), ["tasks", "generate", "--out", str(tmp_path), "--json"])
    assert r.exit_code != 0 and "directory" in r.output


def test_cli_show_prints_task_text_literally(tmp_path: Path) -> None:
    """A task file is user data: ``[/b]`` in a prompt was read as a rich closing tag (the command
    crashed with MarkupError) and escape sequences reached the terminal."""
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"id": "x[/i]", "prompt": "sum [/b] of [red]a[/red] \x1b]0;t\x07", "answer": "3"}) + "\n")
    r = CliRunner().invoke(_app(), ["tasks", "show", "--file", str(f)], terminal_width=300)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "sum [/b] of [red]a[/red]" in r.stdout and "x[/i]" in r.stdout, r.stdout
    assert "\x1b" not in r.stdout and "\\x1b]0;t\\x07" in r.stdout, ascii(r.stdout)


# --------------------------------------------------------------------------- another world (--env-seed)
def test_tasks_of_another_world_are_played_in_their_world(tmp_path: Path) -> None:
    """Tasks generated with ``--env-seed 3`` carry that world seed; ``atlas eval --tasks`` and the
    trainer start the embedded servers in that world, where every reference solution's tool
    results hold the expected answer. In world 0 (what they used to start) some do not."""
    from atlas_plugins.evaluation import bench
    from atlas_plugins.evaluation.suites import bfcl_multi_turn, embedded
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer

    tasks = [t for t in generate(5, 24, 6, env_seed=3).tasks if t.difficulty == 1 and t.answer is not None]
    assert tasks and taskgen.world_seed(tasks) == 3

    def answerable(ts: Any) -> list[bool]:
        out = []
        with ts:
            for t in tasks:
                texts = [ts.call(c["server"], c["tool"], c["arguments"], episode=f"world-{t.id}").text or ""
                         for c in t.metadata["reference_solution"]]
                out.append(any(str(t.answer).lower() in x.lower() for x in texts))
        return out

    ts = bench._suite_toolspace(embedded, tasks)
    assert ts.config.seed == 3
    assert all(answerable(ts))
    assert not all(answerable(atlas.Toolspace.default(seed=0))), "no answer depends on the world: a weak test set"
    with pytest.raises(ValueError, match="world seed 3.*one fixed world"):
        bench._suite_toolspace(bfcl_multi_turn, tasks)
    # Mixed worlds cannot share one toolspace.
    mixed = [tasks[0], tasks[1].model_copy(update={"metadata": {**tasks[1].metadata, "env_seed": 0}})]
    with pytest.raises(ValueError, match="different world seeds: 0 .*, 3 "):
        taskgen.world_seed(mixed)
    # The trainer: an explicit other env_seed is a setup error before any model loads.
    cfg = AtlasGRPOConfig.cpu_demo(str(tmp_path / "run"), env_seed=5)
    with pytest.raises(atlas.ConfigError, match="env_seed is 5.*world seed 3"):
        AtlasTrainer(cfg, tasks=tasks)
    with pytest.raises(atlas.ConfigError, match="world seed 0.*world seed 3"):
        AtlasTrainer(AtlasGRPOConfig.cpu_demo(str(tmp_path / "run")), toolspace=atlas.Toolspace.default(seed=0), tasks=tasks)


def test_unseen_train_tasks_are_new_parameters_and_never_held_out(default_tasks: list[Task]) -> None:
    """GRPO's tasks from other generator seeds (the demo's ``grpo_task_seeds``): training split
    only, none of the default set (by id or prompt), none sharing its (template, parameters) or
    prompt with a held-out task, no duplicate ids or prompts, a repeated seed adds nothing."""
    heldout = [t for t in default_tasks if t.split == "heldout"]
    said: list[str] = []
    got = taskgen.unseen_train_tasks([3, 3], avoid=default_tasks, max_difficulty=1, say=said.append)
    assert len(said) == 1 and "seed 3" in said[0]
    assert len(got) > 40, len(got)  # ~90 new level-1 training tasks per seed
    assert len({t.id for t in got}) == len(got) and len({t.prompt for t in got}) == len(got)
    assert all(t.split == "train" and t.difficulty == 1 for t in got)
    assert not {t.id for t in got} & {t.id for t in default_tasks}
    assert not {t.prompt for t in got} & {t.prompt for t in default_tasks}
    key = lambda t: (t.metadata["template"], json.dumps(t.metadata["params"], sort_keys=True))  # noqa: E731
    assert not {key(t) for t in got} & {key(t) for t in heldout}
    assert not {t.metadata["template"] for t in got} & set(taskgen.HELDOUT_TEMPLATES)
    assert len({t.metadata["template"] for t in got}) >= 10  # the training templates, not a few of them
    # what it avoids is avoided: the first half of its own answer, given back, is left out
    assert not {t.id for t in got[:20]} & {t.id for t in taskgen.unseen_train_tasks([3], avoid=got[:20], max_difficulty=1)}
    with pytest.raises(ValueError, match="at least one generator seed"):
        taskgen.unseen_train_tasks([])
