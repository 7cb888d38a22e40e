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

from typing import Any, Protocol, Sequence, runtime_checkable

from atlas_plugins.types import Task, Trajectory


@runtime_checkable
class Runner(Protocol):
    def run(self, tasks: Sequence[Task], *, policy: Any, seed: int | None = None) -> list[Trajectory]:
        """Play one episode per task with ``policy``; trajectories in task order."""
        ...


class NativeRunner:
    """The native agent (:class:`~atlas_plugins.agent.loop.Agent`) as a runner."""

    def __init__(self, toolspace: Any, config: Any = None) -> None:
        self.toolspace = toolspace
        self.config = config
        self._agent: Any = None

    def run(self, tasks: Sequence[Task], *, policy: Any, seed: int | None = None) -> list[Trajectory]:
        from atlas_plugins.agent.loop import Agent

        if self._agent is None or self._agent.policy is not policy:
            self._agent = Agent(policy, self.toolspace, self.config)
        return self._agent.run(list(tasks), seed=seed)
