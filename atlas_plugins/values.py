"""Values that cross a trust boundary: bounded JSON, tool text as Python values, display text.

Everything a sandbox or an MCP server sends is hostile input to the host. The helpers here turn
such input into Python values without letting it crash or stall the process that reads it:

* :func:`loads_bounded` is ``json.loads`` with a size cap and a nesting cap. It raises
  ``ValueError`` for every bad input, deep nesting included (plain ``json.loads`` raises
  ``RecursionError`` there, which callers that catch ``ValueError`` miss).
* :func:`to_python` turns MCP text content into a Python value (JSON, else a Python literal),
  under the same caps; anything else stays text.
* :func:`describe_value` sketches a value's shape for the model (``{"total": float, ...}``).
* :func:`printable` makes untrusted text safe to show on a terminal or in a log: control
  characters (ANSI/OSC escapes, BEL, NUL, ...) are shown as ``\\x1b`` instead of acting.

Stdlib only, and no import of the rest of ``atlas_plugins``: the code executors ship this file
into the sandbox next to the runner (:mod:`atlas_plugins.orchestration.sandbox_runner`), so
both sides parse tool output with the same code.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from typing import Any

MAX_JSON_DEPTH = 64  # tool results and bridge messages nest far less; deeper input is hostile
MAX_JSON_CHARS = 8 * 1024 * 1024
MAX_TEXT_CHARS = 1_000_000  # longest tool-result text decoded into a value
# ast.literal_eval is far slower than json and builds an AST first: 1 M characters of "(0,0,...)"
# cost the host 0.96 s and 472 MB, so Python-literal text is decoded only up to 100 k.
MAX_LITERAL_CHARS = 100_000


def nesting_exceeds(value: object, limit: int) -> bool:
    """Whether containers in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads_bounded(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, max_chars: int = MAX_JSON_CHARS) -> Any:
    """``json.loads`` for untrusted input. Raises ``ValueError`` naming the problem for invalid
    JSON, input longer than ``max_chars`` and containers nested deeper than ``max_depth``."""
    if len(data) > max_chars:
        raise ValueError(f"JSON of {len(data)} characters exceeds the {max_chars}-character limit")
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except MemoryError:
        raise ValueError("JSON too large to decode") from None
    if nesting_exceeds(value, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value


def to_python(content: Any) -> Any:
    """A tool result as a Python value: already-decoded JSON stays; text that is JSON or a
    Python literal (``{'a': 1}``, ``(1, 2)``) becomes that value; anything else stays text.
    Input that is too long or nested too deep also stays text."""
    if not isinstance(content, str):
        return content
    text = content.strip()
    if not text or len(text) > MAX_TEXT_CHARS or text[0] not in "[{(\"'-0123456789TFN":
        return content
    try:
        return loads_bounded(text)
    except ValueError:
        pass
    if len(text) > MAX_LITERAL_CHARS:
        return content
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return content
    return content if nesting_exceeds(value, MAX_JSON_DEPTH) else value


def describe_value(value: Any, depth: int = 0) -> str:
    """A compact type sketch of a value: ``{"total": float, "items": list[{"id": str}]}``."""
    if depth > 3:
        return "..."
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "None"
    if isinstance(value, (int, float, str)):
        return type(value).__name__
    if isinstance(value, dict):
        items = list(value.items())
        inner = ", ".join(f"{json.dumps(str(k))}: {describe_value(v, depth + 1)}" for k, v in items[:12])
        return "{" + inner + (", ..." if len(items) > 12 else "") + "}"
    if isinstance(value, (list, tuple)):
        name = type(value).__name__
        return f"{name}[{describe_value(value[0], depth + 1)}]" if value else f"{name} (empty)"
    return type(value).__name__


# What a terminal or an editor may act on or hide instead of showing. C0 controls but tab and
# newline, DEL, and C1 controls (0x80-0x9f: 8-bit CSI/OSC introducers). Then every Unicode format
# character (category Cf, Unicode 15): the bidirectional marks, embeddings, overrides and isolates
# ("Trojan Source", CVE-2021-42574, which reorder what a terminal shows), zero-width spaces and
# joiners, the byte-order mark, interlinear annotation marks and the tag characters U+E0000-7F
# (invisible text that a language model still reads). The line and paragraph separators U+2028-9,
# which some viewers break lines on. And characters of other categories that render as nothing
# and are used to hide text: the combining grapheme joiner U+034F, the Hangul fillers (U+115F-60,
# U+3164, U+FFA0) and the supplementary variation selectors U+E0100-EF (one per byte, they carry
# a hidden message after any character). U+FE00-F stay: emoji use U+FE0F.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u115f\u1160\u180e\u3164\uffa0"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f\U000e0100-\U000e01ef]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\u202e``), so that an ANSI
    or OSC sequence from a tool or a sandbox is displayed, never executed by a terminal, a
    bidirectional override cannot make a line read differently from what it holds, and invisible
    format characters (zero-width, tags) are shown where they are."""
    return _CONTROLS.sub(_escape, text)
