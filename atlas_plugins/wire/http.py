"""One HTTP client for OpenAI-compatible endpoints, with one retry loop.

Both the rewards' :class:`~atlas_plugins.rewards._http.ChatClient` (the ``llm`` rubric provider,
the ``openai`` judge) and :class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy` talk through
:class:`OpenAIHTTP`. ``httpx`` is always installed (``mcp`` needs it) and imported lazily.

Retries: connection errors, HTTP 429 and HTTP ≥ 500 are retried ``retries`` times with
exponential backoff (0.5 s, 1 s, 2 s, then 4 s at most), with no sleep after the last attempt;
``retries=0`` is exactly one attempt. Other 4xx answers are not retried (a bad key or a bad
model name does not get better).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from atlas_plugins.errors import AtlasError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import httpx


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based)."""
    return min(4.0, 0.5 * 2**attempt)


class OpenAIHTTP:
    """A pooled ``httpx.Client`` on ``base_url`` (created on first use, thread-safe).

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"``.
        headers: sent with every request (``Authorization`` and the like).
        timeout: seconds per request.
        retries: how many times a retryable failure is retried (``0``: one attempt only).
    """

    def __init__(self, base_url: str, *, headers: dict[str, str], timeout: float = 120.0, retries: int = 2) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.timeout = timeout
        self.retries = retries
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.timeout, headers=self.headers)
        return self._client

    def request(
        self, method: str, path: str, json_body: dict[str, Any] | None = None, *, what: str | None = None
    ) -> httpx.Response:
        """The first answer below HTTP 400, after retries; else ``AtlasError("{what} failed: …")``
        (``what`` defaults to ``"request to {url}"``)."""
        import httpx

        url = self.base_url + path
        last = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.request(method, url, json=json_body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    return resp
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code != 429 and resp.status_code < 500:
                    break  # a client error will not get better by retrying
            if attempt < self.retries:
                time.sleep(backoff_s(attempt))
        raise AtlasError(f"{what or f'request to {url}'} failed: {last}")

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> OpenAIHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # judges and providers never close their client
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to do
            pass
