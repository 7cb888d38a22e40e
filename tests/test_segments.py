"""Typed segments: ``Trajectory.segments`` holds :class:`Segment` s and ``token_rows()`` is how
trainers read an episode's token sequences (no model needed)."""

from __future__ import annotations

import random

import pytest

from atlas_plugins.agent.recorder import LLMCall, Segment as RecorderSegment, token_fields
from atlas_plugins.training.trainer import training_view
from atlas_plugins.training.warmstart import sft_rows
from atlas_plugins.types import Segment, Trajectory


def _call(prompt: list[int], completion: list[int]) -> LLMCall:
    return LLMCall(prompt_ids=prompt, completion_ids=completion, logprobs=[-0.5] * len(completion))


def test_token_rows_without_breaks_is_the_whole_episode():
    traj = Trajectory(task_id="t", prompt_ids=[1, 2], completion_ids=[3, 4, 5], env_mask=[1, 0, 1],
                      logprobs=[-1.0, 0.0, -2.0], turns=2)
    (row,) = traj.token_rows()
    assert isinstance(row, Segment) and row.prompt_ids == [1, 2] and row.completion_ids == [3, 4, 5]
    assert row.env_mask == [1, 0, 1] and row.logprobs == [-1.0, 0.0, -2.0] and row.calls == 2 and row.model_tokens == 2


def test_token_rows_with_breaks_are_the_segments_and_dicts_still_load():
    # the second call's prompt does not extend the first: a prefix break, two segments
    fields = token_fields([_call([1, 2], [3]), _call([9, 9], [4, 5])])
    traj = Trajectory(task_id="t", **fields)
    assert RecorderSegment is Segment
    assert traj.prefix_breaks == 1 and all(isinstance(s, Segment) for s in traj.segments)
    assert [s.prompt_ids for s in traj.token_rows()] == [[1, 2], [9, 9]]
    assert traj.segments[1]["completion_ids"] == [4, 5]  # dict-style reading still works
    with pytest.raises(KeyError):
        traj.segments[0]["nope"]
    again = Trajectory.model_validate_json(traj.model_dump_json())  # older JSON (dict segments) loads
    assert again.segments == traj.segments and again.model_dump()["segments"][0]["calls"] == 1
    # the trainer draws one segment; the warm start clones every one
    picked = {training_view(traj, random.Random(s))["prompt_ids"] == [9, 9] for s in range(20)}
    assert picked == {True, False}
    assert [r["input_ids"] for r in sft_rows([traj])] == [[1, 2, 3], [9, 9, 4, 5]]


def test_training_view_draws_nothing_without_breaks():
    traj = Trajectory(task_id="t", prompt_ids=[1], completion_ids=[2, 3], env_mask=[1, 1], logprobs=[-1.0, -1.0])
    rng = random.Random(7)
    state = rng.getstate()
    assert training_view(traj, rng)["completion_ids"] == [2, 3]
    assert rng.getstate() == state and "trained_segment" not in traj.metadata
