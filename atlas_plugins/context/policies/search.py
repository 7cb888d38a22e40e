"""``search``: ITL (or ISL) plus ``search_tools(query, k)`` over a pluggable retriever.

Like Anthropic's tool-search tool, but composable with the paper's policies: the index and the
fetch meta-tools are those of ``base`` (``itl`` by default), and ``search_tools`` ranks the
episode's tools with the retriever registered as ``retriever`` (``bm25`` by default). Hits are
listed by name with a one-line description; with ``return_schemas=True`` their schemas are
loaded and shown at once instead.

The retriever index is built on the first ``search_tools`` call of an episode (never up front,
so episodes that do not search pay nothing) and reused by later episodes over the same tools;
retrievers also cache their index on disk.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from atlas_plugins.context import prompts
from atlas_plugins.context.base import MetaResult, MetaTool, ToolRetriever
from atlas_plugins.context.policies._core import EpisodeBase, LoadingPolicyBase, PolicyOptions
from atlas_plugins.context.policies.isl import ISLEpisode, ISLPolicy
from atlas_plugins.context.policies.itl import ITLEpisode, ITLPolicy
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.types import TOOL_SEP, TaskLike, ToolCatalog


class SearchOptions(PolicyOptions):
    #: Registered retriever name (``bm25``, ``dense``, ``hybrid`` or a plugin's).
    retriever: str = "bm25"
    #: Options passed to the retriever's factory (e.g. ``{"two_level": True}``).
    retriever_options: dict[str, Any] = Field(default_factory=dict)
    #: The policy whose index and fetch meta-tools come along: ``itl`` or ``isl``.
    base: Literal["itl", "isl"] = "itl"
    #: Default and maximum ``k`` of ``search_tools``.
    k: int = Field(default=5, ge=1)
    max_k: int = Field(default=20, ge=1)
    #: Load and show the hits' schemas directly (one step instead of search + get_selected_tools).
    return_schemas: bool = False
    #: Show server summaries in the index (default: as ``base`` does).
    summaries: bool | None = None


class SearchMixin(EpisodeBase):
    """Adds ``search_tools`` to a base episode (``ITLEpisode`` or ``ISLEpisode``), after its own
    meta-tools."""

    def __init__(
        self,
        options: PolicyOptions,
        toolspace: ToolCatalog | None,
        task: TaskLike = None,
        *,
        retriever_provider: Callable[[EpisodeBase], ToolRetriever | None] | None = None,
    ) -> None:
        super().__init__(options, toolspace, task)
        o: SearchOptions = options  # type: ignore[assignment]
        self.search_k, self.search_max_k, self.returns_schemas = o.k, max(o.max_k, o.k), o.return_schemas
        if o.summaries is not None:
            self.show_summaries = o.summaries
        self._retriever_provider = retriever_provider

    def meta_tools(self) -> list[MetaTool]:
        return [
            *super().meta_tools(),
            MetaTool(
                name="search_tools",
                description="Find tools by what they do; returns the best k matches.",
                input_schema={
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "k": {"type": "integer", "default": self.search_k}},
                    "required": ["query"],
                },
            ),
        ]

    def intro(self) -> str:
        return super().intro() + " search_tools finds tools by what they do."

    def example_args(self, meta: str) -> dict[str, Any]:
        if meta == "search_tools":
            return {"query": "send an email", "k": self.search_k}
        return super().example_args(meta)

    def meta_search_tools(self, arguments: dict[str, Any]) -> MetaResult:
        def error(text: str) -> MetaResult:
            return MetaResult(text=text, ok=False, error_type="meta_error")

        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            example = prompts.tool_call_example("search_tools", self.example_args("search_tools"))
            return error(f"Error: search_tools needs a non-empty string 'query', e.g. {example}.")
        k_raw = arguments.get("k", self.search_k)
        try:
            k = int(k_raw)
        except (TypeError, ValueError):
            return error(f"Error: 'k' must be a whole number between 1 and {self.search_max_k}, got {k_raw!r}.")
        if k < 1:
            return error(f"Error: 'k' must be a whole number between 1 and {self.search_max_k}, got {k_raw!r}.")
        k = min(k, self.search_max_k)
        if not self.tools:
            return MetaResult(text="No tools are available to search.")
        retriever = self._retriever_provider(self) if self._retriever_provider else None
        if retriever is None:
            return error("Error: tool search is not available in this episode.")
        # The index is built over this episode's tools; the filter only guards a foreign index.
        hits = [h for h in retriever.search(query, k=k) if f"{h.server}{TOOL_SEP}{h.tool}" in self.tools]
        self.log.append({"event": "search", "query": query, "hits": [f"{h.server}{TOOL_SEP}{h.tool}" for h in hits]})
        if not hits:
            return MetaResult(text=f"No tools match {query!r}. Try other words, or browse a server with fetch_tools.")
        specs = [self.tools[f"{h.server}{TOOL_SEP}{h.tool}"] for h in hits]
        if self.returns_schemas:
            loaded = [t.qualified_name for t in specs]
            evicted = self._load(loaded, via="search_tools")
            body = "\n".join(prompts.render_tool_schema(t) for t in specs)
            return self._loaded_result(
                f"Top {len(specs)} tools for {query!r} (schemas loaded):\n{body}", loaded, evicted
            )
        listing = prompts.render_tool_list(specs, description_chars=self.options.description_chars)
        return MetaResult(text=f"Top {len(specs)} tools for {query!r}. {self.load_how}\n{listing}")


class ITLSearchEpisode(SearchMixin, ITLEpisode):
    """ITL's index and meta-tools, plus ``search_tools``."""


class ISLSearchEpisode(SearchMixin, ISLEpisode):
    """ISL's index and ``fetch_tools``, plus ``search_tools``."""

    show_summaries = True


class SearchPolicy(LoadingPolicyBase):
    name = "search"
    options_model = SearchOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o: SearchOptions = self.options
        self.episode_class = ITLSearchEpisode if o.base == "itl" else ISLSearchEpisode
        # Fail on an unknown retriever name now, not in the middle of an episode.
        from atlas_plugins.plugins import get_plugin_manager

        get_plugin_manager().get("retrievers", o.retriever)
        self._indexes: dict[str, ToolRetriever] = {}
        self._lock = threading.Lock()

    def episode_kwargs(self) -> dict[str, Any]:
        return {"retriever_provider": self.retriever_for}

    def retriever_for(self, episode: EpisodeBase) -> ToolRetriever:
        """The retriever indexed over ``episode``'s tools (built once per distinct tool set)."""
        from atlas_plugins.plugins import get_retriever

        o: SearchOptions = self.options
        key = hashlib.sha256("\n".join(sorted(episode.tools)).encode()).hexdigest()
        with self._lock:
            retriever = self._indexes.get(key)
            if retriever is None:
                retriever = get_retriever(o.retriever, **o.retriever_options)
                summaries = {name: s.summary for name, s in episode.servers.items()}
                retriever.index(list(episode.tools.values()), summaries)
                self._indexes[key] = retriever
            return retriever

    def reference_calls(self, solution: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """As the base policy solves it (the reference solution does not need a search)."""
        base = ITLPolicy() if self.options.base == "itl" else ISLPolicy()
        return base.reference_calls(solution)


@hookimpl
def atlas_register_loading_policies(register: Register) -> None:
    register("search", SearchPolicy)
