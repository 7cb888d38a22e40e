"""The tool-call wire format: the tags, the two JSON styles of a call, and the parsers.

The model thinks in ``<think>…</think>``, calls one tool per
``<tool_call>{"name": "server:tool", "arguments": {...}}</tool_call>`` block and ends with
``<answer>…</answer>``. This module is the only one that spells those tags (a test checks it):
prompts, the agent loop, the warm start, the transformers policy's template fallback, the
adapters and the TRL reward all build and read calls through it.

Two JSON styles, both load-bearing, never to be unified:

* :func:`format_call` — ``json.dumps`` with its default separators (``", "``/``": "``): what
  the warm start's demonstrations and replayed histories write, so it fixes the tokens SFT learns;
* :func:`format_call_compact` — no optional whitespace: the examples in every prompt hint
  (the context-token numbers of BENCHMARKS.md are measured with it).

Two parsers:

* :func:`parse_assistant` — tolerant, for the agent loop and the policy server (below);
* :func:`strict_tagged_calls` / :func:`strip_tagged_calls` / :func:`find_answers` — strict
  ``json.loads`` of tagged blocks, for the TRL reward (plain-TRL users' rewards must not change
  with the repairs the tolerant parser makes).

**Tolerant parsing.** Small models emit tool calls in many shapes, often slightly broken. :func:`parse_assistant`
turns one assistant message into a :class:`ParsedTurn` — ``thought``, ``tool_calls``,
``answer``, ``errors`` — and **never raises**: whatever cannot be understood becomes an error
entry whose ``message`` is written *for the model* (what was wrong, and the expected format),
so the agent loop can return it as an observation and let the model try again.

Accepted, in this order of precedence:

1. Hermes/Qwen ``<tool_call>{"name": "server:tool", "arguments": {...}}</tool_call>`` blocks,
   several per turn (a JSON list inside one block is several calls too). An unclosed final
   ``<tool_call>`` is accepted (the text runs to the end or the next tag).
2. If there are no ``<tool_call>`` tags: fenced code blocks (```json … ```) holding a call.
3. If there are neither: bare JSON objects in the text that look like calls.

A call object is ``{"name": ..., "arguments": {...}}``; ``"parameters"``, ``"args"`` and
``"input"`` are accepted for ``"arguments"``, arguments given as a JSON *string* are decoded, and
OpenAI's ``{"type": "function", "function": {...}}`` wrapper is unwrapped. Light damage —
trailing commas, single quotes, Python literals, a missing final brace — is repaired with
the ``json-repair`` package when it is installed, else with a small stdlib fallback; the call
is then marked ``repaired``.

``<think>…</think>`` is the thought (also an unclosed ``<think>``, or text before a lone
``</think>`` as Qwen3 templates produce); tool-call syntax inside a thought is ignored, since
it is reasoning, not action. ``<answer>…</answer>`` is the final answer (an unclosed
``<answer>`` runs to the end of the text).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

#: The tags of the format.
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

#: Where generation stops: after one tool call, or after the answer.
STOP_STRINGS = [TOOL_CALL_CLOSE, ANSWER_CLOSE]

#: Hermes-style tool block (a ``str.format`` template with ``{tools}``), used when a model's chat
#: template ignores ``tools`` (SmolLM2's does): without it the tool schemas would never reach the model.
HERMES_TOOLS_PREAMBLE = (
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)

#: The format every error message teaches.
EXPECTED_FORMAT = '<tool_call>{"name": "server:tool", "arguments": {...}}</tool_call>'

_ARG_KEYS = ("arguments", "parameters", "args", "input")
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
# A tool call runs to its closing tag, else to the next opening tag, else to the end of the text.
_TOOL_CALL_RE = re.compile(
    r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|(?=<answer>)|$)", re.DOTALL | re.IGNORECASE
)
_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON|tool_call|python)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_STRAY_TAG_RE = re.compile(r"</?(?:tool_call|answer|think)>", re.IGNORECASE)


class ParsedToolCall(BaseModel):
    """One tool call the model asked for."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    #: The source text of the call, as the model wrote it.
    raw: str = ""
    #: True when the JSON had to be repaired (or a tag was left unclosed) to read it.
    repaired: bool = False


class ParseError(BaseModel):
    """Something in the turn that could not be read as a tool call."""

    #: ``invalid_json``, ``missing_name``, ``bad_arguments`` or ``empty_tool_call``.
    kind: str
    #: Written for the model: what was wrong and the expected format.
    message: str
    snippet: str = ""


class ParsedTurn(BaseModel):
    """An assistant turn, understood."""

    thought: str | None = None
    tool_calls: list[ParsedToolCall] = Field(default_factory=list)
    answer: str | None = None
    errors: list[ParseError] = Field(default_factory=list)
    #: The text left once thoughts, answers and tool calls are taken out.
    content: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_observation(self) -> str:
        """All errors as one observation to show the model (empty when there are none)."""
        return "\n".join(e.message for e in self.errors)


def compact_json(value: Any) -> str:
    """JSON with no optional whitespace; non-ASCII kept as is (fewer tokens than ``\\uXXXX``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def format_call(name: str | None, arguments: Any) -> str:
    """Render a call in the expected format, spaced JSON (the inverse of :func:`parse_assistant`)."""
    return TOOL_CALL_OPEN + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + TOOL_CALL_CLOSE


def format_call_compact(name: str, arguments: dict[str, Any]) -> str:
    """One call in the exact format the model must produce, compact JSON (prompt hints)."""
    return f"{TOOL_CALL_OPEN}{compact_json({'name': name, 'arguments': arguments})}{TOOL_CALL_CLOSE}"


#: The old name of :func:`format_call`.
format_tool_call = format_call


def parse_assistant(text: object) -> ParsedTurn:
    """Parse one assistant message. Never raises; see the module docstring for what is accepted."""
    try:
        return _parse(text if isinstance(text, str) else ("" if text is None else str(text)))
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"; report instead
        return ParsedTurn(
            content=text if isinstance(text, str) else "",
            errors=[_error("invalid_json", f"the turn could not be read ({type(exc).__name__})", "")],
        )


# --------------------------------------------------------------------------- internals
def _parse(text: str) -> ParsedTurn:
    turn = ParsedTurn()
    rest = text

    # Thoughts first, so that tool-call syntax inside them is not taken as action.
    thoughts = [m.group(1).strip() for m in _THINK_RE.finditer(rest)]
    rest = _THINK_RE.sub(" ", rest)
    lower = rest.lower()
    if "</think>" in lower:  # a lone closing tag: the opening one was in the prompt
        k = lower.index("</think>")
        thoughts.insert(0, rest[:k].replace("<think>", "").strip())
        rest = rest[k + len("</think>") :]
    elif "<think>" in lower:  # unclosed: the thought runs to the next tag or the end
        k = lower.index("<think>")
        after = rest[k + len("<think>") :]
        m = re.search(r"<tool_call>|<answer>|```", after, re.IGNORECASE)
        end = m.start() if m else len(after)
        thoughts.append(after[:end].strip())
        rest = rest[:k] + " " + after[end:]
    if thoughts:
        turn.thought = "\n".join(t for t in thoughts if t) or None

    # Tool calls in tags.
    tagged = list(_TOOL_CALL_RE.finditer(rest))
    if tagged:
        for m in tagged:
            closed = m.group(0).lower().endswith("</tool_call>")
            _read_calls(_strip_fence(m.group(1)), turn, raw=m.group(0), tag_repaired=not closed)
        rest = _TOOL_CALL_RE.sub(" ", rest)

    # The answer (after removing tagged calls, so an unclosed answer does not swallow them).
    answers = [m.group(1).strip() for m in _ANSWER_RE.finditer(rest)]
    if answers:
        turn.answer = "\n".join(answers)
        rest = _ANSWER_RE.sub(" ", rest)

    if not tagged:
        rest = _untagged_calls(rest, turn)

    content = re.sub(r"[ \t]{2,}", " ", _STRAY_TAG_RE.sub("", rest))
    turn.content = re.sub(r"[ \t]*\n[ \t]*\n\s*", "\n\n", content).strip()
    return turn


def _untagged_calls(rest: str, turn: ParsedTurn) -> str:
    """Fenced blocks, then bare JSON objects; returns ``rest`` with the calls taken out."""
    spans: list[tuple[int, int]] = []
    for m in _FENCE_RE.finditer(rest):
        body = m.group(1).strip()
        if body.startswith(("{", "[")) and _looks_like_call_text(body):
            before = len(turn.tool_calls) + len(turn.errors)
            _read_calls(body, turn, raw=m.group(0), tag_repaired=not m.group(0).endswith("```"))
            if len(turn.tool_calls) + len(turn.errors) > before:
                spans.append(m.span())
    if not spans:
        spans = _bare_json_calls(rest, turn)
    for start, end in sorted(spans, reverse=True):
        rest = rest[:start] + " " + rest[end:]
    return rest


def _bare_json_calls(text: str, turn: ParsedTurn) -> list[tuple[int, int]]:
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            break
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            obj, end = None, -1
        if isinstance(obj, dict):
            if _is_call_object(obj):
                _add_call(obj, turn, raw=text[i:end], repaired=False)
                spans.append((i, end))
            i = end
            continue
        # Undecodable: if it starts like a call, repair it (it runs to the end of the text).
        head = text[i : i + 200]
        if re.match(r'\{\s*["\']?(?:name|type|function)["\']?\s*:', head):
            obj = _repair_json(text[i:])
            if isinstance(obj, dict) and _is_call_object(obj):
                _add_call(obj, turn, raw=text[i:], repaired=True)
            else:
                turn.errors.append(_error("invalid_json", "this tool call is not valid JSON", text[i:]))
            spans.append((i, len(text)))
            break
        i += 1
    return spans


def _read_calls(body: str, turn: ParsedTurn, *, raw: str, tag_repaired: bool) -> None:
    """Read the call(s) in one ``<tool_call>`` block or fence."""
    body = body.strip()
    if not body:
        turn.errors.append(_error("empty_tool_call", "the <tool_call> block is empty", raw))
        return
    repaired = tag_repaired
    try:
        obj: Any = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        obj = _repair_json(body)
        repaired = True
    if isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj):
        for o in obj:
            _add_call(o, turn, raw=raw, repaired=repaired)
        return
    if not isinstance(obj, dict):
        turn.errors.append(_error("invalid_json", "the tool call is not a JSON object", raw))
        return
    _add_call(obj, turn, raw=raw, repaired=repaired)


def _add_call(obj: dict[str, Any], turn: ParsedTurn, *, raw: str, repaired: bool) -> None:
    if isinstance(obj.get("function"), dict) and "name" not in obj:  # OpenAI wrapper
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        turn.errors.append(_error("missing_name", 'the tool call has no "name" (a string such as "server:tool")', raw))
        return
    key = next((k for k in _ARG_KEYS if k in obj), None)
    args: Any = obj.get(key) if key else {}
    if args is None:
        args = {}
    if isinstance(args, str):
        text = args.strip()
        if not text:
            args = {}
        else:
            try:
                args = json.loads(text)
            except (json.JSONDecodeError, ValueError):
                args = _repair_json(text)
                repaired = True
    if not isinstance(args, dict):
        turn.errors.append(
            _error(
                "bad_arguments",
                f'the "arguments" of {name.strip()!r} must be a JSON object of parameter names to values, '
                f"got {type(args).__name__} {_short(json.dumps(args, default=str) if args is not None else 'null')}",
                raw,
            )
        )
        return
    turn.tool_calls.append(ParsedToolCall(name=name.strip(), arguments=args, raw=raw, repaired=repaired))


def _is_call_object(obj: dict[str, Any]) -> bool:
    """A bare JSON object is taken as a call only when it clearly is one — a data object with a
    ``"name"`` field (``{"name": "Alice", "age": 3}``) must stay part of the answer."""
    if isinstance(obj.get("function"), dict) and "name" in obj["function"]:
        return True
    if not isinstance(obj.get("name"), str):
        return False
    if any(k in obj for k in _ARG_KEYS):
        return True
    return ":" in obj["name"] and set(obj) <= {"name", "id", "type"}


def _looks_like_call_text(body: str) -> bool:
    return bool(re.search(r'["\']?(?:name|function)["\']?\s*:', body))


def _strip_fence(body: str) -> str:
    m = re.fullmatch(r"\s*```[a-zA-Z_]*\s*\n?(.*?)(?:```)?\s*", body, re.DOTALL)
    return m.group(1) if m else body


def _repair_json(text: str) -> Any:
    """Best-effort decode of lightly damaged JSON; ``None`` when there is nothing to recover."""
    try:
        import json_repair
    except ImportError:
        return _stdlib_repair(text)
    try:
        obj = json_repair.loads(text)
    except Exception:  # noqa: BLE001 - a repair library failing is just "not recoverable"
        return _stdlib_repair(text)
    return obj if isinstance(obj, (dict, list)) and obj else None


def _stdlib_repair(text: str) -> Any:
    """The fallback without json-repair: trailing commas, single quotes, Python literals,
    missing closing brackets."""
    s = text.strip()
    start = min((k for k in (s.find("{"), s.find("[")) if k >= 0), default=-1)
    if start < 0:
        return None
    s = s[start:]
    candidates = [s]
    if '"' not in s:
        candidates.append(s.replace("'", '"'))
    for cand in candidates:
        cand = re.sub(r",\s*([}\]])", r"\1", cand)
        cand = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", cand)))
        closers = []
        in_str = esc = False
        for ch in cand:
            if in_str:
                esc = ch == "\\" and not esc
                if ch == '"' and not esc:
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch in "{[":
                closers.append("}" if ch == "{" else "]")
            elif ch in "}]" and closers:
                closers.pop()
        fixed = cand + ('"' if in_str else "") + "".join(reversed(closers))
        fixed = re.sub(r",\s*([}\]])", r"\1", fixed)
        try:
            return json.JSONDecoder().raw_decode(fixed)[0]
        except (json.JSONDecodeError, ValueError):
            continue
    return None


def _short(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _error(kind: str, what: str, snippet: str) -> ParseError:
    shown = _short(" ".join(snippet.split()), 120)
    message = f"Tool call not understood: {what}."
    if shown:
        message += f" You wrote: {shown}"
    message += f" Write each call as {EXPECTED_FORMAT}"
    return ParseError(kind=kind, message=message, snippet=snippet)


# --------------------------------------------------------------------------- strict reading
# The TRL reward's reading of a completion: a block runs to its closing tag or the end of the
# text, its JSON must parse as is, and nothing is repaired or unwrapped.
_STRICT_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S | re.I)


def find_answers(text: str) -> list[str]:
    """The texts inside ``<answer>…</answer>`` blocks (an unclosed one runs to the end), unstripped."""
    return _ANSWER_RE.findall(text)


def strict_tagged_calls(text: str) -> list[tuple[str, Any]]:
    """``(name, raw arguments)`` of each tagged call whose block is a JSON object with a string
    ``"name"`` (strict ``json.loads``; other blocks are skipped). Arguments are returned as
    written (``{}`` when absent), undecoded."""
    calls: list[tuple[str, Any]] = []
    for block in _STRICT_CALL_RE.findall(text):
        try:
            obj = json.loads(block.strip())
        except json.JSONDecodeError:
            continue  # an unparseable call is not a call; the rubric's checks will notice
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            calls.append((obj["name"], obj.get("arguments", {})))
    return calls


def strip_tagged_calls(text: str) -> str:
    """``text`` with the tagged calls (as :func:`strict_tagged_calls` finds them) removed."""
    return _STRICT_CALL_RE.sub("", text)
