"""What each GRPO step trains on: a curriculum by measured reward spread, and dynamic sampling.

GRPO learns only from groups whose rewards differ: a group that all fails (or all succeeds) has
zero advantage everywhere and moves nothing. Two mechanisms aim the step's budget at groups that
carry signal:

* :class:`Curriculum` picks the (task, design) items of a step. It keeps, per item, how spread
  out its group rewards were (the within-group standard deviation, smoothed) and how often it
  succeeded, and samples items in proportion to their expected spread. Items never tried get an
  optimistic prior, so every item is tried; items whose groups keep scoring alike fade out;
  tasks the model now always solves fade out too. Sampling is seeded and the state is saved
  next to the checkpoints (``curriculum.json``), so a resumed run continues the same way.
* Dynamic sampling (DAPO, arXiv 2503.14476): after the rollout is scored, groups whose rewards
  are all equal are replaced by fresh groups of other items, for up to ``rounds`` rounds; what
  is still flat then stays in the batch (zero advantage, and the trainer skips its backward).
  The fraction dropped per step is logged (``atlas/dynamic/*``).

Not covered: difficulty levels beyond what the task set provides (the items are the given
tasks × designs), and the cost of the extra rollouts, which the step pays.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from atlas_plugins.types import Task


class ItemStats(BaseModel):
    groups: int = 0
    spread: float = 0.5  # smoothed within-group reward std (optimistic prior for untried items)
    success: float = 0.0  # smoothed group success rate
    flat: int = 0  # groups whose rewards were all equal


class Curriculum:
    """Chooses ``(task, design)`` items for GRPO groups by expected reward spread (module docs).

    Args:
        tasks: training tasks; designs: the designs they are trained under (each task × design
            is one item); seed: sampling seed; smoothing: weight of the newest group in the
            running statistics; floor: the least priority an item keeps (so nothing is starved).
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        designs: Sequence[str],
        *,
        seed: int | None = 0,
        smoothing: float = 0.5,
        floor: float = 0.02,
    ) -> None:
        if not tasks or not designs:
            raise ValueError("a curriculum needs at least one task and one design")
        self.items: list[tuple[Task, str]] = [(t, d) for t in tasks for d in designs]
        self.stats: dict[str, ItemStats] = {self.key(t, d): ItemStats() for t, d in self.items}
        self.rng = random.Random(seed)
        self.smoothing, self.floor = smoothing, floor

    @staticmethod
    def key(task: Task, design: str) -> str:
        return f"{task.id}@{design}"

    def priority(self, task: Task, design: str) -> float:
        s = self.stats[self.key(task, design)]
        # An item the model always solves has spread ~0 as well; both fade to the floor.
        return max(self.floor, s.spread * (1.0 - 0.5 * s.success))

    def pick(self, n: int, *, exclude: set[str] | None = None) -> list[tuple[Task, str]]:
        """``n`` items, sampled without replacement (with replacement once all are taken) by priority."""
        pool = [it for it in self.items if self.key(*it) not in (exclude or set())] or list(self.items)
        chosen: list[tuple[Task, str]] = []
        while len(chosen) < n:
            left = [it for it in pool if it not in chosen] or pool
            weights = [self.priority(*it) for it in left]
            chosen.append(self.rng.choices(left, weights=weights, k=1)[0])
        return chosen

    def update(self, task: Task, design: str, rewards: Sequence[float], successes: Sequence[bool]) -> None:
        s = self.stats[self.key(task, design)]
        spread = statistics.pstdev(rewards) if len(rewards) > 1 else 0.0
        a = self.smoothing if s.groups else 1.0
        s.spread = (1 - a) * s.spread + a * spread
        s.success = (1 - a) * s.success + a * (sum(successes) / max(1, len(successes)))
        s.groups += 1
        s.flat += int(spread == 0.0)

    # -- persistence (resume) ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"stats": {k: v.model_dump() for k, v in self.stats.items()}, "rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.get("stats", {}).items():
            if k in self.stats:
                self.stats[k] = ItemStats.model_validate(v)
        if state.get("rng"):
            self.rng.setstate(_rng_from(state["rng"]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state_dict()))
        tmp.replace(path)

    def load(self, path: Path) -> bool:
        if not path.is_file():
            return False
        self.load_state_dict(json.loads(path.read_text()))
        return True

    def summary(self) -> dict[str, float]:
        tried = [s for s in self.stats.values() if s.groups]
        return {
            "items_tried": float(len(tried)),
            "items": float(len(self.stats)),
            "mean_spread": statistics.fmean(s.spread for s in tried) if tried else math.nan,
        }


class DynamicSampling(BaseModel):
    """Settings of dynamic sampling (see the module docs)."""

    rounds: int = Field(1, ge=0, description="replacement rounds for groups whose rewards are all equal (0: off)")


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from(state: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
