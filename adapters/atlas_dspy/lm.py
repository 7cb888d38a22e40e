"""``AtlasLM``: a DSPy language model backed by an ATLAS policy, recording every call token for token.

DSPy modules talk to their LM with chat messages (its adapters format the signature into a
system + user message and parse the reply). :class:`AtlasLM` renders those messages with the
policy's chat template (:class:`~atlas_plugins.recording.recorder.ChatRenderer`), samples with the
policy, hands DSPy the sampled text as an OpenAI-shaped response, and — while a
:func:`recording` scope is active in the calling context — appends one
:class:`~atlas_plugins.recording.recorder.LLMCall` per generated completion: the exact prompt ids,
the exact sampled ids and their logprobs. Those calls become the trajectory the GRPO core
trains on (:class:`atlas_dspy.runner.DSPyRunner`).

Caching: DSPy's response cache never applies to an ``AtlasLM`` (it is a plain
``dspy.BaseLM`` subclass, which DSPy never caches) — a GRPO group sends identical prompts and
must get different samples.

Implementation note: DSPy 3.4 marks ``BaseLM.forward`` subclasses as deprecated (still
supported in 3.4, scheduled for removal in 3.5, hence the ``dspy<3.5`` pin of the extra). It is
the one interface where the LM sees DSPy's messages and returns the provider response itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import dspy

from atlas_plugins.errors import AtlasError
from atlas_plugins.recording.recorder import ChatRenderer, LLMCall


class Recording:
    """The calls of one episode, in order (thread-safe: DSPy may call from worker threads)."""

    def __init__(self, seed: int | None = None) -> None:
        self.calls: list[LLMCall] = []
        self.seed = seed
        #: ``time.monotonic()`` after which LM calls raise ``TimeoutError``: a program that loops
        #: on its LM (a custom retry-until-parsed loop) ends at its next call.
        self.deadline: float | None = None
        self._next = 0
        self._lock = threading.Lock()

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError(f"the episode ran past its time budget ({len(self.calls)} LM calls made)")

    def next_seed(self) -> int | None:
        """A fresh per-call seed derived from the episode's seed (``None`` when unseeded)."""
        with self._lock:
            k = self._next
            self._next += 1
        return None if self.seed is None else self.seed + 7919 * k

    def add(self, call: LLMCall) -> None:
        with self._lock:
            self.calls.append(call)


_RECORDING: ContextVar[Recording | None] = ContextVar("atlas_dspy_recording", default=None)
# (lm, generator): a stand-in for that LM's policy in this context (the runner's batching front).
_GENERATOR: ContextVar[tuple[Any, Any] | None] = ContextVar("atlas_dspy_generator", default=None)


@contextmanager
def recording(seed: int | None = None) -> Iterator[Recording]:
    """Record every :class:`AtlasLM` call made in this context (this thread / task) into a
    :class:`Recording`. ``seed`` seeds the calls: call ``k`` samples with ``seed + 7919·k``."""
    rec = Recording(seed)
    token = _RECORDING.set(rec)
    try:
        yield rec
    finally:
        _RECORDING.reset(token)


#: ``dspy.settings`` keys under which the runner also puts an episode's recording and generator:
#: DSPy's own worker threads (``dspy.Parallel``, ``Module.batch``) copy DSPy's settings into
#: each thread, but not other context variables, so the LM calls made there were not recorded.
SETTINGS_RECORDING = "atlas_recording"
SETTINGS_GENERATOR = "atlas_generator"


def current_recording() -> Recording | None:
    found = _RECORDING.get()
    return found if found is not None else dspy.settings.get(SETTINGS_RECORDING)


class _Obj(dict):
    """A dict that also reads as attributes: DSPy and user code read responses both ways."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


class AtlasLM(dspy.BaseLM):
    """A ``dspy.BaseLM`` over a trainable ATLAS policy.

    Args:
        policy: a :class:`~atlas_plugins.policy.transformers_policy.TransformersPolicy` (or any
            object with ``tokenizer``, ``apply_chat_template`` and ``generate``), or ``None`` /
            ``"embedded"`` / a model path to load one. The trainer's runner swaps in the policy
            over the model being trained (:meth:`set_policy`), so this object keeps answering with
            the trained weights afterwards.
        temperature, max_tokens, top_p: sampling defaults (a call's own kwargs win).
        stop: default stop strings (none: DSPy's adapters parse the whole reply).
        seed: default seed for calls outside a :func:`recording` scope (``None``: unseeded).

    ``n > 1`` (DSPy asks for several completions) samples all of them in one batched call.
    """

    def __init__(
        self,
        policy: Any = None,
        *,
        temperature: float = 1.0,
        max_tokens: int = 256,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        policy = self._load(policy)
        name = model_name or getattr(policy, "name", type(policy).__name__)
        super().__init__(
            model=f"atlas/{name}",
            model_type="chat",
            temperature=temperature,
            max_tokens=max_tokens,
            cache=False,
            num_retries=0,
            top_p=top_p,
            **kwargs,
        )
        self._default_stop = list(stop) if stop else None
        self._default_seed = seed
        self.policy: Any = None
        self._renderer: ChatRenderer | None = None
        self.set_policy(policy)

    @staticmethod
    def _load(policy: Any) -> Any:
        if policy is None or isinstance(policy, str):
            from atlas_plugins.policy.transformers_policy import TransformersPolicy

            return TransformersPolicy(policy)
        for attr in ("tokenizer", "apply_chat_template", "generate"):
            if not hasattr(policy, attr):
                raise AtlasError(
                    f"AtlasLM needs a policy with {attr!r} (a TransformersPolicy); got {type(policy).__name__}"
                )
        return policy

    def set_policy(self, policy: Any) -> None:
        """Act with ``policy`` from now on (the renderer is rebuilt only if the tokenizer changes)."""
        policy = self._load(policy)
        if self._renderer is None or self._renderer.tokenizer is not policy.tokenizer:
            self._renderer = ChatRenderer(policy)
        else:
            self._renderer.policy = policy
        self.policy = policy

    # ``copy`` keeps the policy and the renderer by reference (BaseLM's shallow copy): fine.

    @contextmanager
    def generating_with(self, generator: Any) -> Iterator[None]:
        """In this context, sample through ``generator`` (same ``generate`` API as the policy,
        e.g. a batching front over it) instead of the policy; ``None`` changes nothing."""
        token = _GENERATOR.set((self, generator) if generator is not None else None)
        try:
            yield
        finally:
            _GENERATOR.reset(token)

    def dump_state(self) -> dict[str, Any]:
        state = super().dump_state()
        state.pop("cache", None)  # never cached; fixed by the constructor
        state.pop("num_retries", None)
        state.pop("model", None)  # rebuilt from the policy
        state.pop("model_type", None)
        return state

    # -- the call ------------------------------------------------------------------------
    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """Generate for one DSPy call; returns an OpenAI chat-completion-shaped response."""
        merged = {**self.kwargs, **kwargs}
        msgs = messages if messages is not None else [{"role": "user", "content": prompt or ""}]
        if not isinstance(msgs, list) or not msgs:
            raise AtlasError(f"AtlasLM got no messages to answer (prompt={prompt!r}, messages={messages!r:.200})")
        tools = merged.get("tools") or None
        n = int(merged.get("n") or 1)
        if n < 1:
            raise AtlasError(f"AtlasLM: n must be >= 1, got {n}")
        max_tokens = merged.get("max_tokens") or merged.get("max_completion_tokens") or 256
        temperature = merged.get("temperature")
        temperature = 1.0 if temperature is None else float(temperature)
        top_p = merged.get("top_p")
        top_p = 1.0 if top_p is None else float(top_p)
        stop = merged.get("stop") or self._default_stop
        if isinstance(stop, str):
            stop = [stop]
        rec = current_recording()
        if rec is not None:
            rec.check_deadline()
        seed = rec.next_seed() if rec is not None else merged.get("seed", self._default_seed)

        assert self._renderer is not None
        prompt_ids, continued = self._renderer.prompt_ids(msgs, tools)
        override = _GENERATOR.get() or dspy.settings.get(SETTINGS_GENERATOR)
        generator = override[1] if override is not None and override[0] is self else self.policy
        gens = generator.generate(
            [prompt_ids] * n,
            max_new_tokens=int(max_tokens),
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
        choices = []
        for i, gen in enumerate(gens):
            reply = {"role": "assistant", "content": gen.text}
            self._renderer.remember(msgs, tools, prompt_ids, gen.completion_ids, gen.text, reply)
            if rec is not None:
                rec.add(
                    LLMCall(
                        messages=[dict(m) for m in msgs],
                        tools=tools,
                        prompt_ids=list(prompt_ids),
                        completion_ids=list(gen.completion_ids),
                        logprobs=list(gen.logprobs),
                        text=gen.text,
                        finish_reason=gen.finish_reason,
                        continued=continued,
                    )
                )
            choices.append(
                _Obj(
                    index=i,
                    finish_reason=_FINISH.get(gen.finish_reason, "stop"),
                    message=_Obj(role="assistant", content=gen.text),
                    logprobs=None,
                )
            )
        completion_tokens = sum(len(g.completion_ids) for g in gens)
        usage = _Obj(
            prompt_tokens=len(prompt_ids),
            completion_tokens=completion_tokens,
            total_tokens=len(prompt_ids) + completion_tokens,
        )
        return _Obj(
            id=f"atlas-{uuid.uuid4().hex[:12]}",
            object="chat.completion",
            created=int(time.time()),
            model=self.model,
            choices=choices,
            usage=usage,
        )

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        """Async :meth:`forward`: generation runs in a worker thread (the context — and so the
        episode's recording — is carried into it by :func:`asyncio.to_thread`)."""
        import asyncio

        return await asyncio.to_thread(self.forward, prompt, messages, **kwargs)
