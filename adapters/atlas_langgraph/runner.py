"""Play an existing compiled LangGraph graph on tasks and return trajectories for the GRPO core.

:class:`LangGraphRunner` implements the :class:`~atlas_plugins.agent.runner.Runner` protocol::

    model = AtlasChatModel(policy=TransformersPolicy(...))
    graph = create_react_agent(model, toolspace_tools(ts, ["math"]))
    trainer = AtlasTrainer(cfg, toolspace=ts, tasks=tasks, model=policy.model,
                           tokenizer=policy.tokenizer, runner=LangGraphRunner(graph, model, ts))
    trainer.train()
    graph.invoke(...)   # the same graph object now answers with the trained weights

Each call of :meth:`LangGraphRunner.run` installs the trainer's policy in the chat model (kept
there afterwards: that is what makes the update "in place"), and runs the graph once per task,
concurrently, each run with its own episode id (``config["configurable"]["atlas_episode"]``),
its own :func:`~atlas_langgraph.tools.episode_scope` and its own
:func:`~atlas_langgraph.chat_model.recording_scope`. Concurrent model calls are merged into
batched generation by :class:`~atlas_plugins.policy.batching.BatchedPolicy`. A run that fails
(``GraphRecursionError``, a tool raising, a bad output) does not fail the step: its trajectory
holds what was recorded up to the failure and ``metadata["error"]`` says what happened (the
trainer counts such episodes per step and warns with the first error).

Graphs run with ``ainvoke`` (on the process's one background event loop,
:mod:`atlas_langgraph.aio`; each episode's worker thread waits for its run), so
async-only tools — every MCP tool from ``langchain-mcp-adapters`` — and async nodes work; sync
tools, nodes and model calls run in the loop's executor as usual. ``use_async=False`` uses ``invoke``.

Tool names: recorded calls and the warm start's reference turns go through one
:class:`~atlas_langgraph.names.ToolNames` built from the graph's tools, so a graph whose MCP tool
is named ``get_current_time`` records ``time:get_current_time`` (what rubrics check) and a
reference call of ``time:get_current_time`` reaches that tool.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from atlas_langgraph.aio import checkpointer, forget_thread, run_async
from atlas_langgraph.chat_model import AtlasChatModel, recording_scope, to_openai_messages
from atlas_langgraph.names import ToolNames
from atlas_langgraph.tools import EPISODE_CONFIG_KEY, episode_scope
from atlas_plugins.agent.env import inner_call_records
from atlas_plugins.errors import AtlasError
from atlas_plugins.recording.recorder import LLMCall, token_fields
from atlas_plugins.types import Task, ToolCallRecord, Trajectory
from atlas_plugins.wire.messages import content_text
from atlas_plugins.wire.toolcall import format_call, parse_assistant

__all__ = ["LangGraphRunner", "TASK_CONFIG_KEY", "default_input", "default_output", "demonstrations", "reference_turns"]

log = logging.getLogger(__name__)

#: ``configurable`` key under which each run also gets its task (``task.model_dump()``).
TASK_CONFIG_KEY = "atlas_task"
_RESULT_CHARS = 4000


def default_input(task: Task) -> dict[str, Any]:
    """The graph input for a task: the prompt as the one user message (``MessagesState``)."""
    return {"messages": [("user", task.prompt)]}


def default_output(state: Any) -> str | None:
    """The final answer: the text of the last AI message of ``state["messages"]`` (or of the
    message / text itself, for a runnable that returns one: ``prompt | model.bind_tools(...)``)."""
    if isinstance(state, BaseMessage):
        return content_text(state.content).strip() or None
    if isinstance(state, str):
        return state.strip() or None
    messages = list((state.get("messages") if isinstance(state, dict) else getattr(state, "messages", None)) or [])
    if messages and isinstance(messages[-1], ToolMessage):
        # A return_direct tool ended the run: its result is the answer (the AI message before it
        # holds only the call, so the answer was None).
        return content_text(messages[-1].content).strip() or None
    for m in reversed(messages):
        if isinstance(m, AIMessage):
            return content_text(m.content).strip() or None
    return None


def atlas_model_of(model: Any) -> AtlasChatModel | None:
    """The :class:`AtlasChatModel` inside ``model``: itself, or what a binding / retry /
    fallback / sequence wraps (``model.bind_tools(...)``, ``model.with_retry()``,
    ``model.with_structured_output(...)``); ``None`` when there is none."""
    seen: set[int] = set()
    todo = [model]
    while todo:
        m = todo.pop(0)
        if m is None or id(m) in seen:
            continue
        seen.add(id(m))
        if isinstance(m, AtlasChatModel):
            return m
        for attr in ("bound", "runnable", "first"):
            todo.append(getattr(m, attr, None))
        todo += list(getattr(m, "steps", None) or [])
    return None


class LangGraphRunner:
    """Runs a compiled graph once per task with an :class:`AtlasChatModel` (see module docs).

    Args:
        graph: a compiled LangGraph graph (anything with ``invoke(input, config)``) whose model
            is ``model``.
        model: the graph's :class:`AtlasChatModel`.
        toolspace: the toolspace the graph's tools call (kept for the trainer and for scoring).
        input_fn: task -> graph input (default :func:`default_input`).
        output_fn: final graph state -> final answer text (default :func:`default_output`).
        max_concurrency: how many runs at once (default: all tasks of a call).
        recursion_limit: LangGraph's super-step limit per run (a run that hits it keeps what it
            recorded; ``metadata["error"]`` names ``GraphRecursionError``).
        batch: merge concurrent model calls into batched generation (``BatchedPolicy``).
        max_wait_ms: how long a batch waits for the other runs' calls.
        tool_names: ``{graph tool name: "server:tool"}`` for tools whose server nothing else tells
            (see :mod:`atlas_langgraph.names`; tools from :func:`~atlas_langgraph.names.load_mcp_tools`
            and :func:`~atlas_langgraph.tools.toolspace_tools` need none).
        use_async: run the graph with ``ainvoke`` (default: whenever the graph has it) or ``invoke``.
        config: extra run config of every episode (``{"configurable": {"user_id": ...}}``, tags,
            callbacks); the runner's own keys (episode, task, ``thread_id``) are added to it.
        context_fn: task -> the run's ``context=`` (graphs built with ``context_schema``).
        episode_timeout_s: one episode's time budget: an async run is cancelled then, and any
            later model call of the episode raises ``TimeoutError`` (the episode is recorded as
            failed with what it made so far). ``None``: no limit.

    Graphs compiled with a checkpointer get a fresh ``thread_id`` per episode (the episode id), so
    the episodes of a GRPO group never share a conversation; the thread is deleted afterwards. A
    run that ends paused on an ``interrupt`` (or ``interrupt_before``) is recorded as failed: no
    human answers during training.
    """

    name = "langgraph"

    def __init__(
        self,
        graph: Any,
        model: AtlasChatModel,
        toolspace: Any = None,
        *,
        input_fn: Callable[[Task], Any] | None = None,
        output_fn: Callable[[Any], str | None] | None = None,
        max_concurrency: int | None = None,
        recursion_limit: int = 25,
        batch: bool = True,
        max_wait_ms: float = 50.0,
        tool_names: dict[str, str] | None = None,
        use_async: bool | None = None,
        config: dict[str, Any] | None = None,
        context_fn: Callable[[Task], Any] | None = None,
        episode_timeout_s: float | None = 1800.0,
    ) -> None:
        found = atlas_model_of(model)
        if found is None:
            # Name the bad input and the two ways out (an AtlasChatModel, or the proxy for a graph
            # that must stay on its ChatOpenAI / ChatHuggingFace / own BaseChatModel).
            raise TypeError(
                f"model must be the graph's AtlasChatModel (or a binding of it, e.g. model.bind_tools(...)), "
                f"got {type(model).__name__}: build the graph on AtlasChatModel(policy=...), or train a graph "
                "built on ChatOpenAI(base_url=...) unchanged with atlas_langgraph.ProxyRunner"
            )
        model = found
        if not hasattr(graph, "invoke"):
            hint = " (a StateGraph builder: pass builder.compile())" if hasattr(graph, "compile") else ""
            raise TypeError(f"graph must be a compiled LangGraph graph with invoke(), got {type(graph).__name__}{hint}")
        if episode_timeout_s is not None and episode_timeout_s <= 0:
            raise ValueError(f"episode_timeout_s must be > 0 or None, got {episode_timeout_s}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.graph = graph
        self.model = model
        self.toolspace = toolspace
        self.input_fn = input_fn or default_input
        self.output_fn = output_fn or default_output
        self.max_concurrency = max_concurrency
        self.recursion_limit = recursion_limit
        self.batch = batch
        self.max_wait_ms = max_wait_ms
        self.config = dict(config or {})
        self.context_fn = context_fn
        self.episode_timeout_s = episode_timeout_s
        self._our_policies: set[int] = set()  # see run()
        self._model_called = False  # once a run has called the model, a run without a call only warns
        self.use_async = hasattr(graph, "ainvoke") if use_async is None else bool(use_async)
        if self.use_async and not hasattr(graph, "ainvoke"):
            raise TypeError(f"use_async=True needs a graph with ainvoke(), got {type(graph).__name__}")
        #: Graph tool names <-> ``server:tool`` (one mapping for recording and the warm start).
        self.names = ToolNames.for_graph(graph, explicit=tool_names, toolspace=toolspace)

    # -- Runner protocol -----------------------------------------------------------------------
    def run(self, tasks: Sequence[Task], *, policy: Any = None, seed: int | None = None) -> list[Trajectory]:
        """One run of the graph per task (concurrently); trajectories in task order.

        ``policy`` (the trainer's) replaces the model's policy and stays installed afterwards;
        ``None`` keeps the model's current policy (evaluation).
        """
        tasks = [t if isinstance(t, Task) else Task.model_validate(t) for t in tasks]
        if not tasks:
            return []
        installed = self.model.policy
        base = policy if policy is not None else installed
        if base is None:
            raise ValueError("no policy: pass policy= or give the AtlasChatModel one")
        batched = None
        if self.batch and len(tasks) > 1:
            from atlas_plugins.policy.batching import BatchedPolicy

            batched = BatchedPolicy(base, max_wait_ms=self.max_wait_ms)
        # Policies another AtlasChatModel of the graph may sample from without harm: these ones.
        self._our_policies = {id(p) for p in (installed, base, batched) if p is not None}
        self.model.policy = batched or base
        try:
            workers = min(len(tasks), self.max_concurrency or len(tasks))
            seeds = [None if seed is None else seed + 1009 * i for i in range(len(tasks))]
            # Always worker threads: a worker blocks while its run is on the background loop, which
            # works even when the caller's own thread runs an event loop (a notebook, an async main).
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atlas-langgraph") as pool:
                # Each run gets a fresh copy of the caller's context: its scopes stay its own.
                futures = [
                    pool.submit(contextvars.copy_context().run, self._episode, t, s, batched)
                    for t, s in zip(tasks, seeds, strict=True)
                ]
                trajs = [f.result() for f in futures]
        finally:
            # Keep the (unwrapped) trained policy installed: the graph answers with it from now on.
            self.model.policy = base
        self._check_model_use(trajs)
        return trajs

    def _check_model_use(self, trajs: list[Trajectory]) -> None:
        """Setup errors no single episode shows: the graph samples from another model than ours."""
        other = next((t.metadata["other_models"][0] for t in trajs if t.metadata.get("other_models")), None)
        if other is not None:
            raise AtlasError(
                f"the graph called {other}, not the AtlasChatModel given to LangGraphRunner(model=...): those "
                "turns come from a policy the trainer never updates. Build every node of the graph on the one "
                "AtlasChatModel passed as model= (bindings of it, such as model.bind_tools(...), are fine)"
            )
        if any(t.turns for t in trajs):
            self._model_called = True
        elif trajs and not any(t.metadata.get("error") for t in trajs):
            if self._model_called:
                # A graph that has used the model before may answer some task without it (a
                # router, a cache): those episodes carry no signal, but the step is not wrong.
                log.warning("no episode of this run called the AtlasChatModel (%d episodes)", len(trajs))
                return
            raise AtlasError(
                f"the graph ({type(self.graph).__name__} {getattr(self.graph, 'name', '')!r}) ran {len(trajs)} "
                "episode(s) without one call of the AtlasChatModel given as model=: is it built on another chat "
                "model (ChatOpenAI, ChatHuggingFace, ...)? Build it on this AtlasChatModel, or use ProxyRunner"
            )

    # -- one episode ---------------------------------------------------------------------------
    def _episode(self, task: Task, seed: int | None, batched: Any) -> Trajectory:
        episode_id = f"{task.id}-{uuid.uuid4().hex[:10]}"
        config = {
            **self.config,
            "configurable": {
                **(self.config.get("configurable") or {}),
                # A graph compiled with a checkpointer refuses a run without a thread_id
                # (KeyError 'thread_id' in every episode), and one shared thread would replay a
                # group's earlier episodes into the next: a fresh thread per episode.
                "thread_id": episode_id,
                EPISODE_CONFIG_KEY: episode_id,
                TASK_CONFIG_KEY: task.model_dump(),
            },
            "recursion_limit": self.recursion_limit,
            "run_name": f"atlas:{task.id}",
        }
        state: Any = None
        error: str | None = None
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            stack.enter_context(episode_scope(episode_id))
            rec = stack.enter_context(recording_scope(episode_id, seed=seed))
            if self.episode_timeout_s is not None:
                rec.deadline = time.monotonic() + self.episode_timeout_s
            if batched is not None:
                stack.enter_context(batched.episode())
            try:
                context = self.context_fn(task) if self.context_fn is not None else None
                state = self._invoke(self.input_fn(task), config, context)
                paused = self._paused(state, config)
                if paused:
                    error = (
                        f"GraphInterrupt: the run ended paused at {paused}; no one answers an interrupt during "
                        "training (compile the training graph without interrupt()/interrupt_before)"
                    )
            except Exception as exc:  # noqa: BLE001 - one episode's failure must not fail the step
                error = f"{type(exc).__name__}: {exc}"
            finally:
                _release_episode(episode_id)
                forget_thread(self.graph, config["configurable"]["thread_id"], use_async=self.use_async)
        traj = self.trajectory(task, rec.calls, state, episode_id=episode_id, error=error)
        traj.metadata["wall_s"] = round(time.perf_counter() - t0, 3)
        ours = self._our_policies
        other = [
            desc
            for key, desc in rec.models.items()
            if key != id(self.model) and rec.model_policies.get(key) not in ours
        ]
        if other:
            traj.metadata["other_models"] = other
        return traj

    def _invoke(self, graph_input: Any, config: dict[str, Any], context: Any = None) -> Any:
        """One run: ``ainvoke`` on the background loop (this thread waits), else ``invoke``."""
        kwargs = {"context": context} if context is not None else {}
        if not self.use_async:
            return self.graph.invoke(graph_input, config, **kwargs)
        return run_async(self.graph.ainvoke(graph_input, config, **kwargs), self.episode_timeout_s)

    def _paused(self, state: Any, config: dict[str, Any]) -> str | None:
        """What the run is paused on (an ``interrupt()`` value or the next nodes), else ``None``."""
        if isinstance(state, dict) and state.get("__interrupt__"):
            return "interrupt(" + ", ".join(repr(getattr(i, "value", i))[:200] for i in state["__interrupt__"]) + ")"
        if checkpointer(self.graph) is None:
            return None
        try:  # a static breakpoint (interrupt_before/after) leaves no trace in the output
            snap = run_async(self.graph.aget_state(config)) if self.use_async else self.graph.get_state(config)
        except Exception:  # noqa: BLE001 - a saver that cannot read back: nothing known
            return None
        return f"the nodes {list(snap.next)}" if snap.next else None

    def close(self) -> None:
        """Nothing to release: async runs share the process's background loop (:mod:`atlas_langgraph.aio`)."""

    def trajectory(
        self,
        task: Task,
        calls: Sequence[LLMCall],
        state: Any,
        *,
        episode_id: str,
        error: str | None = None,
    ) -> Trajectory:
        """Build the trajectory of one run from its recorded calls and the graph's final state."""
        messages: list[BaseMessage] = []
        if state is not None:
            raw = state.get("messages") if isinstance(state, dict) else getattr(state, "messages", None)
            messages = [m for m in raw or [] if isinstance(m, BaseMessage)]
        if messages:
            chat = to_openai_messages(messages)
            # A system prompt the graph adds at call time (not kept in state) is part of the episode.
            seen = calls[0].messages if calls else []
            if seen and seen[0].get("role") == "system" and (not chat or chat[0].get("role") != "system"):
                chat.insert(0, dict(seen[0]))
        elif calls:
            # The run failed before returning a state: the last call's view plus its reply.
            chat = list(calls[-1].messages) + [{"role": "assistant", "content": calls[-1].text}]
        else:
            chat = [{"role": "user", "content": task.prompt}]

        final: str | None = None
        if state is not None:
            try:
                final = self.output_fn(state)
            except Exception as exc:  # noqa: BLE001 - a user output_fn bug is reported, not raised
                error = error or f"output_fn failed: {type(exc).__name__}: {exc}"
        elif calls:
            parsed = parse_assistant(calls[-1].text)
            final = parsed.answer.strip() if parsed.answer else None

        tool_calls = _tool_records(messages, self.names, task)
        meta: dict[str, Any] = {"runner": self.name, "episode_id": episode_id, "model_calls": len(calls)}
        if error:
            meta["error"] = error
        fields = token_fields(calls)
        return Trajectory(
            task_id=task.id,
            task=task.model_dump(),
            messages=chat,
            tool_calls=tool_calls,
            final_answer=final,
            turns=len(calls),
            tool_errors=sum(1 for r in tool_calls if not r.ok),
            parse_failures=sum(1 for c in calls if parse_assistant(c.text).errors),
            metadata=meta,
            **fields,
        )


def _tool_records(messages: Sequence[BaseMessage], names: ToolNames, task: Task | None = None) -> list[ToolCallRecord]:
    """Tool calls of a run: each AIMessage tool call with its ToolMessage result (``server:tool`` names)."""
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    records: list[ToolCallRecord] = []
    turn = 0
    for m in messages:
        if not isinstance(m, AIMessage):
            continue
        turn += 1
        for tc in m.tool_calls:
            res = results.get(tc.get("id") or "")
            artifact = res.artifact if res is not None and isinstance(res.artifact, dict) else {}
            err: str | None
            kind: str | None
            if res is None:
                ok, text, err, kind = False, "", "the tool was never run (the episode ended first)", "not_run"
            else:
                text = content_text(res.content)
                ok = bool(artifact.get("ok", res.status != "error"))
                err = artifact.get("error") if artifact else (text if not ok else None)
                kind = artifact.get("error_type") if artifact else (None if ok else "tool_error")
            records.append(
                ToolCallRecord(
                    turn=turn,
                    name=names.qualified(tc["name"], task),
                    arguments=dict(tc.get("args") or {}),
                    ok=ok,
                    result=text[:_RESULT_CHARS],
                    error=err,
                    error_type=kind,
                )
            )
            # MCP calls made from code_interpreter cells count as tool calls too (as in the native loop).
            records += inner_call_records(artifact.get("inner_calls") or [], turn=turn, limit=_RESULT_CHARS)
    return records


def _release_episode(episode_id: str) -> None:
    """Free per-episode resources a prebuilt agent opened (code sessions); no-op otherwise."""
    from atlas_langgraph.prebuilt import release_episode

    release_episode(episode_id)


# ------------------------------------------------------------------------------ warm start
def reference_turns(task: Task, names: ToolNames | None = None) -> list[str] | None:
    """A task's reference solution as assistant turns calling the graph's tools.

    Each ``server:tool`` step is written with the graph's own name for that tool (``names``, the
    runner's :class:`~atlas_langgraph.names.ToolNames`; ``server__tool`` for toolspace tools).
    """
    from atlas_langgraph.tools import lc_name_for

    solution = task.metadata.get("reference_solution") or []
    if not solution:
        return None
    turns = []
    for step in solution:
        qualified = f"{step['server']}:{step['tool']}"
        graph_name = names.graph_name(qualified) if names is not None else lc_name_for(qualified)
        turns.append(format_call(graph_name or qualified, step.get("arguments") or {}))
    turns.append(f"<answer>{task.answer or 'Done.'}</answer>")
    return turns


def rejection_reason(traj: Trajectory, rubric: Any = None) -> str:
    """Why a played demonstration was not kept, in words (error, failed tool calls, low criteria)."""
    if traj.metadata.get("error"):
        return f"the episode failed: {traj.metadata['error']}"
    parts: list[str] = []
    bad = [c for c in traj.tool_calls if not c.ok]
    if bad:
        parts.append(f"tool call {bad[0].name!r} failed: {(bad[0].error or bad[0].result or '')[:200]}")
    if traj.reward is None:
        parts.append("it could not be scored" + (f" ({traj.judge_failures[0]})" if traj.judge_failures else ""))
    else:
        low = sorted((v, k) for k, v in traj.scores.items() if v < 1.0)
        names = {c.id: c.name for c in getattr(rubric, "criteria", [])}
        crit = ", ".join(f"{names.get(k, k)} = {v:.2f}" for v, k in low[:4])
        parts.append(f"reward {traj.reward:.2f} < 1.0" + (f" (criteria below 1: {crit})" if crit else ""))
    return "; ".join(parts)


def demonstrations(
    runner: LangGraphRunner, tasks: Sequence[Task], scorer: Any
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Play each training task's reference solution through ``runner``'s graph; keep those scored 1.0.

    The solution's turns are replayed by a :class:`~atlas_plugins.training.warmstart.ScriptedPolicy`
    that renders prompts with the model's real policy, so the demonstrations go through the
    *user's graph* (same system prompt, same tool schemas, real MCP calls) and have exactly the
    token layout of later GRPO rollouts. Feed the result to
    :func:`atlas_plugins.training.warmstart.warm_start`. Held-out tasks are refused.

    The stats count ``kept``, ``rejected`` and ``no_solution`` tasks, and ``rejections`` lists
    ``{"task_id", "reason"}`` for every task not kept (each also logged as a warning).
    """
    from atlas_plugins.training.warmstart import ScriptedPolicy, verified

    base = runner.model.policy
    played: dict[str, Trajectory] = {}

    def play(task: Task) -> Trajectory | None:
        turns = reference_turns(task, runner.names)
        if turns is None:
            return None
        runner.model.policy = ScriptedPolicy(base.tokenizer, turns, policy=base)
        traj = runner._episode(task, None, None)
        played[task.id] = traj
        return traj

    try:
        kept, counts = verified(tasks, scorer, play)
    finally:
        runner.model.policy = base
    stats: dict[str, Any] = dict(counts)
    kept_ids = {id(t) for t in kept}
    rejections = []
    for task in tasks:
        traj = played.get(task.id)
        if traj is None:
            reason = "no reference_solution in the task's metadata"
        elif id(traj) in kept_ids:
            continue
        else:
            reason = rejection_reason(traj, scorer.rubric(task))
        rejections.append({"task_id": task.id, "reason": reason})
        log.warning("warm start: demonstration of task %r not kept: %s", task.id, reason)
    stats["rejections"] = rejections
    return kept, stats
