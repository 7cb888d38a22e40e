"""``bm25``: lexical retrieval with bm25s over tool documents (see ``_common`` for the text).

Options: ``k1`` (1.2), ``b`` (0.75), ``two_level``, ``top_servers``, ``cache``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from atlas_plugins.context.retrievers._common import IndexedRetriever, RetrieverOptions, lexical_tokens
from atlas_plugins.hookspecs import Register, hookimpl


class BM25Options(RetrieverOptions):
    k1: float = Field(default=1.2, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)


def _bm25_scores(model: Any, tokens: list[str]) -> np.ndarray:
    n = int(model.scores["num_docs"])
    ids = model.get_tokens_ids(tokens)
    if not ids:  # no query word occurs in the corpus: nothing matches
        return np.zeros(n, dtype=np.float32)
    return np.asarray(model.get_scores_from_ids(ids), dtype=np.float32)


class BM25Retriever(IndexedRetriever):
    kind = "bm25"
    options_model = BM25Options

    def _settings(self) -> dict[str, Any]:
        return {"k1": self.options.k1, "b": self.options.b}

    def _new(self) -> Any:
        import bm25s

        return bm25s.BM25(k1=self.options.k1, b=self.options.b)

    def _build(self, folder: Path) -> None:
        for name, docs in (("tools", self.tool_docs), ("servers", self.server_docs)):
            model = self._new()
            # An empty token list would break bm25s; a placeholder keeps document ids aligned.
            model.index([lexical_tokens(d) or ["\x00empty"] for d in docs], show_progress=False)
            model.save(str(folder / name), show_progress=False)

    def _load(self, folder: Path) -> None:
        import bm25s

        self._tools_model = bm25s.BM25.load(str(folder / "tools"), show_progress=False)
        self._servers_model = bm25s.BM25.load(str(folder / "servers"), show_progress=False)

    def _scores(self, query: str, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        tokens = lexical_tokens(query)
        tools = _bm25_scores(self._tools_model, tokens)
        servers = _bm25_scores(self._servers_model, tokens) if need_servers else None
        return tools, servers


@hookimpl
def atlas_register_retrievers(register: Register) -> None:
    register("bm25", BM25Retriever)
