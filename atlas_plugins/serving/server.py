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
  ``logprobs``, ``stream`` (when the server was started with ``streaming=True``: the whole
  completion is generated, then sent as server-sent-event chunks, ``stream_options.include_usage``
  honoured), and vLLM's ``return_token_ids`` extension (adds ``prompt_token_ids`` and
  per-choice ``token_ids``). When ``tools`` are given and the completion holds well-formed
  tool calls (parsed by :mod:`atlas_plugins.wire.toolcall`), they are returned as OpenAI
  ``tool_calls`` with ``finish_reason: "tool_calls"``.
* ``POST /rollouts/<rollout>/v1/chat/completions`` (and ``GET .../models``) — the same, with the
  request tagged as belonging to rollout ``<rollout>``; a header ``X-Atlas-Rollout: <rollout>``
  does the same on the plain paths. See "Attribution" below.
* ``GET  /atlas/records?since=N`` — the recorded requests (also in ``server.records``).

Prompt rendering (``append_only=True``, the default): prompts are rendered with
:class:`~atlas_plugins.recording.recorder.ChatRenderer`. A request whose messages continue a
conversation this server answered (earlier messages, then the assistant message exactly as the
server returned it, then new tool or user messages) gets the earlier prompt ids + the *sampled*
ids + the chat template's text for the new turn, so the successive prompts of a multi-turn agent
are prefix extensions of each other and nothing the model sampled is re-tokenized.
``append_only=False`` renders every request afresh with the policy's chat template.

Attribution (``record=True``): every request belongs to a *chain* — a linear conversation.
A request whose messages continue an earlier reply of the server joins that reply's chain
(:class:`ChainTracker` finds it by the messages, server-side, with no help from the client);
anything else opens a new chain. A chain's *rollout* is the explicit tag of its first request
(rollout path or header), else whatever :attr:`ChainTracker.resolver` answers for the new
root (the proxy runner uses this to assign untagged chains to episodes), else ``None``.
Identical conversations are told apart by their replies: two episodes of a GRPO group send the
same first request, but each continuation carries its own episode's earlier reply, so the chains
stay separate; when two chains are identical so far, a continuation takes a chain that has not
been continued yet (a retry of an already-continued call forks a new chain of the same rollout).
With ``record=False`` the server keeps no records and tracks no chains (a plain endpoint).

The server is the standard library's threaded HTTP server: no extra dependency. Concurrent
requests are generated one call at a time by the policy's lock, or batched together when the
policy is a :class:`~atlas_plugins.policy.batching.BatchedPolicy`.

The OpenAI wire format (request validation, the assistant message, streaming chunks) is
:mod:`atlas_plugins.wire.openai`; chains are :mod:`atlas_plugins.recording.chains`.

Run it: ``python -m atlas_plugins.serving --model embedded --port 8000`` (or the older
``python -m atlas_plugins.policy.serve``).
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

from pydantic import BaseModel, Field

from atlas_plugins.policy.base import Generation, Policy
from atlas_plugins.recording.chains import Chain, ChainTracker
from atlas_plugins.wire.openai import ChatRequest, RequestError, assistant_message, parse_chat_request, stream_events

if TYPE_CHECKING:
    from atlas_plugins.recording.recorder import ChatRenderer

__all__ = [
    "ROLLOUT_HEADER",
    "Chain",
    "ChainTracker",
    "PolicyServer",
    "RecordedCompletion",
    "RequestError",
    "RequestRecord",
    "ServiceUnavailable",
    "assistant_message",
    "stream_events",
]

#: Header naming the rollout a request belongs to (same effect as the ``/rollouts/<id>`` path).
ROLLOUT_HEADER = "X-Atlas-Rollout"
_ROLLOUT_PATH = re.compile(r"^/rollouts/(?P<rollout>[^/]+)(?P<rest>/.*)?$")


class RecordedCompletion(BaseModel):
    completion_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    #: The assistant message as returned to the client (content, tool_calls).
    message: dict[str, Any] = Field(default_factory=dict)
    #: The chain this sample continues or starts (``None`` when attribution is off).
    chain: str | None = None


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
    #: True when the prompt was rendered append-only on an earlier served call.
    continued: bool = False
    #: The rollout the request's chain belongs to (explicit tag or resolver), if known.
    rollout: str | None = None
    #: The chain of choice 0 (``None`` when attribution is off).
    chain: str | None = None
    #: Seconds spent generating (for overhead accounting).
    generate_s: float = 0.0


class PolicyServer:
    """An OpenAI-compatible HTTP server in front of a token-level policy.

    Args:
        policy: a :class:`~atlas_plugins.policy.base.Policy` (e.g. ``TransformersPolicy``), or
            ``None`` to start listening before the policy exists (requests get HTTP 503 until
            :meth:`set_policy`).
        host, port: where to listen; ``port=0`` picks a free port (see :attr:`base_url`).
        model_name: the id reported by ``/v1/models`` (default ``policy.name``); requests may
            name any model — there is only one.
        max_records: how many requests to keep (oldest dropped first).
        append_only: render continuing conversations append-only (see the module docs);
            ``False`` re-renders every request with the chat template.
        record: keep :class:`RequestRecord` s and attribute requests to chains/rollouts;
            ``False`` serves as a plain endpoint (no records, no attribution).
        streaming: answer ``stream=true`` with server-sent events (the whole completion is
            generated first); ``False`` refuses such requests with HTTP 400.
        default_max_tokens: the completion budget when a request names none.
        max_tokens_cap: an upper bound on every request's budget (``None``: no bound).
        default_stop: stop strings used when a request names none.
    """

    def __init__(
        self,
        policy: Policy | None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_name: str | None = None,
        max_records: int = 10_000,
        append_only: bool = True,
        record: bool = True,
        streaming: bool = False,
        default_max_tokens: int = 256,
        max_tokens_cap: int | None = None,
        default_stop: list[str] | None = None,
    ) -> None:
        for key, value in (("default_max_tokens", default_max_tokens), ("max_tokens_cap", max_tokens_cap)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self._model_name = model_name
        self.append_only = append_only
        self.record = record
        self.streaming = streaming
        self.default_max_tokens = default_max_tokens
        self.max_tokens_cap = max_tokens_cap
        self.default_stop = list(default_stop) if default_stop else None
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=max_records)
        self.chains = ChainTracker()
        self.policy: Policy | None = None
        self.renderer: ChatRenderer | None = None
        self._count = 0
        self._records_lock = threading.Lock()
        self._policy_lock = threading.Lock()
        if policy is not None:
            self.set_policy(policy)
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def model_name(self) -> str:
        return self._model_name or getattr(self.policy, "name", None) or "policy"

    @model_name.setter
    def model_name(self, value: str) -> None:
        self._model_name = value

    def set_policy(self, policy: Policy) -> None:
        """Serve ``policy`` from now on (e.g. the trainer's policy over the current weights).

        The append-only renderer's memory of served conversations is kept while the tokenizer
        stays the same (conversations in flight continue seamlessly), and reset otherwise.
        """
        if policy is None or not hasattr(policy, "generate"):
            raise ValueError(f"policy must have a generate(...) method, got {policy!r}")
        with self._policy_lock:
            old = self.renderer
            self.policy = policy
            if self.append_only:
                from atlas_plugins.recording.recorder import ChatRenderer

                if old is not None and getattr(old, "tokenizer", None) is getattr(policy, "tokenizer", object()):
                    old.policy = policy
                else:
                    self.renderer = ChatRenderer(policy)

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:41234``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    @property
    def base_url(self) -> str:
        """The API root to give an OpenAI client, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"{self.url}/v1"

    def rollout_url(self, rollout: str) -> str:
        """An API root whose requests are tagged as rollout ``rollout`` (``.../rollouts/<id>/v1``)."""
        if not rollout or "/" in rollout:
            raise ValueError(f"rollout id must be a non-empty string without '/', got {rollout!r}")
        return f"{self.url}/rollouts/{rollout}/v1"

    def start(self) -> PolicyServer:
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

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records_since(self, index: int = 0) -> list[RequestRecord]:
        with self._records_lock:
            return [r for r in self.records if r.index >= index]

    def record_at(self, index: int) -> RequestRecord | None:
        """The record with ``index`` (``None`` once it was dropped from the bounded store)."""
        with self._records_lock:
            if not self.records:
                return None
            pos = index - self.records[0].index  # usually exact: indices are stored in order
            if 0 <= pos < len(self.records) and self.records[pos].index == index:
                return self.records[pos]
            return next((r for r in self.records if r.index == index), None)

    # ------------------------------------------------------------------ request handling
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "atlas-plugins"}]}

    def _parse(self, body: Any) -> ChatRequest:
        """Validate a chat-completion body with this server's defaults (:class:`RequestError` if bad)."""
        return parse_chat_request(
            body,
            streaming=self.streaming,
            default_max_tokens=self.default_max_tokens,
            max_tokens_cap=self.max_tokens_cap,
            default_stop=self.default_stop,
        )

    def chat_completions(self, body: Any, *, rollout: str | None = None) -> dict[str, Any]:
        """Answer one chat-completion request body (a ``chat.completion`` object).

        ``rollout`` tags the request (what the ``/rollouts/<id>`` path and the header do).
        """
        req = self._parse(body)
        policy, renderer = self.policy, self.renderer
        if policy is None:
            raise ServiceUnavailable("no policy is being served yet (PolicyServer.set_policy was not called)")
        messages, tools, n = req.messages, req.tools, req.n
        chain = self.chains.open(messages, tools, rollout) if self.record else None
        try:
            if renderer is not None:
                prompt_ids, continued = renderer.prompt_ids(messages, tools)
            else:
                prompt_ids, continued = list(policy.apply_chat_template(messages, tools=tools)), False
            t0 = time.perf_counter()
            gens: list[Generation] = policy.generate(
                [prompt_ids] * n,
                max_new_tokens=int(req.max_tokens),
                temperature=float(req.temperature),
                top_p=float(req.top_p),
                stop=req.stop,
                seed=req.seed,
            )
            generate_s = time.perf_counter() - t0
        except (ValueError, TypeError, KeyError) as exc:
            raise RequestError(f"{type(exc).__name__}: {exc}") from exc

        created = time.time()
        with self._records_lock:
            index = self._count
            self._count += 1
        record_id = f"chatcmpl-{index}-{uuid.uuid4().hex[:8]}"
        parse_tools = tools is not None and body.get("tool_choice") != "none"
        choices, recorded = [], []
        for i, g in enumerate(gens):
            message, calls_found = assistant_message(g.text, parse_tools=parse_tools, call_id=f"call_{index}_{i}")
            if renderer is not None:
                # What the client gets back is what it will send in the next request's history.
                renderer.remember(messages, tools, prompt_ids, g.completion_ids, g.text, message)
            choice_chain = None
            if chain is not None:
                choice_chain = chain if i == 0 else self.chains.fork(chain)
                self.chains.close(choice_chain, index, i, messages, tools, message)
            finish = "tool_calls" if calls_found else ("length" if g.finish_reason == "length" else "stop")
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish}
            if body.get("logprobs"):
                choice["logprobs"] = {
                    "content": [
                        {"token": policy.tokenizer.decode([t]), "logprob": lp, "top_logprobs": []}
                        for t, lp in zip(g.completion_ids, g.logprobs, strict=False)
                    ]
                }
            if body.get("return_token_ids"):
                choice["token_ids"] = g.completion_ids
            choices.append(choice)
            recorded.append(
                RecordedCompletion(
                    completion_ids=g.completion_ids,
                    logprobs=g.logprobs,
                    text=g.text,
                    finish_reason=g.finish_reason,
                    message=message,
                    chain=choice_chain.id if choice_chain is not None else None,
                )
            )
        if self.record:
            rec = RequestRecord(
                id=record_id,
                index=index,
                created=created,
                model=self.model_name,
                messages=messages,
                tools=tools,
                sampling={k: getattr(req, k) for k in ("max_tokens", "temperature", "top_p", "stop", "seed", "n")},
                prompt_ids=prompt_ids,
                completions=recorded,
                continued=continued,
                rollout=chain.rollout if chain is not None else None,
                chain=chain.id if chain is not None else None,
                generate_s=generate_s,
            )
            with self._records_lock:
                # Indices are handed out in order but requests finish out of order: insert sorted,
                # so the store stays ordered by index (record_at relies on it).
                if self.records and self.records[-1].index > index:
                    items = sorted([*self.records, rec], key=lambda r: r.index)
                    self.records.clear()
                    self.records.extend(items)
                else:
                    self.records.append(rec)
        completion_tokens = sum(g.num_tokens for g in gens)
        response: dict[str, Any] = {
            "id": record_id,
            "object": "chat.completion",
            "created": int(created),
            "model": self.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt_ids) + completion_tokens,
            },
        }
        if body.get("return_token_ids"):
            response["prompt_token_ids"] = prompt_ids
        return response


class ServiceUnavailable(RuntimeError):
    """The server has no policy yet; HTTP 503."""


def _route(path: str, rollout: str | None) -> tuple[str, str | None]:
    """``/rollouts/<id>/v1/x`` -> (``/v1/x``, ``<id>``); other paths pass through with the header's rollout."""
    m = _ROLLOUT_PATH.match(path)
    if m:
        return (m.group("rest") or "/").rstrip("/") or "/", unquote(m.group("rollout"))
    return path.rstrip("/") or "/", rollout


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

        def _send_events(self, events: list[dict[str, Any]]) -> None:
            # The whole stream is known: one body with a length keeps the connection reusable.
            data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            url = urlparse(self.path)
            path, _ = _route(url.path, None)
            if path in ("/v1/models", "/models"):
                self._send(200, server.models())
            elif path == "/atlas/records":
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
            path, rollout = _route(url.path, self.headers.get(ROLLOUT_HEADER) or None)
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route POST {url.path}", "not_found")
                return
            try:
                body = json.loads(raw or b"null")
            except json.JSONDecodeError as exc:
                self._error(400, f"the request body is not valid JSON: {exc}", "invalid_request_error")
                return
            try:
                response = server.chat_completions(body, rollout=rollout)
            except RequestError as exc:
                self._error(400, str(exc), "invalid_request_error")
                return
            except ServiceUnavailable as exc:
                self._error(503, str(exc), "service_unavailable")
                return
            except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
                self._error(500, f"{type(exc).__name__}: {exc}", "server_error")
                return
            if body.get("stream"):
                options = body.get("stream_options") or {}
                self._send_events(stream_events(response, include_usage=bool(options.get("include_usage"))))
            else:
                self._send(200, response)

    return Handler
