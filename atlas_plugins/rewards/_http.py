"""A minimal OpenAI-compatible chat-completions client (over :class:`atlas_plugins.wire.http.OpenAIHTTP`).

``httpx`` is always present (the ``mcp`` dependency needs it), so the ``llm`` provider and the
``openai`` judge work without the ``openai`` package. Any server speaking
``POST {base_url}/chat/completions`` works: OpenAI, vLLM, llama.cpp, Ollama, TGI, LiteLLM.
"""

from __future__ import annotations

import os
from typing import Any

from atlas_plugins.errors import AtlasError
from atlas_plugins.wire.http import OpenAIHTTP


class ChatClient:
    """``complete(messages, temperature=..., max_tokens=...) -> str``.

    ``retries`` (connection errors, 429 and 5xx answers; ``0`` is one attempt) defaults to
    ``max_attempts - 1``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_attempts: int = 3,
        retries: int | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.model = model or os.environ.get("ATLAS_JUDGE_MODEL") or "gpt-4o-mini"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.retries = max(max_attempts - 1, 0) if retries is None else retries
        self.max_attempts = self.retries + 1
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.http = OpenAIHTTP(self.base_url, headers=headers, timeout=timeout, retries=self.retries)

    def complete(self, messages: list[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 1024) -> str:
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        url = f"{self.base_url}/chat/completions"
        r = self.http.request(
            "POST", "/chat/completions", body, what=f"chat completion at {url} (model {self.model!r})"
        )
        try:
            return r.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise AtlasError(f"{url} returned a response that is not a chat completion: {exc}") from None

    def close(self) -> None:
        self.http.close()
