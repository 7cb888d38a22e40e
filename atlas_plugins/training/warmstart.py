"""Warm start: behaviour cloning on verified demonstrations before rubric GRPO.

Why: cold-start GRPO needs at least one rollout per group that scores differently from the
others. The embedded SmolLM2-135M never emits a well-formed tool call on its own (measured:
0 tool calls in 16 greedy level-1 episodes under eager and ITL), so every group scores 0 and
GRPO has no signal. A short supervised warm start on successful trajectories fixes the format.

What: for each *training* task (held-out tasks are never touched), its verified reference
solution is played through the real agent loop by :class:`ScriptedPolicy` — the same prompt,
the same loading-policy meta-calls (``fetch_tools`` / ``get_selected_tools`` for ITL, one
``code_interpreter`` cell for PTC), real MCP calls and real observations — and kept only if the
task's own rubric scores it 1.0. The model is then finetuned (LoRA, TRL's ``SFTTrainer``) on
those token-faithful trajectories with the loss on model tokens only (``env_mask`` 1), exactly
the tokens GRPO later trains.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from atlas_plugins.policy.base import FinishReason, Generation
from atlas_plugins.rewards.rubric import FULL_SCORE
from atlas_plugins.types import Task, Trajectory
from atlas_plugins.wire.special_tokens import defuse_messages
from atlas_plugins.wire.toolcall import format_call as _call

if TYPE_CHECKING:
    from atlas_plugins.context.base import LoadingPolicy
    from atlas_plugins.policy.base import Policy
    from atlas_plugins.toolspace import Toolspace


def scripted_turns(
    task: Task,
    *,
    loading: str | LoadingPolicy,
    ptc: bool,
    think: bool = False,
    describe: Callable[[str], str | None] | None = None,
) -> list[str] | None:
    """The assistant turns that solve ``task`` under a design (None when it has no solution).

    Under PTC: one ``code_interpreter`` cell. Otherwise the loading policy writes the calls
    (``reference_calls``: its meta-calls, then the task's tool calls); a plugin policy without
    that method gets the direct tool calls. ``think`` starts each turn with a short thought in
    ``<think>…</think>`` (the prompt format asks for one) that names what the turn does and why;
    with ``describe`` (qualified tool name -> its description) the thought for loading and calling
    a tool quotes what the tool does, so the clone learns to pick a tool by its description (what
    a held-out task of an unseen template needs) rather than by the template's wording."""
    solution = task.metadata.get("reference_solution") or []
    if not solution:
        return None
    answer = task.answer if task.answer else "Done."
    turns: list[str] = []
    if ptc:
        lines: list[str] = []
        names: dict[str, str] = {}
        for step in solution:
            server = step["server"]
            if server not in names:
                names[server] = f"s{len(names)}"
                lines.append(f"{names[server]} = MCPServer({server!r})")
        for i, step in enumerate(solution):
            args = ", ".join(f"{k}={v!r}" for k, v in step["arguments"].items())
            lines.append(f"r{i} = {names[step['server']]}.{step['tool']}({args})")
        lines.append(f"r{len(solution) - 1}")
        used = ", ".join(dict.fromkeys(f"{s['server']}.{s['tool']}" for s in solution))
        turns.append(
            _thought(think, f"Call {used} from Python with the values the task gives.")
            + _call("code_interpreter", {"code": "\n".join(lines)})
        )
    else:
        if isinstance(loading, str):
            from atlas_plugins.plugins import get_loading_policy

            loading = get_loading_policy(loading)
        writer = getattr(loading, "reference_calls", None)
        calls = writer(solution) if writer else [(f"{s['server']}:{s['tool']}", s["arguments"]) for s in solution]
        turns += [
            _thought(think, _why(name, arguments, describe)) + _call(name, arguments) for name, arguments in calls
        ]
    turns.append(_thought(think, "The tool result answers the task.") + f"<answer>{answer}</answer>")
    return turns


def _thought(think: bool, text: str) -> str:
    return f"<think>{text}</think>" if think else ""


def _why(name: str, arguments: dict[str, Any], describe: Callable[[str], str | None] | None = None) -> str:
    """A one-line thought for a scripted call (what it is for), as a reasoning step."""
    if name == "fetch_tools":
        return f"The {arguments.get('server')} server fits the task; see its tools."
    if name == "get_selected_tools":
        server, tools = arguments.get("server"), list(arguments.get("tools") or [])
        gists = [_gist(describe, f"{server}:{t}") for t in tools] if describe else []
        if gists and all(gists):
            return (
                "; ".join(f"{t} ({g})" for t, g in zip(tools, gists, strict=True)) + " fits the task; load the schema."
            )
        return f"{', '.join(tools)} fits the task; load the schema."
    if name == "search_tools":
        return "Search for a tool that does this."
    gist = _gist(describe, name) if describe else None
    if gist:
        return f"{name} does this ({gist}); call it with the values the task gives."
    return f"Call {name} with the values the task gives."


def _gist(describe: Callable[[str], str | None], qualified: str, words: int = 8) -> str | None:
    """The first clause of a tool's description, at most ``words`` words, lower-cased first letter."""
    text = describe(qualified)
    if not text:
        return None
    clause = re.split(r"[.;:(\n]", text.strip(), maxsplit=1)[0].strip()
    short = " ".join(clause.split()[:words]).rstrip(",")
    return (short[:1].lower() + short[1:]) if short else None


class ScriptedPolicy:
    """A stand-in *policy* (not a model) that replays fixed assistant turns, one episode at a time.

    It satisfies the agent's policy interface so demonstrations go through exactly the code path
    (and produce exactly the token layout) of real rollouts. Logprobs are 0.0: demonstrations
    are for supervised loss, never for policy-gradient ratios.

    Args:
        tokenizer: tokenizes the scripted turns (the trained model's tokenizer).
        turns: the assistant replies, in order (the last one repeats if more are asked for).
        policy: a real policy whose ``apply_chat_template`` renders prompts (adapters render
            through their policy; it must use ``tokenizer``). Default: the tokenizer's template.
        eos: end every turn with the end-of-sequence token the policy stops on, as a model's
            reply ends when nothing else stops it (callers without stop strings, e.g. DSPy: the
            clone must learn to stop). Off by default: the native agent's turns end at a stop string.

    A turn longer than the caller's ``max_new_tokens`` is cut there (``finish_reason="length"``),
    as sampling would cut it: a demonstration the model could not produce within its budget
    then fails its rubric instead of being cloned.
    """

    name = "scripted"

    def __init__(self, tokenizer: Any, turns: list[str], policy: Policy | None = None, eos: bool = False) -> None:
        if policy is not None and getattr(policy, "tokenizer", tokenizer) is not tokenizer:
            raise ValueError("ScriptedPolicy: the rendering policy must use the same tokenizer object")
        self.tokenizer = tokenizer
        self.policy = policy
        self.eos_id: int | None = None
        if eos:
            # The id the policy stops on (its generation config may name another than the tokenizer).
            ids = list(getattr(policy, "_eos_ids", None) or []) or [tokenizer.eos_token_id]
            if ids[0] is None:
                raise ValueError("ScriptedPolicy(eos=True) needs a tokenizer with an eos_token_id")
            self.eos_id = int(ids[0])
        self._turns = list(turns)
        self._i = 0

    def apply_chat_template(
        self, messages: list[dict[str, Any]], tools: Any = None, add_generation_prompt: bool = True
    ) -> list[int]:
        if self.policy is not None:
            return self.policy.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        return list(
            self.tokenizer.apply_chat_template(
                defuse_messages(messages, self.tokenizer),  # outside text forges no control tokens
                tokenize=True,
                add_generation_prompt=add_generation_prompt,
                return_dict=False,
            )
        )

    def decode(self, ids: Sequence[int]) -> str:
        """Text as the rendering policy reports it (special tokens skipped by default)."""
        if self.policy is not None and hasattr(self.policy, "decode"):
            return self.policy.decode(ids)
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def generate(self, batch: Sequence[Sequence[int]], max_new_tokens: Any = None, **_: Any) -> list[Generation]:
        if len(batch) != 1:
            raise ValueError("ScriptedPolicy plays one episode at a time")
        text = self._turns[min(self._i, len(self._turns) - 1)]
        self._i += 1
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        reason: FinishReason = "stop"
        stop: str | None = None
        if self.eos_id is not None:
            # As a sampled reply: the EOS id is part of the completion, the text is decoded from the ids.
            ids.append(self.eos_id)
            reason, stop = "eos", self.tokenizer.convert_ids_to_tokens(self.eos_id)
        limit = max_new_tokens[0] if isinstance(max_new_tokens, (list, tuple)) else max_new_tokens
        if limit is not None and len(ids) > int(limit):
            ids, reason, stop = ids[: int(limit)], "length", None
        if reason != "stop":
            text = self.decode(ids)
        return [Generation(completion_ids=ids, logprobs=[0.0] * len(ids), text=text, finish_reason=reason, stop=stop)]


def verified(
    tasks: Sequence[Task],
    scorer: Any,
    play: Callable[[Task], Trajectory | None],
) -> tuple[list[Trajectory], dict[str, int]]:
    """Play each training task with ``play`` (``None``: no scripted solution) and keep the
    trajectories its rubric scores 1.0 without an error. Held-out tasks are refused.

    Shared by the native agent's :func:`demonstrations` and the adapters' (LangGraph, DSPy),
    which differ only in how a scripted solution is played."""
    kept: list[Trajectory] = []
    stats = {"tasks": len(tasks), "no_solution": 0, "kept": 0, "rejected": 0}
    for task in tasks:
        if task.split == "heldout":
            raise ValueError(f"task {task.id!r} is held out; demonstrations use training tasks only")
        traj = play(task)
        if traj is None:
            stats["no_solution"] += 1
            continue
        scorer.score(traj)
        if traj.reward is not None and traj.reward >= FULL_SCORE and not traj.metadata.get("error"):
            kept.append(traj)
            stats["kept"] += 1
        else:
            stats["rejected"] += 1
    return kept, stats


def demonstrations(
    tasks: Sequence[Task],
    toolspace: Toolspace,
    tokenizer: Any,
    agent_config: Any,
    scorer: Any,
    *,
    think: bool = False,
    describe_tools: bool = False,
) -> tuple[list[Trajectory], dict[str, int]]:
    """Play each task's reference solution through the agent; keep those its rubric scores 1.0.
    ``think`` adds a short thought to each scripted turn (:func:`scripted_turns`);
    ``describe_tools`` makes those thoughts quote what each tool does (from the toolspace)."""
    from atlas_plugins.agent.loop import Agent

    ptc = agent_config.executor is not None
    # Demonstrations may run longer than a rollout budget: they are for SFT, not GRPO (a PTC
    # cell that solves a multi-step task is longer than a tiny per-turn budget allows).
    limits = {
        "max_turns": 32,
        "max_tool_calls": 32,
        "max_episode_tokens": max(4096, agent_config.max_episode_tokens),
        "max_new_tokens": max(1024, agent_config.max_new_tokens),
    }
    agent: Agent | None = None
    from atlas_plugins.plugins import get_loading_policy

    loading = get_loading_policy(agent_config.loading, **agent_config.loading_options)

    def describe(qualified: str) -> str | None:
        spec = toolspace.get_tool(qualified)
        return spec.description if spec is not None else None

    def play(task: Task) -> Trajectory | None:
        nonlocal agent
        turns = scripted_turns(
            task, loading=loading, ptc=ptc, think=think, describe=describe if describe_tools else None
        )
        if turns is None:
            return None
        policy = ScriptedPolicy(tokenizer, turns)
        if agent is None:
            agent = Agent(policy, toolspace, agent_config.model_copy(update=limits))
        agent.policy = policy
        return agent.run([task])[0]

    return verified(tasks, scorer, play)


def sft_rows(trajs: Sequence[Trajectory], max_length: int | None = None) -> list[dict[str, list[int]]]:
    """Pre-tokenized SFT rows: loss on sampled-model tokens only (prompt and env tokens -> -100).

    One row per trajectory; a trajectory with prefix breaks (an adapter that re-renders its
    prompt, e.g. DSPy) gives one row per segment, so every model turn is cloned."""
    rows, dropped = [], 0
    for t in trajs:
        for part in t.token_rows():
            prompt, completion, mask = part.prompt_ids, part.completion_ids, part.env_mask
            if len(mask) != len(completion):
                raise ValueError(
                    f"trajectory {t.task_id!r}: env_mask has {len(mask)} entries for "
                    f"{len(completion)} completion tokens (a runner bug); cannot build an SFT row"
                )
            ids = list(prompt) + list(completion)
            labels = [-100] * len(prompt) + [tok if m == 1 else -100 for tok, m in zip(completion, mask, strict=True)]
            if max_length is not None:
                ids, labels = ids[:max_length], labels[:max_length]
            if all(label == -100 for label in labels):
                dropped += 1  # the prompt alone fills max_length: no model token left to learn
                continue
            rows.append({"input_ids": ids, "labels": labels})
    if dropped:
        warnings.warn(
            f"sft_rows: {dropped} row(s) dropped: no model token within max_length={max_length}", stacklevel=2
        )
    return rows


def warm_start(
    model: Any,
    tokenizer: Any,
    trajs: Sequence[Trajectory],
    *,
    output_dir: str,
    epochs: float = 2.0,
    learning_rate: float = 3e-4,
    batch_size: int = 4,
    peft_config: Any = None,
    max_length: int = 2048,
    seed: int = 0,
    gradient_checkpointing: bool | None = None,
    shared_prefix: bool = True,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Supervised warm start with TRL's SFTTrainer; returns the (LoRA-wrapped) trained model.

    ``gradient_checkpointing`` trades a second forward pass for activation memory; ``None``
    keeps TRL's SFT default (on). Measured on CPU: off makes ``atlas demo`` 45 s faster (9 min 39 s
    vs 10 min 24 s) but raises its peak RSS from 7.4 to 10.7 GiB (long ITL rows at batch 4), so
    the default stays on; the adapter examples, with fewer and shorter rows, turn it off.

    ``shared_prefix`` (default on) computes the batch's shared token prefixes once (demonstrations
    of one design and server share their system text) and scores only the model tokens, with the
    same loss and gradients (:mod:`atlas_plugins.training.shared_prefix`). ``callbacks`` are
    ``transformers`` ``TrainerCallback``s (e.g. :func:`~atlas_plugins.training.allocator.trim_heap_callback`)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if not trajs:
        raise ValueError("warm start needs at least one demonstration")
    # Only when asked: otherwise SFTConfig's own default for gradient checkpointing holds.
    checkpointing: dict[str, Any] = (
        {} if gradient_checkpointing is None else {"gradient_checkpointing": gradient_checkpointing}
    )
    args = SFTConfig(
        output_dir=output_dir,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True if not _has_accelerator() else False,
        bf16=False,
        seed=seed,
        max_length=max_length,
        remove_unused_columns=False,
        **checkpointing,
    )
    trainer_cls = _tree_sft_trainer() if shared_prefix else SFTTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_rows(trajs, max_length)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )
    trainer.train()
    return trainer.model, trainer.state.log_history


def _tree_sft_trainer() -> Any:
    """``SFTTrainer`` whose loss is computed over the batch's prefix tree (exact, see
    :mod:`atlas_plugins.training.shared_prefix`); falls back to TRL's loss where it cannot run."""
    import torch
    from trl import SFTTrainer

    from atlas_plugins.training import shared_prefix as prefix_tree

    class TreeSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            data: Any = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.world_size > 1 or "input_ids" not in (getattr(data, "column_names", None) or ()):
                return super()._get_train_sampler(train_dataset)
            return PrefixGroupedSampler(data["input_ids"], self.args.train_batch_size, seed=self.args.seed)

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            wrapped = self.accelerator.unwrap_model(model) is not model
            if return_outputs or wrapped or not prefix_tree.supports(base) or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            prefix_tree.enable(base)
            ids, labels = inputs["input_ids"], inputs["labels"]
            mask = inputs.get("attention_mask")
            sequences, targets = [], []
            for i in range(ids.shape[0]):
                keep = mask[i].bool() if mask is not None else labels[i].new_ones(labels[i].shape, dtype=torch.bool)
                row, lab = ids[i][keep].tolist(), labels[i][keep].tolist()
                sequences.append(row)
                targets.append([t for t in range(1, len(row)) if lab[t] != -100])
            layout = prefix_tree.build_tree(sequences, device=ids.device, targets=targets)
            logps, _ = prefix_tree.score_tree(base, layout)
            count = max(1, int(layout.targets.numel()))
            denom = num_items_in_batch if num_items_in_batch is not None else count
            return -logps.sum() / denom

    return TreeSFTTrainer


class PrefixGroupedSampler:
    """Shuffled batches of rows that share long token prefixes, so the tree computes them once.

    Each epoch: rows in random order, stably sorted by their first ``prefix`` tokens (rows of one
    system text, e.g. one design and server, fall together), cut into batches, and the batches
    shuffled. Every row is seen once per epoch, as with random sampling; what changes is which rows
    share a batch. Measured on the demo's demonstrations (48 ITL rows, batch 8): 46,090 packed
    tokens in random order, fewer when rows of a server share batches."""

    def __init__(self, rows: Sequence[Sequence[int]], batch_size: int, *, seed: int = 0, prefix: int = 384) -> None:
        self.keys = [tuple(r[:prefix]) for r in rows]
        self.batch_size = max(1, int(batch_size))
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Any:
        import random

        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = list(range(len(self.keys)))
        rng.shuffle(order)
        order.sort(key=lambda i: self.keys[i])  # stable: random within a prefix
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        # The short batch stays last: the data loader cuts this order into consecutive batches.
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        rng.shuffle(batches)
        batches += tail
        return iter([i for b in batches for i in b])


def _has_accelerator() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is part of the train extra
        return False
