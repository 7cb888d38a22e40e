"""The OpenAI chat-completions wire format, as the policy server speaks it.

* :func:`parse_chat_request` validates a request body into a :class:`ChatRequest` (or raises
  :class:`RequestError`, whose message goes back to the client with HTTP 400);
* :func:`assistant_message` turns a completion's text into the OpenAI ``message`` (tool calls
  parsed by :func:`~atlas_plugins.wire.toolcall.parse_assistant`);
* :func:`stream_events` splits a whole ``chat.completion`` into ``chat.completion.chunk`` events.

No HTTP and no policy here: :mod:`atlas_plugins.serving.server` does both.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from atlas_plugins.wire.messages import arguments_json
from atlas_plugins.wire.toolcall import THINK_CLOSE, THINK_OPEN, parse_assistant

__all__ = ["MAX_N", "ChatRequest", "RequestError", "assistant_message", "parse_chat_request", "stream_events"]

#: The largest ``n`` (samples per request) served.
MAX_N = 64


class RequestError(ValueError):
    """A bad request; the message goes back to the client with HTTP 400."""


class ChatRequest(BaseModel):
    """A validated chat-completion request: the messages, the tools and the sampling settings."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_tokens: int
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None


def parse_chat_request(
    body: Any,
    *,
    streaming: bool,
    default_max_tokens: int,
    max_tokens_cap: int | None,
    default_stop: list[str] | None,
) -> ChatRequest:
    """Validate a chat-completion body; the request, or :class:`RequestError` (its message goes
    back to the client). ``streaming``: whether ``stream=true`` is served; the other arguments
    are the server's defaults and cap for requests that name none."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if body.get("stream") and not streaming:
        raise RequestError(
            "stream=true is not supported by this server (start it with PolicyServer(..., streaming=True)); "
            "send stream=false"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise RequestError("'messages' must be a non-empty list of {role, content} objects")
    tools = body.get("tools") or None
    if tools is not None and not isinstance(tools, list):
        raise RequestError("'tools' must be a list")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or default_max_tokens
    n = body.get("n") or 1
    temperature = body.get("temperature")
    temperature = 1.0 if temperature is None else temperature
    top_p = body.get("top_p")
    top_p = 1.0 if top_p is None else top_p
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    seed = body.get("seed")
    for key, value, kind in (
        ("max_tokens", max_tokens, int),
        ("n", n, int),
        ("temperature", temperature, (int, float)),
        ("top_p", top_p, (int, float)),
    ):
        if isinstance(value, bool) or not isinstance(value, kind):
            raise RequestError(f"'{key}' must be a number, got {value!r}")
    if not 1 <= n <= MAX_N:
        raise RequestError(f"'n' must be between 1 and {MAX_N}, got {n}")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise RequestError(f"'stop' must be a string or a list of non-empty strings, got {stop!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}")
    if max_tokens_cap is not None:
        max_tokens = min(max_tokens, max_tokens_cap)
    # Validated above: construct without re-validation, so values keep their types (an int
    # temperature stays an int in the records, as the client sent it).
    return ChatRequest.model_construct(
        messages=messages,
        tools=tools,
        max_tokens=max_tokens,
        n=n,
        temperature=temperature,
        top_p=top_p,
        stop=stop if stop is not None else default_stop,
        seed=seed,
    )


def stream_events(response: dict[str, Any], *, include_usage: bool = False) -> list[dict[str, Any]]:
    """A whole ``chat.completion`` as the ``chat.completion.chunk`` events a streaming client expects.

    Per choice: one chunk with the role and content (and logprobs), one with the tool calls,
    one with the finish reason; then, when asked, a usage chunk with no choices.
    """
    head = {
        "id": response["id"],
        "object": "chat.completion.chunk",
        "created": response["created"],
        "model": response["model"],
    }
    events: list[dict[str, Any]] = []
    for choice in response["choices"]:
        msg = choice["message"]
        first: dict[str, Any] = {
            "index": choice["index"],
            "delta": {"role": "assistant", "content": msg.get("content") or ""},
            "finish_reason": None,
        }
        if "logprobs" in choice:
            first["logprobs"] = choice["logprobs"]
        events.append({**head, "choices": [first]})
        if msg.get("tool_calls"):
            calls = [{"index": k, **c} for k, c in enumerate(msg["tool_calls"])]
            events.append(
                {**head, "choices": [{"index": choice["index"], "delta": {"tool_calls": calls}, "finish_reason": None}]}
            )
        events.append(
            {**head, "choices": [{"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}]}
        )
    if include_usage:
        events.append({**head, "choices": [], "usage": response["usage"]})
    return events


def assistant_message(text: str, *, parse_tools: bool, call_id: str = "call") -> tuple[dict[str, Any], bool]:
    """The OpenAI ``message`` for a completion's text, and whether it carries tool calls.

    With ``parse_tools``, well-formed tool calls in the text (any shape
    :func:`~atlas_plugins.wire.toolcall.parse_assistant` accepts) become OpenAI ``tool_calls``
    (arguments as a JSON string), and the rest of the text — a ``<think>`` block kept — is the
    content. A turn with a malformed call is returned as plain text, so the client's agent sees
    exactly what the model wrote.
    """
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if not parse_tools:
        return message, False
    parsed = parse_assistant(text)
    if not parsed.tool_calls or parsed.errors:
        return message, False
    content = parsed.content
    if parsed.thought:
        content = f"{THINK_OPEN}{parsed.thought}{THINK_CLOSE}" + (f"\n{content}" if content else "")
    message["content"] = content or None
    message["tool_calls"] = [
        {
            "id": f"{call_id}_{k}",
            "type": "function",
            "function": {"name": c.name, "arguments": arguments_json(c.arguments)},
        }
        for k, c in enumerate(parsed.tool_calls)
    ]
    return message, True
