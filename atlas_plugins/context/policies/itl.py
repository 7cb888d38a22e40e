"""``itl`` (iterative tool loading): the prompt lists server names only; ``fetch_tools(server)``
returns tool names with one-line descriptions and ``get_selected_tools(server, tools)`` returns
the schemas of just those tools (paper §3)."""

from __future__ import annotations

from atlas_plugins.context.policies._core import BuiltinPolicy, PolicySettings
from atlas_plugins.hookspecs import hookimpl


class ITLPolicy(BuiltinPolicy):
    name = "itl"
    settings = PolicySettings(name="itl", mode="names", summaries=False)


@hookimpl
def atlas_register_loading_policies(register):  # type: ignore[no-untyped-def]
    register("itl", ITLPolicy)
