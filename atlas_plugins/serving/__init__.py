"""Serving a local policy over HTTP: an OpenAI-compatible endpoint that records token ids.

* :mod:`atlas_plugins.serving.server` — :class:`~atlas_plugins.serving.server.PolicyServer`,
  its request records and the HTTP handler;
* ``python -m atlas_plugins.serving`` — run one from the command line.

The wire format it speaks is :mod:`atlas_plugins.wire.openai`; prompts are rendered by
:mod:`atlas_plugins.recording`. Importing this package is cheap: ``PolicyServer`` loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PolicyServer"]


def __getattr__(name: str) -> Any:
    if name == "PolicyServer":
        from atlas_plugins.serving.server import PolicyServer

        return PolicyServer
    raise AttributeError(f"module 'atlas_plugins.serving' has no attribute {name!r}")
