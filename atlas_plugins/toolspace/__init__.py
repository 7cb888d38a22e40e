"""MCP servers behind one API: live sessions (stdio, streamable HTTP) and catalogue-only schemas."""

from atlas_plugins.toolspace.config import ServerConfig, ToolspaceConfig, config_from_dict, load_config
from atlas_plugins.toolspace.toolspace import EPISODE_META_KEY, Toolspace, parse_text
from atlas_plugins.toolspace.validation import ArgumentValidator, python_signature

__all__ = [
    "EPISODE_META_KEY",
    "ArgumentValidator",
    "ServerConfig",
    "Toolspace",
    "ToolspaceConfig",
    "config_from_dict",
    "load_config",
    "parse_text",
    "python_signature",
]
