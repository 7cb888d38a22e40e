"""Training-reward shaping (atlas_plugins.rewards.shaping) on real template rubrics.

The first test pins down why shaping exists: under the template rubric an episode that calls
the right tool and then loops without answering scores at least as well as one that answers
wrongly. Shaping must rank it below.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from atlas_plugins.errors import ConfigError
from atlas_plugins.rewards.scorer import Scorer
from atlas_plugins.rewards.shaping import RUBRIC_REWARD, SHAPING, finished, repeats_a_call, shape_rewards
from atlas_plugins.types import Task, ToolCallRecord, Trajectory

TASK = Task(
    id="math_power-shaping",
    prompt="What is 5 to the power of 3? Use the math server.",
    servers=["math"],
    answer="125",
    metadata={
        "answer_match": "contains",
        "expected_tools": [{"tool": "math:power", "arguments": {"base": 5, "exponent": 3}}],
    },
)


def _call(turn: int) -> ToolCallRecord:
    return ToolCallRecord(turn=turn, name="math:power", arguments={"base": 5, "exponent": 3}, result="125")


def _episode(calls: int, answer: str | None, finish: str) -> Trajectory:
    return Trajectory(
        task_id=TASK.id,
        task=TASK.model_dump(mode="json"),
        tool_calls=[_call(i + 1) for i in range(calls)],
        final_answer=answer,
        metadata={"finish": finish},
    )


def _scored() -> dict[str, Trajectory]:
    episodes = {
        "loop": _episode(4, None, "turns"),
        "wrong": _episode(1, "It is 124.", "answer"),
        "right": _episode(1, "5^3 = 125", "answer"),
        "right_repeated": _episode(2, "125", "answer"),
    }
    Scorer(provider="template", judge="rules", aggregator="atlas").score_batch(list(episodes.values()))
    return episodes


def test_the_rubric_pays_a_looping_episode_as_much_as_a_wrong_answer() -> None:
    ep = _scored()
    assert ep["loop"].reward is not None and ep["wrong"].reward is not None
    assert ep["loop"].reward >= ep["wrong"].reward  # the reason for shaping; if this fails, revisit it
    assert ep["right"].reward == pytest.approx(1.0)


def test_shaping_ranks_a_looping_episode_below_a_wrong_answer() -> None:
    ep = _scored()
    before = {k: t.reward for k, t in ep.items()}
    shape_rewards(ep.values(), unfinished_penalty=0.3, repeat_penalty=0.1)
    loop, wrong, right, right_rep = (ep[k].reward for k in ("loop", "wrong", "right", "right_repeated"))
    assert loop is not None and wrong is not None and right is not None and right_rep is not None
    assert loop < wrong < right_rep < right
    assert loop == pytest.approx(before["loop"] - 0.4)
    assert ep["loop"].metadata[SHAPING] == {"unfinished": 0.3, "repeated_call": 0.1}
    assert ep["loop"].metadata[RUBRIC_REWARD] == before["loop"]
    assert right == before["right"] and ep["right"].metadata[SHAPING] == {}


def test_shaping_off_and_unscored_episodes_are_left_alone() -> None:
    ep = _scored()
    before = {k: t.reward for k, t in ep.items()}
    shape_rewards(ep.values())
    assert {k: t.reward for k, t in ep.items()} == before
    unscored = _episode(3, None, "turns")
    shape_rewards([unscored], unfinished_penalty=0.5, repeat_penalty=0.5)
    assert unscored.reward is None and SHAPING not in unscored.metadata
    with pytest.raises(ValueError, match="penalties must be >= 0"):
        shape_rewards([unscored], unfinished_penalty=-0.1)


def test_finished_and_repeats() -> None:
    assert not finished(_episode(1, "125", "turns"))  # answered a first message, cut on a later one
    assert finished(_episode(1, "125", "reply"))
    no_finish = _episode(1, None, "answer")
    del no_finish.metadata["finish"]
    assert not finished(no_finish)  # without the loop's record: whether there is an answer
    assert repeats_a_call(_episode(2, "125", "answer")) and not repeats_a_call(_episode(1, "125", "answer"))
    other = _episode(1, "125", "answer")
    other.tool_calls.append(ToolCallRecord(turn=2, name="math:power", arguments={"base": 5, "exponent": 4}))
    assert not repeats_a_call(other)
    from atlas_plugins.evaluation.episodes import behaviour

    looping = _episode(3, None, "turns")
    assert behaviour(looping)["repeated_calls"] == 2 and behaviour(looping)["repeats"] == 1.0  # what evaluation reports


def test_bad_penalties_are_caught_before_a_model_loads(tmp_path) -> None:
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.demo import DemoSettings

    cfg = AtlasGRPOConfig.cpu_demo(str(tmp_path), unfinished_penalty=-0.2)
    with pytest.raises(ConfigError, match="unfinished_penalty must be a number >= 0"):
        cfg.check()
    with pytest.raises(ValidationError, match="grpo_repeat_penalty"):
        DemoSettings(grpo_repeat_penalty=-1)


def test_the_demo_curve_reports_the_rubric_reward_not_the_shaped_one() -> None:
    from atlas_plugins.training.demo import grpo_summary

    log = [
        {"step": 1, "reward": 0.1, "rubric/reward": 0.5, "atlas/repeating_episodes": 0.5},
        {"step": 2, "reward": 0.4, "rubric/reward": 0.6, "atlas/repeating_episodes": 0.25},
        {"step": 3, "reward": 0.7},  # a run without the rubric metric: TRL's reward is all there is
    ]
    g = grpo_summary(log)
    assert g["reward"] == [0.5, 0.6, 0.7]
    assert g["trained_reward"] == [0.1, 0.4, 0.7]
    assert g["repeating_episodes"] == [0.5, 0.25, None]
    assert g["reward_slope_per_step"] == pytest.approx(0.1)
