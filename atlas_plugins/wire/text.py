"""Text helpers shared by every layer: truncation, "did you mean", name listings, one-liners.

Stdlib only. These are the one copy of each rule; the toolspace, the executors, the loading
policies, the agent loop and the adapters all use them, so a small model sees the same marker
and the same suggestions whichever path produced an observation.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

#: How many names a listing shows before it says how many there are in all.
MAX_LISTED = 20


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut at ``limit`` characters with a marker saying how much was cut, and whether
    it was cut: ``"…\\n…[truncated K of N characters]"``."""
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n…[truncated {len(text) - limit} of {len(text)} characters]", True


def cut(text: str, limit: int) -> str:
    """:func:`truncate` without the flag."""
    return truncate(text, limit)[0]


def closest(name: str, options: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` options like ``name`` (similar spelling, else a substring either way); an
    empty ``name`` matches nothing."""
    options = list(options)
    hits = difflib.get_close_matches(name, options, n=n, cutoff=0.5)
    if not hits:  # substring matches catch "add" vs "add_numbers"
        low = name.lower()
        hits = [o for o in options if low and (low in o.lower() or o.lower() in low)][:n]
    return hits


def ranked_names(name: str, options: list[str]) -> list[str]:
    """``options`` ordered closest-to-``name`` first (similarity, then substring, then the rest)."""
    low = name.lower()

    def key(o: str) -> tuple[float, int]:
        ratio = difflib.SequenceMatcher(None, low, o.lower()).ratio()
        sub = 1 if (low and (low in o.lower() or o.lower() in low)) else 0
        return (-(ratio + 0.3 * sub), options.index(o))

    return sorted(options, key=key)


def listing(names: list[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` — at most ``limit`` names, then ``, … (N in all)``."""
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s")


def one_line(text: str, limit: int = 100) -> str:
    """First sentence of ``text`` on one line, cut to ``limit`` characters (``…`` marks a cut)."""
    flat = " ".join((text or "").split())
    if not flat:
        return ""
    first = _SENTENCE_END.split(flat, maxsplit=1)[0]
    if len(first) > limit:
        first = first[: max(limit - 1, 1)].rstrip() + "…"
    return first
