"""The ``atlas`` aggregator: the paper's formula.

Per category R: ``S_R = Σ_i w_i d_i / Σ_i w_i`` over the *scored* criteria of R; the reward is
``Σ_R α_R S_R / Σ_R α_R`` over the categories present (renormalising α, so a rubric without,
say, PA criteria still spans [0, 1]). Unscored criteria are left out of the denominators and
listed in ``unscored``.

The paper fixes α "favouring task fulfillment" but does not publish the values; the default
here, TF 0.4 / TA 0.3 / TG 0.2 / PA 0.1, is our choice. A custom category gets
``default_alpha`` (0.1) unless ``alpha`` names it.
"""

from __future__ import annotations

import math
from typing import Any

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.base import RewardBreakdown
from atlas_plugins.rewards.rubric import Rubric

DEFAULT_ALPHA: dict[str, float] = {"TF": 0.4, "TA": 0.3, "TG": 0.2, "PA": 0.1}


def usable(scores: dict[str, Any], cid: str) -> bool:
    v = scores.get(cid)
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def category_scores(rubric: Rubric, scores: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """``(by_category, unscored)`` with ``S_R = Σ w d / Σ w`` over scored criteria."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    unscored: list[str] = []
    for c in rubric.criteria:
        if not usable(scores, c.id):
            unscored.append(c.id)
            continue
        d = min(1.0, max(0.0, float(scores[c.id])))
        num[c.category] = num.get(c.category, 0.0) + c.weight * d
        den[c.category] = den.get(c.category, 0.0) + c.weight
    order = rubric.categories()
    return {cat: num[cat] / den[cat] for cat in order if den.get(cat)}, unscored


class AtlasAggregator:
    name = "atlas"

    def __init__(self, alpha: dict[str, float] | None = None, default_alpha: float = 0.1) -> None:
        self.alpha = {**DEFAULT_ALPHA, **(alpha or {})}
        bad = {k: v for k, v in self.alpha.items() if not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise ValueError(f"alpha values must be non-negative numbers, got {bad}")
        self.default_alpha = default_alpha

    def aggregate(self, rubric: Rubric, scores: dict[str, float]) -> RewardBreakdown:
        by_cat, unscored = category_scores(rubric, scores)
        weights = {cat: float(self.alpha.get(cat, self.default_alpha)) for cat in by_cat}
        total = sum(weights.values())
        if not by_cat or total <= 0:
            return RewardBreakdown(value=0.0, by_category=by_cat, unscored=unscored, empty=True)
        value = sum(weights[c] * s for c, s in by_cat.items()) / total
        return RewardBreakdown(value=value, by_category=by_cat, unscored=unscored, details={"alpha": weights})


@hookimpl
def atlas_register_aggregators(register: Register) -> None:
    register("atlas", AtlasAggregator)
