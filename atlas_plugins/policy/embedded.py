"""Moved to :mod:`atlas_plugins.embedded_model` (a leaf module: locating model files is not a policy); this module re-exports it."""

from __future__ import annotations

from atlas_plugins.embedded_model import *  # noqa: F403
from atlas_plugins.embedded_model import (
    EMBEDDED_ALIASES,
    EMBEDDED_MODEL_NAME,
    cache_dir,
    embedded_model_dir,
    gguf_path,
    load_tokenizer,
    resolve_model_path,
)

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_MODEL_NAME",
    "cache_dir",
    "embedded_model_dir",
    "gguf_path",
    "load_tokenizer",
    "resolve_model_path",
]
