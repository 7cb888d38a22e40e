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
   The trajectories stay with the trainer; an ``atlas_key`` column names each row's.
3. The reward function scores the trajectories the trainer holds with its
   :class:`~atlas_plugins.rewards.scorer.Scorer` (rubric provider → judge → aggregator; the
   object :func:`atlas_plugins.rubric_reward` and evaluation use too) against each task's
   fixed rubric; TRL normalises rewards within each group and takes the policy-gradient step.

Every scored trajectory is appended to a JSONL log (flushed and fsynced per line, so a killed
run loses nothing already scored). Each record names its run (``run_id``); a new run (not a
``resume``) moves an earlier run's log aside (``trajectories.<time>.jsonl``) instead of appending to
it. Under Accelerate the main process writes every process's trajectories, once.

Before any model loads, the config's types and component names, the task file and every task's
rubric are checked (each error names its field or task). An episode that failed
(``metadata["error"]``) is counted per step (``atlas/episode_errors``) and the first error is
logged as a warning; one that failed before its first model call has no tokens to train on and
gets a placeholder row (one end-of-sequence token, masked out) and reward ``None``, which TRL
leaves out of its group's baseline and gives no advantage. Each step's memory need is planned from
its token counts (:mod:`atlas_plugins.training.memory`). A runner that brings its own tools (an
adapter's graph over ``langchain-mcp-adapters`` tools) needs no atlas toolspace: with
``toolspace=None`` none is started. Checkpoints come from TRL every ``save_steps``; ``resume``
continues from the newest one with the optimizer, scheduler, RNG and data order restored.
The native loop never re-renders a conversation (see :mod:`atlas_plugins.agent.rendering`), so
its trajectories have no prefix breaks. Adapted agents may have them (a framework that rewrites
its history, or DSPy, which renders every call afresh): such an episode trains one of its
segments, drawn uniformly at random (:func:`training_view`; the reasoning is in
:mod:`atlas_plugins.agent.recorder`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from atlas_plugins.errors import AtlasError, ConfigError
from atlas_plugins.rewards.rubric import is_success
from atlas_plugins.rewards.shaping import RUBRIC_REWARD, SHAPING, repeats_a_call, shape_rewards
from atlas_plugins.training.config import AtlasGRPOConfig
from atlas_plugins.types import Task, Trajectory
from atlas_plugins.wire.special_tokens import defuse

if TYPE_CHECKING:
    from atlas_plugins.policy.base import Policy
    from atlas_plugins.toolspace import Toolspace

log = logging.getLogger(__name__)


def load_tasks_for(config: AtlasGRPOConfig, split: str = "train") -> list[Task]:
    """The config's tasks (a JSONL file, else the embedded set), filtered to one split.

    A task file whose tasks carry no ``split`` at all is one split: all of it trains (and none
    is held out). A file where only some tasks carry one is refused, naming the tasks without
    one — never silently dropped.
    """
    from atlas_plugins.envs.taskgen import load_default_tasks, load_tasks

    if config.tasks:
        try:
            every = load_tasks(config.tasks)
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(f"tasks: {exc}") from None
        unsplit = [t.id for t in every if t.split is None]
        if unsplit and len(unsplit) < len(every):
            shown = ", ".join(map(repr, unsplit[:5])) + (" ..." if len(unsplit) > 5 else "")
            raise ConfigError(
                f"tasks: {config.tasks}: {len(unsplit)} of {len(every)} task(s) have no 'split' ({shown}) while the "
                "others do; set split: train or split: heldout on every task (or on none: then all of them train)"
            )
        if unsplit:
            tasks = every if split == "train" else []
        else:
            tasks = [t for t in every if t.split == split]
    else:
        tasks = load_default_tasks(split)
    if config.max_difficulty is not None:
        tasks = [t for t in tasks if t.difficulty <= config.max_difficulty]
    if not tasks:
        raise ConfigError(
            f"no {split} tasks left (tasks={config.tasks or 'embedded'}, max_difficulty={config.max_difficulty})"
        )
    return tasks


class TrajectoryLog:
    """Append-only JSONL of scored trajectories; each line is flushed and fsynced.

    ``run_id`` is written into every record. :meth:`start_run` begins a new run: an earlier run's
    file is moved aside (``<stem>.<time>.jsonl``), so two runs never share one file.
    """

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path = path
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        path.parent.mkdir(parents=True, exist_ok=True)

    def start_run(self) -> Path | None:
        """Move an earlier run's log aside; returns where it went (None when there was none)."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.path.stat().st_mtime))
        target = self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.stem}.{stamp}-{n}{self.path.suffix}")
        self.path.rename(target)
        return target

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps({"run_id": self.run_id, **rec}, ensure_ascii=False, default=str) + "\n")
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
        "atlas/repeating_episodes": sum(repeats_a_call(t) for t in trajs) / n,
        "atlas/shaping_penalty": sum(sum((t.metadata.get(SHAPING) or {}).values()) for t in trajs) / n,
        # Counts, not means: how many episodes of the step failed, and how many had nothing to train.
        "atlas/episode_errors": float(sum(bool(t.metadata.get("error")) for t in trajs)),
        "atlas/untrainable_episodes": float(sum(bool(t.metadata.get(UNTRAINABLE)) for t in trajs)),
    }


#: ``metadata`` key of an episode that made no model call (nothing to train on; reward ``None``).
UNTRAINABLE = "untrainable"


def report_episode_errors(trajs: list[Trajectory], step: int) -> None:
    """A warning per step with failed episodes: how many, and the first error."""
    failed = [t for t in trajs if t.metadata.get("error")]
    if failed:
        log.warning(
            "step %d: %d of %d episode(s) failed; first (task %r): %s",
            step,
            len(failed),
            len(trajs),
            failed[0].task_id,
            str(failed[0].metadata["error"])[:500],
        )


def training_view(
    traj: Trajectory,
    rng: random.Random,
    max_completion_length: int | None = None,
    *,
    eos_id: int | None = None,
    fallback_prompt: list[int] | None = None,
) -> dict[str, Any]:
    """The token row one episode contributes to a GRPO step.

    Without prefix breaks: the whole episode. With breaks: one segment drawn uniformly (its
    index is recorded as ``metadata["trained_segment"]``). Completions longer than
    ``max_completion_length`` are cut there (mask and logprobs alike); the cut is recorded.

    An episode with no completion tokens (it failed before its first model call) gets a valid
    zero-length treatment: its prompt (``fallback_prompt`` when it recorded none) and one
    ``eos_id`` token with ``env_mask`` 0, so no loss reaches it, and it is marked
    ``metadata["untrainable"]`` (the trainer then gives it reward ``None``). TRL reads the last
    completion token of every row; an empty row would raise ``IndexError`` and fail the step.
    """
    rows = traj.token_rows()
    if not rows or not rows[0]["completion_ids"]:
        if eos_id is None:
            raise AtlasError(f"trajectory of task {traj.task_id!r} has no completion tokens and no eos_id was given")
        prompt = list(rows[0]["prompt_ids"]) if rows and rows[0]["prompt_ids"] else list(fallback_prompt or [eos_id])
        traj.metadata[UNTRAINABLE] = "no model call: " + str(
            traj.metadata.get("error") or "the episode recorded no tokens"
        )
        return {"prompt_ids": prompt, "completion_ids": [eos_id], "env_mask": [0], "logprobs": [0.0]}
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


class AtlasTrainer:
    """Builds the model, toolspace, agent and reward, and runs TRL's GRPO with our rollouts."""

    def __init__(
        self,
        config: AtlasGRPOConfig,
        *,
        toolspace: Toolspace | None = None,
        tasks: list[Task] | None = None,
        model: Any = None,
        tokenizer: Any = None,
        callbacks: list[Any] | None = None,
        runner: Any = None,
    ) -> None:
        """``runner`` plays the episodes (default: the native agent under ``config``'s design);
        pass an adapter's runner to train an existing LangGraph graph or DSPy program.

        ``toolspace=None``: the config's toolspace file, else the runner's own toolspace (an
        adapter's runner may hold one), else — with an adapter's runner — none at all (the agent
        brings its tools), else the embedded servers. Everything a config can get wrong is checked
        before the toolspace starts and the model loads (:meth:`AtlasGRPOConfig.check`,
        :func:`load_tasks_for`, :meth:`validate_rubrics`)."""
        self.config = config
        # -- checks that need nothing loaded ------------------------------------------------------
        config.check()
        if config.release_memory:
            from atlas_plugins.training.allocator import release_large_blocks

            release_large_blocks()
        if runner is not None and config.designs:
            raise ConfigError(
                "designs= trains the native agent under several designs; an adapter's runner plays "
                "its own agent, so leave designs unset"
            )
        self.tasks = list(tasks) if tasks is not None else load_tasks_for(config, "train")
        if config.max_train_tasks:
            self.tasks = self.tasks[: config.max_train_tasks]
        self._by_prompt = self._index_prompts(self.tasks)
        from atlas_plugins.rewards.scorer import Scorer, by_task_content

        try:
            self.scorer = Scorer(
                config.rubric_provider,
                config.judge,
                config.aggregator,
                None,
                provider_options=config.rubric_provider_options,
                judge_options=config.judge_options,
                aggregator_options=config.aggregator_options,
                rubric_key=by_task_content,
            )
        except (AtlasError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"rewards (rubric_provider {config.rubric_provider!r}, judge {config.judge!r}, aggregator "
                f"{config.aggregator!r} and their *_options): {exc}"
            ) from None
        self.validate_rubrics()
        # -- the toolspace ------------------------------------------------------------------------
        self._own_toolspace = False
        if toolspace is None and config.toolspace:
            import atlas_plugins as atlas

            toolspace, self._own_toolspace = atlas.Toolspace.from_config(config.toolspace), True
        elif toolspace is None and runner is not None:
            toolspace = getattr(runner, "toolspace", None)  # None: the runner's agent brings its own tools
        elif toolspace is None:
            import atlas_plugins as atlas

            toolspace = atlas.Toolspace.default(seed=self._world_seed(config.env_seed))
            self._own_toolspace = True
        if toolspace is not None:
            self._check_world(toolspace)  # a config's, a runner's or the caller's toolspace too
        self.toolspace = toolspace.start() if toolspace is not None else None
        self.scorer.toolspace = self.toolspace
        from atlas_plugins.agent.runner import NativeRunner, Runner

        self.designs = config.design_list()
        if runner is None:
            runner = NativeRunner(
                self.toolspace, config.agent_config(), designs=config.design_configs() if config.designs else None
            )
        self.runner = runner
        if not isinstance(self.runner, Runner):
            raise ConfigError(f"runner {self.runner!r} has no run(tasks, *, policy, seed) method")
        # -- the model (last: everything above fails in seconds, this takes a while) -------------
        self._base_model, self.tokenizer = self._load_model(model, tokenizer)
        self.log = TrajectoryLog(config.trajectory_log_path)
        self._pending: dict[str, Trajectory] = {}  # atlas_key -> trajectory awaiting its reward
        self._scored: dict[int, Any] = {}  # id(trajectory) -> its RewardBreakdown, scored during the rollout
        self._checkpointing: bool | None = None  # what the memory plan last set (None: not yet)
        from atlas_plugins.training.curriculum import Curriculum

        self.curriculum = Curriculum(self.tasks, self.designs, seed=config.seed) if config.curriculum else None
        self._curriculum_path = config.output_path / "curriculum.json"
        self._policy_obj: Any = None
        self._view_rng = random.Random(config.seed)
        self._rollouts = 0
        callbacks = list(callbacks or [])
        if config.trim_memory:
            from atlas_plugins.training.allocator import trim_heap_callback

            callbacks.append(trim_heap_callback())
        self.trainer = self._make_trainer(callbacks)

    @property
    def model(self) -> Any:
        """The model being trained (PEFT-wrapped once TRL has it)."""
        return self.trainer.model if getattr(self, "trainer", None) is not None else self._base_model

    @property
    def state(self) -> Any:
        """TRL's ``TrainerState`` (``global_step``, ``log_history``, ...)."""
        return self.trainer.state

    # -- construction --------------------------------------------------------------------------
    def _world_seed(self, configured: int) -> int:
        """The world seed of the embedded servers this trainer starts: the tasks' own
        (``metadata["env_seed"]``, as ``atlas tasks generate --env-seed`` writes it) unless
        ``env_seed`` says otherwise. ``env_seed`` left at its default (0) follows the tasks; a
        different explicit one is a setup error, since the tasks' answers hold in their world only."""
        from atlas_plugins.envs.taskgen import world_seed

        try:
            seed = world_seed(self.tasks)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if seed is None or seed == configured:
            return configured
        if configured == 0:
            return seed
        raise ConfigError(
            f"env_seed is {configured}, but the training tasks were generated for world seed {seed} "
            f"(their metadata env_seed); set env_seed: {seed}, or generate the tasks with --env-seed {configured}"
        )

    def _check_world(self, toolspace: Toolspace) -> None:
        """A given toolspace of embedded servers must run the tasks' world (see :meth:`_world_seed`)."""
        from atlas_plugins.envs.taskgen import world_seed

        cfg = getattr(toolspace, "config", None)
        if cfg is None or not any(getattr(s, "embedded", False) for s in getattr(cfg, "servers", [])):
            return  # not the embedded servers: their world is not ours to check
        try:
            seed = world_seed(self.tasks)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if seed is not None and seed != getattr(cfg, "seed", seed):
            raise ConfigError(
                f"the toolspace runs the embedded servers with world seed {cfg.seed}, but the training tasks "
                f"were generated for world seed {seed}; use Toolspace.default(seed={seed})"
            )

    def validate_rubrics(self) -> None:
        """Every training task's rubric, from the configured provider, before anything runs.
        Raises :class:`ConfigError` listing each task whose rubric cannot be built."""
        problems = []
        for task in self.tasks:
            try:
                self.scorer.rubric(task)
            except (AtlasError, ValueError, TypeError, KeyError) as exc:
                problems.append(f"task {task.id!r}: {exc}")
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ConfigError(
                f"rubric_provider {self.config.rubric_provider!r}: {len(problems)} task(s) have no valid "
                f"rubric{more}:\n" + "\n".join(problems[:5])
            )

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

    def _peft_config(self) -> Any:
        if not self.config.use_lora or hasattr(self._base_model, "peft_config"):
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

        from atlas_plugins.training.grpo_trainer import AtlasGRPOTrainer

        rows = [{"prompt": t.prompt, "task_id": t.id} for t in self.tasks]
        reward = self._scored_reward()
        return AtlasGRPOTrainer(
            shared_prefix=self.config.shared_prefix,
            model=self._base_model,
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
                self._policy_obj = TransformersPolicy(
                    model=model, tokenizer=self.tokenizer, name=f"{self.config.model}+grpo"
                )
        return self._policy_obj

    def _task_for(self, prompt: Any) -> Task:
        text = (
            prompt
            if isinstance(prompt, str)
            else (prompt[-1]["content"] if isinstance(prompt, list) and prompt else str(prompt))
        )
        task = self._by_prompt.get(text)
        if task is None:
            raise AtlasError(f"rollout got a prompt that matches no task: {text[:80]!r}")
        return task

    def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """Play the step's groups (TRL's prompts, or the curriculum's picks), score them, replace
        groups whose rewards are all equal (dynamic sampling), and return TRL's rows."""
        policy = self._policy(trainer)
        group = max(1, int(trainer.num_generations or 1))
        if len(prompts) % group:
            raise AtlasError(f"rollout got {len(prompts)} prompts, not a multiple of the group size {group}")
        n_groups = len(prompts) // group
        if self.curriculum is not None:
            if self._rollouts == 0 and self.curriculum.load(self._curriculum_path):
                pass  # resumed: the curriculum continues where the checkpointed run stopped
            items = self.curriculum.pick(n_groups)
        else:
            items = [(self._task_for(prompts[g * group]), self.designs[0]) for g in range(n_groups)]
        groups = self._play(items, group, policy)
        score_now = self.curriculum is not None or self.config.dynamic_sampling_rounds > 0
        if score_now:
            self._score_groups(groups, items)
        mode = "train" if trainer.model.training else "eval"
        flat = [g for g, trajs in enumerate(groups) if _flat(trajs)] if score_now else []
        trainer._metrics[mode]["atlas/dynamic/flat_fraction_sampled"].append(len(flat) / max(1, n_groups))
        replaced = 0
        for _ in range(self.config.dynamic_sampling_rounds):
            if not flat:
                break
            taken = {self._item_key(it) for it in items}
            fresh = (
                self.curriculum.pick(len(flat), exclude=taken)
                if self.curriculum is not None
                else [(self.tasks[(self._rollouts * 7919 + g) % len(self.tasks)], self.designs[0]) for g in flat]
            )
            new_groups = self._play(fresh, group, policy)
            self._score_groups(new_groups, fresh)
            still = []
            for g, item, trajs in zip(flat, fresh, new_groups, strict=False):  # the curriculum may pick fewer
                if _flat(trajs):
                    still.append(g)
                else:
                    groups[g], items[g] = trajs, item
                    replaced += 1
            flat = still
        trainer._metrics[mode]["atlas/dynamic/replaced_groups"].append(float(replaced))
        trainer._metrics[mode]["atlas/dynamic/flat_fraction_trained"].append(len(flat) / max(1, n_groups))
        if self.curriculum is not None:
            for k, v in self.curriculum.summary().items():
                trainer._metrics[mode][f"atlas/curriculum/{k}"].append(v)
            self.curriculum.save(self._curriculum_path)
        trajs = [t for g in groups for t in g]
        report_episode_errors(trajs, trainer.state.global_step)
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        eos_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.pad_token_id
        for t in trajs:
            t.metadata["step"] = trainer.state.global_step
            rows.append(
                training_view(
                    t,
                    self._view_rng,
                    self.config.max_completion_length,
                    eos_id=eos_id,
                    fallback_prompt=self._prompt_ids(t),
                )
            )
            key = f"{self._rollouts}:{len(keys)}"
            self._pending[key] = t
            keys.append(key)
        if self.config.trim_memory:  # the rollout's K/V is freed: return it before the training pass
            from atlas_plugins.training.allocator import trim_heap

            trim_heap()
        if self.config.memory_guard:
            self._plan_memory(rows, trainer, mode)
        return {
            "prompt_ids": [r["prompt_ids"] for r in rows],
            "completion_ids": [r["completion_ids"] for r in rows],
            "logprobs": [r["logprobs"] for r in rows],
            "env_mask": [r["env_mask"] for r in rows],
            "atlas_key": keys,
        }

    def _prompt_ids(self, traj: Trajectory) -> list[int] | None:
        """The task prompt as a chat prompt (the placeholder row of an episode that recorded none)."""
        if traj.prompt_ids:
            return None
        prompt = str((traj.task or {}).get("prompt") or "")
        ids = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": defuse(prompt, self.tokenizer)}],  # task-file text: no forged tokens
            tokenize=True,
            add_generation_prompt=True,
            return_dict=False,
        )
        return list(ids)

    def _plan_memory(self, rows: list[dict[str, Any]], trainer: Any, mode: str) -> None:
        """Checkpointing by measured need, or a clear error before a step that cannot fit
        (:mod:`atlas_plugins.training.memory`)."""
        from atlas_plugins.training.memory import GB, available_bytes, estimate, plan_step

        model = trainer.accelerator.unwrap_model(trainer.model)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        param = next(base.parameters())
        device = param.device
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        tree = bool(getattr(trainer, "_tree", False)) and trainer.accelerator.num_processes == 1
        quadratic = device.type != "cuda" or getattr(base.config, "_attn_implementation", "sdpa") == "eager"
        from atlas_plugins.training.shared_prefix import logprob_footprint

        tile, tile_copies = logprob_footprint(device)
        est = estimate(
            base.config,
            [(r["prompt_ids"], r["completion_ids"]) for r in rows],
            micro_batch=self.config.per_device_train_batch_size,
            tree=tree,
            dtype_bytes=param.element_size(),
            trainable_params=trainable,
            first_step=trainer.state.global_step == 0,
            quadratic_attention=quadratic,
            logprob_tile=tile,
            tile_copies=tile_copies,
        )
        if self.config.memory_budget_gb:
            budget = int(self.config.memory_budget_gb * GB)
        else:
            budget = int(0.9 * available_bytes(device))
            if device.type != "cuda":  # the processes on this host share its RAM (torchrun/accelerate set this)
                budget //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
        settings = (
            f" (per_device_train_batch_size={self.config.per_device_train_batch_size}, "
            f"max_completion_length={self.config.max_completion_length}, memory_budget_gb={self.config.memory_budget_gb})"
        )
        plan = plan_step(est, budget=budget, settings=settings)
        if plan.checkpointing != self._checkpointing and mode == "train":
            _set_checkpointing(base, plan.checkpointing)
            if self._checkpointing is not None or plan.checkpointing:
                log.info(
                    "step %d: gradient checkpointing %s (estimated %.1f GB without it, budget %.1f GB)",
                    trainer.state.global_step,
                    "on" if plan.checkpointing else "off",
                    est.without_checkpointing / GB,
                    budget / GB,
                )
            self._checkpointing = plan.checkpointing
        for k, v in plan.metrics().items():
            trainer._metrics[mode][k].append(v)

    @staticmethod
    def _item_key(item: tuple[Task, str]) -> str:
        return f"{item[0].id}@{item[1]}"

    def _play(self, items: list[tuple[Task, str]], group: int, policy: Policy) -> list[list[Trajectory]]:
        """One episode per group member; tasks are tagged with their design when several are trained."""
        tasks = []
        for task, design in items:
            played = task
            if self.config.designs:
                played = task.model_copy(update={"metadata": {**task.metadata, "atlas_design": design}})
            tasks += [played] * group
        seed = None if self.config.seed is None else self.config.seed * 100_003 + self._rollouts * 997
        from atlas_plugins.policy.transformers_policy import merged_adapters

        # LoRA folded into the weights while the episodes play: decode is the slowest phase on a CPU.
        model = getattr(policy, "model", None)
        with merged_adapters(model) if model is not None and not self.config.use_vllm else contextlib.nullcontext():
            trajs = self.runner.run(tasks, policy=policy, seed=seed)
        self._rollouts += 1
        if len(trajs) != len(tasks):
            raise AtlasError(f"runner returned {len(trajs)} trajectories for {len(tasks)} tasks")
        return [trajs[i : i + group] for i in range(0, len(trajs), group)]

    def _score_groups(self, groups: list[list[Trajectory]], items: list[tuple[Task, str]]) -> None:
        self._score([t for g in groups for t in g])
        if self.curriculum is not None:
            for (task, design), trajs in zip(items, groups, strict=True):
                self.curriculum.update(task, design, [t.reward or 0.0 for t in trajs], [is_success(t) for t in trajs])

    def _score(self, trajs: list[Trajectory]) -> None:
        """Score episodes for training: the rubric breakdown (kept until the reward function reads
        it), then the training reward's penalties (atlas_plugins.rewards.shaping)."""
        if not trajs:
            return
        for t, b in zip(trajs, self.scorer.score_batch(trajs), strict=True):
            self._scored[id(t)] = b
        shape_rewards(
            trajs, unfinished_penalty=self.config.unfinished_penalty, repeat_penalty=self.config.repeat_penalty
        )

    def _scored_reward(self) -> Any:
        from atlas_plugins.rewards.scorer import batch_metrics, notify

        traj_log = self.log

        def atlas_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
            keys = kwargs.get("atlas_key")
            if not isinstance(keys, list) or len(keys) != len(completions):
                raise AtlasError("atlas_reward needs the rollout's atlas_key column (one key per completion)")
            # Score the trajectories the rollout played, not a re-parse of their text.
            trajs = [self._pending.pop(k) for k in keys]
            self._score([t for t in trajs if id(t) not in self._scored])  # the rollout scored the rest
            breakdowns = [self._scored.pop(id(t)) for t in trajs]
            self._scored.clear()  # groups replaced by dynamic sampling were scored but not trained
            for t in trajs:
                if t.metadata.get(UNTRAINABLE):
                    t.reward = None  # nothing was sampled: no reward, so no baseline share and no advantage
            log_metric = kwargs.get("log_metric")
            if callable(log_metric) and trajs:
                for k, v in batch_metrics(trajs, breakdowns).items():
                    if v == v:  # skip NaN
                        log_metric(f"rubric/{k}", float(v))
                for k, v in episode_metrics(trajs).items():
                    log_metric(k, v)
            notify(trajs)
            records = [
                {
                    "step": t.metadata.get("step"),
                    "task_id": t.task_id,
                    "reward": t.reward,
                    "rubric_reward": t.metadata.get(RUBRIC_REWARD, t.reward),
                    "by_category": t.reward_by_category,
                    "success": is_success(t),
                    "trajectory": t.model_dump(
                        mode="json", exclude={"prompt_ids", "completion_ids", "env_mask", "logprobs"}
                    ),
                }
                for t in trajs
            ]
            accelerator = (
                getattr(self.trainer, "accelerator", None) if getattr(self, "trainer", None) is not None else None
            )
            if accelerator is not None and accelerator.num_processes > 1:
                # Each process scores its own share of the step: the main process writes them all, once.
                from accelerate.utils import gather_object

                for rec in records:
                    rec["process"] = accelerator.process_index
                records = gather_object(records)
                if not accelerator.is_main_process:
                    records = []
            if records:
                traj_log.write(records)
            return [t.reward for t in trajs]

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
        else:
            state = getattr(self.trainer, "state", None)
            accelerator = getattr(self.trainer, "accelerator", None)
            if (accelerator is None or accelerator.is_main_process) and (state is None or state.global_step == 0):
                moved = self.log.start_run()  # a new run: never append to an earlier run's log
                if moved is not None:
                    log.info("an earlier run's trajectory log was moved to %s", moved)
        random.seed(self.config.seed)
        return self.trainer.train(resume_from_checkpoint=resume_from)

    def save_adapter(self, path: str | Path) -> Path:
        """Save the trained adapter (or model) and tokenizer; under Accelerate, the main process only."""
        path = Path(path)
        accelerator = self.trainer.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(self.trainer.model)
            if "ref" in getattr(model, "peft_config", {}):
                # TRL's frozen copy of the starting adapter (the KL reference, beta > 0): not a result.
                model.save_pretrained(path, selected_adapters=[model.active_adapter])
            else:
                model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        return path

    def replicas_in_sync(self) -> bool:
        """Under Accelerate: whether every process holds the same trainable weights (a digest of
        them, gathered), which is what all-reduced gradients guarantee. True on one process."""
        import torch

        accelerator = self.trainer.accelerator
        if accelerator.num_processes == 1:
            return True
        model = accelerator.unwrap_model(self.trainer.model)
        params = [p.detach().double() for p in model.parameters() if p.requires_grad]
        digest = torch.stack([sum(p.sum() for p in params), sum((p * p).sum() for p in params)]).to(accelerator.device)
        every = accelerator.gather(digest.unsqueeze(0)).cpu()
        return bool(torch.allclose(every, every[0].expand_as(every), rtol=0, atol=1e-9))

    def close(self) -> None:
        if self._own_toolspace and self.toolspace is not None:
            self.toolspace.close()


def _set_checkpointing(model: Any, on: bool) -> None:
    """Turn activation (gradient) checkpointing on or off on a transformers model, mid-run."""
    if on:
        kwargs = {"use_reentrant": False}  # no input-grad hooks needed (LoRA leaves the embeddings frozen)
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if getattr(model.config, "use_cache", None):
            model.config.use_cache = False
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def _flat(trajs: list[Trajectory]) -> bool:
    """Whether a group's rewards are all equal (no GRPO signal)."""
    rewards = [t.reward for t in trajs]
    return len(set(rewards)) <= 1


class _TrainStepHook(TrainerCallback):
    """Forwards each logged step's metrics to the ``atlas_on_train_step`` plugin hook."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs:
            from atlas_plugins.plugins import get_plugin_manager

            get_plugin_manager().on_train_step({"step": state.global_step, **logs})
