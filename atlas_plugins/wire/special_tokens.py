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
as before. Special tokens are the tokenizer's ``all_special_tokens`` plus added tokens marked
special. Not covered: strings a tokenizer maps to a control token without registering it as
special (none of the templates we ship), and servers that render chat templates themselves
(an OpenAI-compatible endpoint gets messages, not ids).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["JOINER", "defuse", "defuse_all", "special_strings"]

JOINER = "\u2060"


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special-token strings (two characters or more), longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            found.add(str(getattr(added, "content", "")))
    return tuple(sorted((s for s in found if isinstance(s, str) and len(s) >= 2), key=len, reverse=True))


def _pattern(specials: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(s) for s in specials))


def defuse(text: str, tokenizer: Any) -> str:
    """``text`` with every special-token string of ``tokenizer`` broken by :data:`JOINER`."""
    specials = special_strings(tokenizer)
    if not specials or not any(s in text for s in specials):
        return text
    pattern = _pattern(specials)
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
    specials = special_strings(tokenizer)
    if not specials:
        return obj

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            return defuse(x, tokenizer) if any(s in x for s in specials) else x
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(walk(v) for v in x)
        return x

    return walk(obj)
