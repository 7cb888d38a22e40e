"""Moved to :mod:`atlas_plugins.recording.recorder` (``Segment`` to :mod:`atlas_plugins.types`); this module re-exports them."""

from __future__ import annotations

from atlas_plugins.recording.recorder import ChatRenderer, LLMCall, Segment, stitch, token_fields
from atlas_plugins.wire.messages import message_key as _canonical  # noqa: F401 - the old private name

__all__ = ["ChatRenderer", "LLMCall", "Segment", "stitch", "token_fields"]
