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

__version__ = "0.1.0"

# Everything else resolves on first use, so `import atlas_plugins` stays cheap: the embedded
# MCP server processes import this package, and each one pays its import time at start-up.
_LAZY = {
    "Toolspace": "atlas_plugins.toolspace.toolspace",
    "ServerInfo": "atlas_plugins.types",
    "Task": "atlas_plugins.types",
    "ToolCallRecord": "atlas_plugins.types",
    "ToolResult": "atlas_plugins.types",
    "ToolSpec": "atlas_plugins.types",
    "Trajectory": "atlas_plugins.types",
    "get_aggregator": "atlas_plugins.plugins",
    "get_executor": "atlas_plugins.plugins",
    "get_judge": "atlas_plugins.plugins",
    "get_loading_policy": "atlas_plugins.plugins",
    "get_plugin_manager": "atlas_plugins.plugins",
    "get_retriever": "atlas_plugins.plugins",
    "get_rubric_provider": "atlas_plugins.plugins",
    "register_plugin": "atlas_plugins.plugins",
    "reset_plugins": "atlas_plugins.plugins",
    "unregister_plugin": "atlas_plugins.plugins",
    "Rubric": "atlas_plugins.rewards.rubric",
    "Criterion": "atlas_plugins.rewards.rubric",
    "rubric_reward": "atlas_plugins.rewards.trl_reward",
    "code_interpreter_prompt": "atlas_plugins.orchestration.prompt",
    "generate_tasks": "atlas_plugins.envs.taskgen",
    "load_default_tasks": "atlas_plugins.envs.taskgen",
    "code_interpreter_schema": "atlas_plugins.orchestration.prompt",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atlas_plugins' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "code_interpreter_prompt",
    "code_interpreter_schema",
    "generate_tasks",
    "get_aggregator",
    "get_executor",
    "get_judge",
    "get_loading_policy",
    "get_plugin_manager",
    "get_retriever",
    "get_rubric_provider",
    "hookimpl",
    "load_default_tasks",
    "register_plugin",
    "reset_plugins",
    "rubric_reward",
    "unregister_plugin",
]
