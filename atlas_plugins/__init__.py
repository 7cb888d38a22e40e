"""atlas-plugins: small language models in large MCP tool spaces.

Context control (load tool schemas on demand), programmatic tool calling in a sandbox, and
rubric-based GRPO finetuning, as a pluggy plugin framework. See README.md.

The core imports neither torch nor transformers; heavy parts load lazily from the modules
that need them.
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.errors import AtlasError, ConfigError, ToolspaceError
from atlas_plugins.hookspecs import hookimpl
from atlas_plugins.plugins import (
    get_aggregator,
    get_executor,
    get_judge,
    get_loading_policy,
    get_plugin_manager,
    get_retriever,
    get_rubric_provider,
    register_plugin,
    reset_plugins,
    unregister_plugin,
)
from atlas_plugins.toolspace import Toolspace
from atlas_plugins.types import ServerInfo, Task, ToolCallRecord, ToolResult, ToolSpec, Trajectory

__version__ = "0.1.0"

# Names resolved lazily so `import atlas_plugins` stays cheap and each part can land on its own.
_LAZY = {
    "Rubric": "atlas_plugins.rewards.rubric",
    "Criterion": "atlas_plugins.rewards.rubric",
    "rubric_reward": "atlas_plugins.rewards.trl_reward",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atlas_plugins' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AtlasError",
    "ConfigError",
    "Criterion",
    "Rubric",
    "ServerInfo",
    "Task",
    "ToolCallRecord",
    "ToolResult",
    "ToolSpec",
    "Toolspace",
    "ToolspaceError",
    "Trajectory",
    "__version__",
    "get_aggregator",
    "get_executor",
    "get_judge",
    "get_loading_policy",
    "get_plugin_manager",
    "get_retriever",
    "get_rubric_provider",
    "hookimpl",
    "register_plugin",
    "reset_plugins",
    "rubric_reward",
    "unregister_plugin",
]
