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
from typing import Any, Literal

from pydantic import Field

from atlas_plugins.context.policies._core import BuiltinPolicy, ContextEpisode, PolicyOptions, PolicySettings
from atlas_plugins.hookspecs import hookimpl


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


class SearchPolicy(BuiltinPolicy):
    name = "search"
    options_model = SearchOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o: SearchOptions = self.options
        self.settings = PolicySettings(
            name="search",
            mode="names" if o.base == "itl" else "schemas",
            summaries=(o.base == "isl") if o.summaries is None else o.summaries,
            search=True,
            search_k=o.k,
            search_max_k=max(o.max_k, o.k),
            search_returns_schemas=o.return_schemas,
        )
        # Fail on an unknown retriever name now, not in the middle of an episode.
        from atlas_plugins.plugins import get_plugin_manager

        get_plugin_manager().get("retrievers", o.retriever)
        self._indexes: dict[str, Any] = {}
        self._lock = threading.Lock()

    def retriever_for(self, episode: ContextEpisode) -> Any:
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

    def start_episode(self, toolspace: Any, task: Any = None) -> ContextEpisode:
        return ContextEpisode(self.settings, self.options, toolspace, task, retriever_provider=self.retriever_for)


@hookimpl
def atlas_register_loading_policies(register):  # type: ignore[no-untyped-def]
    register("search", SearchPolicy)
