"""``hybrid``: reciprocal rank fusion (RRF) of ``bm25`` and ``dense``.

score(d) = Σ_r w_r / (rrf_k + rank_r(d)), ranks from 1, over both retrievers' full rankings
(Cormack et al. 2009; ``rrf_k`` = 60). Lexical matching catches exact tool/argument names,
embeddings catch paraphrases; fusing ranks avoids calibrating their incomparable scores.
Two-level mode fuses the server rankings the same way. Both component indexes are cached, and
each search runs each component exactly once (the dense query embedding is also LRU-cached).

The components index different text (bm25 the long lexical document, dense the short
``server: tool — description`` one); that is what makes their rankings complementary: plain
RRF with the textbook ``rrf_k`` = 60 and equal weights gained 11 recall@10 points over bm25 on
LiveMCPBench, where fusing two views of the same long document gained 4.5. Weighted RRF and
min-max / z-score fusion were tried on a fixed grid and did not beat it on held-out queries
(benchmarks/notes/context.md), so the defaults stay untuned.

Options: ``rrf_k`` (60), ``bm25_weight`` / ``dense_weight`` (1.0 each), ``bm25`` / ``dense``
(option dicts for the components), ``two_level``, ``top_servers``, ``cache``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from atlas_plugins.context.retrievers._common import IndexedRetriever, RetrieverOptions
from atlas_plugins.context.retrievers.bm25 import BM25Retriever
from atlas_plugins.context.retrievers.dense import DenseRetriever
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.types import ToolSpec


class HybridOptions(RetrieverOptions):
    rrf_k: float = Field(default=60.0, gt=0)
    bm25_weight: float = Field(default=1.0, ge=0)
    dense_weight: float = Field(default=1.0, ge=0)
    bm25: dict[str, Any] = Field(default_factory=dict)
    dense: dict[str, Any] = Field(default_factory=dict)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every document (best = 1; ties broken by document order)."""
    order = np.argsort(-scores, kind="stable")  # stable: ties keep document order
    ranks = np.empty_like(order)
    ranks[order] = np.arange(1, scores.shape[0] + 1)
    return ranks


class HybridRetriever(IndexedRetriever):
    kind = "hybrid"
    options_model = HybridOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        self.bm25 = BM25Retriever(cache=o.cache, **o.bm25)
        self.dense = DenseRetriever(cache=o.cache, **o.dense)

    def index(self, tools: list[ToolSpec], server_summaries: dict[str, str] | None = None) -> None:
        # The components own their (cached) indexes; this object only keeps the shared
        # document bookkeeping that two-level search and hit construction need.
        import time

        t0 = time.perf_counter()
        self.bm25.index(tools, server_summaries)
        self.dense.index(tools, server_summaries)
        self.tools = self.bm25.tools
        self.server_names = self.bm25.server_names
        self.tool_docs, self.server_docs = self.bm25.tool_docs, self.bm25.server_docs
        self._tool_server = self.bm25._tool_server
        self.index_key = self.bm25.index_key + self.dense.index_key
        self.last_index_cached = self.bm25.last_index_cached and self.dense.last_index_cached
        self.last_index_seconds = time.perf_counter() - t0

    def _fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        o = self.options
        fused = o.bm25_weight / (o.rrf_k + _ranks(a)) + o.dense_weight / (o.rrf_k + _ranks(b))
        # A document bm25 gives zero shares no query word: rank it only by the dense side.
        fused -= np.where(a > 0, 0.0, o.bm25_weight / (o.rrf_k + _ranks(a)))
        return fused.astype(np.float32)

    def _scores(self, query: str, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        bt, bs = self.bm25._scores(query, need_servers=need_servers)
        dt, ds = self.dense._scores(query, need_servers=need_servers)
        tools = self._fuse(bt, dt)
        servers = self._fuse(bs, ds) if need_servers and bs is not None and ds is not None else None
        return tools, servers

    def _build(self, folder: Path) -> None:  # pragma: no cover - components build their own
        raise NotImplementedError

    def _load(self, folder: Path) -> None:  # pragma: no cover
        raise NotImplementedError


@hookimpl
def atlas_register_retrievers(register: Register) -> None:
    register("hybrid", HybridRetriever)
