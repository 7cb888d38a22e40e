"""Evaluation suites: task loaders plus objective success checks, each served over real MCP.

A suite module exposes ``load_tasks(...) -> list[atlas_plugins.types.Task]`` and
``check(task, trajectory) -> {"success": bool, "details": ...}`` (objective success, from the
benchmark's own checker), and names the MCP servers its tasks use in ``Task.servers``.

``SUITES`` maps a suite name to its module path; import the module lazily
(``importlib.import_module(SUITES[name])``) — third-party suites may need optional wheels.

* ``bfcl-multi-turn`` — BFCL v4 multi-turn (800 tasks); needs ``pip install --no-deps bfcl-eval``;
  servers in :mod:`atlas_plugins.evaluation.suites.bfcl_server`.
"""

from __future__ import annotations

SUITES: dict[str, str] = {
    "embedded": "atlas_plugins.evaluation.suites.embedded",
    "bfcl-multi-turn": "atlas_plugins.evaluation.suites.bfcl_multi_turn",
}

__all__ = ["SUITES"]
