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
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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
    beta: float = field(default=0.001, metadata={"help": "KL coefficient (paper: 0.001)."})
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

    # -- what each step trains on -----------------------------------------------------------------
    designs: str | None = field(
        default=None,
        metadata={"help": "Comma-separated designs to train under, e.g. 'itl,itl+ptc' (each GRPO group picks one); "
                          "None = the one design given by loading/executor."},
    )
    curriculum: bool = field(
        default=False,
        metadata={"help": "Pick each step's (task, design) groups by measured reward spread instead of TRL's data "
                          "order (see atlas_plugins.training.curriculum)."},
    )
    dynamic_sampling_rounds: int = field(
        default=0,
        metadata={"help": "Replace groups whose rewards are all equal by fresh groups, up to N rounds per step (DAPO); "
                          "0 = off."},
    )

    # -- speed ------------------------------------------------------------------------------------
    shared_prefix: bool = field(
        default=True,
        metadata={"help": "Compute each batch's shared token prefixes once (exact; see atlas_plugins.training.shared_prefix)."},
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
    def trajectory_log_path(self) -> Path:
        return Path(self.trajectory_log) if self.trajectory_log else Path(self.output_dir) / "trajectories.jsonl"

    @classmethod
    def cpu_demo(cls, output_dir: str, **overrides: Any) -> "AtlasGRPOConfig":
        """Small settings for the embedded model on a 2-core CPU (the ``atlas demo`` recipe)."""
        settings: dict[str, Any] = dict(
            output_dir=output_dir,
            max_steps=12,
            per_device_train_batch_size=8,  # 2 tasks x group of 4
            num_generations=4,
            gradient_accumulation_steps=1,
            learning_rate=5e-5,
            # DAPO's setting: no KL term. It saves the reference pass, and it makes the rows of
            # groups that score alike exactly zero, so the trainer skips them (AtlasGRPOTrainer).
            beta=0.0,
            max_completion_length=768,  # a whole ITL episode: fetch, select, call, answer
            max_turn_tokens=96,
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
            seed=0,
        )
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "AtlasGRPOConfig":
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
            import difflib

            hints = [f"{u} (did you mean {difflib.get_close_matches(u, known, 1)[0]!r}?)" if difflib.get_close_matches(u, known, 1) else u for u in unknown]
            raise ConfigError(f"{p}: unknown setting(s): {', '.join(hints)}")
        data.setdefault("output_dir", "runs/atlas")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{p}: {exc}") from None
