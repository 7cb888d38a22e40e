"""Rubric-based GRPO for the native agent, on TRL's ``GRPOTrainer``.

How one step runs:

1. TRL draws a batch of task prompts (each repeated ``num_generations`` times: one GRPO group
   per task) and calls our ``rollout_func``.
2. ``rollout_func`` plays every episode of the batch with the runner — by default the native
   :class:`~atlas_plugins.agent.loop.Agent` (group-batched generation with the *training* model
   itself, PEFT-wrapped and updated in place, MCP tool calls, loading-policy meta-calls,
   sandboxed code); an adapter's runner plays an existing LangGraph graph or DSPy program
   instead (see :mod:`atlas_plugins.agent.runner`) — and returns, per episode,
   the first prompt's ids, everything after it as ``completion_ids``, the sampled tokens'
   logprobs, and ``env_mask`` (0 on tool results and injected schemas, so the loss ignores them).
   The full :class:`~atlas_plugins.types.Trajectory` travels as an extra ``trajectory`` column.
3. The reward function (:func:`atlas_plugins.rubric_reward`: rubric provider → judge →
   aggregator) scores each trajectory against its task's fixed rubric; TRL normalises rewards
   within each group and takes the policy-gradient step.

Every scored trajectory is appended to a JSONL log (flushed and fsynced per line, so a killed
run loses nothing already scored). Checkpoints come from TRL every ``save_steps``; ``resume``
continues from the newest one with the optimizer, scheduler, RNG and data order restored.
The native loop never re-renders a conversation (see :mod:`atlas_plugins.agent.rendering`), so
its trajectories have no prefix breaks. Adapted agents may have them (a framework that rewrites
its history, or DSPy, which renders every call afresh): such an episode trains one of its
segments, drawn uniformly at random (:func:`training_view`; the reasoning is in
:mod:`atlas_plugins.agent.recorder`).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Iterable

from transformers import TrainerCallback

from atlas_plugins.errors import AtlasError, ConfigError
from atlas_plugins.training.config import AtlasGRPOConfig
from atlas_plugins.types import Task, Trajectory


def load_tasks_for(config: AtlasGRPOConfig, split: str = "train") -> list[Task]:
    """The config's tasks (a JSONL file, else the embedded set), filtered to one split."""
    from atlas_plugins.envs.taskgen import load_default_tasks, load_tasks

    tasks = load_tasks(config.tasks, split) if config.tasks else load_default_tasks(split)
    if config.max_difficulty is not None:
        tasks = [t for t in tasks if t.difficulty <= config.max_difficulty]
    if not tasks:
        raise ConfigError(f"no {split} tasks left (tasks={config.tasks or 'embedded'}, max_difficulty={config.max_difficulty})")
    return tasks


class TrajectoryLog:
    """Append-only JSONL of scored trajectories; each line is flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def episode_metrics(trajs: list[Trajectory]) -> dict[str, float]:
    """Means the trainer logs per step (besides rewards): success, context, turns, errors."""
    n = max(1, len(trajs))
    succ = [t for t in trajs if t.reward_by_category]
    return {
        "atlas/success": sum(is_success(t) for t in succ) / max(1, len(succ)),
        "atlas/context_tokens": sum(t.context_tokens for t in trajs) / n,
        "atlas/initial_context_tokens": sum(t.initial_context_tokens for t in trajs) / n,
        "atlas/turns": sum(t.turns for t in trajs) / n,
        "atlas/tool_calls": sum(len(t.tool_calls) for t in trajs) / n,
        "atlas/tool_errors": sum(t.tool_errors for t in trajs) / n,
        "atlas/parse_failures": sum(t.parse_failures for t in trajs) / n,
        "atlas/answered": sum(t.final_answer is not None for t in trajs) / n,
    }


def training_view(traj: Trajectory, rng: random.Random, max_completion_length: int | None = None) -> dict[str, Any]:
    """The token row one episode contributes to a GRPO step.

    Without prefix breaks: the whole episode. With breaks: one segment drawn uniformly (its
    index is recorded as ``metadata["trained_segment"]``). Completions longer than
    ``max_completion_length`` are cut there (mask and logprobs alike); the cut is recorded.
    """
    rows = traj.token_rows()
    k = 0
    if traj.prefix_breaks and traj.segments:  # draw only then: the RNG stream stays the same
        k = rng.randrange(len(rows))
        traj.metadata["trained_segment"] = k
    row = {key: list(rows[k][key]) for key in ("prompt_ids", "completion_ids", "env_mask", "logprobs")}
    if not (len(row["completion_ids"]) == len(row["env_mask"]) == len(row["logprobs"])):
        raise AtlasError(f"trajectory of task {traj.task_id!r}: completion_ids, env_mask and logprobs differ in length")
    if max_completion_length and len(row["completion_ids"]) > max_completion_length:
        traj.metadata["truncated_completion"] = len(row["completion_ids"])
        row = {k: (v[:max_completion_length] if k != "prompt_ids" else v) for k, v in row.items()}
    return row


def is_success(traj: Trajectory) -> bool:
    """Task success: every task-fulfilment criterion fully met."""
    tf = traj.reward_by_category.get("TF")
    return tf is not None and tf >= 0.999


class AtlasTrainer:
    """Builds the model, toolspace, agent and reward, and runs TRL's GRPO with our rollouts."""

    def __init__(
        self,
        config: AtlasGRPOConfig,
        *,
        toolspace: Any = None,
        tasks: list[Task] | None = None,
        model: Any = None,
        tokenizer: Any = None,
        callbacks: list[Any] | None = None,
        runner: Any = None,
    ) -> None:
        """``runner`` plays the episodes (default: the native agent under ``config``'s design);
        pass an adapter's runner to train an existing LangGraph graph or DSPy program."""
        self.config = config
        self._own_toolspace = toolspace is None
        if toolspace is None:
            import atlas_plugins as atlas

            toolspace = (
                atlas.Toolspace.from_config(config.toolspace) if config.toolspace else atlas.Toolspace.default(seed=config.env_seed)
            )
        self.toolspace = toolspace.start()
        self.tasks = list(tasks) if tasks is not None else load_tasks_for(config, "train")
        if config.max_train_tasks:
            self.tasks = self.tasks[: config.max_train_tasks]
        self._by_prompt = self._index_prompts(self.tasks)
        self.model, self.tokenizer = self._load_model(model, tokenizer)
        self.log = TrajectoryLog(config.trajectory_log_path)
        self.reward = self._make_reward()
        from atlas_plugins.agent.runner import NativeRunner, Runner

        self.runner = runner if runner is not None else NativeRunner(self.toolspace, config.agent_config())
        if not isinstance(self.runner, Runner):
            raise ConfigError(f"runner {self.runner!r} has no run(tasks, *, policy, seed) method")
        self._policy_obj: Any = None
        self._view_rng = random.Random(config.seed)
        self._rollouts = 0
        self.trainer = self._make_trainer(callbacks or [])

    # -- construction --------------------------------------------------------------------------
    @staticmethod
    def _index_prompts(tasks: list[Task]) -> dict[str, Task]:
        # TRL hands rollout_func the prompt column only, so prompts must identify their task.
        by_prompt: dict[str, Task] = {}
        for t in tasks:
            if t.prompt in by_prompt and by_prompt[t.prompt].model_dump() != t.model_dump():
                raise ConfigError(
                    f"tasks {by_prompt[t.prompt].id!r} and {t.id!r} have the same prompt but differ; "
                    "prompts must be unique within a training set"
                )
            by_prompt[t.prompt] = t
        return by_prompt

    def _load_model(self, model: Any, tokenizer: Any) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from atlas_plugins.embedded_model import resolve_model_path

        if model is None or isinstance(model, (str, os.PathLike)):
            path = resolve_model_path(model if model is not None else self.config.model)
            model = AutoModelForCausalLM.from_pretrained(path)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        elif tokenizer is None:
            raise ConfigError("pass the tokenizer together with a model object")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    def _make_reward(self) -> Any:
        from atlas_plugins.rewards.trl_reward import rubric_reward

        return rubric_reward(
            provider=self.config.rubric_provider,
            judge=self.config.judge,
            aggregator=self.config.aggregator,
            toolspace=self.toolspace,
        )

    def _peft_config(self) -> Any:
        if not self.config.use_lora or hasattr(self.model, "peft_config"):
            return None  # off, or the model already carries a LoRA (e.g. from the warm start)
        from peft import LoraConfig

        return LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=self.config.lora_target_modules,
            task_type="CAUSAL_LM",
        )

    def _make_trainer(self, callbacks: list[Any]) -> Any:
        from datasets import Dataset
        from trl import GRPOTrainer

        rows = [{"prompt": t.prompt, "task_id": t.id} for t in self.tasks]
        reward = self._scored_reward()
        return GRPOTrainer(
            model=self.model,
            args=self.config,
            reward_funcs=[reward],
            train_dataset=Dataset.from_list(rows),
            processing_class=self.tokenizer,
            peft_config=self._peft_config(),
            rollout_func=self._rollout,
            callbacks=[_TrainStepHook(), *callbacks],
        )

    # -- rollouts and rewards ------------------------------------------------------------------------
    def _policy(self, trainer: Any) -> Any:
        """The policy over the model being trained (rebuilt only if TRL swapped the model)."""
        from atlas_plugins.policy.transformers_policy import TransformersPolicy

        model = trainer.accelerator.unwrap_model(trainer.model)
        if self._policy_obj is None or self._policy_obj.model is not model:
            if self.config.use_vllm:
                # TRL syncs the training weights into its vLLM engine before each rollout_func call.
                from atlas_plugins.policy.vllm_policy import VLLMPolicy

                self._policy_obj = VLLMPolicy.from_trainer(trainer, self.tokenizer, name=f"{self.config.model}+grpo")
            else:
                self._policy_obj = TransformersPolicy(model=model, tokenizer=self.tokenizer, name=f"{self.config.model}+grpo")
        return self._policy_obj

    def _task_for(self, prompt: Any) -> Task:
        text = prompt if isinstance(prompt, str) else (prompt[-1]["content"] if isinstance(prompt, list) and prompt else str(prompt))
        task = self._by_prompt.get(text)
        if task is None:
            raise AtlasError(f"rollout got a prompt that matches no task: {text[:80]!r}")
        return task

    def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        policy = self._policy(trainer)
        tasks = [self._task_for(p) for p in prompts]
        seed = None if self.config.seed is None else self.config.seed * 100_003 + self._rollouts * 997
        trajs = self.runner.run(tasks, policy=policy, seed=seed)
        self._rollouts += 1
        if len(trajs) != len(tasks):
            raise AtlasError(f"runner returned {len(trajs)} trajectories for {len(tasks)} tasks")
        rows = []
        for t in trajs:
            t.metadata["step"] = trainer.state.global_step
            rows.append(training_view(t, self._view_rng, self.config.max_completion_length))
        return {
            "prompt_ids": [r["prompt_ids"] for r in rows],
            "completion_ids": [r["completion_ids"] for r in rows],
            "logprobs": [r["logprobs"] for r in rows],
            "env_mask": [r["env_mask"] for r in rows],
            "trajectory": [t.model_dump(mode="json") for t in trajs],
        }

    def _scored_reward(self) -> Any:
        base = self.reward
        log = self.log

        def atlas_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
            rewards = base(prompts, completions, **kwargs)
            # The reward function already parsed and scored each row's trajectory (reward and
            # per-category scores set on it): log those instead of parsing them again.
            trajs = list(base.last_trajectories)
            log_metric = kwargs.get("log_metric")
            if callable(log_metric) and trajs:
                for k, v in episode_metrics(trajs).items():
                    log_metric(k, v)
            log.write(
                {
                    "step": t.metadata.get("step"),
                    "task_id": t.task_id,
                    "reward": t.reward,
                    "by_category": t.reward_by_category,
                    "success": is_success(t),
                    "trajectory": t.model_dump(mode="json", exclude={"prompt_ids", "completion_ids", "env_mask", "logprobs"}),
                }
                for t in trajs
            )
            return rewards

        atlas_reward.__name__ = "atlas_reward"
        return atlas_reward

    # -- running -------------------------------------------------------------------------------------------
    def train(self, resume: bool | str = False) -> Any:
        """Train; ``resume=True`` continues from the newest checkpoint in ``output_dir``."""
        resume_from: Any = None
        if resume:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from = resume if isinstance(resume, str) else get_last_checkpoint(self.config.output_dir)
            if resume_from is None:
                raise AtlasError(f"--resume: no checkpoint in {self.config.output_dir!r} to resume from")
        random.seed(self.config.seed)
        return self.trainer.train(resume_from_checkpoint=resume_from)

    def save_adapter(self, path: str | Path) -> Path:
        path = Path(path)
        self.trainer.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path

    def close(self) -> None:
        if self._own_toolspace:
            self.toolspace.close()


class _TrainStepHook(TrainerCallback):
    """Forwards each logged step's metrics to the ``atlas_on_train_step`` plugin hook."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs:
            from atlas_plugins.plugins import get_plugin_manager

            get_plugin_manager().on_train_step({"step": state.global_step, **logs})
