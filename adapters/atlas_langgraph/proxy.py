"""Train an UNCHANGED OpenAI-API agent through a local endpoint: the zero-code-change path.

The agent keeps talking to "an OpenAI server" — :class:`~atlas_plugins.serving.server.PolicyServer`
in this process, in front of the policy being trained. The server renders prompts append-only,
records every request token for token, and attributes requests to rollouts server-side (see
:mod:`atlas_plugins.serving.server`); :class:`ProxyRunner` plays one episode per task and turns
each episode's recorded requests into a :class:`~atlas_plugins.types.Trajectory`. This is the
approach of Agent Lightning v1's LLM proxy and rLLM's SDK proxy, with attribution that needs
no per-rollout client configuration.

The flow (the proxy exists first, so the graph can be built against its URL; the trainer's
policy is plugged in later, and swapped in on every step)::

    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent
    from atlas_langgraph.proxy import ProxyRunner, start_proxy
    from atlas_langgraph.tools import toolspace_tools

    proxy = start_proxy()                                # listening; no policy yet
    llm = ChatOpenAI(base_url=proxy.base_url, api_key="x", model="policy")
    graph = create_react_agent(llm, toolspace_tools(ts, ["math"]))   # the user's graph, as is
    runner = ProxyRunner(graph, toolspace=ts, proxy=proxy)
    AtlasTrainer(config, toolspace=ts, tasks=tasks, runner=runner).train()
    trajs = runner.run(tasks, policy=TransformersPolicy())   # or play episodes directly

How requests are attributed to episodes (the design, and its limits):

1. **Chains.** A request that continues an earlier reply of the server (its messages are the
   earlier request's messages + that reply + new tool/user messages) belongs to that reply's
   chain, hence to the same episode. This is exact, needs nothing from the client, and keeps
   the episodes of a GRPO group apart even though their first requests are identical: each
   continuation carries its own episode's earlier reply. (Two episodes whose conversations are
   identical *so far* are interchangeable up to that point: whichever takes which chain, the
   trajectory is built from the chain itself, so it is self-consistent.)
2. **Roots, explicitly.** When the agent is a callable that accepts ``base_url``, every episode
   gets its own ``/rollouts/<episode>/v1`` URL and every chain is tagged, nothing inferred.
3. **Roots, implicitly** (a compiled graph with a fixed ``base_url``): episodes are started
   one at a time through a *start gate* — an episode's start window closes when the server
   receives the episode's first new chain (or the episode ends), then the next episode starts.
   Concurrency is barely reduced: a window lasts from ``invoke`` to the graph's first HTTP
   request (milliseconds), and generation still batches (the proxy serves the policy through a
   :class:`~atlas_plugins.policy.batching.BatchedPolicy`). A later new chain of a running
   episode (a sub-agent, a second independent LLM call) is attributed when unambiguous: to the
   only running episode whose task prompt appears in the request, else to the only running
   episode; otherwise it is left **unattributed**, counted in every trajectory's
   ``metadata["unattributed_chains"]`` of that batch and kept in :attr:`ProxyRunner.unattributed`.
   Graphs that make several independent chains per episode and run as concurrent GRPO groups
   (identical prompts) should use the explicit form (2) or ``max_concurrency=1``.

A trajectory's token fields come from its chains (the first — the episode's main conversation —
then any others, each its own segment; within a chain, tool results are environment tokens);
messages, tool calls and final answer from the main chain's last request and its reply; tool
names ``server__tool`` map back to ``server:tool``.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from atlas_langgraph.aio import forget_thread, run_async
from atlas_langgraph.names import ToolNames
from atlas_langgraph.tools import EPISODE_CONFIG_KEY, episode_scope
from atlas_plugins.errors import AtlasError
from atlas_plugins.recording.chains import Chain
from atlas_plugins.recording.recorder import LLMCall, token_fields
from atlas_plugins.serving.server import PolicyServer
from atlas_plugins.types import Task, ToolCallRecord, Trajectory
from atlas_plugins.wire.messages import content_text, record_arguments
from atlas_plugins.wire.toolcall import STOP_STRINGS, parse_assistant

__all__ = ["ProxyRunner", "start_proxy"]

log = logging.getLogger(__name__)


def start_proxy(
    policy: Any = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_new_tokens: int = 256,
    stop: list[str] | None = None,
    **server_kwargs: Any,
) -> PolicyServer:
    """Start the local OpenAI-compatible endpoint an unchanged agent is pointed at.

    Streaming is on (``ChatOpenAI(streaming=True)`` and ``.stream`` work: the completion is
    sent as chunks once generated). ``max_new_tokens`` is the completion budget of requests that
    name none (and caps those that name more); ``stop`` defaults to the native loop's stop
    strings (``</tool_call>``, ``</answer>``) for requests that name none. ``policy`` may be
    ``None``: :class:`ProxyRunner` plugs in the trainer's policy on every ``run``.
    """
    if stop is None:
        stop = list(STOP_STRINGS)
    server_kwargs.setdefault("streaming", True)
    server_kwargs.setdefault("model_name", "policy")
    return PolicyServer(
        policy,
        host,
        port,
        default_max_tokens=max_new_tokens,
        max_tokens_cap=max_new_tokens,
        default_stop=stop,
        **server_kwargs,
    ).start()


def _tool_name(name: str, names: ToolNames | None = None, task: Task | None = None) -> str:
    """``math__add`` -> ``math:add``: the agent's :class:`~atlas_langgraph.names.ToolNames` first
    (bare MCP names, registered toolspace names), then other ``a__b`` names split once."""
    q = (names or ToolNames()).qualified(name, task)
    if q == name and "__" in name:
        server, _, tool = name.partition("__")
        if server and tool:
            return f"{server}:{tool}"
    return q


def _run_awaitable(value: Any) -> Any:
    """An agent's result, awaited on the process's background loop when it is awaitable (an
    ``async def`` agent, a coroutine-returning callable); this worker thread waits for it."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    return run_async(wait())


class ProxyRunner:
    """Plays an unchanged OpenAI-API agent once per task against the proxy; a trainer Runner.

    Args:
        agent: the user's agent, unchanged: a compiled LangGraph graph (anything with
            ``invoke``), run as ``agent.ainvoke(input_fn(task), config)`` (``invoke`` when it has
            no ``ainvoke``), so async-only tools work; or a callable ``agent(task)``; or a
            callable ``agent(task, base_url=...)``, which then gets a per-episode URL and every
            request is tagged explicitly. ``async def`` agents are awaited (on the process's one
            background event loop, :mod:`atlas_langgraph.aio`).
        toolspace: the toolspace the agent's tools call (informational; episodes are scoped with
            :func:`~atlas_langgraph.tools.episode_scope` and the run config either way).
        proxy: the :class:`PolicyServer` the agent's client points at (default: a new
            :func:`start_proxy`; then build the agent against ``runner.proxy.base_url``).
        input_fn: ``task -> graph input`` (default ``{"messages": [{"role": "user", "content": task.prompt}]}``).
        max_concurrency: episodes played at once.
        batch_wait_ms: how long the batching policy waits to merge concurrent requests.
        recursion_limit: LangGraph's step limit per episode (a run that hits it is recorded
            as failed, with the calls it made).
        episode_timeout_s: how long one batch of episodes may take before the stragglers are
            recorded as failed (their threads cannot be killed; they end on their own).
        tool_names: ``{agent tool name: "server:tool"}`` for tools whose server nothing else tells
            (see :mod:`atlas_langgraph.names`).
    """

    def __init__(
        self,
        agent: Any,
        toolspace: Any = None,
        *,
        proxy: PolicyServer | None = None,
        input_fn: Callable[[Task], Any] | None = None,
        max_concurrency: int = 16,
        batch_wait_ms: float = 50.0,
        recursion_limit: int = 25,
        episode_timeout_s: float = 1800.0,
        tool_names: dict[str, str] | None = None,
    ) -> None:
        if agent is None or not (hasattr(agent, "invoke") or callable(agent)):
            raise TypeError(f"agent must be a compiled graph (with .invoke) or a callable agent(task), got {agent!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.agent = agent
        self.toolspace = toolspace
        self.proxy = proxy if proxy is not None else start_proxy()
        if not self.proxy.record:
            raise ValueError("the proxy was started with record=False; ProxyRunner needs the recorded requests")
        self.input_fn = input_fn or (lambda task: {"messages": [{"role": "user", "content": task.prompt}]})
        self.max_concurrency = max_concurrency
        self.batch_wait_ms = batch_wait_ms
        self.recursion_limit = recursion_limit
        self.episode_timeout_s = episode_timeout_s
        self._explicit = not hasattr(agent, "invoke") and _accepts_base_url(agent)
        #: Agent tool names <-> ``server:tool`` (the graph's tools, when the agent is a graph).
        self.names = ToolNames.for_graph(agent, explicit=tool_names, toolspace=toolspace)
        self._policy: Any = None
        self._served: Any = None
        self._lock = threading.Lock()  # guards the attribution state below
        self._gate = threading.Lock()  # held while an episode is in its start window
        self._armed: str | None = None
        self._running: dict[str, str] = {}  # episode id -> task prompt (the hint)
        #: The raw outputs of the last run's agents, in task order (``None`` for a failed episode).
        self.last_results: list[Any] = []
        #: Chains of the last run that no episode could be found for.
        self.unattributed: list[Chain] = []

    # -- the policy --------------------------------------------------------------------------------
    def _serve(self, policy: Any) -> None:
        """Serve ``policy`` (batched) on the proxy; re-wrapped only when the trainer passes a new one."""
        if policy is None:
            if self._served is None and self.proxy.policy is None:
                raise ValueError("ProxyRunner.run needs a policy (the trainer passes its own)")
            return
        if policy is not self._policy:
            from atlas_plugins.policy.batching import BatchedPolicy

            self._policy = policy
            self._served = BatchedPolicy(policy, max_wait_ms=self.batch_wait_ms)
            self.proxy.set_policy(self._served)

    # -- attribution -------------------------------------------------------------------------------
    def _resolve_root(self, messages: list[dict[str, Any]]) -> str | None:
        """Which running episode a new untagged chain belongs to (called by the server)."""
        text = "\n".join(content_text(m.get("content")) for m in messages)
        with self._lock:
            hinted = [eid for eid, hint in self._running.items() if hint and hint in text]
            armed = self._armed
            if armed is not None and (armed in hinted or not hinted):
                self._armed = None
                self._gate.release()  # the episode's start window closes: the next one may start
                return armed
            if len(hinted) == 1:
                return hinted[0]
            if not hinted and len(self._running) == 1:
                return next(iter(self._running))
            return None

    def _play(self, task: Task, eid: str, seed: int | None) -> Any:
        served = self._served
        try:
            if self._explicit:
                with self._lock:
                    self._running[eid] = task.prompt
                with episode_scope(eid):
                    return _run_awaitable(self.agent(task, base_url=self.proxy.rollout_url(eid)))
            self._gate.acquire()
            with self._lock:
                self._armed = eid
                self._running[eid] = task.prompt
            with episode_scope(eid):
                if hasattr(self.agent, "invoke"):
                    # thread_id: a graph compiled with a checkpointer refuses a run without one, and
                    # a shared one would mix the episodes of a group (see LangGraphRunner).
                    config = {
                        "configurable": {"thread_id": eid, EPISODE_CONFIG_KEY: eid},
                        "recursion_limit": self.recursion_limit,
                    }
                    try:
                        if hasattr(self.agent, "ainvoke"):
                            return run_async(self.agent.ainvoke(self.input_fn(task), config))
                        return self.agent.invoke(self.input_fn(task), config)
                    finally:
                        forget_thread(self.agent, eid, use_async=hasattr(self.agent, "ainvoke"))
                return _run_awaitable(self.agent(task))
        finally:
            with self._lock:
                self._running.pop(eid, None)
                if self._armed == eid:  # ended without ever calling the model
                    self._armed = None
                    self._gate.release()
            if served is not None:
                served_episode = getattr(self, "_episodes", {}).pop(eid, None)
                if served_episode is not None:
                    served_episode.__exit__(None, None, None)

    def run(self, tasks: Sequence[Task], *, policy: Any = None, seed: int | None = None) -> list[Trajectory]:
        """Play one episode per task (concurrently) with ``policy``; trajectories in task order.

        A failing episode (an exception in the agent, a recursion limit, a timeout) is returned
        as a trajectory with ``metadata["error"]`` and whatever calls it made; nothing raises.
        ``seed`` is recorded in the metadata only: clients choose their own sampling settings.
        """
        tasks = list(tasks)
        self._serve(policy)
        self.proxy.chains.resolver = None if self._explicit else self._resolve_root
        eids = [f"{t.id}-{uuid.uuid4().hex[:10]}" for t in tasks]
        # Register every episode with the batching policy up front, so the first requests of a
        # group wait for each other and are generated as one batch.
        self._episodes: dict[str, Any] = {}
        if self._served is not None and hasattr(self._served, "episode"):
            for eid in eids:
                cm = self._served.episode()
                cm.__enter__()
                self._episodes[eid] = cm
        results: list[Any] = [None] * len(tasks)
        errors: list[str | None] = [None] * len(tasks)
        elapsed: list[float] = [0.0] * len(tasks)

        def timed(i: int) -> Any:
            t0 = time.perf_counter()
            try:
                return self._play(tasks[i], eids[i], seed)
            finally:
                elapsed[i] = time.perf_counter() - t0

        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, max(1, len(tasks))), thread_name_prefix="atlas-proxy-episode"
        )
        try:
            futures = {pool.submit(timed, i): i for i in range(len(tasks))}
            done, pending = concurrent.futures.wait(futures, timeout=self.episode_timeout_s)
            for fut in done:
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - one episode's failure is recorded, not raised
                    errors[i] = f"{type(exc).__name__}: {exc}"
            for fut in pending:
                errors[futures[fut]] = f"TimeoutError: episode still running after {self.episode_timeout_s} s"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for cm in self._episodes.values():  # episodes that never started
                cm.__exit__(None, None, None)
            self._episodes = {}
        self.last_results = results
        self.unattributed = self.proxy.chains.pop_unattributed()
        if self.unattributed:
            log.warning(
                "%d model-call chain(s) of this batch could not be attributed to an episode", len(self.unattributed)
            )
        trajs = []
        for i, (task, eid) in enumerate(zip(tasks, eids, strict=True)):
            chains = [c for c in self.proxy.chains.pop_rollout(eid) if c.calls]
            traj = self._trajectory(task, eid, chains, errors[i])
            traj.metadata.update(
                {
                    "seed": seed,
                    "elapsed_s": round(elapsed[i], 4),
                    "unattributed_chains": len(self.unattributed),
                    "explicit_attribution": self._explicit,
                }
            )
            trajs.append(traj)
        if any(t.turns for t in trajs):
            self._proxy_called = True
        elif (
            trajs
            and not self.unattributed
            and not getattr(self, "_proxy_called", False)
            and all(not t.metadata.get("error") for t in trajs)
        ):
            # An agent whose client points elsewhere (its own vLLM, an API) "succeeds" without one
            # request here: nothing to train, every step; say so instead of training on nothing.
            raise AtlasError(
                f"the agent made no request to the proxy at {self.proxy.base_url} in {len(trajs)} episode(s): point its "
                "client there (ChatOpenAI(base_url=runner.proxy.base_url, ...)); a caching client (dspy.LM cache=True) "
                "answers repeated prompts without a request"
            )
        return trajs

    # -- trajectories ------------------------------------------------------------------------------
    def _calls(self, chain: Chain) -> list[tuple[LLMCall, dict[str, Any]]]:
        out = []
        for index, choice in chain.calls:
            rec = self.proxy.record_at(index)
            if rec is None:
                raise RuntimeError(f"request {index} was dropped from the proxy's record store; raise max_records")
            done = rec.completions[choice]
            call = LLMCall(
                messages=rec.messages,
                tools=rec.tools,
                prompt_ids=rec.prompt_ids,
                completion_ids=done.completion_ids,
                logprobs=done.logprobs,
                text=done.text,
                finish_reason=done.finish_reason,
                continued=rec.continued,
            )
            out.append((call, done.message))
        return out

    def _trajectory(self, task: Task, eid: str, chains: list[Chain], error: str | None) -> Trajectory:
        per_chain = [self._calls(c) for c in chains]
        calls = [c for pc in per_chain for c, _ in pc]
        fields = token_fields(calls)
        if not calls and self.proxy.policy is not None:
            # No model call was made: keep a trainable row (the task prompt, nothing sampled).
            fields["prompt_ids"] = list(
                self.proxy.policy.apply_chat_template([{"role": "user", "content": task.prompt}])
            )
        messages: list[dict[str, Any]] = []
        final_answer = None
        if per_chain and per_chain[0]:
            last_call, last_reply = per_chain[0][-1]
            messages = [*last_call.messages, last_reply]
            if not last_reply.get("tool_calls"):
                parsed = parse_assistant(last_call.text)
                final_answer = (
                    parsed.answer
                    if parsed.answer is not None
                    else (parsed.content or content_text(last_reply.get("content"))).strip()
                )
        tool_calls: list[ToolCallRecord] = []
        turn = 0
        for pc in per_chain:  # every chain's tool calls, with results from its final history
            if not pc:
                continue
            last_call, last_reply = pc[-1]
            history = [*last_call.messages, last_reply]
            results = {
                m.get("tool_call_id"): content_text(m.get("content")) for m in history if m.get("role") == "tool"
            }
            for m in history:
                if m.get("role") != "assistant":
                    continue
                turn += 1
                for tc in m.get("tool_calls") or []:
                    fn = tc.get("function", {})
                    args = record_arguments(fn.get("arguments", {}), non_dict="wrap", blank="empty")
                    result = results.get(tc.get("id"))
                    ok = result is not None and not result.startswith("Error")
                    tool_calls.append(
                        ToolCallRecord(
                            turn=turn,
                            name=_tool_name(str(fn.get("name", "")), self.names, task),
                            arguments=args,
                            ok=ok,
                            result=(result or "")[:4000],
                            error=None if ok else (result or "no tool result in the conversation")[:500],
                        )
                    )
        parse_failures = sum(1 for c in calls if parse_assistant(c.text).errors)
        metadata: dict[str, Any] = {
            "runner": "proxy",
            "episode_id": eid,
            "chains": len(chains),
            "requests": [idx for c in chains for idx, _ in c.calls],
        }
        if error:
            metadata["error"] = error
        return Trajectory(
            task_id=task.id,
            task=task.model_dump(),
            messages=messages,
            tool_calls=tool_calls,
            final_answer=final_answer,
            turns=len(calls),
            tool_errors=sum(1 for t in tool_calls if not t.ok),
            parse_failures=parse_failures,
            metadata=metadata,
            **fields,
        )

    def close(self) -> None:
        """Stop the proxy (when this runner started it or you are done with it)."""
        self.proxy.stop()


def _accepts_base_url(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "base_url" in params
