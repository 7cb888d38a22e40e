"""``isl`` (iterative server loading): the prompt lists servers with a one-line summary;
``fetch_tools(server)`` returns every full schema of that server (paper §3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atlas_plugins.context import prompts
from atlas_plugins.context.base import MetaResult, MetaTool
from atlas_plugins.context.policies._core import EpisodeBase, LoadingPolicyBase, fetch_tools_tool, tools_by_server
from atlas_plugins.hookspecs import Register, hookimpl


class ISLEpisode(EpisodeBase):
    """One meta-tool, ``fetch_tools``, which loads a whole server's schemas."""

    show_summaries = True
    load_how = "Load a server's schemas with fetch_tools."

    def meta_tools(self) -> list[MetaTool]:
        return [fetch_tools_tool("Load the full schemas of every tool of a server.")]

    def intro(self) -> str:
        first = next(iter(self.servers))
        return (
            "Tools are grouped by server; only the servers are listed (infer what each does from its "
            f"name{' and summary' if self.show_summaries else ''}). Load a server's tool schemas with "
            f"{prompts.tool_call_example('fetch_tools', {'server': first})} before calling its tools."
        )

    def meta_fetch_tools(self, arguments: dict[str, Any]) -> MetaResult:
        info, err = self._resolve_server(arguments, "fetch_tools")
        if err:
            return MetaResult(text=err, ok=False, error_type="meta_error")
        assert info is not None
        if not info.tools:
            return MetaResult(text=f"Server {info.name!r} has no tools.")
        loaded = [t.qualified_name for t in info.tools]
        evicted = self._load(loaded, via="fetch_tools")
        body = "\n".join(prompts.render_tool_schema(t) for t in info.tools)
        return self._loaded_result(
            f"Loaded {len(info.tools)} tool schemas of server {info.name!r}:\n{body}", loaded, evicted
        )


class ISLPolicy(LoadingPolicyBase):
    name = "isl"
    episode_class = ISLEpisode

    def reference_calls(self, solution: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """One ``fetch_tools`` per server the solution uses, then its tool calls."""
        fetches = [("fetch_tools", {"server": server}) for server in tools_by_server(solution)]
        return fetches + super().reference_calls(solution)


@hookimpl
def atlas_register_loading_policies(register: Register) -> None:
    register("isl", ISLPolicy)
