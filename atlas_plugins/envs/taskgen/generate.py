"""Generation: sampling drafts from the templates level by level, the fixed train / held-out
split, per-level quotas, verification, and the resulting :class:`GenerationReport`."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from atlas_plugins.envs._fixtures import stable_hash
from atlas_plugins.envs.taskgen.language import HELDOUT_TEMPLATES, TEMPLATES, Draft, Template, World
from atlas_plugins.envs.taskgen.verify import _Runner, verify_draft
from atlas_plugins.types import Task

#: Share of each split per difficulty level.
LEVEL_SHARES: dict[int, float] = {1: 0.45, 2: 0.35, 3: 0.20}
#: Share (percent) of the tasks of seen templates that go to held-out by parameter hash.
HELDOUT_HASH_PERCENT = 15


class GenerationReport(BaseModel):
    """What :func:`agenerate` produced: the tasks plus accounting."""

    tasks: list[Task] = Field(default_factory=list)
    #: candidates whose reference solution failed verification (never emitted)
    dropped: int = 0
    drop_reasons: dict[str, int] = Field(default_factory=dict)
    #: candidates skipped before verification (duplicate parameters, or their split/level quota was full)
    skipped: int = 0
    seed: int = 0
    env_seed: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for t in self.tasks:
            out.setdefault(str(t.split), {}).setdefault(str(t.difficulty), 0)
            out[str(t.split)][str(t.difficulty)] += 1
        return out


def split_of(template_name: str, params: dict[str, Any]) -> str:
    """The fixed split of a (template, parameters) pair (see the module docstring)."""
    if template_name in HELDOUT_TEMPLATES:
        return "heldout"
    return "heldout" if stable_hash(template_name, _canon(params)) % 100 < HELDOUT_HASH_PERCENT else "train"


def _canon(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _quotas(n: int) -> dict[int, int]:
    q1, q2 = round(n * LEVEL_SHARES[1]), round(n * LEVEL_SHARES[2])
    return {1: q1, 2: q2, 3: max(0, n - q1 - q2)}


def _task(t: Template, d: Draft, split: str, env_seed: int) -> Task:
    tid = f"{t.name}-{stable_hash(t.name, _canon(d.params)):016x}"[: len(t.name) + 11]
    servers = list(dict.fromkeys(c.server for c in d.calls))
    md: dict[str, Any] = {
        "template": t.name,
        "params": d.params,
        "hint_server": servers,
        "expected_tools": [c.expected() for c in d.calls],
        "reference_solution": [c.ref() for c in d.calls],
        "env_seed": env_seed,
        "kind": "read" if d.answer is not None else "write",
    }
    if d.answer is not None:
        md["answer_match"] = "contains"
    if d.answer_contains:
        md["answer_contains"] = list(d.answer_contains)
    return Task(
        id=tid,
        prompt=d.prompt,
        servers=servers,
        metadata=md,
        answer=d.answer,
        expected_state=d.expected_state or None,
        split=split,  # type: ignore[arg-type]  # split_of() returns "train" or "heldout"
        difficulty=t.level,
    )


async def agenerate(
    seed: int = 0, n_train: int = 240, n_heldout: int = 60, *, env_seed: int = 0, max_attempts_per_task: int = 60
) -> GenerationReport:
    """Generate and verify tasks (async; see :func:`generate_tasks`)."""
    if n_train < 0 or n_heldout < 0:
        raise ValueError(f"n_train and n_heldout must be >= 0, got {n_train}, {n_heldout}")
    rng = random.Random(f"atlas-taskgen:{seed}")
    report = GenerationReport(seed=seed, env_seed=env_seed)
    seen: set[tuple[str, str]] = set()
    async with _Runner(env_seed) as runner:
        world = World(runner)
        for level in (1, 2, 3):
            need = {"train": _quotas(n_train)[level], "heldout": _quotas(n_heldout)[level]}
            temps = sorted((t for t in TEMPLATES.values() if t.level == level), key=lambda t: t.name)
            rng.shuffle(temps)
            budget = max_attempts_per_task * (need["train"] + need["heldout"])
            i = 0
            while (need["train"] or need["heldout"]) and i < budget:
                t = temps[i % len(temps)]
                i += 1
                draft = await t.fn(rng, world)
                if draft is None:
                    report.skipped += 1
                    continue
                key = (t.name, _canon(draft.params))
                split = split_of(t.name, draft.params)
                if key in seen or need[split] == 0:
                    report.skipped += 1
                    continue
                seen.add(key)
                task = _task(t, draft, split, env_seed)
                reason = await verify_draft(runner, draft, episode=f"taskgen-{env_seed}-{task.id}")
                if reason is not None:
                    report.dropped += 1
                    kind = f"{t.name}: {reason.split(': ')[0]}"
                    report.drop_reasons[kind] = report.drop_reasons.get(kind, 0) + 1
                    continue
                report.tasks.append(task)
                need[split] -= 1
            if need["train"] or need["heldout"]:
                raise RuntimeError(
                    f"could not fill level {level}: still need {need} after {budget} candidates "
                    f"(templates too few or too narrow for n_train={n_train}, n_heldout={n_heldout})"
                )
    order = {"train": 0, "heldout": 1}
    report.tasks.sort(key=lambda x: (order[str(x.split)], x.difficulty))  # stable: keeps sampling order
    return report


def generate(seed: int = 0, n_train: int = 240, n_heldout: int = 60, *, env_seed: int = 0) -> GenerationReport:
    """Synchronous :func:`agenerate` (do not call from inside a running event loop)."""
    return asyncio.run(agenerate(seed, n_train, n_heldout, env_seed=env_seed))


def generate_tasks(seed: int = 0, n_train: int = 240, n_heldout: int = 60, *, env_seed: int = 0) -> list[Task]:
    """``n_train`` + ``n_heldout`` verified tasks; deterministic in (seed, env_seed).

    ``seed`` drives sampling and paraphrases; ``env_seed`` is the world the servers are built
    with (run agents with ``Toolspace.default(seed=env_seed)``; the default toolspace uses 0).
    """
    return generate(seed, n_train, n_heldout, env_seed=env_seed).tasks


def unseen_train_tasks(
    seeds: Sequence[int],
    *,
    avoid: Iterable[Task] = (),
    max_difficulty: int | None = None,
    env_seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> list[Task]:
    """Training-split tasks of other generator seeds, none of them one of ``avoid`` (same id,
    i.e. the same template and parameters, or the same prompt).

    Made for training on parameters a model has not been fitted to (GRPO after a warm start on
    the default training tasks: pass the default set, both splits, as ``avoid``). A held-out task
    cannot be among them: the split is a fixed function of (template, parameters), the same for
    every seed. Prompts are checked as well, because two tasks with different parameters can read
    alike (two world items with the same title), and the trainer needs one task per prompt.
    Ordered by seed, then generation order; no two tasks share an id or a prompt.
    """
    if not seeds:
        raise ValueError("unseen_train_tasks needs at least one generator seed")
    avoid = list(avoid)
    taken_ids, taken_prompts = {t.id for t in avoid}, {t.prompt for t in avoid}
    out: list[Task] = []
    for seed in dict.fromkeys(seeds):  # a repeated seed adds nothing
        if say is not None:
            say(f"tasks: generating seed {seed} (each reference solution verified) …")
        for t in generate_tasks(seed, env_seed=env_seed):
            if t.split != "train" or t.id in taken_ids or t.prompt in taken_prompts:
                continue
            if max_difficulty is not None and t.difficulty > max_difficulty:
                continue
            taken_ids.add(t.id)
            taken_prompts.add(t.prompt)
            out.append(t)
    return out
