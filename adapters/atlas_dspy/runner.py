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

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from atlas_dspy.lm import SETTINGS_GENERATOR, SETTINGS_RECORDING, AtlasLM, recording
from atlas_dspy.tools import SETTINGS_EPISODE, ToolspaceTool, _turn, current_episode, episode
from atlas_plugins.errors import AtlasError
from atlas_plugins.recording.recorder import token_fields
from atlas_plugins.types import Task, ToolCallRecord, Trajectory

log = logging.getLogger(__name__)


class _ParseFailures(BaseCallback):
    """Counts DSPy adapter parse errors into the current episode, and logs the calls of the
    program's own ``dspy.Tool``s (plain functions given to ``dspy.ReAct``, ``dspy.Tool(fn)``,
    ``dspy.Tool.from_mcp_tool``, ``from_langchain``): only :class:`ToolspaceTool` logs itself, so
    without this a ReAct over the user's own tools recorded ``tool_calls=[]`` and every
    ``tool_called`` rubric check scored 0."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Any, str, dict[str, Any], int]] = {}
        self._lock = threading.Lock()

    def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        state = current_episode()
        if exception is not None and state is not None:
            state.count_parse_failure()

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        state = current_episode()
        name = str(getattr(instance, "name", "") or "")
        # ReAct's own "finish" is not a tool call; toolspace tools log themselves.
        if state is None or isinstance(instance, ToolspaceTool) or name == "finish":
            return
        args = inputs.get("kwargs") if isinstance(inputs.get("kwargs"), dict) else inputs
        with self._lock:
            self._open[call_id] = (state, name, dict(args or {}), _turn())

    def on_tool_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        with self._lock:
            opened = self._open.pop(call_id, None)
        if opened is None:
            return
        state, name, args, turn = opened
        text = "" if outputs is None else outputs if isinstance(outputs, str) else str(outputs)
        error = None if exception is None else f"{type(exception).__name__}: {exception}"
        qualify = getattr(state, "qualify", None) or (lambda n: n)
        state.log(
            ToolCallRecord(
                turn=turn,
                name=qualify(name),
                arguments=args,
                ok=exception is None,
                result=(text if exception is None else error or "")[: state.max_response_chars],
                error=error,
                error_type=None if exception is None else "tool_error",
            )
        )


_PARSE_FAILURES = _ParseFailures()


def _qualifier(task: Task, explicit: dict[str, str], toolspace: Any) -> Callable[[str], str]:
    """A program tool name -> ``server:tool`` (what rubrics name): explicit pairs, ``server__tool``,
    the one toolspace server with that tool, then the task's reference solution."""
    by_tool: dict[str, list[str]] = {}
    if toolspace is not None:
        try:
            for spec in toolspace.list_tools():
                by_tool.setdefault(spec.name, []).append(spec.qualified_name)
        except Exception:  # noqa: BLE001 - a toolspace that cannot list its tools only loses this rule
            by_tool = {}

    def qualify(name: str) -> str:
        if name in explicit:
            return explicit[name]
        if ":" in name:
            return name
        server, sep, tool = name.partition("__")
        if sep and server and tool:
            return f"{server}:{tool}"
        places = by_tool.get(name) or []
        if len(places) == 1:
            return places[0]
        # Last resort, for a wrapper named like the task's tool that no toolspace server holds
        # alone: the server the task's reference solution calls it on.
        for step in task.metadata.get("reference_solution") or []:
            server, tool = str(step.get("server", "")), str(step.get("tool", ""))
            if server and tool and name in (tool, f"{server}_{tool}"):
                return f"{server}:{tool}"
        return name

    return qualify


def program_inputs(program: Any) -> list[str] | None:
    """The input names a DSPy program is called with (its signature's input fields, or its
    ``forward``'s required parameters); ``None`` when they cannot be told."""
    sig = getattr(program, "signature", None)
    if sig is not None and hasattr(sig, "input_fields"):
        return list(sig.input_fields)
    # The class's function, not program.forward: DSPy warns on every instance access of forward.
    method = getattr(type(program), "forward", None) or getattr(type(program), "aforward", None)
    if method is not None:
        try:
            params = list(inspect.signature(method).parameters.values())[1:]  # without self
        except (TypeError, ValueError):
            params = []
        named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty]
        if named or not any(p.kind == p.VAR_KEYWORD for p in params):
            return named
    # forward(**kwargs): DSPy's own modules (ChainOfThought) pass them on to their predictor, so
    # its inputs are the program's; a user's forward(**kw) may read any key (kw["task"]): unknown.
    if not str(getattr(method, "__module__", "")).startswith("dspy."):
        return None
    predictors = program.predictors() if hasattr(program, "predictors") else []
    if predictors:
        return list(predictors[0].signature.input_fields)
    return None


def _async_tools(program: Any) -> list[str]:
    """Names of the async ``dspy.Tool``s a program holds (``program.tools`` of it or its modules)."""
    modules = [program] + [m for _, m in (program.named_sub_modules() if hasattr(program, "named_sub_modules") else [])]
    out: list[str] = []
    for module in modules:
        tools = getattr(module, "tools", None)
        values = tools.values() if isinstance(tools, dict) else tools if isinstance(tools, list | tuple) else []
        out += [str(getattr(t, "name", t)) for t in values if inspect.iscoroutinefunction(getattr(t, "func", None))]
    return out


def _run_coroutine(coro: Any) -> Any:
    """Run an episode's coroutine to the end from this (worker) thread, in this context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # This thread runs a loop (a notebook calling run()): a thread of its own, same context.
    from concurrent.futures import ThreadPoolExecutor as _Pool

    with _Pool(1) as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, coro).result()


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


def _default_input_for(program: Any) -> Callable[[Task], dict[str, Any]]:
    """The default ``input_fn`` for ``program``: the prompt as its one input. ``{"task": ...}``
    given to ``dspy.ChainOfThought("question -> answer")`` was dropped by DSPy with a warning, and
    every episode answered an empty question."""
    names = program_inputs(program)
    if names is None or not names or "task" in names:
        return default_input_fn
    if len(names) == 1:
        field = names[0]
        return lambda task: {field: task.prompt}
    raise AtlasError(
        f"the program {type(program).__name__} takes the inputs {names}; the default input_fn fills one "
        "input with the task prompt: pass input_fn=lambda task: {...} with all of them"
    )


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
        tool_names: ``{program tool name: "server:tool"}`` for the program's own ``dspy.Tool``s
            whose server nothing else tells (the task's reference solution, a ``server__tool``
            name or the toolspace otherwise place them).
        use_async: run the program with ``await program.acall(...)`` (default: when it has only
            ``aforward``, or holds async tools — ``dspy.Tool.from_mcp_tool``'s are); an async tool
            called from a sync ``forward`` fails every call. Each episode runs on an event loop of
            its own, so tools bound to another loop (an MCP session opened in yours) do not work:
            use :func:`atlas_dspy.toolspace_tools`.
        episode_timeout_s: an episode's time budget: its next LM call after it raises
            ``TimeoutError`` (the episode is recorded as failed). ``None``: no limit.

    With the default ``input_fn`` the task prompt goes to the program's one input, whatever it is
    named (``question`` for ``dspy.ChainOfThought("question -> answer")``); a program with several
    inputs needs an ``input_fn``. When *every* episode of a run fails before its first LM call
    (wrong input names, the program not using this LM) it is a setup error: :meth:`run` raises
    it, naming the task; a single such episode among others is recorded as a failed episode.
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
        *,
        tool_names: dict[str, str] | None = None,
        use_async: bool | None = None,
        episode_timeout_s: float | None = 1800.0,
    ) -> None:
        if not isinstance(lm, AtlasLM):
            raise AtlasError(
                f"DSPyRunner needs an atlas_dspy.AtlasLM (token-faithful recording), got {type(lm).__name__} "
                f"{getattr(lm, 'model', '')!r}: load the same weights as AtlasLM(TransformersPolicy(path_or_id)); "
                "a dspy.LM on a server has no token ids to train on"
            )
        if not callable(program):
            raise AtlasError(f"program must be a callable dspy.Module, got {type(program).__name__}")
        if max_concurrency < 1:
            raise AtlasError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.program = program
        self.lm = lm
        self.toolspace = toolspace
        self._check_lms(program, lm)
        if input_fn is default_input_fn:
            input_fn = _default_input_for(program)
        self.input_fn = input_fn
        self.answer_field = answer_field
        self.max_concurrency = max_concurrency
        self.max_response_chars = max_response_chars
        self.tool_names = dict(tool_names or {})
        self.episode_timeout_s = episode_timeout_s
        if use_async is None:
            has_aforward = callable(getattr(type(program), "aforward", None))
            async_only = getattr(type(program), "forward", None) is None and has_aforward
            use_async = async_only or (has_aforward and bool(_async_tools(program)))
        if use_async and not callable(getattr(program, "acall", None)):
            raise AtlasError(f"use_async=True needs a dspy.Module with acall/aforward, got {type(program).__name__}")
        self.use_async = bool(use_async)

    @staticmethod
    def _check_lms(program: Any, lm: AtlasLM) -> None:
        """A predictor with an LM of its own ignores ``dspy.context(lm=...)``: it samples from a
        model the trainer never updates. All of them so: an error naming them; some: a warning."""
        named = list(program.named_predictors()) if hasattr(program, "named_predictors") else []
        # Another AtlasLM on the same policy samples from the model being trained (and records
        # through the episode's context): only other models are foreign.
        foreign = [
            (n, p.lm)
            for n, p in named
            if getattr(p, "lm", None) is not None and p.lm is not lm and getattr(p.lm, "policy", None) is not lm.policy
        ]
        if not foreign:
            return
        which = ", ".join(f"{n!r} ({type(other).__name__} {getattr(other, 'model', '')!r})" for n, other in foreign)
        if len(foreign) == len(named):
            raise AtlasError(
                f"every predictor of the program has its own LM ({which}), so none would sample from the AtlasLM "
                "being trained: call program.set_lm(atlas_lm) (or set_lm(None)) before DSPyRunner"
            )
        log.warning("predictors with an LM of their own sample from a model the trainer does not update: %s", which)

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
            trajs = [self._play(t, s, generator) for t, s in zip(batch, seeds, strict=True)]
        else:
            with ThreadPoolExecutor(
                max_workers=min(self.max_concurrency, len(batch)), thread_name_prefix="atlas-dspy"
            ) as pool:
                # Each episode gets its own copy of the caller's context (a Context cannot be
                # entered by two threads at once), so the caller's dspy.context settings carry over.
                futures = [
                    pool.submit(contextvars.copy_context().run, self._play, t, s, generator)
                    for t, s in zip(batch, seeds, strict=True)
                ]
                trajs = [f.result() for f in futures]
        # One episode failing before its first LM call (a flaky retriever) must not sink a GRPO
        # step; all of them doing so is a setup error (wrong inputs, the program not on this LM).
        if all(t.turns == 0 for t in trajs):
            raise AtlasError(trajs[0].metadata["no_lm_call"])
        return trajs

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
            episode(episode_id, self.max_response_chars) as state,
            recording(seed) as rec,
            # The episode, recording and generator also go into DSPy's settings: DSPy's own worker
            # threads (dspy.Parallel, Module.batch) copy those, not our context variables.
            dspy.context(
                lm=self.lm,
                callbacks=callbacks,
                # A sync forward calling an async tool (a plain ``async def``) fails every call
                # without this; episodes run in worker threads with no running loop, so DSPy can.
                allow_tool_async_sync_conversion=True,
                **{
                    SETTINGS_EPISODE: state,
                    SETTINGS_RECORDING: rec,
                    SETTINGS_GENERATOR: (self.lm, generator) if generator is not None else None,
                },
            ),
            self.lm.generating_with(generator),
            registered,
        ):
            state.qualify = _qualifier(task, self.tool_names, self.toolspace)
            if self.episode_timeout_s is not None:
                rec.deadline = time.monotonic() + self.episode_timeout_s
            try:
                if self.use_async:
                    coro = self.program.acall(**inputs)
                    if self.episode_timeout_s is not None:  # a hung async tool cannot hold run() forever
                        coro = asyncio.wait_for(coro, self.episode_timeout_s)
                    pred = _run_coroutine(coro)
                else:
                    pred = self.program(**inputs)
            except Exception as exc:  # noqa: BLE001 - a failed episode is data (reward ~0), not a failed step
                error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        calls = list(rec.calls)
        no_call = None
        if not calls:
            no_call = (
                f"the DSPy program made no LM call on task {task.id!r} (inputs {sorted(inputs)}): "
                f"{error or 'it returned without calling its LM; is the program using this AtlasLM?'}"
            )
            error = error or no_call
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
        if no_call:
            metadata["no_lm_call"] = no_call
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
