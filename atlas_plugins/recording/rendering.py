"""Token-faithful context building on top of any chat template.

The agent never re-renders the conversation. It renders the first prompt once with the
policy's chat template, then only *appends*: the ids the model sampled (kept exactly), and
for every observation the template's own text for "close the assistant turn, add this
observation turn, open the next assistant turn", tokenized on its own. So every prompt is a
prefix extension of the previous one by construction, the trainer sees exactly the ids the
model saw, and no prefix break can happen in the native loop. (Templates that rewrite history
— e.g. ones that drop earlier ``<think>`` blocks — would produce a different text if the whole
conversation were re-rendered; we train and evaluate on the appended form, consistently.)

The pieces are found by rendering small probe conversations and diffing the text, so any
template that renders roles in order works; nothing is hard-coded per model family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlas_plugins.types import TokenizerLike

_PROBE_USER = "PROBE-USER-7f3a"
_PROBE_ASSISTANT = "PROBE-ASSISTANT-9c1e"
_PROBE_OBSERVATION = "PROBE-OBSERVATION-2b8d"


@dataclass(frozen=True)
class TurnTemplate:
    """Text pieces of one chat template around an observation turn."""

    #: What follows an assistant message's content (e.g. ``"<|im_end|>\\n"``).
    assistant_close: str
    #: An observation turn plus the next assistant header, with ``{content}`` placeholder.
    observation_turn: str
    #: The end-of-turn token's text, when the template's close starts with it.
    eos_text: str | None

    def observation_text(self, content: str, *, sampled_text: str) -> str:
        """Text to append after the sampled ids to add one observation and reopen the assistant."""
        close = self.assistant_close
        if self.eos_text and close.startswith(self.eos_text) and sampled_text.endswith(self.eos_text):
            close = close[len(self.eos_text) :]  # the model already sampled the end-of-turn token
        return close + self.observation_turn.replace("{content}", content)


def _render(tokenizer: TokenizerLike, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def probe_template(tokenizer: TokenizerLike, observation_role: str = "tool") -> TurnTemplate:
    """Work out a template's assistant-close and observation-turn text by diffing renders."""
    system = {"role": "system", "content": "S"}
    user = {"role": "user", "content": _PROBE_USER}
    assistant = {"role": "assistant", "content": _PROBE_ASSISTANT}
    obs = {"role": observation_role, "content": _PROBE_OBSERVATION}
    if observation_role == "tool":
        obs["tool_call_id"] = "call_0"
    base = _render(tokenizer, [system, user, assistant], add_generation_prompt=False)
    full = _render(tokenizer, [system, user, assistant, obs], add_generation_prompt=True)
    if not full.startswith(base) or _PROBE_ASSISTANT not in base or _PROBE_OBSERVATION not in full:
        raise ValueError(
            f"chat template does not render an {observation_role!r} turn as an append-only extension; "
            "try observation_role='user'"
        )
    close = base[base.rindex(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT) :]
    turn = full[len(base) :].replace(_PROBE_OBSERVATION, "{content}", 1)
    eos = getattr(tokenizer, "eos_token", None)
    return TurnTemplate(
        assistant_close=close, observation_turn=turn, eos_text=eos if eos and close.startswith(eos) else None
    )


def encode(tokenizer: TokenizerLike, text: str) -> list[int]:
    """Token ids of a text fragment, no BOS/EOS added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
