"""Evaluate an external model over any OpenAI-compatible chat endpoint.

:class:`OpenAIPolicy` is a :class:`~atlas_plugins.policy.base.ChatPolicy`: messages in, text
out. It is **not trainable**: an OpenAI-compatible chat endpoint returns text, not the sampled
token ids under the policy's own tokenizer, so a trajectory built from it cannot be
token-faithful and cannot be scored by the trainer. ``generate`` (token ids in) therefore
raises; use it to evaluate models (``atlas eval``), as a judge or rubric-writing model, or to
talk to :mod:`atlas_plugins.serving` (which *does* record token ids server-side).
"""

from __future__ import annotations

import os
from typing import Any

from atlas_plugins.errors import AtlasError
from atlas_plugins.policy.base import ChatGeneration, Generation
from atlas_plugins.wire.http import OpenAIHTTP
from atlas_plugins.wire.messages import loads_arguments


class OpenAIPolicy:
    """A chat policy over ``{base_url}/chat/completions``.

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"`` or ``"https://api.openai.com/v1"``.
        model: the model name sent with each request.
        api_key: bearer token; defaults to ``$OPENAI_API_KEY`` (local servers accept anything).
        timeout: seconds per request.
        max_retries: retries on connection errors and 429/5xx answers (with backoff); ``0`` is
            one attempt.
    """

    tokenizer = None  # no token ids: see the module docstring

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 2,
        name: str | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise AtlasError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if not model:
            raise AtlasError("model must be a non-empty model name")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.max_retries = max_retries
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "EMPTY")
        self._http = OpenAIHTTP(
            self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout, retries=max_retries
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def list_models(self) -> list[str]:
        """Model ids the endpoint serves (``GET /models``)."""
        data = self._request("GET", "/models")
        return [m.get("id", "") for m in data.get("data", [])]

    def generate_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> ChatGeneration:
        """One chat completion. Native tool calls of the endpoint come back in ``tool_calls``
        as ``{"name", "arguments"}`` dicts (arguments decoded from JSON when they parse)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
        }
        if stop:
            body["stop"] = list(stop)
        if seed is not None:
            body["seed"] = seed
        if tools:
            body["tools"] = tools
        data = self._request("POST", "/chat/completions", json_body=body)
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise AtlasError(f"{self.base_url}/chat/completions answered without choices: {str(data)[:300]}") from exc
        calls = []
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append({"name": fn.get("name"), "arguments": loads_arguments(fn.get("arguments"))})
        finish = choice.get("finish_reason") or "stop"
        usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
        return ChatGeneration(
            text=message.get("content") or "",
            finish_reason="length" if finish == "length" else "stop",
            usage=usage,
            tool_calls=calls,
        )

    def generate(self, batch: list[list[int]], **_: Any) -> list[Generation]:
        raise AtlasError(
            "OpenAIPolicy cannot generate from token ids: an OpenAI-compatible chat endpoint takes "
            "messages and returns text, so its output is not token-faithful and cannot be trained on. "
            "Use generate_chat() to evaluate, or TransformersPolicy for training."
        )

    def _request(self, method: str, path: str, json_body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = self._http.request(method, path, json_body)
        try:
            return resp.json()
        except ValueError as exc:
            raise AtlasError(f"{self.base_url + path} answered non-JSON: {resp.text[:300]}") from exc
