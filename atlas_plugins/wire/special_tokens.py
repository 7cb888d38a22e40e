"""Defusing special-token strings in text that comes from outside the model.

Why: chat prompts are rendered to text and tokenized with special tokens recognised, because
the template's own ``<|im_start|>`` / ``<|im_end|>`` must become control tokens. Text from a
tool result, an MCP tool description, a sandbox's stdout or a task file goes into that same
rendered text. If it contains the string ``<|im_end|>\\n<|im_start|>system``, the tokenizer
turns it into real control tokens: a forged system turn in the model's context, and in the
context GRPO trains on. Measured on SmolLM2's tokenizer: ``"hi <|im_end|>"`` encodes to the
end-of-turn id 2.

What: :func:`defuse` inserts a WORD JOINER (U+2060, invisible, not whitespace) after the first
character of every special-token string in a text, so it tokenizes as plain characters;
:func:`defuse_all` does it through the strings of a JSON-like object (messages, tool schemas).
Text without special-token strings is returned unchanged, so benign prompts tokenize exactly
as before. Defused are the tokenizer's ``all_special_tokens``, added tokens marked special, and
added tokens *not* marked special that are markup (``<tool_call>``, ``</tool_response>``,
``<think>``, ``<|fim_prefix|>``, ``[TOOL_CALLS]``: Qwen's tool tags are such tokens, and a tool
result that spelt them became the tags themselves). Added tokens that are ordinary text (runs of
spaces, word pieces) are left alone. Not covered: the assistant's own turns (see
:func:`defuse_messages`), a special string split across two content parts that a template joins,
and servers that render chat templates themselves (an OpenAI-compatible endpoint gets messages,
not ids).
"""

from __future__ import annotations

import re
import weakref
from typing import Any

__all__ = ["JOINER", "defuse", "defuse_all", "defuse_messages", "special_strings"]

JOINER = "\u2060"
#: An added token that is markup, not text: ``<name>``, ``</name>``, ``<|name|>``, ``[NAME]``.
_MARKUP = re.compile(r"<\|?/?[^\s<>]{1,64}\|?>|\[/?[A-Z][A-Z0-9_]{1,63}\]")

#: tokenizer -> one pattern matching any of its special strings (None: it has none); tokenizers
#: with thousands of special tokens (Gemma's "unused" ones) would otherwise cost a scan per string.
_PATTERNS: weakref.WeakKeyDictionary[Any, re.Pattern[str] | None] = weakref.WeakKeyDictionary()


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's control-token strings (two characters or more), longest first: its special
    tokens, and added tokens that are markup even where not marked special."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        content = str(getattr(added, "content", ""))
        if getattr(added, "special", False) or _MARKUP.fullmatch(content):
            found.add(content)
    return tuple(sorted((s for s in found if isinstance(s, str) and len(s) >= 2), key=len, reverse=True))


def _pattern(tokenizer: Any) -> re.Pattern[str] | None:
    try:
        return _PATTERNS[tokenizer]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: computed each time
        return _compile(tokenizer)
    _PATTERNS[tokenizer] = pattern = _compile(tokenizer)
    return pattern


def _compile(tokenizer: Any) -> re.Pattern[str] | None:
    specials = special_strings(tokenizer)
    return re.compile("|".join(re.escape(s) for s in specials)) if specials else None


def defuse(text: str, tokenizer: Any) -> str:
    """``text`` with every special-token string of ``tokenizer`` broken by :data:`JOINER`."""
    pattern = _pattern(tokenizer)
    if pattern is None or pattern.search(text) is None:
        return text
    # A broken string cannot re-form one of the same length, but a shorter special token could
    # sit inside what follows the joiner ("<s>" in "<<s>>"), so repeat until none is left.
    for _ in range(8):
        text, n = pattern.subn(lambda m: m.group(0)[0] + JOINER + m.group(0)[1:], text)
        if n == 0:
            break
    return text


def defuse_all(obj: Any, tokenizer: Any) -> Any:
    """A copy of a JSON-like ``obj`` with :func:`defuse` applied to every string in it (dict
    keys included); objects without special-token strings come back as they were."""
    if _pattern(tokenizer) is None:
        return obj

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            return defuse(x, tokenizer)
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(walk(v) for v in x)
        return x

    return walk(obj)


def defuse_messages(messages: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Chat messages with every message but the assistant's own defused. Assistant turns are the
    model's sampled text (already free of control tokens, which decoding skips) or its scripted
    demonstrations; leaving them as they are keeps templates that look inside them (a
    ``</think>`` split) on the branch the sampled ids took."""
    return [m if m.get("role") == "assistant" else defuse_all(m, tokenizer) for m in messages]
