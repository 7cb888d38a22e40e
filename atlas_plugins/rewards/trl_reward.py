"""Rubric rewards as a TRL reward function.

::

    from trl import GRPOTrainer
    import atlas_plugins as atlas

    reward = atlas.rubric_reward(provider="template", judge="rules", aggregator="atlas")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=ds, args=cfg)

The returned callable follows TRL 1.16's contract (``GRPOTrainer._calculate_rewards``)::

    fn(prompts, completions, completion_ids=..., trainer_state=..., log_metric=..., log_extra=...,
       **dataset_columns_and_rollout_fields) -> list[float | None]

Per row it finds the rubric in, in order: a ``rubric`` column (dict, JSON string or
:class:`Rubric`); a ``task`` column (dict, JSON string or :class:`Task`) given to the provider;
else a task assembled from the row's own columns (``task_id``/``id``, ``answer``,
``metadata``, ``expected_state``, ``servers``, the prompt) given to the provider. Rubrics are
cached per task for the life of the function (and on disk by the ``llm`` provider).

The trajectory is a ``trajectory`` column (a :class:`Trajectory` or dict, as a
``rollout_func`` returns it) or, when there is none, a minimal one built from the completion:
the final answer is the text inside ``<answer>…</answer>`` (else the whole text) and tool
calls are the ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` JSON blocks (or the
``tool_calls`` of chat messages). Their results are unknown, so such calls count as
successful with an empty result.

A row whose criteria all went unscored returns ``None`` (TRL then excludes it instead of
handing it a made-up 0). Per-category means are logged through TRL's ``log_metric`` as
``rubric/<category>`` and kept in ``fn.last_metrics``; per-row breakdowns are in
``fn.last_breakdowns``. Scoring itself is :class:`~atlas_plugins.rewards.scorer.Scorer`, the
same object evaluation and the trainer use.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from atlas_plugins.errors import ConfigError
from atlas_plugins.rewards.base import RewardBreakdown, coerce_task
from atlas_plugins.rewards.rubric import Rubric
from atlas_plugins.rewards.scorer import Scorer, batch_metrics, by_task_content, notify
from atlas_plugins.types import Task, ToolCallRecord, Trajectory
from atlas_plugins.wire.messages import content_text, record_arguments, tool_call_functions
from atlas_plugins.wire.toolcall import find_answers, strict_tagged_calls, strip_tagged_calls

if TYPE_CHECKING:
    from atlas_plugins.rewards.base import Judge, RewardAggregator, RubricProvider
    from atlas_plugins.toolspace import Toolspace

#: A TRL prompt or completion: a text (standard datasets) or a list of chat messages
#: (conversational datasets).
Conversation = str | list[dict[str, Any]]

_TASK_FIELDS = ("answer", "metadata", "expected_state", "servers", "split", "difficulty")
_RESERVED = {"trainer_state", "log_metric", "log_extra", "environments", "completion_ids"}


def _prompt_text(prompt: Conversation | None) -> str:
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return (
            content_text(users[-1].get("content"))
            if users
            else content_text(prompt[-1].get("content") if prompt and isinstance(prompt[-1], dict) else "")
        )
    return content_text(prompt)


def _parse_tool_calls(text: str, turn: int) -> list[ToolCallRecord]:
    """The strictly well-formed tagged calls of ``text`` (no repairs: see :mod:`atlas_plugins.wire.toolcall`)."""
    return [
        ToolCallRecord(turn=turn, name=name, arguments=record_arguments(raw, non_dict="wrap", blank="raw"))
        for name, raw in strict_tagged_calls(text)
    ]


def trajectory_from_completion(
    completion: Conversation, *, prompt: Conversation | None = None, task: Task | None = None
) -> Trajectory:
    """A minimal :class:`Trajectory` from a completion string or a list of chat messages."""
    calls: list[ToolCallRecord] = []
    texts: list[str] = []
    messages: list[dict[str, Any]] = []
    if isinstance(completion, list):
        turn = 0
        for m in completion:
            if not isinstance(m, dict):
                continue
            messages.append(m)
            role = m.get("role")
            if role == "assistant":
                turn += 1
                t = content_text(m.get("content"))
                texts.append(t)
                calls += _parse_tool_calls(t, turn)
                for name, raw in tool_call_functions(m):
                    if isinstance(name, str):
                        args = record_arguments(raw, non_dict="empty", blank="raw")
                        calls.append(ToolCallRecord(turn=turn, name=name, arguments=args))
            elif role == "tool" and calls:
                calls[-1].result = content_text(m.get("content"))[:4000]
    else:
        text = content_text(completion)
        texts.append(text)
        messages.append({"role": "assistant", "content": text})
        calls = _parse_tool_calls(text, 1)
    full = "\n".join(texts)
    answers = find_answers(full)
    if answers:
        final = answers[-1].strip()
    else:
        # Without <answer> tags, the answer is what the last assistant turn said outside tool calls.
        final = strip_tagged_calls(texts[-1] if texts else "").strip()
    task_dict = (
        task.model_dump(mode="json")
        if task is not None
        else ({"prompt": _prompt_text(prompt)} if prompt is not None else {})
    )
    return Trajectory(
        task_id=task.id if task is not None else "",
        task=task_dict,
        messages=messages,
        tool_calls=calls,
        final_answer=final,
        turns=max(1, len(texts)),
    )


class RubricReward:
    """The callable :func:`rubric_reward` returns (see the module docstring)."""

    def __init__(
        self,
        provider: str | RubricProvider = "static",
        judge: str | Judge = "rules",
        aggregator: str | RewardAggregator = "atlas",
        toolspace: Toolspace | None = None,
        *,
        name: str = "rubric_reward",
        provider_options: dict[str, Any] | None = None,
        judge_options: dict[str, Any] | None = None,
        aggregator_options: dict[str, Any] | None = None,
    ) -> None:
        # Rubrics cached by task content: two tasks never share a rubric by sharing an id.
        self.scorer = Scorer(
            provider,
            judge,
            aggregator,
            toolspace,
            provider_options=provider_options,
            judge_options=judge_options,
            aggregator_options=aggregator_options,
            rubric_key=by_task_content,
        )
        self.provider, self.judge, self.aggregator = self.scorer.provider, self.scorer.judge, self.scorer.aggregator
        self.toolspace = toolspace
        self.__name__ = name
        self.last_metrics: dict[str, float] = {}
        self.last_breakdowns: list[RewardBreakdown | None] = []
        self.last_trajectories: list[Trajectory] = []
        self.calls = 0

    # -- per-row inputs -----------------------------------------------------------------------
    def _task_from_row(self, i: int, prompt: Conversation | None, columns: dict[str, list[Any]]) -> Task:
        if columns.get("task") is not None and columns["task"][i] is not None:
            return coerce_task(columns["task"][i])
        # A rollout's trajectory carries the full task it was played on (metadata included).
        raw = columns["trajectory"][i] if columns.get("trajectory") is not None else None
        if raw is not None:
            traj_task = (
                raw.task
                if isinstance(raw, Trajectory)
                else (json.loads(raw) if isinstance(raw, str) else raw).get("task")
            )
            if traj_task:
                return coerce_task(traj_task)
        data: dict[str, Any] = {k: columns[k][i] for k in _TASK_FIELDS if k in columns and columns[k][i] is not None}
        ptext = _prompt_text(prompt)
        tid = None
        for key in ("task_id", "id"):
            if key in columns and columns[key][i] is not None:
                tid = str(columns[key][i])
                break
        data["id"] = tid or "prompt-" + hashlib.sha256(ptext.encode()).hexdigest()[:12]
        data["prompt"] = ptext
        if isinstance(data.get("metadata"), str):
            data["metadata"] = json.loads(data["metadata"])
        return coerce_task(data)

    def rubric_for_row(self, i: int, prompt: Conversation | None, columns: dict[str, list[Any]]) -> tuple[Rubric, Task]:
        task = self._task_from_row(i, prompt, columns)
        raw = columns["rubric"][i] if "rubric" in columns else None
        if raw is not None:
            if isinstance(raw, str):
                return Rubric.from_json(raw, source=f"rubric column, row {i}"), task
            return Rubric.from_dict(raw, source=f"rubric column, row {i}"), task
        return self.scorer.rubric(task), task

    @staticmethod
    def _trajectory(
        i: int, prompt: Conversation | None, completion: Conversation, task: Task, columns: dict[str, list[Any]]
    ) -> Trajectory:
        raw = columns["trajectory"][i] if "trajectory" in columns else None
        if raw is None:
            return trajectory_from_completion(completion, prompt=prompt, task=task)
        traj = (
            raw
            if isinstance(raw, Trajectory)
            else Trajectory.model_validate(json.loads(raw) if isinstance(raw, str) else raw)
        )
        if not traj.task:
            traj.task = task.model_dump(mode="json")
        return traj

    # -- the TRL contract -----------------------------------------------------------------------
    def __call__(
        self, prompts: list[Conversation], completions: list[Conversation], **kwargs: Any
    ) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        columns = {k: v for k, v in kwargs.items() if k not in _RESERVED and isinstance(v, list)}
        n = len(completions)
        for k, v in columns.items():
            if len(v) != n:
                raise ConfigError(f"column {k!r} has {len(v)} values for {n} completions")
        rows = []
        for i in range(n):
            prompt = prompts[i] if i < len(prompts) else None
            rubric, task = self.rubric_for_row(i, prompt, columns)
            rows.append((rubric, self._trajectory(i, prompt, completions[i], task, columns)))

        trajs = [t for _, t in rows]
        breakdowns: list[RewardBreakdown | None] = list(self.scorer.score_batch(trajs, [r for r, _ in rows]))
        metrics = batch_metrics(trajs, breakdowns)
        self.last_metrics, self.last_breakdowns, self.last_trajectories = metrics, breakdowns, trajs
        if callable(log_metric):
            for key, value in metrics.items():
                if value == value:  # skip NaN
                    log_metric(f"rubric/{key}", float(value))
        notify(trajs)
        self.calls += 1
        return [t.reward for t in trajs]


def rubric_reward(
    provider: str | RubricProvider = "static",
    judge: str | Judge = "rules",
    aggregator: str | RewardAggregator = "atlas",
    toolspace: Toolspace | None = None,
    **options: Any,
) -> RubricReward:
    """A TRL reward function scoring completions against per-task rubrics.

    ``provider``, ``judge`` and ``aggregator`` are registered names (see ``atlas plugins``) or
    instances; ``provider_options``/``judge_options``/``aggregator_options`` go to the named
    factories; ``toolspace`` is needed for ``state`` checks; ``name`` sets ``__name__`` (what
    TRL logs the reward as, default ``rubric_reward``).
    """
    return RubricReward(provider, judge, aggregator, toolspace, **options)


__all__ = ["RubricReward", "rubric_reward", "trajectory_from_completion"]
