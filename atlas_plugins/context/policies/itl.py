"""``itl`` (iterative tool loading): the prompt lists server names only; ``fetch_tools(server)``
returns tool names with one-line descriptions and ``get_selected_tools(server, tools)`` returns
the schemas of just those tools (paper §3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atlas_plugins.context import prompts
from atlas_plugins.context.base import MetaResult, MetaTool
from atlas_plugins.context.policies._core import (
    EpisodeBase,
    LoadingPolicyBase,
    did_you_mean,
    fetch_tools_tool,
    tools_by_server,
)
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.types import TOOL_SEP


class ITLEpisode(EpisodeBase):
    """Two meta-tools: ``fetch_tools`` lists a server's tools, ``get_selected_tools`` loads some."""

    show_summaries = False
    load_how = "Load the schemas you need with get_selected_tools."

    def meta_tools(self) -> list[MetaTool]:
        return [
            fetch_tools_tool("List the tool names of a server."),
            MetaTool(
                name="get_selected_tools",
                description="Load the schemas of the named tools of a server.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "server": {"type": "string"},
                        "tools": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["server", "tools"],
                },
            ),
        ]

    def intro(self) -> str:
        first = next(iter(self.servers))
        return (
            "Only server names are listed. List a server's tools with "
            f"{prompts.tool_call_example('fetch_tools', {'server': first})}, load the schemas you need with "
            "get_selected_tools, then call them."
        )

    def load_hint(self, server: str, tool: str) -> str:
        return prompts.tool_call_example("get_selected_tools", {"server": server, "tools": [tool]})

    def example_args(self, meta: str) -> dict[str, Any]:
        if meta == "get_selected_tools":
            server = next(iter(self.servers), "server")
            tools = [t.name for t in self.servers[server].tools[:2]] if server in self.servers else ["tool"]
            return {"server": server, "tools": tools or ["tool"]}
        return super().example_args(meta)

    def meta_fetch_tools(self, arguments: dict[str, Any]) -> MetaResult:
        info, err = self._resolve_server(arguments, "fetch_tools")
        if err:
            return MetaResult(text=err, ok=False, error_type="meta_error")
        assert info is not None
        if not info.tools:
            return MetaResult(text=f"Server {info.name!r} has no tools.")
        listing = prompts.render_tool_list(info.tools, description_chars=self.options.description_chars)
        return MetaResult(
            text=f"Server {info.name!r} has {len(info.tools)} tools. Load the schemas of the ones you need with "
            f"get_selected_tools before calling them:\n{listing}"
        )

    def meta_get_selected_tools(self, arguments: dict[str, Any]) -> MetaResult:
        info, err = self._resolve_server(arguments, "get_selected_tools")
        if err:
            return MetaResult(text=err, ok=False, error_type="meta_error")
        assert info is not None
        raw = arguments.get("tools")
        example = prompts.tool_call_example(
            "get_selected_tools", {"server": info.name, "tools": [t.name for t in info.tools[:2]] or ["tool"]}
        )
        if not isinstance(raw, list) or not raw:
            got = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"[:80]
            return MetaResult(
                text=f"Error: 'tools' must be a non-empty list of tool names of server {info.name!r} (got {got}), e.g. {example}.",
                ok=False,
                error_type="meta_error",
            )
        names = [t.name for t in info.tools]
        wanted: list[str] = []
        problems: list[str] = []
        for item in raw:
            if not isinstance(item, str) or not item.strip():
                problems.append(f"{item!r} is not a tool name (expected a string)")
                continue
            tool = item.strip()
            if tool not in names and TOOL_SEP in tool:
                srv, _, bare = tool.partition(TOOL_SEP)
                if srv != info.name:
                    problems.append(f"{tool!r} belongs to server {srv!r}, not {info.name!r}; ask that server for it")
                    continue
                tool = bare
            if tool not in names:
                hint = did_you_mean(tool, names)
                problems.append(
                    f"no tool {tool!r} on server {info.name!r}"
                    + (f" (did you mean {' or '.join(repr(h) for h in hint)}?)" if hint else "")
                )
                continue
            if tool not in wanted:
                wanted.append(tool)
        parts: list[str] = []
        loaded: list[str] = []
        evicted: list[str] = []
        if wanted:
            specs = [next(t for t in info.tools if t.name == w) for w in wanted]
            loaded = [t.qualified_name for t in specs]
            evicted = self._load(loaded, via="get_selected_tools")
            parts.append(
                f"Loaded {len(specs)} tool schema(s):\n" + "\n".join(prompts.render_tool_schema(t) for t in specs)
            )
        if problems:
            parts.append(
                "Error: " + "; ".join(problems) + f". See the tools with "
                f"{prompts.tool_call_example('fetch_tools', {'server': info.name})}."
            )
        result = self._loaded_result("\n".join(parts), loaded, evicted)
        if not wanted:  # nothing loaded: the call failed (a partial load still counts as done)
            result.ok, result.error_type = False, "meta_error"
        return result


class ITLPolicy(LoadingPolicyBase):
    name = "itl"
    episode_class = ITLEpisode

    def reference_calls(self, solution: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """Per server: ``fetch_tools``, then ``get_selected_tools`` of the tools it needs; then the calls."""
        loads: list[tuple[str, dict[str, Any]]] = []
        for server, tools in tools_by_server(solution).items():
            loads += [("fetch_tools", {"server": server}), ("get_selected_tools", {"server": server, "tools": tools})]
        return loads + super().reference_calls(solution)


@hookimpl
def atlas_register_loading_policies(register: Register) -> None:
    register("itl", ITLPolicy)
