"""Finetune an existing LangGraph agent's small model in place (extra: ``langgraph``).

* :class:`AtlasChatModel` — a LangChain chat model over an atlas policy that records
  token-faithful turns for the run it is called in;
* :class:`LangGraphRunner` — plays a compiled graph once per task and returns trajectories for
  the GRPO core (``AtlasTrainer(..., runner=LangGraphRunner(graph, model, toolspace))``);
* :func:`toolspace_tools` — a toolspace's MCP tools as LangChain tools (per-episode state);
* :func:`create_atlas_agent` — a small prebuilt graph with a loading policy's meta-tools and
  ``code_interpreter``;
* :func:`start_proxy` / :class:`ProxyRunner` — no code change at all: a local OpenAI-compatible
  endpoint over the policy for a graph built on ``ChatOpenAI(base_url=...)``, recording token ids
  server-side and attributing requests to episodes.

Importing this package without LangGraph installed says which extra to install.
"""

from __future__ import annotations

from typing import Any

try:
    import langchain_core  # noqa: F401
    import langgraph  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError("atlas_langgraph needs LangGraph and LangChain: pip install 'atlas-plugins[langgraph]'") from exc

__all__ = [
    "AtlasChatModel",
    "LangGraphRunner",
    "ProxyRunner",
    "create_atlas_agent",
    "current_episode",
    "current_recording",
    "episode_scope",
    "qualified_name",
    "recording_scope",
    "start_proxy",
    "toolspace_tools",
]

# Public names -> defining module; imported on first use so `import atlas_langgraph` stays cheap.
_EXPORTS = {
    "AtlasChatModel": "chat_model",
    "current_recording": "chat_model",
    "recording_scope": "chat_model",
    "LangGraphRunner": "runner",
    "create_atlas_agent": "prebuilt",
    "ProxyRunner": "proxy",
    "start_proxy": "proxy",
    "current_episode": "tools",
    "episode_scope": "tools",
    "qualified_name": "tools",
    "toolspace_tools": "tools",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
