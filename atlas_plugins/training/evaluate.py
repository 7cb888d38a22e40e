"""Moved: episode evaluation lives in :mod:`atlas_plugins.evaluation` (designs, episodes) and
the scorer in :mod:`atlas_plugins.rewards.scorer`. These names stay importable from here."""

from __future__ import annotations

from atlas_plugins.evaluation.designs import DESIGNS, design_settings
from atlas_plugins.evaluation.episodes import EvalSummary, evaluate, play_design, summarize
from atlas_plugins.rewards.rubric import CATEGORIES
from atlas_plugins.rewards.scorer import Scorer

__all__ = ["CATEGORIES", "DESIGNS", "EvalSummary", "Scorer", "design_settings", "evaluate", "play_design", "summarize"]
