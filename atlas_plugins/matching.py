"""Loose matching of expected values against actual ones (a leaf module, stdlib only).

The ``rules`` judge's checks (:mod:`atlas_plugins.rewards.checks`) and the task generator's
solvability filter (:mod:`atlas_plugins.envs.taskgen`) judge results with the same matcher.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _norm_str(s: str) -> str:
    return " ".join(s.strip().casefold().split())


def _as_number(v: object) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def values_match(expected: Any, actual: Any) -> bool:
    """Loose equality: numbers within 1e-6 relative, strings case/space-insensitive,
    dicts as subsets (every expected key matches), lists element-wise as subsets (each
    expected element matches some actual element). JSON text is decoded before comparing."""
    if isinstance(actual, str) and isinstance(expected, (dict, list)):
        try:
            actual = json.loads(actual)
        except json.JSONDecodeError:
            return False
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and values_match(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)):
            return False
        return all(any(values_match(e, a) for a in actual) for e in expected)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return str(expected).lower() == str(actual).lower()
    en, an = _as_number(expected), _as_number(actual)
    if en is not None and an is not None:
        return math.isclose(en, an, rel_tol=1e-6, abs_tol=1e-9)
    if expected is None or actual is None:
        return expected is actual
    return _norm_str(str(expected)) == _norm_str(str(actual))


def subset_fraction(expected: Any, actual: Any) -> float:
    """Fraction of the top-level expected keys that match (1/0 for non-dicts)."""
    if isinstance(actual, str) and isinstance(expected, dict):
        try:
            actual = json.loads(actual)
        except json.JSONDecodeError:
            return 0.0
    if isinstance(expected, dict) and expected:
        if not isinstance(actual, dict):
            return 0.0
        return sum(k in actual and values_match(v, actual[k]) for k, v in expected.items()) / len(expected)
    return 1.0 if values_match(expected, actual) else 0.0
