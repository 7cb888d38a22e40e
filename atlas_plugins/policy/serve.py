"""Moved to :mod:`atlas_plugins.serving` (the server, ``python -m atlas_plugins.serving``),
:mod:`atlas_plugins.wire.openai` (the wire format) and :mod:`atlas_plugins.recording.chains`
(attribution); this module re-exports them lazily, and ``python -m atlas_plugins.policy.serve``
still starts a server."""

from __future__ import annotations

import importlib
from typing import Any

_MOVED = {
    "PolicyServer": "atlas_plugins.serving.server",
    "RecordedCompletion": "atlas_plugins.serving.server",
    "RequestRecord": "atlas_plugins.serving.server",
    "ServiceUnavailable": "atlas_plugins.serving.server",
    "ROLLOUT_HEADER": "atlas_plugins.serving.server",
    "RequestError": "atlas_plugins.wire.openai",
    "assistant_message": "atlas_plugins.wire.openai",
    "stream_events": "atlas_plugins.wire.openai",
    "Chain": "atlas_plugins.recording.chains",
    "ChainTracker": "atlas_plugins.recording.chains",
    "message_key": "atlas_plugins.wire.messages",
}

__all__ = [*_MOVED, "main"]


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'atlas_plugins.policy.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> None:
    """``python -m atlas_plugins.policy.serve``: see :func:`atlas_plugins.serving.__main__.main`."""
    from atlas_plugins.serving.__main__ import main as serve_main

    serve_main(argv)


if __name__ == "__main__":
    main()
