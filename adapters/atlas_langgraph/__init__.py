"""Finetune an existing LangGraph agent's small model in place (extra: ``langgraph``).

The adapter itself lands with the adapters work; importing it without LangGraph installed
says which extra to install.
"""

try:
    import langgraph  # noqa: F401
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError(
        "atlas_langgraph needs LangGraph: pip install 'atlas-plugins[langgraph]'"
    ) from exc
