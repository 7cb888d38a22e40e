"""Moved to :mod:`atlas_plugins.recording.rendering`; this module re-exports it."""

from __future__ import annotations

from atlas_plugins.recording.rendering import *  # noqa: F403
from atlas_plugins.recording.rendering import TurnTemplate, encode, probe_template

__all__ = ["TurnTemplate", "encode", "probe_template"]
