"""An httpx response hook that bounds what one MCP message over HTTP may cost the host.

Why: the MCP SDK's streamable-HTTP client reads a JSON response whole (``response.aread()``), and
mcp 1.x's SSE reader buffers an event without a limit, so a hostile or broken server that streams
an endless body, or a small gzip body that inflates to gigabytes, grows the host's memory until
the call's timeout (at localhost speeds, gigabytes per second).

What: :func:`response_limit` is a response event hook (so the client's transport, proxies and
redirects stay httpx's own): it swaps each response's body stream for one decoded here,
in pieces of at most 64 KiB (gzip and deflate; other encodings are refused, and the client asks
for only those two), and counted: a JSON body may hold ``limit`` bytes in all, an event stream
``limit`` bytes per event (between blank lines). Past that the stream raises httpx's
``StreamError`` naming ``max_message_bytes``; on mcp 2.x the SDK turns it into a JSON-RPC error of
the pending request, on 1.x the request runs into its timeout with memory bounded.

Works with ``httpx`` (mcp 1.x) and ``httpx2`` (mcp 2.x): the module is passed in.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

PIECE = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"


def response_limit(httpx: Any, limit: int) -> Callable[[Any], Awaitable[None]]:
    """An async ``response`` event hook for ``httpx.AsyncClient``: bodies stop at ``limit`` bytes per
    message. Give the client ``Accept-Encoding: ACCEPT_ENCODING`` as well."""

    class BoundedStream(httpx.AsyncByteStream):
        def __init__(self, inner: Any, encoding: str, events: bool) -> None:
            self.inner, self.encoding, self.events = inner, encoding, events

        def _too_long(self) -> Exception:
            what = "one event of its event stream" if self.events else "its response body"
            return httpx.StreamError(
                f"the server sent over {limit} bytes in {what} (max_message_bytes); the response was dropped"
            )

        async def __aiter__(self) -> AsyncIterator[bytes]:
            decoder = _decoder(self.encoding)
            if decoder is None:
                raise httpx.StreamError(f"unsupported content-encoding {self.encoding!r} (asked for {ACCEPT_ENCODING})")
            run, tail = 0, b""  # bytes of the current message; the last bytes seen (a boundary may straddle)
            async for raw in self.inner:
                data = raw
                while data:
                    if decoder is _IDENTITY:
                        piece, data = data[:PIECE], data[PIECE:]
                    else:
                        try:
                            piece = decoder.decompress(data, PIECE)
                        except zlib.error as exc:
                            raise httpx.StreamError(f"the {self.encoding} response body is corrupt ({exc})") from None
                        data = decoder.unconsumed_tail
                    if self.events:
                        window = tail + piece
                        end = max(window.rfind(b"\n\n"), window.rfind(b"\n\r\n"))
                        first = min((i for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i >= 0), default=-1)
                        # The event this piece ends (or continues); later events in it are shorter than a piece.
                        longest = run + (first if first >= 0 else len(piece))
                        run = len(window) - end - 2 if end >= 0 else longest
                        tail = window[-2:]
                    else:
                        run += len(piece)
                        longest = run
                    if longest > limit:
                        raise self._too_long()
                    if piece:
                        yield piece

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def hook(response: Any) -> None:
        encoding = response.headers.pop("content-encoding", "identity").strip().lower()
        response.headers.pop("content-length", None)  # the body is now the decoded one
        events = response.headers.get("content-type", "").lower().startswith("text/event-stream")
        response.stream = BoundedStream(response.stream, encoding, events)

    return hook


_IDENTITY = object()


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or (against the RFC, as httpx also accepts)
    raw; told apart by the zlib header in the first two bytes."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._head = b""

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail if self._inner is not None else b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            zlib_header = self._head[0] & 0x0F == 8 and int.from_bytes(self._head[:2], "big") % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        return bytes(self._inner.decompress(data, max_length))


def _decoder(encoding: str) -> Any:
    if encoding in ("", "identity"):
        return _IDENTITY
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    return None
