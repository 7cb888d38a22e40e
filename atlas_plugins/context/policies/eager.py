"""``eager``: every tool schema of the toolspace in the system text; no meta-tools (the baseline)."""

from __future__ import annotations

from atlas_plugins.context.policies._core import BuiltinPolicy, PolicySettings
from atlas_plugins.hookspecs import hookimpl


class EagerPolicy(BuiltinPolicy):
    """All schemas up front, as most MCP clients do. Budget options are accepted but unused."""

    name = "eager"
    settings = PolicySettings(name="eager", mode="eager")


@hookimpl
def atlas_register_loading_policies(register):  # type: ignore[no-untyped-def]
    register("eager", EagerPolicy)
