"""The ``gated`` aggregator: hard criteria must pass, else the reward is 0.

``hard`` lists criterion ids (or names); a hard criterion fails when its score is below
``threshold`` (default 1.0, i.e. fully satisfied). An *unscored* hard criterion does not open
the gate either way: it is reported in ``details["gate_unscored"]`` and the reward falls back
to the base aggregation (so a judge failure never silently zeroes a rollout). Otherwise the
reward is the ``base`` aggregator's (default ``atlas``).
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.aggregators.atlas import AtlasAggregator, usable
from atlas_plugins.rewards.base import RewardBreakdown
from atlas_plugins.rewards.rubric import Rubric


class GatedAggregator:
    name = "gated"

    def __init__(
        self, hard: list[str] | None = None, threshold: float = 1.0, base: Any = None, **base_options: Any
    ) -> None:
        self.hard = list(hard or [])
        self.threshold = threshold
        if base is None or base == "atlas":
            base = AtlasAggregator(**base_options)
        elif isinstance(base, str):
            from atlas_plugins.plugins import get_aggregator

            base = get_aggregator(base, **base_options)
        self.base = base

    def aggregate(self, rubric: Rubric, scores: dict[str, float]) -> RewardBreakdown:
        out = self.base.aggregate(rubric, scores)
        known = {c.id: c for c in rubric.criteria}
        by_name = {c.name: c for c in rubric.criteria}
        failed, unscored, missing = [], [], []
        for h in self.hard:
            c = known.get(h) or by_name.get(h)
            if c is None:
                missing.append(h)
            elif not usable(scores, c.id):
                unscored.append(c.id)
            elif float(scores[c.id]) < self.threshold:
                failed.append(c.id)
        details = {**out.details, "gate_failed": failed, "gate_unscored": unscored}
        if missing:
            details["gate_missing"] = missing  # hard criteria this rubric does not have
        value = 0.0 if failed else out.value
        return out.model_copy(update={"value": value, "details": details})


@hookimpl
def atlas_register_aggregators(register: Register) -> None:
    register("gated", GatedAggregator)
