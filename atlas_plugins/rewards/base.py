"""Interfaces of the reward extension points: rubric providers, judges, aggregators.

The data flow of one reward::

    rubric = provider.rubric_for(task)                       # fixed per task (cached)
    result = judge.score(rubric, trajectory, toolspace=ts)   # per-criterion scores in [0, 1]
    reward = aggregator.aggregate(rubric, result.scores)     # .value, .by_category

Unscored criteria (a judge that cannot score them, a parse failure after retries) are absent
from ``scores``; aggregators leave them out of every denominator and report them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from atlas_plugins.rewards.rubric import Rubric
from atlas_plugins.types import Task, Trajectory

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace


class JudgeResult(BaseModel):
    """Per-criterion scores for one trajectory."""

    #: criterion id -> score in [0, 1]. Unscored criteria are absent (never a silent 0).
    scores: dict[str, float] = Field(default_factory=dict)
    #: criterion ids the judge did not score, with the reason.
    unscored: dict[str, str] = Field(default_factory=dict)
    #: human-readable failures (also appended to ``trajectory.judge_failures``).
    failures: list[str] = Field(default_factory=list)
    #: raw judge outputs, for debugging.
    raw: list[str] = Field(default_factory=list)

    def merge(self, other: JudgeResult) -> JudgeResult:
        scores = {**self.scores, **other.scores}
        unscored = {k: v for k, v in {**self.unscored, **other.unscored}.items() if k not in scores}
        return JudgeResult(
            scores=scores, unscored=unscored, failures=self.failures + other.failures, raw=self.raw + other.raw
        )


class RewardBreakdown(BaseModel):
    """An aggregated reward."""

    value: float
    #: category -> score in [0, 1] (only categories with at least one scored criterion).
    by_category: dict[str, float] = Field(default_factory=dict)
    #: criterion ids that had no score (excluded from the denominators).
    unscored: list[str] = Field(default_factory=list)
    #: True when no criterion at all was scored (``value`` is then 0.0 and means nothing).
    empty: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class RubricProvider(Protocol):
    """Builds the fixed rubric of a task."""

    name: str

    def rubric_for(self, task: Task) -> Rubric: ...


@runtime_checkable
class Judge(Protocol):
    """Scores every criterion of a rubric in [0, 1] from a trajectory."""

    name: str

    def score(self, rubric: Rubric, trajectory: Trajectory, *, toolspace: Toolspace | None = None) -> JudgeResult: ...

    def score_group(
        self, rubric: Rubric, trajectories: list[Trajectory], *, toolspace: Toolspace | None = None
    ) -> list[JudgeResult]: ...


@runtime_checkable
class RewardAggregator(Protocol):
    """Turns per-criterion scores into one reward and per-category scores."""

    name: str

    def aggregate(self, rubric: Rubric, scores: dict[str, float]) -> RewardBreakdown: ...


@runtime_checkable
class GroupAggregator(RewardAggregator, Protocol):
    """An aggregator with ``group_aware = True``: it scores a task's group of trajectories
    together (``aggregate_group``, one breakdown per trajectory, in order)."""

    group_aware: bool

    def aggregate_group(self, rubric: Rubric, group_scores: list[dict[str, float]]) -> list[RewardBreakdown]: ...


def coerce_task(task: object) -> Task:
    """A :class:`Task` from a Task, a dict or a JSON string (clear error otherwise)."""
    import json

    from pydantic import ValidationError

    from atlas_plugins.errors import ConfigError

    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        try:
            task = json.loads(task)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"task: expected a Task, a dict or a JSON object string ({exc})") from None
    if not isinstance(task, dict):
        raise ConfigError(f"task: expected a Task, a dict or a JSON object string, got {type(task).__name__}")
    if isinstance(task.get("rubric"), list):  # a bare list of criteria is a rubric too
        task = {**task, "rubric": {"criteria": task["rubric"]}}
    try:
        return Task.model_validate(task)
    except ValidationError as exc:
        from atlas_plugins.rewards.rubric import format_validation_error

        raise ConfigError("task: invalid task\n" + format_validation_error(exc)) from None


def record_result(trajectory: Trajectory, result: JudgeResult) -> None:
    """Write a judge result onto the trajectory (scores, failures)."""
    trajectory.scores.update(result.scores)
    for f in result.failures:
        if f not in trajectory.judge_failures:
            trajectory.judge_failures.append(f)
