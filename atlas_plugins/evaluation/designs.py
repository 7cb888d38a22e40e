"""Agent designs: the paper's variants of one agent, by name.

A *design* is a loading policy, optionally with programmatic tool calling: ``eager``, ``isl``,
``itl``, ``search`` (loading policy only) or ``itl+ptc`` (ITL plus ``code_interpreter`` in the
local sandbox).
"""

from __future__ import annotations

from typing import TypedDict

DESIGNS: tuple[str, ...] = ("eager", "isl", "itl", "search", "itl+ptc")


class DesignSettings(TypedDict):
    loading: str
    executor: str | None


def design_settings(design: str) -> DesignSettings:
    """Agent settings of a design name (``itl+ptc`` = ITL + the local code executor)."""
    loading, _, extra = design.partition("+")
    if loading not in ("eager", "isl", "itl", "search") or extra not in ("", "ptc"):
        raise ValueError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")
    return {"loading": loading, "executor": "local" if extra == "ptc" else None}
