"""``isl`` (iterative server loading): the prompt lists servers with a one-line summary;
``fetch_tools(server)`` returns every full schema of that server (paper §3)."""

from __future__ import annotations

from atlas_plugins.context.policies._core import BuiltinPolicy, PolicySettings
from atlas_plugins.hookspecs import hookimpl


class ISLPolicy(BuiltinPolicy):
    name = "isl"
    settings = PolicySettings(name="isl", mode="schemas", summaries=True)


@hookimpl
def atlas_register_loading_policies(register):  # type: ignore[no-untyped-def]
    register("isl", ISLPolicy)
