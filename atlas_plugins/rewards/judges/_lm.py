"""Shared machinery of language-model judges (``hf``, ``openai``).

An LM judge is a composite by default: ``judge`` criteria go to the language model, ``check``
criteria to the exact ``rules`` judge (``checks="lm"`` sends every criterion to the model).

Two prompt styles:

* ``mode="list"`` (the paper's): all criteria in one prompt, the model answers with one number
  in [0, 1] per criterion between ``<scores>`` tags;
* ``mode="per_criterion"``: one short prompt per criterion answered with ``<score>N</score>``,
  N in 0–10. Small models (≈100M parameters) cannot keep 12 numbers in order, so this is the
  ``hf`` default; the prompts of one trajectory run as one batch.

``score_group`` is RULER-style: all rollouts of one task in one prompt, so the model grades them
against each other on the same criteria (used by the ``group_relative`` aggregator).

Reply budgets: ``max_tokens`` (an option) is the completion budget of every judge request; left
unset, each judge sizes it per prompt style (:meth:`LMJudge.reply_tokens`): the ``openai`` judge
leaves a real model room to say a sentence before its numbers (a budget of 12 tokens cut replies to
"The score is "), the local ``hf`` judge keeps its replies short.

Parsing is tolerant (tags, JSON lists/objects, "7/10", bare numbers; 0–10 scales are detected
and divided by 10; values are clamped to [0, 1]). Items that still fail are retried
(``retries`` times, sampling at temperature ≥ 0.7 so a retry can differ); what fails after that
is left unscored and recorded in ``trajectory.judge_failures`` — never a silent 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from atlas_plugins.rewards.base import JudgeResult, record_result
from atlas_plugins.rewards.judges.rules import RulesJudge
from atlas_plugins.rewards.render import UNTRUSTED_NOTE, describe_criterion, render_rubric, render_trajectory
from atlas_plugins.rewards.rubric import Criterion, Rubric
from atlas_plugins.types import Trajectory

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace

SYSTEM_PROMPT = (
    "You are a strict, consistent evaluator of an AI agent's tool-use trajectory. You score it "
    "against fixed rubric criteria. " + UNTRUSTED_NOTE
)

_NUM = r"-?\d+(?:\.\d+)?"


def _scale(values: list[float], *, ten_scale: bool) -> list[float]:
    """Map raw numbers to [0, 1]. Integers above 1 (``[8, 10, 3]``) mean a 0–10 scale and are
    divided by 10; otherwise values are fractions and out-of-range ones are clamped."""
    if ten_scale or (any(v > 1.0 for v in values) and all(float(v).is_integer() for v in values)):
        values = [v / 10.0 for v in values]
    return [min(1.0, max(0.0, v)) for v in values]


def parse_single(text: str) -> float | None:
    """One 0–10 score (``<score>7</score>``, ``7/10``, ``Score: 7``, ``0.7``) -> [0, 1]."""
    m = re.search(r"<score>\s*(" + _NUM + r")", text, re.I)
    if not m:
        m = re.search(r"(" + _NUM + r")\s*/\s*10\b", text)
    if not m:
        m = re.search(_NUM, text)
    if not m:
        return None
    raw = m.group(1) if m.groups() else m.group(0)
    v = float(raw)
    # "0.7" is a fraction; "7" (or "1") is on the 0–10 scale we asked for.
    if "." in raw and 0.0 <= v <= 1.0:
        return v
    return min(1.0, max(0.0, v / 10.0))


def parse_list(text: str, n: int) -> list[float] | None:
    """``n`` scores from ``<scores>[...]</scores>``, a JSON list/object or a numbered list."""
    m = re.search(r"<scores[^>]*>(.*?)(?:</scores>|$)", text, re.S | re.I)
    body = m.group(1) if m else text
    nums: list[float] | None = None
    try:
        obj = json.loads(body.strip())
        if isinstance(obj, dict):
            obj = obj.get("scores", list(obj.values()))
        if isinstance(obj, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
            nums = [float(x) for x in obj]
    except (json.JSONDecodeError, TypeError, ValueError):
        pass
    if nums is None:
        # Drop list numbering ("1. 0.8", "2) 0.5") before collecting numbers.
        cleaned = re.sub(r"(?m)^\s*\d+\s*[.)]\s+", "", body)
        cleaned = re.sub(r"(?m)^\s*\d+\s*:\s*", "", cleaned)
        cleaned = re.sub(r"(?<![\d.])\d+\s*[):]\s*(?=-?\d)", "", cleaned)  # inline "1) 0.9 2) 0.4"
        bracket = re.findall(r"\[([^\[\]]*)\]", cleaned)
        pool = bracket[-1] if bracket and len(re.findall(_NUM, bracket[-1])) == n else cleaned
        nums = [float(x) for x in re.findall(_NUM, pool)]
    if len(nums) < n:
        return None
    nums = nums[:n]
    return _scale(nums, ten_scale=False)


class LMJudge:
    """Base of language-model judges; subclasses implement :meth:`_generate`."""

    name = "lm"
    default_mode = "list"
    #: Default reply budgets (tokens): per criterion, and per criterion of a list (+ a fixed part).
    criterion_tokens = 12
    list_tokens_base, list_tokens_per_criterion = 16, 8

    def __init__(
        self,
        *,
        checks: str = "rules",
        mode: str | None = None,
        temperature: float = 0.0,
        retries: int = 2,
        toolspace: Toolspace | None = None,
        result_chars: int = 300,
        max_tokens: int | None = None,
    ) -> None:
        if checks not in ("rules", "lm"):
            raise ValueError(f"checks must be 'rules' or 'lm', got {checks!r}")
        mode = mode or self.default_mode
        if mode not in ("list", "per_criterion"):
            raise ValueError(f"mode must be 'list' or 'per_criterion', got {mode!r}")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        self.max_tokens = max_tokens
        self.checks = checks
        self.mode = mode
        self.temperature = temperature
        self.retries = retries
        self.toolspace = toolspace
        self.result_chars = result_chars
        self._rules = RulesJudge(toolspace)

    # -- backend ---------------------------------------------------------------------------
    def _generate(self, prompts: list[list[dict[str, str]]], *, temperature: float, max_tokens: int) -> list[str]:
        """One completion per chat (batched where the backend can)."""
        raise NotImplementedError

    def generate(
        self, prompts: list[list[dict[str, str]]], *, temperature: float | None = None, max_tokens: int = 64
    ) -> list[str]:
        """Public access to the backend (the benchmark's generic-judge baseline uses it)."""
        return self._generate(
            prompts, temperature=self.temperature if temperature is None else temperature, max_tokens=max_tokens
        )

    def reply_tokens(self, style: str, n_criteria: int = 1, n_rollouts: int = 1) -> int:
        """The completion budget of one request: ``max_tokens`` when set, else this judge's
        default for the prompt style (``criterion``, ``list`` or ``group``)."""
        if self.max_tokens is not None:
            return self.max_tokens * (n_rollouts if style == "group" else 1)
        if style == "criterion":
            return self.criterion_tokens
        per_list = self.list_tokens_base + self.list_tokens_per_criterion * n_criteria
        return per_list if style == "list" else 24 + n_rollouts * per_list

    # -- prompts -----------------------------------------------------------------------------
    def _render(self, traj: Trajectory) -> str:
        return render_trajectory(traj, result_chars=self.result_chars)

    def criterion_prompt(self, traj: Trajectory, c: Criterion, *, scale_max: int = 10) -> list[dict[str, str]]:
        user = (
            f"{self._render(traj)}\n\n"
            f"Criterion [{c.category}] {c.name}: {describe_criterion(c)}\n\n"
            "How well does the trajectory satisfy this criterion? Reply with <score>N</score>, "
            f"N an integer from 0 (not at all) to {scale_max} (fully)."
        )
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def list_prompt(self, traj: Trajectory, criteria: list[Criterion]) -> list[dict[str, str]]:
        user = (
            f"{self._render(traj)}\n\nCriteria:\n{render_rubric(criteria)}\n\n"
            f"Score each of the {len(criteria)} criteria from 0.0 to 1.0 (roughly the fraction of the "
            f"relevant steps done right). Reply with exactly {len(criteria)} numbers in order between "
            "tags, e.g. <scores>[1.0, 0.5, 0.0]</scores>."
        )
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def group_prompt(self, trajs: list[Trajectory], criteria: list[Criterion]) -> list[dict[str, str]]:
        blocks = "\n\n".join(f"Rollout {k}:\n{self._render(t)}" for k, t in enumerate(trajs, 1))
        user = (
            f"{len(trajs)} rollouts of the same task follow. Grade them against each other on the same "
            f"criteria, so that better rollouts get higher scores.\n\n{blocks}\n\nCriteria:\n"
            f"{render_rubric(criteria)}\n\nFor each rollout k reply with one line "
            f'<scores id="k">[{len(criteria)} numbers from 0.0 to 1.0, in criteria order]</scores>.'
        )
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    # -- scoring -----------------------------------------------------------------------------
    def _split(self, rubric: Rubric) -> tuple[list[Criterion], list[Criterion]]:
        if self.checks == "lm":
            return list(rubric.criteria), []
        return rubric.judge_criteria(), rubric.check_criteria()

    def _rules_part(
        self, rubric: Rubric, checks: list[Criterion], traj: Trajectory, toolspace: Toolspace | None
    ) -> JudgeResult:
        if not checks:
            return JudgeResult()
        sub = Rubric(criteria=checks)
        return self._rules.score(
            sub, traj, toolspace=toolspace if toolspace is not None else self.toolspace, record=False
        )

    def _score_lm(self, trajs: list[Trajectory], criteria: list[Criterion]) -> list[JudgeResult]:
        """Score ``criteria`` for each trajectory independently, retrying failed items."""
        results = [JudgeResult() for _ in trajs]
        if not criteria:
            return results
        if self.mode == "per_criterion":
            items = [(i, c) for i in range(len(trajs)) for c in criteria]
            prompts = {(i, c.id): self.criterion_prompt(trajs[i], c) for i, c in items}
            pending = [(i, c.id) for i, c in items]
            temp = self.temperature
            for _attempt in range(self.retries + 1):
                if not pending:
                    break
                outs = self._generate(
                    [prompts[k] for k in pending], temperature=temp, max_tokens=self.reply_tokens("criterion")
                )
                outs = _one_per_request(outs, len(pending))
                still = []
                for (i, cid), out in zip(pending, outs, strict=True):
                    results[i].raw.append(out)
                    v = parse_single(out)
                    if v is None:
                        still.append((i, cid))
                    else:
                        results[i].scores[cid] = v
                pending, temp = still, max(temp, 0.7)
            for i, cid in pending:
                results[i].unscored[cid] = "judge output had no score"
                results[i].failures.append(
                    f"{self.name}: no score for {cid!r} after {self.retries + 1} attempt(s); last output {results[i].raw[-1][:120]!r}"
                )
            return results
        # list mode
        pending_t = list(range(len(trajs)))
        temp = self.temperature
        for _attempt in range(self.retries + 1):
            if not pending_t:
                break
            outs = self._generate(
                [self.list_prompt(trajs[i], criteria) for i in pending_t],
                temperature=temp,
                max_tokens=self.reply_tokens("list", len(criteria)),
            )
            outs = _one_per_request(outs, len(pending_t))
            still_t: list[int] = []
            for i, out in zip(pending_t, outs, strict=True):
                results[i].raw.append(out)
                vals = parse_list(out, len(criteria))
                if vals is None:
                    still_t.append(i)
                else:
                    results[i].scores.update({c.id: v for c, v in zip(criteria, vals, strict=True)})
            pending_t, temp = still_t, max(temp, 0.7)
        for i in pending_t:
            for c in criteria:
                results[i].unscored[c.id] = "judge output could not be parsed"
            results[i].failures.append(
                f"{self.name}: could not parse {len(criteria)} scores after {self.retries + 1} attempt(s); "
                f"last output {results[i].raw[-1][:160]!r}"
            )
        return results

    def score(self, rubric: Rubric, trajectory: Trajectory, *, toolspace: Toolspace | None = None) -> JudgeResult:
        lm_criteria, checks = self._split(rubric)
        result = self._rules_part(rubric, checks, trajectory, toolspace).merge(
            self._score_lm([trajectory], lm_criteria)[0]
        )
        record_result(trajectory, result)
        return result

    def score_group(
        self, rubric: Rubric, trajectories: list[Trajectory], *, toolspace: Toolspace | None = None
    ) -> list[JudgeResult]:
        """All rollouts of one task in one prompt (RULER-style); failures fall back to
        scoring those rollouts one by one."""
        lm_criteria, checks = self._split(rubric)
        lm_results: list[JudgeResult | None] = [None] * len(trajectories)
        if lm_criteria and len(trajectories) > 1:
            replies = self._generate(
                [self.group_prompt(trajectories, lm_criteria)],
                temperature=self.temperature,
                max_tokens=self.reply_tokens("group", len(lm_criteria), len(trajectories)),
            )
            out = _one_per_request(replies, 1)[0]
            for k in range(len(trajectories)):
                m = re.search(rf'<scores\s+id\s*=\s*"?{k + 1}"?\s*>(.*?)(?:</scores>|$)', out, re.S | re.I)
                vals = parse_list(m.group(1), len(lm_criteria)) if m else None
                if vals is not None:
                    lm_results[k] = JudgeResult(
                        scores={c.id: v for c, v in zip(lm_criteria, vals, strict=True)}, raw=[out]
                    )
        missing = [k for k, r in enumerate(lm_results) if r is None]
        if missing:
            fallback = self._score_lm([trajectories[k] for k in missing], lm_criteria)
            for k, r in zip(missing, fallback, strict=True):
                if lm_criteria and len(trajectories) > 1:
                    r.failures.insert(0, f"{self.name}: group scoring gave no scores for rollout {k + 1}; scored alone")
                lm_results[k] = r
        results = []
        for traj, lm in zip(trajectories, lm_results, strict=True):
            assert lm is not None
            res = self._rules_part(rubric, checks, traj, toolspace).merge(lm)
            record_result(traj, res)
            results.append(res)
        return results


def _one_per_request(outs: Sequence[str], n: int) -> list[str]:
    """A backend's outputs, one per request: missing ones become empty replies, which parse to
    no score, so those items are retried and then reported unscored instead of silently dropped."""
    outs = [str(o) for o in outs][:n]
    return outs + [""] * (n - len(outs))
