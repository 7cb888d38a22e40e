"""The ``group_relative`` aggregator: rubric rewards comparable within a GRPO group.

With this aggregator, :func:`atlas_plugins.rubric_reward` hands all rollouts of one task to the
judge at once (``judge.score_group``; LM judges put them in one prompt, RULER-style, so they
are graded against each other on the same criteria), then calls :meth:`aggregate_group`.

Each rollout first gets the ``base`` aggregation (default ``atlas``). ``normalize`` then maps
the group's rewards: ``"none"`` keeps them, ``"minmax"`` (default) rescales to [0, 1] within
the group (all equal -> 0.5 each), ``"rank"`` uses the rank fraction (ties share their mean
rank). Note that TRL's default group-wise advantage ``(r - mean) / std`` is invariant to the
``minmax`` rescaling; what this aggregator adds under that setting is the joint scoring. It
matters for ``scale_rewards="batch"``/``"none"`` and for logged rewards.

A single ``aggregate`` call (a group of one) returns the base aggregation.
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.aggregators.atlas import AtlasAggregator
from atlas_plugins.rewards.base import RewardBreakdown
from atlas_plugins.rewards.rubric import Rubric


class GroupRelativeAggregator:
    name = "group_relative"
    #: Tells rubric_reward to score each task's rollouts together.
    group_aware = True

    def __init__(self, normalize: str = "minmax", base: Any = None, **base_options: Any) -> None:
        if normalize not in ("none", "minmax", "rank"):
            raise ValueError(f"normalize must be 'none', 'minmax' or 'rank', got {normalize!r}")
        self.normalize = normalize
        if base is None or base == "atlas":
            base = AtlasAggregator(**base_options)
        elif isinstance(base, str):
            from atlas_plugins.plugins import get_aggregator

            base = get_aggregator(base, **base_options)
        self.base = base

    def aggregate(self, rubric: Rubric, scores: dict[str, float]) -> RewardBreakdown:
        return self.base.aggregate(rubric, scores)

    def aggregate_group(self, rubric: Rubric, group_scores: list[dict[str, float]]) -> list[RewardBreakdown]:
        outs = [self.base.aggregate(rubric, s) for s in group_scores]
        idx = [i for i, o in enumerate(outs) if not o.empty]
        vals = [outs[i].value for i in idx]
        if not vals or self.normalize == "none":
            return outs
        if self.normalize == "minmax":
            lo, hi = min(vals), max(vals)
            new = [0.5 if hi == lo else (v - lo) / (hi - lo) for v in vals]
        else:
            order = sorted(vals)
            n = len(vals)
            new = []
            for v in vals:
                first = order.index(v)
                last = n - 1 - order[::-1].index(v)
                new.append(0.5 if n == 1 else ((first + last) / 2) / (n - 1))
        for i, v in zip(idx, new, strict=True):
            outs[i] = outs[i].model_copy(
                update={"value": v, "details": {**outs[i].details, "raw_value": outs[i].value}}
            )
        return outs


@hookimpl
def atlas_register_aggregators(register: Register) -> None:
    register("group_relative", GroupRelativeAggregator)
