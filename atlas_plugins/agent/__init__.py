"""The native ATLAS agent: tolerant parsing, token-faithful rendering and the multi-turn loop.

``from atlas_plugins.agent.loop import Agent, AgentConfig`` (imports torch only through the
policy you pass in).
"""

from atlas_plugins.agent.parsing import EXPECTED_FORMAT, ParsedTurn, format_tool_call, parse_assistant

__all__ = ["EXPECTED_FORMAT", "ParsedTurn", "format_tool_call", "parse_assistant"]
