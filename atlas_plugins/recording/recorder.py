"""Token-faithful recording of model calls made by *other* agent frameworks.

The native loop builds its token sequence itself. An adapted agent (a LangGraph graph, a DSPy
program, anything speaking the OpenAI API to :class:`~atlas_plugins.serving.server.PolicyServer`)
hands us chat *messages* on every call instead. Two pieces turn those calls into trajectories
the GRPO core can train on (messages are compared by
:func:`~atlas_plugins.wire.messages.message_key`):

* :class:`ChatRenderer` renders each call's messages to prompt ids **append-only**: when a
  call's messages continue a conversation it has already served (the earlier messages, then the
  assistant reply it produced, then new tool/user messages), the prompt is the earlier
  sequence — prompt ids plus the *sampled* ids — extended with the chat template's own text for
  the new turn, exactly as the native loop does (:mod:`atlas_plugins.recording.rendering`). Nothing
  the model sampled is re-tokenized, so successive prompts are prefix extensions. Anything else
  (a new conversation, a rewritten history, several new turns of mixed roles) is rendered fresh
  with the policy's chat template.
* :func:`stitch` turns one episode's ordered calls (:class:`LLMCall`) into the trajectory token
  view: while each prompt extends the previous call's prompt + completion, the new prompt tokens
  become environment tokens (``env_mask`` 0) and the completion model tokens (``env_mask`` 1).
  A prompt that does not extend the sequence is a **prefix break**: a new segment starts.

How the trainer uses segments: TRL's ``rollout_func`` returns one row per episode, and a row
can only hold one self-consistent token sequence (the loss conditions every token on the
tokens before it). A trajectory without breaks trains as one row. A trajectory with breaks
(DSPy renders every call afresh, so each call is its own segment) trains **one segment per
episode, drawn uniformly at random** with the episode's reward as its advantage — across steps
every call is trained, and the expected update is proportional to the sum over the episode's
calls (each segment is drawn with probability 1/K). See
:func:`atlas_plugins.training.trainer.training_view`.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from atlas_plugins.recording.rendering import TurnTemplate, encode, probe_template
from atlas_plugins.types import Segment
from atlas_plugins.wire.messages import content_text, message_key
from atlas_plugins.wire.special_tokens import defuse

if TYPE_CHECKING:
    from atlas_plugins.types import TokenizerLike

__all__ = ["ChatRenderer", "LLMCall", "Segment", "stitch", "token_fields"]


class LLMCall(BaseModel):
    """One model call as the policy saw it, token for token."""

    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    text: str = ""
    finish_reason: str = ""
    #: True when the prompt was built append-only on an earlier call of the same conversation.
    continued: bool = False


def stitch(calls: Sequence[LLMCall]) -> list[Segment]:
    """Ordered calls of one episode -> segments (one unless the prompts break the prefix)."""
    segments: list[Segment] = []
    seq: list[int] = []  # the current segment's full sequence (prompt + completion)
    for call in calls:
        prompt = list(call.prompt_ids)
        if segments and len(prompt) >= len(seq) and prompt[: len(seq)] == seq:
            seg = segments[-1]
            env = prompt[len(seq) :]
            seg.completion_ids += env
            seg.env_mask += [0] * len(env)
            seg.logprobs += [0.0] * len(env)
        else:
            seg = Segment(prompt_ids=prompt)
            segments.append(seg)
            seq = list(prompt)
        seg.completion_ids += call.completion_ids
        seg.env_mask += [1] * len(call.completion_ids)
        seg.logprobs += list(call.logprobs)
        seg.calls += 1
        seq = seg.prompt_ids + seg.completion_ids
    return segments


def token_fields(calls: Sequence[LLMCall]) -> dict[str, Any]:
    """Trajectory token fields for an episode's calls (see :class:`~atlas_plugins.types.Trajectory`).

    The top-level ids are the first segment; with prefix breaks ``segments`` lists every segment.
    """
    segs = stitch(calls)
    if not segs:
        return {
            "prompt_ids": [],
            "completion_ids": [],
            "env_mask": [],
            "logprobs": [],
            "prefix_breaks": 0,
            "segments": [],
        }
    first = segs[0]
    return {
        "prompt_ids": first.prompt_ids,
        "completion_ids": first.completion_ids,
        "env_mask": first.env_mask,
        "logprobs": first.logprobs,
        "prefix_breaks": len(segs) - 1,
        "segments": [s.model_dump() for s in segs] if len(segs) > 1 else [],
        "initial_context_tokens": len(first.prompt_ids),
        "context_tokens": max(len(s.prompt_ids) + len(s.completion_ids) for s in segs),
    }


class RenderingPolicy(Protocol):
    """What :class:`ChatRenderer` reads from a policy: its tokenizer and its chat template
    (every :class:`~atlas_plugins.policy.base.Policy` has both)."""

    @property
    def tokenizer(self) -> TokenizerLike: ...

    def apply_chat_template(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> Sequence[int]: ...


class _Conversation(BaseModel):
    keys: list[str]  # canonical messages, the assistant reply included
    ids: list[int]  # prompt ids + sampled completion ids
    sampled_text: str


class ChatRenderer:
    """Renders chat messages to prompt ids, append-only across the calls of a conversation.

    Args:
        policy: anything with ``tokenizer`` and ``apply_chat_template(messages, tools=...)``
            (a :class:`~atlas_plugins.policy.transformers_policy.TransformersPolicy`).
        max_conversations: how many finished calls to remember (oldest forgotten first).

    Thread-safe: adapters run episodes concurrently.
    """

    ROLES = ("tool", "user")

    def __init__(self, policy: RenderingPolicy, *, max_conversations: int = 4096) -> None:
        self.policy = policy
        self.tokenizer: TokenizerLike = policy.tokenizer
        self._templates: dict[str, TurnTemplate] = {}
        for role in self.ROLES:
            try:
                self._templates[role] = probe_template(self.tokenizer, role)
            except ValueError:
                pass  # this template cannot append that role; such turns render fresh
        self._seen: OrderedDict[str, _Conversation] = OrderedDict()
        self._max = max_conversations
        self._lock = threading.Lock()

    @staticmethod
    def _prefix_key(keys: Sequence[str]) -> str:
        return "\x1e".join(keys)

    def prompt_ids(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> tuple[list[int], bool]:
        """Prompt ids for ``messages``; the flag says whether an earlier call was extended."""
        keys = [message_key(m) for m in messages]
        tools_key = json.dumps(tools, sort_keys=True, default=str) if tools else ""
        with self._lock:
            # Longest remembered conversation that the new messages continue.
            for cut in range(len(keys) - 1, 0, -1):
                conv = self._seen.get(tools_key + self._prefix_key(keys[:cut]))
                if conv is None:
                    continue
                tail = messages[cut:]
                roles = {m.get("role") for m in tail}
                if len(roles) == 1 and (role := next(iter(roles))) in self._templates:
                    content = "\n\n".join(content_text(m.get("content")) for m in tail)
                    # Tool results are outside text: no forged control tokens (see wire.special_tokens).
                    content = defuse(content, self.tokenizer)
                    text = self._templates[role].observation_text(content, sampled_text=conv.sampled_text)
                    self._seen.move_to_end(tools_key + self._prefix_key(keys[:cut]))
                    return conv.ids + encode(self.tokenizer, text), True
                break
        return list(self.policy.apply_chat_template(messages, tools=tools)), False

    def remember(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        prompt_ids: list[int],
        completion_ids: list[int],
        sampled_text: str,
        reply: dict[str, Any],
    ) -> None:
        """Record a served call so a later call that continues it is rendered append-only.

        ``reply`` is the assistant message as handed back to the framework (content and tool
        calls), since that is what the framework will send back in the next call's history.
        """
        keys = [message_key(m) for m in messages] + [message_key({**reply, "role": "assistant"})]
        tools_key = json.dumps(tools, sort_keys=True, default=str) if tools else ""
        conv = _Conversation(keys=keys, ids=list(prompt_ids) + list(completion_ids), sampled_text=sampled_text)
        with self._lock:
            self._seen[tools_key + self._prefix_key(keys)] = conv
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
