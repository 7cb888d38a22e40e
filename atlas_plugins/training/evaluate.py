"""Scoring and evaluation of the native agent under one design.

A *design* is the paper's agent variant: ``eager``, ``isl``, ``itl``, ``search`` (loading policy
only) or ``itl+ptc`` (ITL plus ``code_interpreter`` in the local sandbox).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

from pydantic import BaseModel, Field

from atlas_plugins.types import Task, Trajectory

DESIGNS = ("eager", "isl", "itl", "search", "itl+ptc")
CATEGORIES = ("TF", "TA", "TG", "PA")


def design_settings(design: str) -> dict[str, Any]:
    """Agent settings of a design name (``itl+ptc`` = ITL + the local code executor)."""
    loading, _, extra = design.partition("+")
    if loading not in ("eager", "isl", "itl", "search") or extra not in ("", "ptc"):
        raise ValueError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")
    return {"loading": loading, "executor": "local" if extra == "ptc" else None}


class Scorer:
    """Rubric provider -> judge -> aggregator for single trajectories (evaluation, demos)."""

    def __init__(self, provider: Any = "template", judge: Any = "rules", aggregator: Any = "atlas", toolspace: Any = None) -> None:
        from atlas_plugins.plugins import get_aggregator, get_judge, get_rubric_provider

        self.provider = get_rubric_provider(provider) if isinstance(provider, str) else provider
        self.judge = get_judge(judge) if isinstance(judge, str) else judge
        self.aggregator = get_aggregator(aggregator) if isinstance(aggregator, str) else aggregator
        self.toolspace = toolspace
        self._rubrics: dict[str, Any] = {}

    def rubric(self, task: Task) -> Any:
        if task.id not in self._rubrics:
            self._rubrics[task.id] = self.provider.rubric_for(task)
        return self._rubrics[task.id]

    def score(self, traj: Trajectory) -> Trajectory:
        task = Task.model_validate(traj.task)
        rubric = self.rubric(task)
        result = self.judge.score(rubric, traj, toolspace=self.toolspace)
        out = self.aggregator.aggregate(rubric, result.scores)
        traj.scores = dict(result.scores)
        for f in result.failures:
            if f not in traj.judge_failures:
                traj.judge_failures.append(f)
        traj.reward = None if out.empty else out.value
        traj.reward_by_category = dict(out.by_category)
        return traj


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
    wall_s: float = 0.0


def summarize(design: str, trajs: Sequence[Trajectory], wall_s: float = 0.0) -> EvalSummary:
    from atlas_plugins.training.trainer import is_success

    def mean(xs: list[float]) -> float:
        return float(statistics.fmean(xs)) if xs else 0.0

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
        wall_s=wall_s,
    )


def evaluate(
    policy: Any,
    toolspace: Any,
    tasks: Sequence[Task],
    design: str,
    scorer: Scorer,
    *,
    seed: int | None = 0,
    **agent_overrides: Any,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Play every task once under ``design`` (greedy unless overridden) and score it."""
    from atlas_plugins.agent.loop import Agent, AgentConfig

    settings = {"temperature": 0.0, **design_settings(design), **agent_overrides}
    agent = Agent(policy, toolspace, AgentConfig(**settings))
    t0 = time.perf_counter()
    trajs = agent.run(list(tasks), seed=seed)
    for t in trajs:
        scorer.score(t)
        t.metadata["design"] = design
    return summarize(design, trajs, time.perf_counter() - t0), trajs
