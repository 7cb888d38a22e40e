"""Runners: what plays the episodes of a GRPO step.

The GRPO core does not care *which* agent acts, only that it gets token-faithful
:class:`~atlas_plugins.types.Trajectory` objects back. A runner is anything with::

    run(tasks: Sequence[Task], *, policy: Policy, seed: int | None) -> list[Trajectory]

that plays one episode per task (a task repeated ``num_generations`` times is a GRPO group)
with the given policy — the trainer passes the policy that wraps the model being trained, so
the runner acts with the current weights. Built-in runners: :class:`NativeRunner` (the native
ATLAS agent); the adapters add ``atlas_langgraph.LangGraphRunner`` and
``atlas_dspy.DSPyRunner`` for existing LangGraph graphs and DSPy programs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from atlas_plugins.types import Task, Trajectory

if TYPE_CHECKING:
    from atlas_plugins.policy.base import Policy


@runtime_checkable
class Runner(Protocol):
    def run(self, tasks: Sequence[Task], *, policy: Policy, seed: int | None = None) -> list[Trajectory]:
        """Play one episode per task with ``policy``; trajectories in task order."""
        ...


class NativeRunner:
    """The native agent (:class:`~atlas_plugins.agent.loop.Agent`) as a runner.

    ``designs`` maps a design name to its agent settings; a task whose
    ``metadata["atlas_design"]`` names one is played under it (the trainer uses this to train one
    model under several designs). Other tasks use ``config``.
    """

    DESIGN_KEY = "atlas_design"

    def __init__(self, toolspace: Any, config: Any = None, *, designs: dict[str, Any] | None = None) -> None:
        self.toolspace = toolspace
        self.config = config
        self.designs = dict(designs or {})
        self._agents: dict[str | None, Any] = {}
        self._policy: Policy | None = None

    def run(self, tasks: Sequence[Task], *, policy: Policy, seed: int | None = None) -> list[Trajectory]:
        from atlas_plugins.agent.loop import Agent

        if policy is not self._policy:
            self._agents, self._policy = {}, policy
        by_design: dict[str | None, list[int]] = {}
        for i, t in enumerate(tasks):
            d = t.metadata.get(self.DESIGN_KEY)
            if d is not None and d not in self.designs:
                raise ValueError(f"task {t.id!r} asks for design {d!r}; this runner knows {sorted(self.designs)}")
            by_design.setdefault(d, []).append(i)
        out: list[Trajectory | None] = [None] * len(tasks)
        for d, idx in by_design.items():
            if d not in self._agents:
                self._agents[d] = Agent(policy, self.toolspace, self.designs[d] if d is not None else self.config)
            for i, traj in zip(idx, self._agents[d].run([tasks[i] for i in idx], seed=seed), strict=True):
                if d is not None:
                    traj.metadata["design"] = d
                out[i] = traj
        return [t for t in out if t is not None]
