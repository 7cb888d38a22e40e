"""The ``weighted_mean`` aggregator: ``Σ w d / Σ w`` over all scored criteria, ignoring
categories (per-category scores are still reported)."""

from __future__ import annotations

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.aggregators.atlas import category_scores, usable
from atlas_plugins.rewards.base import RewardBreakdown
from atlas_plugins.rewards.rubric import Rubric


class WeightedMeanAggregator:
    name = "weighted_mean"

    def aggregate(self, rubric: Rubric, scores: dict[str, float]) -> RewardBreakdown:
        by_cat, unscored = category_scores(rubric, scores)
        scored = [c for c in rubric.criteria if usable(scores, c.id)]
        den = sum(c.weight for c in scored)
        if not den:
            return RewardBreakdown(value=0.0, by_category=by_cat, unscored=unscored, empty=True)
        value = sum(c.weight * min(1.0, max(0.0, float(scores[c.id]))) for c in scored) / den
        return RewardBreakdown(value=value, by_category=by_cat, unscored=unscored)


@hookimpl
def atlas_register_aggregators(register: Register) -> None:
    register("weighted_mean", WeightedMeanAggregator)
