"""``AtlasGRPOConfig`` documents every setting it adds or changes, as TRL's ``GRPOConfig`` does.

Fast: imports TRL but loads no model.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("trl")

from atlas_plugins.training.config import AtlasGRPOConfig  # noqa: E402

OWN = list(AtlasGRPOConfig.__dict__.get("__annotations__", {}))


def test_every_field_declared_on_the_class_has_help() -> None:
    fields = {f.name: f for f in dataclasses.fields(AtlasGRPOConfig)}
    assert len(OWN) >= 30
    missing = [name for name in OWN if not str(fields[name].metadata.get("help", "")).strip()]
    assert not missing, f"AtlasGRPOConfig fields without metadata={{'help': ...}}: {missing}"


def test_defaults_of_the_own_fields() -> None:
    defaults = {
        f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        for f in dataclasses.fields(AtlasGRPOConfig) if f.name in OWN
    }
    assert defaults == {
        "num_generations": 4, "beta": 0.001, "temperature": 1.0, "learning_rate": 1e-5,
        "max_completion_length": 1024, "report_to": "none", "logging_steps": 1, "save_steps": 10,
        "remove_unused_columns": False, "model": "embedded", "use_lora": True, "lora_r": 16, "lora_alpha": 32,
        "lora_dropout": 0.0, "lora_target_modules": "all-linear", "tasks": None, "toolspace": None, "env_seed": 0,
        "max_train_tasks": None, "max_difficulty": None, "loading": "itl", "executor": None, "max_tool_calls": 20,
        "max_turns": 24, "max_turn_tokens": 256, "max_response_chars": 4000, "observation_role": "tool",
        "rubric_provider": "template", "judge": "rules", "aggregator": "atlas", "trajectory_log": None,
        "designs": None, "curriculum": False, "dynamic_sampling_rounds": 0, "shared_prefix": True,
        "unfinished_penalty": 0.0, "repeat_penalty": 0.0,
        "rubric_provider_options": {}, "judge_options": {}, "aggregator_options": {},
        "memory_guard": True, "memory_budget_gb": None, "release_memory": False, "trim_memory": False,
    }
