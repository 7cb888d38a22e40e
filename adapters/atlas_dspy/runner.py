"""``DSPyRunner``: any DSPy program as a GRPO runner (:class:`~atlas_plugins.agent.runner.Runner`).

Each call of :meth:`DSPyRunner.run` swaps the trainer's policy (the model being trained) into the
program's :class:`~atlas_dspy.lm.AtlasLM` — in place: afterwards the same ``AtlasLM`` object keeps
answering with the trained weights — and runs the program once per task, each run in its own
toolspace episode and recording scope:

* every LM call of the episode, from every predictor (for ``dspy.ReAct``: each ``react`` step,
  the ``extract`` step, and any JSON-adapter retry after a parse error) is one recorded
  :class:`~atlas_plugins.recording.recorder.LLMCall`, and all of them share the episode's reward;
* the token fields come from :func:`~atlas_plugins.recording.recorder.token_fields`. DSPy renders
  every call afresh, so each call is its own segment (a prefix break) and the trainer trains one
  randomly drawn segment per episode (see the recorder's docstring);
* tool calls are the calls the program's toolspace tools actually made (qualified
  ``server:tool`` names, see :mod:`atlas_dspy.tools`); the final answer is the prediction's
  ``answer_field``;
* an exception from the program (a 135M model trips DSPy's output parser often) ends that
  episode only: it is recorded in ``metadata["error"]``, the calls recorded so far are kept and
  ``final_answer`` is ``None``.

Episodes run concurrently in threads (``max_concurrency``). That is safe with DSPy: settings
overrides (``dspy.context``) live in a context variable, and each episode runs in a copy of the
caller's context with its own LM override, episode and recording.
"""

from __future__ import annotations

import contextvars
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from atlas_dspy.lm import AtlasLM, recording
from atlas_dspy.tools import current_episode, episode
from atlas_plugins.errors import AtlasError
from atlas_plugins.recording.recorder import token_fields
from atlas_plugins.types import Task, Trajectory


class _ParseFailures(BaseCallback):
    """Counts DSPy adapter parse errors into the current episode."""

    def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        state = current_episode()
        if exception is not None and state is not None:
            state.count_parse_failure()


_PARSE_FAILURES = _ParseFailures()


def default_input_fn(task: Task) -> dict[str, Any]:
    """``{"task": task.prompt}``: the input of a ``"task -> answer"`` signature."""
    return {"task": task.prompt}


def _batched(policy: Any) -> Any:
    """A batching front over ``policy``: concurrent episodes' calls are generated together.

    Batched sampling cannot honour each call's seed (see
    :mod:`atlas_plugins.policy.batching`); run with ``max_concurrency=1`` for bit-reproducible
    episodes."""
    from atlas_plugins.policy.batching import BatchedPolicy

    return BatchedPolicy(policy)


class DSPyRunner:
    """Plays a DSPy program on tasks with the trainer's policy.

    Args:
        program: any ``dspy.Module`` (e.g. ``dspy.ReAct("task -> answer", tools=toolspace_tools(ts))``).
        lm: the :class:`~atlas_dspy.lm.AtlasLM` the program runs with (set for the run with
            ``dspy.context(lm=lm)``; predictors with an LM of their own keep it, so give them this one).
        toolspace: the toolspace the program's tools call (the tools hold their own reference;
            kept here so the runner names everything an episode depends on).
        input_fn: task -> the program's keyword inputs (default ``{"task": task.prompt}``).
        answer_field: the prediction field holding the final answer.
        max_concurrency: episodes run at once (threads), their LM calls merged into batched
            generations; 1 runs them one after another (seeded runs are then reproducible).
        max_response_chars: tool results longer than this are cut in the trajectory's log.

    A program that fails before its first LM call (wrong input names, a bug) is a setup error,
    not a bad episode: :meth:`run` raises it, naming the task.
    """

    def __init__(
        self,
        program: Any,
        lm: AtlasLM,
        toolspace: Any,
        input_fn: Callable[[Task], dict[str, Any]] = default_input_fn,
        answer_field: str = "answer",
        max_concurrency: int = 8,
        max_response_chars: int = 4000,
    ) -> None:
        if not isinstance(lm, AtlasLM):
            raise AtlasError(
                f"DSPyRunner needs an atlas_dspy.AtlasLM (token-faithful recording), got {type(lm).__name__}"
            )
        if not callable(program):
            raise AtlasError(f"program must be a callable dspy.Module, got {type(program).__name__}")
        if max_concurrency < 1:
            raise AtlasError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.program = program
        self.lm = lm
        self.toolspace = toolspace
        self.input_fn = input_fn
        self.answer_field = answer_field
        self.max_concurrency = max_concurrency
        self.max_response_chars = max_response_chars

    def run(
        self, tasks: Sequence[Task | dict[str, Any]], *, policy: Any = None, seed: int | None = None
    ) -> list[Trajectory]:
        """One episode per task, in task order. ``policy`` (when given) becomes the LM's policy."""
        batch = [t if isinstance(t, Task) else Task.model_validate(t) for t in tasks]
        if policy is not None and policy is not self.lm.policy:
            self.lm.set_policy(policy)
        if not batch:
            return []
        generator = _batched(self.lm.policy) if self.max_concurrency > 1 and len(batch) > 1 else None
        seeds = [None if seed is None else seed + 104_729 * i for i in range(len(batch))]
        if self.max_concurrency == 1 or len(batch) == 1:
            return [self._play(t, s, generator) for t, s in zip(batch, seeds, strict=True)]
        with ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(batch)), thread_name_prefix="atlas-dspy"
        ) as pool:
            # Each episode gets its own copy of the caller's context (a Context cannot be
            # entered by two threads at once), so the caller's dspy.context settings carry over.
            futures = [
                pool.submit(contextvars.copy_context().run, self._play, t, s, generator)
                for t, s in zip(batch, seeds, strict=True)
            ]
            return [f.result() for f in futures]

    def _play(self, task: Task, seed: int | None, generator: Any) -> Trajectory:
        episode_id = f"{task.id}-{uuid.uuid4().hex[:10]}"
        inputs = self.input_fn(task)
        if not isinstance(inputs, dict):
            raise AtlasError(f"input_fn must return a dict of the program's inputs, got {type(inputs).__name__}")
        callbacks = [*(dspy.settings.get("callbacks") or []), _PARSE_FAILURES]
        pred, error = None, None
        t0 = time.perf_counter()
        # Registering the episode with the batching front lets it wait for every running
        # episode's call before generating, so a GRPO group is sampled as one batch.
        registered = generator.episode() if generator is not None and hasattr(generator, "episode") else nullcontext()
        with (
            dspy.context(lm=self.lm, callbacks=callbacks),
            episode(episode_id, self.max_response_chars) as state,
            recording(seed) as rec,
            self.lm.generating_with(generator),
            registered,
        ):
            try:
                pred = self.program(**inputs)
            except Exception as exc:  # noqa: BLE001 - a failed episode is data (reward ~0), not a failed step
                error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        calls = list(rec.calls)
        if not calls:
            raise AtlasError(
                f"the DSPy program made no LM call on task {task.id!r} (inputs {sorted(inputs)}): "
                f"{error or 'it returned without calling its LM; is the program using this AtlasLM?'}"
            )
        answer = None
        if pred is not None:
            value = pred.get(self.answer_field) if hasattr(pred, "get") else getattr(pred, self.answer_field, None)
            answer = None if value is None else str(value)
        messages: list[dict[str, Any]] = []
        if calls:
            # The last call carries the fullest context (ReAct's trajectory so far) plus its reply.
            messages = [*calls[-1].messages, {"role": "assistant", "content": calls[-1].text}]
        metadata: dict[str, Any] = {
            "runner": "dspy",
            "episode_id": episode_id,
            "program": type(self.program).__name__,
            "policy": getattr(self.lm.policy, "name", type(self.lm.policy).__name__),
            "lm_calls": len(calls),
            "wall_s": round(wall, 3),
            "finish": "error" if error else "answer",
        }
        if error:
            metadata["error"] = error[:2000]
        if pred is not None and isinstance(getattr(pred, "trajectory", None), dict):
            metadata["react_steps"] = sum(1 for k in pred.trajectory if k.startswith("tool_name_"))
        return Trajectory(
            task_id=task.id,
            task=task.model_dump(),
            messages=messages,
            tool_calls=list(state.tool_calls),
            final_answer=answer,
            turns=len(calls),
            tool_errors=state.tool_errors,
            parse_failures=state.parse_failures,
            metadata=metadata,
            **token_fields(calls),
        )


# ------------------------------------------------------------------------------ warm start
def react_replies(program: Any, task: Task, answer_field: str = "answer") -> list[str] | None:
    """A task's reference solution as the replies a ``dspy.ReAct`` program's LM should give.

    One ``react`` reply per solution step (thought, tool name, JSON arguments), a ``finish``
    reply when the iteration budget leaves room for one, then the ``extract`` reply (reasoning,
    and ``task.answer`` in ``answer_field``) — each written by the configured DSPy adapter's
    ``format_assistant_message_content``, so the model is cloned on exactly the format that
    adapter parses. ``None`` when the task has no solution, uses a tool the program lacks, or
    needs more steps than ``program.max_iters``. A signature with outputs besides the answer
    (and ``reasoning``) cannot be scripted from a task: write your own ``replies``.
    """
    from atlas_dspy.tools import tool_name

    if not isinstance(program, dspy.ReAct):
        raise AtlasError(f"react_replies scripts dspy.ReAct programs; got {type(program).__name__} (pass replies=)")
    react, extract = program.react.signature, program.extract.predict.signature
    others = [name for name in extract.output_fields if name not in ("reasoning", answer_field)]
    if answer_field not in extract.output_fields or others:
        raise AtlasError(
            f"react_replies fills 'reasoning' and the answer field {answer_field!r}; the program's outputs are "
            f"{list(extract.output_fields)}: pass demonstrations(..., replies=your_fn) that writes all of them"
        )
    solution = task.metadata.get("reference_solution") or []
    if not solution or len(solution) > program.max_iters:
        return None
    adapter = dspy.settings.adapter or dspy.ChatAdapter()

    def reply(signature: Any, outputs: dict[str, Any]) -> str:
        try:
            return adapter.format_assistant_message_content(signature, outputs)
        except NotImplementedError as exc:
            raise AtlasError(f"the DSPy adapter {type(adapter).__name__} cannot write replies; pass replies=") from exc

    replies, used = [], []
    for step in solution:
        name = tool_name(step["server"], step["tool"])
        if name not in program.tools:
            return None
        used.append(name)
        replies.append(
            reply(
                react,
                {
                    "next_thought": f"I need {name}.",  # short: every token is paid for at each call
                    "next_tool_name": name,
                    "next_tool_args": step.get("arguments") or {},
                },
            )
        )
    if len(solution) < program.max_iters:
        replies.append(
            reply(react, {"next_thought": "I have the result.", "next_tool_name": "finish", "next_tool_args": {}})
        )
    outputs = {answer_field: task.answer or "Done."}
    if "reasoning" in extract.output_fields:
        outputs["reasoning"] = f"{', '.join(used)} returned the result."
    replies.append(reply(extract, outputs))
    return replies


def demonstrations(
    runner: DSPyRunner,
    tasks: Sequence[Task],
    scorer: Any,
    replies: Callable[[Any, Task], list[str] | None] | None = None,
) -> tuple[list[Trajectory], dict[str, int]]:
    """Play scripted replies through ``runner``'s program; keep the episodes their rubric scores 1.0.

    Why: a 135M model never writes DSPy's ``[[ ## field ## ]]`` format on its own, so every GRPO
    group scores 0 and there is no signal. The replies (``replies(program, task)``; the default
    scripts a ``dspy.ReAct``'s reference solution: :func:`react_replies` with the runner's
    ``answer_field``) are replayed by a
    :class:`~atlas_plugins.training.warmstart.ScriptedPolicy` inside the *user's program* — same
    prompts, same adapter, real tool calls — and recorded like any episode, one segment per LM
    call. Feed the result to :func:`atlas_plugins.training.warmstart.warm_start` (one SFT row per
    call). Held-out tasks are refused.
    """
    from atlas_plugins.training.warmstart import ScriptedPolicy, verified

    base = runner.lm.policy
    if replies is None:
        replies = functools.partial(react_replies, answer_field=runner.answer_field)

    def play(task: Task) -> Trajectory | None:
        script = replies(runner.program, task)
        if script is None:
            return None
        runner.lm.set_policy(ScriptedPolicy(base.tokenizer, script, policy=base, eos=True))
        return runner._play(task, None, None)

    try:
        return verified(tasks, scorer, play)
    finally:
        runner.lm.set_policy(base)
