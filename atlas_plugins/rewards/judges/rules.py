"""The ``rules`` judge: scores ``check`` criteria exactly; judge criteria stay unscored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.base import JudgeResult, record_result
from atlas_plugins.rewards.checks import evaluate_check
from atlas_plugins.rewards.rubric import Rubric
from atlas_plugins.types import Trajectory

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace


class RulesJudge:
    """Programmatic judge. ``toolspace`` (here or per call) is needed for ``state`` checks.

    Natural-language (``judge``) criteria are reported in ``unscored`` — never scored 0 — so
    aggregators leave them out of the denominators.
    """

    name = "rules"

    def __init__(self, toolspace: Toolspace | None = None) -> None:
        self.toolspace = toolspace

    def score(
        self, rubric: Rubric, trajectory: Trajectory, *, toolspace: Toolspace | None = None, record: bool = True
    ) -> JudgeResult:
        ts = toolspace if toolspace is not None else self.toolspace
        result = JudgeResult()
        for c in rubric.criteria:
            if c.kind != "check" or c.check is None:
                result.unscored[c.id] = "natural-language criterion (rules judge scores checks only)"
                continue
            score, note = evaluate_check(c.check, trajectory, toolspace=ts)
            if score is None:
                result.unscored[c.id] = note
                result.failures.append(f"rules: {c.id}: {note}")
            else:
                result.scores[c.id] = float(score)
        if record:
            record_result(trajectory, result)
        return result

    def score_group(
        self, rubric: Rubric, trajectories: list[Trajectory], *, toolspace: Toolspace | None = None
    ) -> list[JudgeResult]:
        # Exact checks need no cross-trajectory calibration.
        return [self.score(rubric, t, toolspace=toolspace) for t in trajectories]


@hookimpl
def atlas_register_judges(register: Register) -> None:
    register("rules", RulesJudge)
