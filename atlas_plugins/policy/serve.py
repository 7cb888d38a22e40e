"""Serve a local policy as an OpenAI-compatible chat endpoint, recording token ids.

Agents written against the OpenAI API (LangGraph's ``ChatOpenAI``, DSPy's LM, the ``openai``
client) can point their ``base_url`` at :class:`PolicyServer` and run unchanged, while the
server keeps, per request, the exact prompt ids, sampled completion ids and their logprobs
(:class:`RequestRecord`) — the token-faithful record a trainer needs, with no re-tokenization
of the text the agent saw.

Endpoints:

* ``GET  /v1/models`` — the one served model.
* ``POST /v1/chat/completions`` — ``messages``, ``max_tokens`` (or ``max_completion_tokens``),
  ``temperature``, ``top_p``, ``stop``, ``seed``, ``n`` (the ``n`` samples are generated as one
  batch — a GRPO group), ``tools``, ``tool_choice`` (``"none"`` disables tool-call parsing),
  ``logprobs``, and vLLM's ``return_token_ids`` extension (adds ``prompt_token_ids`` and
  per-choice ``token_ids``). When ``tools`` are given and the completion holds well-formed
  tool calls (parsed by :mod:`atlas_plugins.agent.parsing`), they are returned as OpenAI
  ``tool_calls`` with ``finish_reason: "tool_calls"``. Streaming is not supported.
* ``GET  /atlas/records?since=N`` — the recorded requests (also in ``server.records``).

The server is the standard library's threaded HTTP server: no extra dependency, and requests
are served one generation at a time (the policy's lock), which is what a CPU model can do.

Run it: ``python -m atlas_plugins.policy.serve --model embedded --port 8000``.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from pydantic import BaseModel, Field

from atlas_plugins.policy.base import Generation

_MAX_N = 64


class RecordedCompletion(BaseModel):
    completion_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


class RequestRecord(BaseModel):
    """One chat-completion request as the policy saw it, token for token."""

    id: str
    index: int
    created: float
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    sampling: dict[str, Any] = Field(default_factory=dict)
    prompt_ids: list[int]
    completions: list[RecordedCompletion]


class RequestError(ValueError):
    """A bad request; the message goes back to the client with HTTP 400."""


class PolicyServer:
    """An OpenAI-compatible HTTP server in front of a token-level policy.

    Args:
        policy: a :class:`~atlas_plugins.policy.base.Policy` (e.g. ``TransformersPolicy``).
        host, port: where to listen; ``port=0`` picks a free port (see :attr:`base_url`).
        model_name: the id reported by ``/v1/models`` (default ``policy.name``); requests may
            name any model — there is only one.
        max_records: how many requests to keep (oldest dropped first).
    """

    def __init__(
        self,
        policy: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_name: str | None = None,
        max_records: int = 10_000,
    ) -> None:
        self.policy = policy
        self.model_name = model_name or getattr(policy, "name", "policy")
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=max_records)
        self._count = 0
        self._records_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The API root to give an OpenAI client, e.g. ``http://127.0.0.1:41234/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "PolicyServer":
        """Serve in a background thread (returns at once; the socket is already listening)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="atlas-policy-server", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "PolicyServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def records_since(self, index: int = 0) -> list[RequestRecord]:
        with self._records_lock:
            return [r for r in self.records if r.index >= index]

    # ------------------------------------------------------------------ request handling
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "atlas-plugins"}]}

    def chat_completions(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if body.get("stream"):
            raise RequestError("stream=true is not supported by this server; send stream=false")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("'messages' must be a non-empty list of {role, content} objects")
        tools = body.get("tools") or None
        if tools is not None and not isinstance(tools, list):
            raise RequestError("'tools' must be a list")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 256
        n = body.get("n") or 1
        temperature = body.get("temperature")
        temperature = 1.0 if temperature is None else temperature
        top_p = body.get("top_p")
        top_p = 1.0 if top_p is None else top_p
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        seed = body.get("seed")
        for key, value, kind in (("max_tokens", max_tokens, int), ("n", n, int), ("temperature", temperature, (int, float)),
                                 ("top_p", top_p, (int, float))):
            if isinstance(value, bool) or not isinstance(value, kind):
                raise RequestError(f"'{key}' must be a number, got {value!r}")
        if not 1 <= n <= _MAX_N:
            raise RequestError(f"'n' must be between 1 and {_MAX_N}, got {n}")
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
            raise RequestError(f"'stop' must be a string or a list of non-empty strings, got {stop!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RequestError(f"'seed' must be an integer, got {seed!r}")

        try:
            prompt_ids = self.policy.apply_chat_template(messages, tools=tools)
            gens: list[Generation] = self.policy.generate(
                [prompt_ids] * n, max_new_tokens=int(max_tokens), temperature=float(temperature),
                top_p=float(top_p), stop=stop, seed=seed,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise RequestError(f"{type(exc).__name__}: {exc}") from exc

        created = time.time()
        with self._records_lock:
            index = self._count
            self._count += 1
            record_id = f"chatcmpl-{index}-{uuid.uuid4().hex[:8]}"
            self.records.append(RequestRecord(
                id=record_id, index=index, created=created, model=self.model_name, messages=messages, tools=tools,
                sampling={"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stop,
                          "seed": seed, "n": n},
                prompt_ids=prompt_ids,
                completions=[RecordedCompletion(completion_ids=g.completion_ids, logprobs=g.logprobs, text=g.text,
                                                finish_reason=g.finish_reason) for g in gens],
            ))

        parse_tools = tools is not None and body.get("tool_choice") != "none"
        choices = []
        for i, g in enumerate(gens):
            message, calls_found = assistant_message(g.text, parse_tools=parse_tools, call_id=f"call_{index}_{i}")
            finish = "tool_calls" if calls_found else ("length" if g.finish_reason == "length" else "stop")
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [
                    {"token": self.policy.tokenizer.decode([t]), "logprob": lp, "top_logprobs": []}
                    for t, lp in zip(g.completion_ids, g.logprobs)
                ]}
            if body.get("return_token_ids"):
                choice["token_ids"] = g.completion_ids
            choices.append(choice)
        completion_tokens = sum(g.num_tokens for g in gens)
        response: dict[str, Any] = {
            "id": record_id,
            "object": "chat.completion",
            "created": int(created),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": completion_tokens,
                      "total_tokens": len(prompt_ids) + completion_tokens},
        }
        if body.get("return_token_ids"):
            response["prompt_token_ids"] = prompt_ids
        return response


def assistant_message(text: str, *, parse_tools: bool, call_id: str = "call") -> tuple[dict[str, Any], bool]:
    """The OpenAI ``message`` for a completion's text, and whether it carries tool calls.

    With ``parse_tools``, well-formed tool calls in the text (any shape
    :func:`~atlas_plugins.agent.parsing.parse_assistant` accepts) become OpenAI ``tool_calls``
    (arguments as a JSON string), and the rest of the text — a ``<think>`` block kept — is the
    content. A turn with a malformed call is returned as plain text, so the client's agent sees
    exactly what the model wrote.
    """
    from atlas_plugins.agent.parsing import parse_assistant

    message: dict[str, Any] = {"role": "assistant", "content": text}
    if not parse_tools:
        return message, False
    parsed = parse_assistant(text)
    if not parsed.tool_calls or parsed.errors:
        return message, False
    content = parsed.content
    if parsed.thought:
        content = f"<think>{parsed.thought}</think>" + (f"\n{content}" if content else "")
    message["content"] = content or None
    message["tool_calls"] = [
        {"id": f"{call_id}_{k}", "type": "function",
         "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
        for k, c in enumerate(parsed.tool_calls)
    ]
    return message, True


def _make_handler(server: PolicyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse one connection

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # quiet: a training run makes thousands of requests

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            url = urlparse(self.path)
            if url.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, server.models())
            elif url.path.rstrip("/") == "/atlas/records":
                try:
                    since = int(parse_qs(url.query).get("since", ["0"])[0])
                except ValueError:
                    self._error(400, "'since' must be an integer", "invalid_request_error")
                    return
                self._send(200, {"data": [r.model_dump() for r in server.records_since(since)]})
            else:
                self._error(404, f"no route GET {url.path}", "not_found")

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if url.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route POST {url.path}", "not_found")
                return
            try:
                body = json.loads(raw or b"null")
            except json.JSONDecodeError as exc:
                self._error(400, f"the request body is not valid JSON: {exc}", "invalid_request_error")
                return
            try:
                self._send(200, server.chat_completions(body))
            except RequestError as exc:
                self._error(400, str(exc), "invalid_request_error")
            except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
                self._error(500, f"{type(exc).__name__}: {exc}", "server_error")

    return Handler


def main(argv: list[str] | None = None) -> None:
    """``python -m atlas_plugins.policy.serve [--model PATH] [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description="Serve a local policy as an OpenAI-compatible endpoint.")
    parser.add_argument("--model", default=None, help="model path or hub id (default: the embedded SmolLM2)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    srv = PolicyServer(TransformersPolicy(args.model, device=args.device), args.host, args.port)
    print(f"serving {srv.model_name} at {srv.base_url}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv._httpd.server_close()


if __name__ == "__main__":
    main()
