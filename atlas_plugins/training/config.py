"""``AtlasGRPOConfig``: TRL's ``GRPOConfig`` plus the agent, reward and LoRA settings of ATLAS.

Defaults follow the paper where it has one (group size 4, temperature 1.0, KL 0.001, 20 tool
calls, 4,000-character tool responses, tool-output tokens masked out of the loss). The paper
trains all weights at lr 1e-6; with LoRA about 10x more is needed, so the default is 1e-5.
:meth:`AtlasGRPOConfig.cpu_demo` gives the small settings the CPU demo runs with.

A YAML file for ``atlas train --config`` holds the same field names::

    output_dir: runs/itl
    model: embedded              # or any HF path / id
    loading: itl
    executor: null               # "local" for ITL+PTC
    max_steps: 40
    per_device_train_batch_size: 8
    num_generations: 4
    judge: openai                # an LM judge needs its endpoint spelled out:
    judge_options: {base_url: "http://127.0.0.1:8000/v1", model: Qwen/Qwen3-4B, max_tokens: 256}

:meth:`AtlasGRPOConfig.from_yaml` checks every value's type against its field (``max_steps: two``
is "max_steps must be an integer, got 'two'"), and :meth:`AtlasGRPOConfig.check` checks the
component names (loading policy, executor, designs, rubric provider, judge, aggregator) against
what is registered, before anything is loaded; each error names its field.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Union

import yaml
from trl import GRPOConfig

from atlas_plugins.errors import ConfigError


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch comes with trl
        return False


@dataclass
class AtlasGRPOConfig(GRPOConfig):
    # -- paper defaults that differ from TRL's ----------------------------------------------
    num_generations: int | None = field(default=4, metadata={"help": "GRPO group size (paper: 4)."})
    beta: float = field(
        default=0.001,
        metadata={
            "help": "KL coefficient (paper: 0.001). The reference is the model GRPO starts from: the base model "
            "under a fresh LoRA, or, for a model passed in with a trained adapter (a warm start), a frozen copy of "
            "that adapter (TRL's 'ref' adapter)."
        },
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of rollouts (paper: 1.0)."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Paper: 1e-6 full finetuning; LoRA needs ~10x."})
    max_completion_length: int | None = field(
        default=1024, metadata={"help": "Model + environment tokens of one episode after the first prompt."}
    )
    report_to: Any = field(default="none", metadata={"help": "Passed to transformers (tensorboard, wandb, ...)."})
    logging_steps: float = field(default=1, metadata={"help": "Log (and call atlas_on_train_step) every N steps."})
    save_steps: float = field(default=10, metadata={"help": "Checkpoint every N steps (resume with --resume)."})
    remove_unused_columns: bool | None = field(
        default=False, metadata={"help": "Keep the task columns: the rollout function reads them."}
    )

    # -- model --------------------------------------------------------------------------------
    model: str = field(default="embedded", metadata={"help": "HF path/id, or 'embedded' (SmolLM2-135M-Instruct)."})
    use_lora: bool = field(default=True, metadata={"help": "Train a PEFT LoRA adapter; False trains all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA layers."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "Modules LoRA wraps: 'all-linear' or a comma-separated list of names."}
    )

    # -- data and environment -------------------------------------------------------------------
    tasks: str | None = field(default=None, metadata={"help": "Task JSONL; None = the embedded train split."})
    toolspace: str | None = field(default=None, metadata={"help": "Toolspace file; None = the embedded servers."})
    env_seed: int = field(default=0, metadata={"help": "World seed of the embedded servers."})
    max_train_tasks: int | None = field(
        default=None, metadata={"help": "Use only the first N train tasks; None = all."}
    )
    max_difficulty: int | None = field(default=None, metadata={"help": "Only tasks up to this level (curriculum)."})

    # -- agent ------------------------------------------------------------------------------------
    loading: str = field(default="itl", metadata={"help": "Loading policy: eager, isl, itl, search."})
    executor: str | None = field(default=None, metadata={"help": "'local' turns on code_interpreter (PTC)."})
    max_tool_calls: int = field(
        default=20, metadata={"help": "Tool calls per episode, meta-calls included (paper: 20)."}
    )
    max_turns: int = field(default=24, metadata={"help": "Model turns per episode."})
    max_turn_tokens: int = field(default=256, metadata={"help": "New tokens per model turn."})
    max_response_chars: int = field(
        default=4000, metadata={"help": "Tool observations are truncated to this many characters (paper: 4,000)."}
    )
    observation_role: str = field(
        default="tool", metadata={"help": "Chat role of observation turns: 'tool' or 'user'."}
    )

    # -- rewards ----------------------------------------------------------------------------------
    rubric_provider: str = field(
        default="template", metadata={"help": "Rubric provider by name: static, template, llm, or a plugin's."}
    )
    judge: str = field(default="rules", metadata={"help": "Judge by name: rules, hf, openai, or a plugin's."})
    aggregator: str = field(
        default="atlas",
        metadata={"help": "Reward aggregator by name: atlas (paper formula), weighted_mean, gated, group_relative."},
    )
    rubric_provider_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Options of the rubric provider, e.g. {base_url, model, timeout_s} for 'llm'."},
    )
    judge_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Options of the judge, e.g. {base_url, model, max_tokens} for 'openai' (its endpoint "
            "must be given: there is no default)."
        },
    )
    aggregator_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Options of the reward aggregator, e.g. {alpha: {TF: 0.5, ...}}."}
    )

    # -- what each step trains on -----------------------------------------------------------------
    designs: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated designs to train under, e.g. 'itl,itl+ptc' (each GRPO group picks one); "
            "None = the one design given by loading/executor."
        },
    )
    curriculum: bool = field(
        default=False,
        metadata={
            "help": "Pick each step's (task, design) groups by measured reward spread instead of TRL's data "
            "order (see atlas_plugins.training.curriculum)."
        },
    )
    dynamic_sampling_rounds: int = field(
        default=0,
        metadata={
            "help": "Replace groups whose rewards are all equal by fresh groups, up to N rounds per step (DAPO); "
            "0 = off."
        },
    )

    unfinished_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Subtracted from the training reward of an episode that ended at a cap without answering "
            "(see atlas_plugins.rewards.shaping; evaluation scores the unshaped rubric reward); 0 = off."
        },
    )
    repeat_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Subtracted from the training reward of an episode that repeated an identical tool call; 0 = off."
        },
    )

    # -- speed ------------------------------------------------------------------------------------
    shared_prefix: bool = field(
        default=True,
        metadata={
            "help": "Compute each batch's shared token prefixes once (exact; see atlas_plugins.training.shared_prefix)."
        },
    )

    # -- memory -------------------------------------------------------------------------------------
    memory_guard: bool = field(
        default=True,
        metadata={
            "help": "Estimate each step's peak memory from its token counts and the memory available: turn "
            "gradient checkpointing on only when the step needs it, and stop with a clear message when "
            "it cannot fit even then (see atlas_plugins.training.memory). False keeps "
            "gradient_checkpointing as set."
        },
    )
    memory_budget_gb: float | None = field(
        default=None,
        metadata={
            "help": "Memory a step may use, in GB; None = 90% of what is available when the step starts "
            "(RAM on the CPU, shared by the processes on the host; free device memory on a GPU)."
        },
    )

    release_memory: bool = field(
        default=False,
        metadata={
            "help": "Linux/glibc: serve every allocation over 1 MiB by mmap, so freed tensor memory goes back to "
            "the OS (atlas_plugins.training.allocator). Measured on the demo's warm start: peak RSS 6.7 -> "
            "2.2 GiB, at 1.10x the time (page faults on each new block). Process-wide; set when the trainer is built."
        },
    )
    trim_memory: bool = field(
        default=False,
        metadata={
            "help": "Linux/glibc: give the heap's free pages back to the OS (malloc_trim) after every rollout and "
            "optimizer step, so that what one phase freed is not held through the next "
            "(atlas_plugins.training.allocator.trim_heap)."
        },
    )

    # -- logging ------------------------------------------------------------------------------------
    trajectory_log: str | None = field(
        default=None, metadata={"help": "JSONL of every scored trajectory; default <output_dir>/trajectories.jsonl."}
    )

    def __post_init__(self) -> None:
        # TRL defaults to bf16, which a CPU machine cannot run: fall back to fp32 on the CPU.
        if not _has_cuda():
            self.use_cpu = True
            self.bf16 = False
        super().__post_init__()

    def check(self) -> None:
        """Component names against what is registered (plugins included), and option types; a
        :class:`ConfigError` naming the field. Loads no model and starts no server."""
        from atlas_plugins.evaluation.designs import design_settings
        from atlas_plugins.plugins import UnknownComponentError, get_plugin_manager

        pm = get_plugin_manager()
        named = [
            ("loading", "loading_policies", self.loading),
            ("rubric_provider", "rubric_providers", self.rubric_provider),
            ("judge", "judges", self.judge),
            ("aggregator", "aggregators", self.aggregator),
        ]
        if self.executor:
            named.append(("executor", "executors", self.executor))
        problems = []
        for fname, kind, value in named:
            if not isinstance(value, str) or not value:
                problems.append(f"{fname} must be a name, got {value!r}")
                continue
            try:
                pm.get(kind, value)
            except UnknownComponentError as exc:
                problems.append(f"{fname}: {exc}")
        for fname in ("rubric_provider_options", "judge_options", "aggregator_options"):
            if not isinstance(getattr(self, fname), dict):
                problems.append(f"{fname} must be a mapping of options, got {getattr(self, fname)!r}")
        for fname in ("unfinished_penalty", "repeat_penalty"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                problems.append(f"{fname} must be a number >= 0, got {value!r}")
        if self.designs:
            for d in self.design_list():
                try:
                    design_settings(d)
                except ValueError as exc:
                    problems.append(f"designs: {exc}")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    def agent_config(self) -> Any:
        from atlas_plugins.agent.loop import AgentConfig

        return AgentConfig(
            loading=self.loading,
            executor=self.executor,
            max_tool_calls=self.max_tool_calls,
            max_turns=self.max_turns,
            max_new_tokens=self.max_turn_tokens,
            max_episode_tokens=self.max_completion_length or 1024,
            max_response_chars=self.max_response_chars,
            temperature=self.temperature,
            top_p=self.top_p,
            observation_role=self.observation_role,
        )

    def design_list(self) -> list[str]:
        """The designs trained under: ``designs``, else the one named by ``loading``/``executor``."""
        if self.designs:
            return [d.strip() for d in self.designs.split(",") if d.strip()]
        return [self.loading + ("+ptc" if self.executor else "")]

    def design_configs(self) -> dict[str, Any]:
        """Agent settings per design of :meth:`design_list` (the rest as :meth:`agent_config`)."""
        from atlas_plugins.evaluation.designs import design_settings

        base = self.agent_config()
        out = {}
        for d in self.design_list():
            ds = design_settings(d)
            out[d] = base.model_copy(update={"loading": ds["loading"], "executor": ds["executor"]})
        return out

    @property
    def output_path(self) -> Path:
        """``output_dir`` as a path. Always set: ``TrainingArguments.__post_init__`` fills in its default."""
        assert self.output_dir is not None
        return Path(self.output_dir)

    @property
    def trajectory_log_path(self) -> Path:
        return Path(self.trajectory_log) if self.trajectory_log else self.output_path / "trajectories.jsonl"

    @classmethod
    def cpu_demo(cls, output_dir: str, **overrides: Any) -> AtlasGRPOConfig:
        """Small settings for the embedded model on a 2-core CPU (the ``atlas demo`` recipe)."""
        settings: dict[str, Any] = dict(
            output_dir=output_dir,
            max_steps=12,
            per_device_train_batch_size=8,  # 2 tasks x group of 4
            num_generations=4,
            gradient_accumulation_steps=1,
            # The recipe of ``atlas demo`` (DemoSettings, measured in BENCHMARKS.md "Demo v3"):
            # LoRA at 5e-5 left the policy where it was in 12 steps.
            learning_rate=2e-4,
            # DAPO's setting: no KL term. It saves the reference pass, and it makes the rows of
            # groups that score alike exactly zero, so the trainer skips them (AtlasGRPOTrainer).
            beta=0.0,
            # A whole ITL episode (fetch, select, call, answer): 775 completion tokens at the
            # median of the demo's demonstrations, 1,598 at most; a code cell takes up to 101 tokens.
            max_completion_length=1536,
            max_turn_tokens=128,
            max_tool_calls=5,
            max_turns=6,
            max_difficulty=1,
            lora_r=16,
            lora_alpha=32,
            save_steps=6,
            use_cpu=True,
            bf16=False,
            # Recomputing activations costs a forward pass, but without it a batch of 8 ITL
            # episodes (~6k packed tokens) holds ~8 GB of activations; with it, ~0.5 GB.
            gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            # Training-reward shaping (atlas_plugins.rewards.shaping): measured on seed 1, equal
            # held-out success at 8 steps with a third of the repeating ITL episodes, and at 24
            # steps no collapse into repeated calls (ITL+PTC 0.370 against 0.222 unshaped).
            unfinished_penalty=0.3,
            repeat_penalty=0.1,
            seed=0,
        )
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> AtlasGRPOConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"training config {str(p)!r} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: could not parse: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of settings")
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            named = [
                f"{u} (did you mean {difflib.get_close_matches(u, known, 1)[0]!r}?)"
                if difflib.get_close_matches(u, known, 1)
                else u
                for u in unknown
            ]
            raise ConfigError(f"{p}: unknown setting(s): {', '.join(named)}")
        data.setdefault("output_dir", "runs/atlas")
        problems = []
        hints = _field_types(cls)
        for key, value in list(data.items()):
            ok, coerced, expected = _check_type(value, hints.get(key, Any))
            if ok:
                data[key] = coerced
            else:
                problems.append(f"{key} must be {expected}, got {value!r}")
        if problems:
            raise ConfigError(f"{p}: " + "; ".join(problems))
        try:
            cfg = cls(**data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{p}: {exc}") from None
        try:
            cfg.check()
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        return cfg


# ------------------------------------------------------------------------------ type checks
def _field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation (TRL's and ours)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        try:
            out.update(typing.get_type_hints(klass))
        except Exception:  # noqa: BLE001 - a base whose hints do not resolve is checked less, not refused
            continue
    return out


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _describe(tp: Any) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        dict: "a mapping",
        list: "a list",
    }
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + (" (or null)" if type(None) in typing.get_args(tp) else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin in (dict, list):
        return names[origin]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _check_type(value: Any, tp: Any) -> tuple[bool, Any, str]:
    """``(ok, value, expected)``: whether a YAML value fits a field type. Numeric strings YAML
    left unparsed (``1e-5``) become numbers; nothing else is converted."""
    if tp is Any or tp is None:
        return True, value, ""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return True, value, ""
        for arg in args:
            if arg is type(None):
                continue
            ok, coerced, _ = _check_type(value, arg)
            if ok:
                return True, coerced, ""
        return False, value, _describe(tp)
    if origin is typing.Literal:
        return (value in typing.get_args(tp)), value, _describe(tp)
    if origin in (dict, list):
        return isinstance(value, origin), value, _describe(tp)
    if tp is bool:
        return isinstance(value, bool), value, _describe(tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value, ""
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return True, int(value), ""
        if isinstance(value, float) and value.is_integer():
            return True, int(value), ""
        return False, value, _describe(tp)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value), ""
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return True, float(value), ""
        return False, value, _describe(tp)
    if tp is str:
        return isinstance(value, str), value, _describe(tp)
    if isinstance(tp, type) and issubclass(tp, Enum):
        values = {m.value for m in tp}
        return (value in values or isinstance(value, tp)), value, _describe(tp)
    if isinstance(tp, type) and tp in (dict, list):
        return isinstance(value, tp), value, _describe(tp)
    return True, value, ""  # anything richer: left to the config itself
