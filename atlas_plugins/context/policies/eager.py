"""``eager``: every tool schema of the toolspace in the system text; no meta-tools (the baseline)."""

from __future__ import annotations

from atlas_plugins.context import prompts
from atlas_plugins.context.policies._core import EpisodeBase, LoadingPolicyBase, PolicyOptions
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.types import TaskLike, ToolCatalog


class EagerEpisode(EpisodeBase):
    """Everything loaded from the start; the system text lists every schema."""

    uses_budget = False  # nothing is loaded later, so there is nothing to evict

    def __init__(self, options: PolicyOptions, toolspace: ToolCatalog | None, task: TaskLike = None) -> None:
        super().__init__(options, toolspace, task)
        for q in self.tools:
            self._loaded[q] = 0
        self.log.append({"event": "initial_load", "tools": len(self.tools)})

    def sections(self) -> list[tuple[str, str]]:
        return [("Tools:", "\n".join(prompts.render_tool_schema(t) for t in self.tools.values()))]


class EagerPolicy(LoadingPolicyBase):
    """All schemas up front, as most MCP clients do. Budget options are accepted but unused."""

    name = "eager"
    episode_class = EagerEpisode


@hookimpl
def atlas_register_loading_policies(register: Register) -> None:
    register("eager", EagerPolicy)
