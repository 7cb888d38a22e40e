"""The policy interface: what the agent loop and the trainer need from a language model.

Two protocols, because not every backend can give token ids:

* :class:`Policy` — a *trainable* policy. It takes prompts as **token ids** and returns the
  sampled completion ids with their log-probabilities, so that a trajectory is token-faithful
  (the ids the trainer scores are exactly the ids that were sampled; nothing is re-tokenized).
  :class:`~atlas_plugins.policy.transformers_policy.TransformersPolicy` implements it.
* :class:`ChatPolicy` — anything that maps chat messages to text. Every ``Policy`` here also
  implements it (``generate_chat``), and so does
  :class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy`, which evaluates external models
  over an OpenAI-compatible endpoint and cannot be trained.

Log-probabilities (the ``logprobs`` of a :class:`Generation`)
--------------------------------------------------------------
``logprobs[i]`` is ``log_softmax(logits_i / T)[completion_ids[i]]``: the *model's* log-probability
of the sampled token at the sampling temperature ``T``, **before** top-p truncation and without
renormalising over the nucleus. That is exactly what TRL's ``GRPOTrainer`` computes for the
training model (its fused LM head divides the logits by ``args.temperature`` and takes a
log-softmax; see ``_get_per_token_logps_and_entropies``), and what it compares the
``rollout_func``'s ``"logprobs"`` against as ``sampling_per_token_logps`` in the importance-
sampling correction (the same convention as vLLM's ``processed_logprobs`` mode). With the same
weights the ratio is therefore 1 up to numerics. At ``temperature == 0`` (greedy decoding) the
log-probabilities are taken at ``T = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from atlas_plugins.types import TokenizerLike

FinishReason = Literal["eos", "stop", "length"]


class Generation(BaseModel):
    """One sampled completion of one prompt.

    ``completion_ids`` are exactly the sampled ids, the end-of-sequence token included when it
    was sampled (``finish_reason == "eos"``). When a stop string ends the completion
    (``finish_reason == "stop"``) the ids end with the token that completed the stop string, so
    ``text`` (always the decoded ``completion_ids``; TransformersPolicy skips special tokens)
    contains the stop string and may run a few characters past it when that token spans the boundary —
    truncating *inside* a token would break token faithfulness. ``stop`` says which stop string
    (or the EOS token's text) ended the completion.
    """

    completion_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: FinishReason
    stop: str | None = None
    prompt_len: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.completion_ids)


class ChatGeneration(BaseModel):
    """A chat completion: the text, and token ids when the backend can give them."""

    text: str
    finish_reason: FinishReason
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    #: Tool calls the backend returned natively (OpenAI ``tool_calls``), as
    #: ``{"name", "arguments"}`` dicts; local policies leave tool calls in ``text``.
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class SamplingParams(BaseModel):
    """Sampling settings shared by all backends (validated at the boundary)."""

    max_new_tokens: int | list[int] = Field(default=256)
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] | list[list[str]] | None = None
    seed: int | None = None


@runtime_checkable
class ChatPolicy(Protocol):
    """Messages in, text out (evaluation of any model, trainable or not)."""

    name: str

    def generate_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> ChatGeneration: ...


@runtime_checkable
class TokenPolicy(Protocol):
    """Token ids in, sampled token ids + logprobs out: what the native agent loop drives.

    ``generate`` runs the whole batch together (one GRPO group, or several): prompts of
    different lengths are fine. ``max_new_tokens`` may be one int or one per prompt; ``stop`` may
    be one list of stop strings for all prompts or one list per prompt. With ``seed`` set, the
    same call returns the same generations.
    """

    @property
    def tokenizer(self) -> TokenizerLike: ...

    def generate(
        self,
        batch: list[list[int]],
        *,
        max_new_tokens: int | Sequence[int] = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] | Sequence[Sequence[str]] | None = None,
        seed: int | None = None,
    ) -> list[Generation]: ...

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]: ...


@runtime_checkable
class Policy(TokenPolicy, ChatPolicy, Protocol):
    """A trainable policy: a :class:`TokenPolicy` that also speaks messages (:class:`ChatPolicy`).

    Token-only policies (demonstration replays, a vLLM engine) are :class:`TokenPolicy` alone; a
    chat-API model (an OpenAI-compatible server) is :class:`ChatPolicy` alone. The agent loop
    takes either."""


def per_prompt(value: Any, n: int, *, what: str, scalar: type | tuple[type, ...]) -> list[Any]:
    """Broadcast a scalar setting to ``n`` prompts, or check a per-prompt list has ``n`` items."""
    if isinstance(value, scalar):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{what}: got {len(values)} values for a batch of {n} prompts")
    return values


def per_prompt_stops(stop: Sequence[str] | Sequence[Sequence[str]] | None, n: int) -> list[list[str]]:
    """``None`` | ``["a", "b"]`` (for every prompt) | ``[["a"], ["b"]]`` (one list per prompt)."""
    if stop is None:
        return [[] for _ in range(n)]
    if isinstance(stop, str):
        stop = [stop]
    items = list(stop)
    if all(isinstance(s, str) for s in items):
        stops = [cast("list[str]", list(items)) for _ in range(n)]
    elif all(isinstance(s, (list, tuple)) for s in items):
        if len(items) != n:
            raise ValueError(f"stop: got {len(items)} per-prompt stop lists for a batch of {n} prompts")
        stops = [list(cast("Sequence[str]", s)) for s in items]
    else:
        raise ValueError(f"stop: expected a list of strings or one list of strings per prompt, got {stop!r}")
    for row in stops:
        for s in row:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop: stop strings must be non-empty strings, got {s!r}")
    return stops
