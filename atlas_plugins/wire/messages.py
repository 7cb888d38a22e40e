"""OpenAI-style chat message helpers: content parts to text, tool-call arguments, message keys.

Every component that reads chat messages (the recorder, the policy server, the TRL reward, the
transformers policy's template normaliser, the adapters) reads them through these functions, so
one message means the same text and the same call everywhere. Stdlib only.
"""

from __future__ import annotations

import json
from typing import Any, Literal


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        return str(part.get("text") or "")
    return str(part)


def content_text(content: Any) -> str:
    """A message's ``content`` as text: a string stays; a list of content parts (OpenAI's
    ``{"type": "text", "text": ...}`` dicts, LangChain blocks, plain strings) is joined by
    their text (parts without text give nothing); ``None`` is ``""``; anything else is ``str()``."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(_part_text(p) for p in content)
    return str(content)


def loads_arguments(raw: Any) -> Any:
    """Tool-call arguments decoded from a JSON string when they parse; anything else as it was."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def tool_call_functions(message: dict[str, Any], *, accept_args_key: bool = False) -> list[tuple[Any, Any]]:
    """``(name, raw arguments)`` of each entry of a message's ``tool_calls``.

    An entry is OpenAI's ``{"function": {"name", "arguments"}}`` or a bare ``{"name",
    "arguments"}``; missing arguments are ``{}``. ``accept_args_key`` also reads LangChain's
    ``"args"`` when there is no ``"arguments"``. Arguments are returned undecoded (see
    :func:`loads_arguments`, :func:`record_arguments`)."""
    out: list[tuple[Any, Any]] = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        if accept_args_key:
            args = fn.get("arguments", fn.get("args", {}))
        else:
            args = fn.get("arguments", {})
        out.append((fn.get("name"), args))
    return out


def record_arguments(raw: Any, *, non_dict: Literal["wrap", "empty"], blank: Literal["raw", "empty"]) -> dict[str, Any]:
    """Tool-call arguments as the dict a :class:`~atlas_plugins.types.ToolCallRecord` holds.

    A JSON string is decoded; one that does not decode becomes ``{"_raw": text}``. ``blank``
    says what the empty string is: ``"raw"`` decodes it like any string (so ``{"_raw": ""}``),
    ``"empty"`` makes it ``{}``. A decoded value that is not a dict becomes ``{"_value": value}``
    with ``non_dict="wrap"`` and ``{}`` with ``non_dict="empty"``."""
    args = raw
    if isinstance(args, str):
        if blank == "empty" and not args:
            args = {}
        else:
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {"_raw": args}
    if isinstance(args, dict):
        return args
    return {"_value": args} if non_dict == "wrap" else {}


def arguments_json(args: Any) -> str:
    """Arguments as the JSON string OpenAI's ``function.arguments`` carries (non-ASCII kept)."""
    return json.dumps(args, ensure_ascii=False)


def message_key(message: dict[str, Any]) -> str:
    """A comparable form of a chat message (role, text, tool calls; tool-call ids ignored).

    Chat clients send back the assistant message they got, but may drop ``null`` fields or
    re-serialise tool-call arguments, so messages are compared by meaning: the append-only
    renderer (:class:`~atlas_plugins.recording.recorder.ChatRenderer`) and the policy server's
    chain tracker both key conversations by it."""
    content = message.get("content")
    if isinstance(content, list):
        content = content_text(content)
    calls = [[name, loads_arguments(args)] for name, args in tool_call_functions(message, accept_args_key=True)]
    return json.dumps([message.get("role"), content or "", calls], sort_keys=True, ensure_ascii=False, default=str)
