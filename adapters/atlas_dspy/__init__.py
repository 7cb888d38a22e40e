"""Finetune a DSPy program's small model in place (extra: ``dspy``).

The adapter itself lands with the adapters work; importing it without DSPy installed says
which extra to install.
"""

try:
    import dspy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError("atlas_dspy needs DSPy: pip install 'atlas-plugins[dspy]'") from exc
