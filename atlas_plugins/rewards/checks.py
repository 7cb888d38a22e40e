"""Exact scoring of ``check`` criteria (used by the ``rules`` judge).

Every check returns a score in [0, 1], or ``None`` with a reason when it cannot be scored
(e.g. a ``state`` check without a toolspace) so that the criterion is reported as unscored
rather than silently 0.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import TYPE_CHECKING

from atlas_plugins.matching import _as_number, _norm_str, subset_fraction, values_match
from atlas_plugins.rewards.rubric import (
    AnswerContainsCheck,
    AnswerEqualsCheck,
    AnswerRegexCheck,
    PythonCheck,
    StateCheck,
    ToolArgsMatchCheck,
    ToolCalledCheck,
)
from atlas_plugins.types import ToolCallRecord, Trajectory

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace


def tool_matches(wanted: str, call_name: str) -> bool:
    """``math:add`` matches only ``math:add``; a bare ``add`` matches any server's ``add``."""
    if ":" in wanted:
        return call_name == wanted
    return call_name == wanted or call_name.rsplit(":", 1)[-1] == wanted


def _calls(traj: Trajectory, tool: str, ok_only: bool = False) -> list[ToolCallRecord]:
    return [c for c in traj.tool_calls if tool_matches(tool, c.name) and (c.ok or not ok_only)]


def _answer(traj: Trajectory) -> str:
    return traj.final_answer or ""


def evaluate_check(check: object, traj: Trajectory, *, toolspace: Toolspace | None = None) -> tuple[float | None, str]:
    """Score one check. Returns ``(score, note)``; ``score`` is ``None`` when unscorable."""
    if isinstance(check, ToolCalledCheck):
        n = len(_calls(traj, check.tool, check.ok_only))
        return min(1.0, n / check.min_count), f"{n} call(s) to {check.tool}"
    if isinstance(check, ToolArgsMatchCheck):
        calls = _calls(traj, check.tool)
        if not calls:
            return 0.0, f"{check.tool} was never called"
        best = max(subset_fraction(check.arguments, c.arguments) for c in calls)
        return best, f"best call matched {best:.0%} of expected arguments"
    if isinstance(check, AnswerContainsCheck):
        ans = _answer(traj)
        if check.case_sensitive:
            hits = sum(v in ans for v in check.values)
        else:
            norm = _norm_str(ans)
            hits = sum(_norm_str(v) in norm for v in check.values)
        return hits / len(check.values), f"{hits}/{len(check.values)} expected value(s) in the answer"
    if isinstance(check, AnswerEqualsCheck):
        ok = values_match(check.value, _answer(traj))
        return float(ok), "answer equals expected" if ok else "answer differs from expected"
    if isinstance(check, AnswerRegexCheck):
        flags = 0
        for f in check.flags:
            flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}[f]
        ok = re.search(check.pattern, _answer(traj), flags) is not None
        return float(ok), "answer matches pattern" if ok else "answer does not match pattern"
    if isinstance(check, StateCheck):
        return _state(check, traj, toolspace)
    if isinstance(check, PythonCheck):
        return _python(check, traj)
    return None, f"unsupported check {type(check).__name__}"


def _state(check: StateCheck, traj: Trajectory, toolspace: Toolspace | None) -> tuple[float | None, str]:
    if toolspace is None:
        return None, "state check needs a toolspace (pass toolspace= to the judge or rubric_reward)"
    episode = traj.metadata.get("episode_id")
    if not episode:
        return None, "state check needs trajectory.metadata['episode_id'] (the episode whose state to read)"
    res = toolspace.call(check.server, check.tool, check.arguments, episode=str(episode))
    if not res.ok:
        # The inspecting call itself failing (e.g. a file the agent never wrote) means the
        # expected state does not hold, unless the expectation is about the error.
        return 0.0, f"state call {check.server}:{check.tool} failed: {res.error}"
    frac = subset_fraction(check.expect, res.content if res.content is not None else res.text)
    if frac < 1.0 and isinstance(check.expect, str) and not isinstance(res.content, str):
        frac = 1.0 if _norm_str(check.expect) in _norm_str(res.text) else frac
    return frac, f"state {check.server}:{check.tool} matched {frac:.0%}"


def _python(check: PythonCheck, traj: Trajectory) -> tuple[float | None, str]:
    mod_name, _, attr = check.function.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        return None, f"python check {check.function!r} cannot be imported: {exc}"
    try:
        out = fn(traj, **check.params)
    except Exception as exc:  # noqa: BLE001 - a user check that crashes is a failure to score, not a 0
        return None, f"python check {check.function!r} raised {type(exc).__name__}: {exc}"
    if isinstance(out, bool):
        return float(out), f"{check.function} -> {out}"
    num = _as_number(out)
    if num is None or math.isnan(num):
        return None, f"python check {check.function!r} returned {out!r}, expected a float or bool"
    return min(1.0, max(0.0, num)), f"{check.function} -> {num}"


# -- built-in python checks (referenced as "atlas_plugins.rewards.checks:<name>") --------------
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def calls_succeeded(trajectory: Trajectory, tools: list[str]) -> float:
    """Fraction of ``tools`` that have at least one successful call (tool grounding: the agent
    obtained the results it needed)."""
    if not tools:
        return 1.0
    return sum(any(c.ok for c in _calls(trajectory, t)) for t in tools) / len(tools)


def grounded_numbers(trajectory: Trajectory) -> float:
    """Fraction of the numbers in the final answer that appear in a successful tool result or
    in the task prompt (claims grounded in observations, not invented). An answer without
    numbers counts as grounded when at least one tool call succeeded."""
    nums = _NUMBER_RE.findall(_answer(trajectory))
    ok_results = [c.result for c in trajectory.tool_calls if c.ok]
    if not nums:
        return 1.0 if ok_results else 0.0
    haystack = (
        " ".join(ok_results) + " " + str(trajectory.task.get("prompt", "") if isinstance(trajectory.task, dict) else "")
    )
    seen = {float(x) for x in _NUMBER_RE.findall(haystack)}
    return sum(float(n) in seen for n in nums) / len(nums)
