"""Training-only reward shaping: penalties for episodes that never finish or repeat a call.

Why: the template rubric pays an episode that calls the right tool with the right arguments and
then never answers (it loops until the turn cap) about 0.6 (TA, TG and PA are met; an answer
with no numbers counts as grounded), while an episode that answers wrongly earns about the
same or less, since a wrong number also fails TG's ``grounded_numbers``. GRPO then learns not
to answer. Measured (BENCHMARKS.md, "Demo v5, 24 GRPO steps"): 24 steps from a warm start took
the episodes that repeat an identical call from 4 % to 33 % (ITL) and 100 % (ITL+PTC).

These penalties are DAPO's overlong-punishment idea (arXiv 2503.14476) applied to agent
episodes: they change only the reward GRPO trains on. Held-out evaluation always scores the
unshaped rubric reward, so no reported number is raised by them.

* ``unfinished_penalty`` is subtracted when the episode ended without answering (the turn cap,
  the token budget or the context cut it);
* ``repeat_penalty`` is subtracted when the episode made a call identical (same tool, same
  arguments) to an earlier one.

Not covered: penalties per repeated call (one per episode is enough to rank a looping episode
below a finishing one), and shaping of rewards that are ``None`` (unscored episodes stay
unscored).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from atlas_plugins.types import Trajectory

#: ``Trajectory.metadata`` keys: the rubric reward before shaping, and the penalties applied.
RUBRIC_REWARD = "rubric_reward"
SHAPING = "shaping"


def repeated_calls(traj: Trajectory) -> int:
    """Calls of the episode identical (same name and arguments) to an earlier call."""
    seen: set[str] = set()
    repeated = 0
    for call in traj.tool_calls:
        key = call.name + "\0" + json.dumps(call.arguments, sort_keys=True, default=str)
        repeated += key in seen
        seen.add(key)
    return repeated


def repeats_a_call(traj: Trajectory) -> bool:
    """True when a tool call of the episode is identical (name and arguments) to an earlier one."""
    return repeated_calls(traj) > 0


#: ``metadata["finish"]`` values (the native agent loop's) of an episode that ended by answering.
FINISHED = frozenset({"answer", "reply"})


def finished(traj: Trajectory) -> bool:
    """True when the episode ended with the model's answer, not at a cap. Uses the agent loop's
    ``metadata["finish"]`` where it recorded one (a multi-turn task can answer its first message
    and be cut on a later one), else whether there is a final answer."""
    finish = traj.metadata.get("finish")
    if isinstance(finish, str):
        return finish in FINISHED
    return traj.final_answer is not None


def shape_rewards(trajs: Iterable[Trajectory], *, unfinished_penalty: float = 0.0, repeat_penalty: float = 0.0) -> None:
    """Subtract the penalties from each scored trajectory's ``reward``, in place.

    Call it once right after scoring (the scorer sets ``reward`` afresh). The rubric reward is
    kept in ``metadata["rubric_reward"]`` and the penalties in ``metadata["shaping"]``.
    """
    if unfinished_penalty < 0 or repeat_penalty < 0:
        raise ValueError(f"penalties must be >= 0, got unfinished={unfinished_penalty}, repeat={repeat_penalty}")
    if not unfinished_penalty and not repeat_penalty:
        return
    for traj in trajs:
        if traj.reward is None:
            continue
        penalties: dict[str, float] = {}
        if unfinished_penalty and not finished(traj):
            penalties["unfinished"] = unfinished_penalty
        if repeat_penalty and repeats_a_call(traj):
            penalties["repeated_call"] = repeat_penalty
        traj.metadata[RUBRIC_REWARD] = traj.reward
        traj.metadata[SHAPING] = penalties
        traj.reward = traj.reward - sum(penalties.values())


__all__ = ["FINISHED", "RUBRIC_REWARD", "SHAPING", "finished", "repeated_calls", "repeats_a_call", "shape_rewards"]
