"""Moved to :mod:`atlas_plugins.wire.toolcall` (the tool-call format and its parsers); this module re-exports it."""

from __future__ import annotations

from atlas_plugins.wire.toolcall import (
    EXPECTED_FORMAT,
    ParsedToolCall,
    ParsedTurn,
    ParseError,
    format_tool_call,
    parse_assistant,
)

__all__ = ["EXPECTED_FORMAT", "ParsedToolCall", "ParsedTurn", "ParseError", "format_tool_call", "parse_assistant"]
