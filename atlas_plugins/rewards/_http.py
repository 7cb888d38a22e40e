"""A minimal OpenAI-compatible chat-completions client over ``httpx``.

``httpx`` is always present (the ``mcp`` dependency needs it), so the ``llm`` provider and the
``openai`` judge work without the ``openai`` package. Any server speaking
``POST {base_url}/chat/completions`` works: OpenAI, vLLM, llama.cpp, Ollama, TGI, LiteLLM.
"""

from __future__ import annotations

import os
import time
from typing import Any

from atlas_plugins.errors import AtlasError


class ChatClient:
    """``complete(messages, temperature=..., max_tokens=...) -> str``."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_attempts: int = 3,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.model = model or os.environ.get("ATLAS_JUDGE_MODEL") or "gpt-4o-mini"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.max_attempts = max_attempts

    def complete(self, messages: list[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 1024) -> str:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        url = f"{self.base_url}/chat/completions"
        last: str = ""
        for attempt in range(self.max_attempts):
            try:
                r = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()["choices"][0]["message"]["content"] or ""
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        raise AtlasError(f"{url} returned a response that is not a chat completion: {exc}") from None
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code < 500 and r.status_code != 429:
                    break  # client errors (bad key, bad model) do not get better by retrying
            time.sleep(min(4.0, 0.5 * 2**attempt))
        raise AtlasError(f"chat completion at {url} (model {self.model!r}) failed: {last}")
