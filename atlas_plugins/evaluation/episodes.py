"""Playing and scoring episodes of the native agent under one design (evaluation's core).

:func:`play_design` plays every task once (greedy unless overridden), in batches through the
policy; :func:`evaluate` also scores each trajectory with a
:class:`~atlas_plugins.rewards.scorer.Scorer` and summarises them (:class:`EvalSummary`).
Benchmarks (:mod:`atlas_plugins.evaluation.bench`), demos and training reuse these; nothing
here imports training.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from atlas_plugins.evaluation.designs import design_settings
from atlas_plugins.rewards.rubric import CATEGORIES, is_success
from atlas_plugins.rewards.shaping import repeated_calls
from atlas_plugins.types import Task, Trajectory

if TYPE_CHECKING:
    from atlas_plugins.policy.base import ChatPolicy, Policy
    from atlas_plugins.rewards.scorer import Scorer
    from atlas_plugins.toolspace import Toolspace


def mean(xs: Sequence[float]) -> float:
    return float(statistics.fmean(xs)) if xs else 0.0


META_CALLS = frozenset({"fetch_tools", "get_selected_tools", "search_tools"})


def behaviour(traj: Trajectory) -> dict[str, float]:
    """What context control and RL are supposed to change, for one episode:

    * ``schemas_loaded``: distinct tool schemas the episode loaded (meta-calls, not eager's up-front set);
    * ``loaded_unused``: loaded schemas of tools the episode never called;
    * ``meta_calls``: calls of loading meta-tools;
    * ``repeated_calls``: calls identical (same name and arguments) to an earlier call;
    * ``repeats``: 1.0 when the episode repeated any call, else 0.0;
    * ``parse_failures``: turns the agent could not parse.
    """
    loaded: set[str] = set()
    for event in traj.loaded_tools_log:
        if event.get("event") == "load":
            loaded.update(event.get("tools") or [])
    called = {c.name for c in traj.tool_calls if c.name not in META_CALLS}
    repeated = repeated_calls(traj)  # what the training reward's repeat penalty counts, too
    return {
        "schemas_loaded": float(len(loaded)),
        "loaded_unused": float(len(loaded - called)),
        "meta_calls": float(sum(c.name in META_CALLS for c in traj.tool_calls)),
        "repeated_calls": float(repeated),
        "repeats": float(repeated > 0),
        "parse_failures": float(traj.parse_failures),
    }


class EvalSummary(BaseModel):
    design: str
    tasks: int
    reward: float
    success: float
    context_tokens: float
    initial_context_tokens: float
    turns: float
    tool_calls: float
    tool_errors: float
    parse_failures: float
    by_category: dict[str, float] = Field(default_factory=dict)
    #: Means of :func:`behaviour` over the episodes (``repeats`` is the fraction of episodes
    #: that repeated an identical call).
    behaviour: dict[str, float] = Field(default_factory=dict)
    wall_s: float = 0.0


def summarize(design: str, trajs: Sequence[Trajectory], wall_s: float = 0.0) -> EvalSummary:
    rows = [behaviour(t) for t in trajs]
    return EvalSummary(
        design=design,
        tasks=len(trajs),
        reward=mean([t.reward or 0.0 for t in trajs]),
        success=mean([float(is_success(t)) for t in trajs]),
        context_tokens=mean([t.context_tokens for t in trajs]),
        initial_context_tokens=mean([t.initial_context_tokens for t in trajs]),
        turns=mean([t.turns for t in trajs]),
        tool_calls=mean([len(t.tool_calls) for t in trajs]),
        tool_errors=mean([t.tool_errors for t in trajs]),
        parse_failures=mean([t.parse_failures for t in trajs]),
        by_category={c: mean([t.reward_by_category.get(c, 0.0) for t in trajs]) for c in CATEGORIES},
        behaviour={k: mean([b[k] for b in rows]) for k in (rows[0] if rows else {})},
        wall_s=wall_s,
    )


def play_design(
    policy: Policy | ChatPolicy,
    toolspace: Toolspace,
    tasks: Sequence[Task],
    design: str,
    *,
    seed: int | None = 0,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **agent_overrides: Any,
) -> list[Trajectory]:
    """Play each task once under ``design`` (greedy unless ``temperature`` is overridden), in
    batches of ``batch_size`` episodes (None: all at once); each trajectory is tagged with it."""
    from atlas_plugins.agent.loop import Agent, AgentConfig

    settings = {"temperature": 0.0, **design_settings(design), **agent_overrides}
    agent = Agent(policy, toolspace, AgentConfig(**settings))
    tasks = list(tasks)
    step = batch_size or max(1, len(tasks))
    trajs: list[Trajectory] = []
    for i in range(0, len(tasks), step):
        trajs += agent.run(tasks[i : i + step], seed=seed)
        if progress:
            progress(len(trajs), len(tasks))
    for t in trajs:
        t.metadata["design"] = design
    return trajs


def evaluate(
    policy: Policy,
    toolspace: Toolspace,
    tasks: Sequence[Task],
    design: str,
    scorer: Scorer,
    *,
    seed: int | None = 0,
    **agent_overrides: Any,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Play every task once under ``design`` (greedy unless overridden) and score it."""
    t0 = time.perf_counter()
    trajs = play_design(policy, toolspace, tasks, design, seed=seed, **agent_overrides)
    for t in trajs:
        scorer.score(t)
    return summarize(design, trajs, time.perf_counter() - t0), trajs
