"""Programmatic tool calling: the ``code_interpreter`` meta-tool and its sandboxed executors.

``atlas.get_executor("local")`` (bubblewrap sandbox, the default) or ``"e2b"`` opens a
persistent session per episode in which every toolspace server is ``MCPServer(name)``::

    ex = atlas.get_executor("local")
    with ex.open_session(ts, episode="ep-1") as s:
        s.run("m = MCPServer('math')\\nm.add(a=1, b=2)").observation()   # '3.0'

Cheap to import: executors and the e2b SDK load lazily.
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.orchestration.base import CellResult, CodeSession, Executor
from atlas_plugins.orchestration.prompt import TOOL_NAME, code_interpreter_prompt, code_interpreter_schema

_LAZY = {
    "LocalExecutor": "atlas_plugins.orchestration.executors.local",
    "SandboxUnavailable": "atlas_plugins.orchestration.executors.local",
    "E2BExecutor": "atlas_plugins.orchestration.executors.e2b",
    "BridgedSession": "atlas_plugins.orchestration.bridge",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atlas_plugins.orchestration' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "TOOL_NAME",
    "BridgedSession",
    "CellResult",
    "CodeSession",
    "E2BExecutor",
    "Executor",
    "LocalExecutor",
    "SandboxUnavailable",
    "code_interpreter_prompt",
    "code_interpreter_schema",
]
