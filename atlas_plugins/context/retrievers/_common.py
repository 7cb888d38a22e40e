"""Shared parts of the built-in retrievers: document text, tokenization, caching, two-level search.

Each tool is indexed as one document made of its server's name and summary, its name split
into words (``get_weatherForecast-v2`` -> ``get weather forecast v2``), its description and
its argument names and descriptions (the lexical document; the dense retriever embeds the
shorter :func:`dense_tool_document` instead). Each server is indexed as its name plus summary (plus its
tool names when it has no summary), for two-level search.

Index builds are cached under ``$ATLAS_CACHE_DIR/index/`` (default
``~/.cache/atlas-plugins/index/``), one folder per (retriever, settings, document texts) hash,
written to a temporary folder and renamed so a killed build never leaves a broken cache entry.

Two-level search (``two_level=True``), as MCP-Zero and LiveMCPBench's router do it: rank
servers by their own documents, keep the ``top_servers`` best, rank the tools inside them. The
result is topped up from the flat ranking when those servers hold fewer than ``k`` tools, so a
search always returns ``min(k, number of tools)`` hits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas_plugins.context.base import RetrievalHit
from atlas_plugins.errors import AtlasError
from atlas_plugins.types import ToolSpec

#: Bump when document text or tokenization changes, so old cache entries are not reused.
#: 2: dense indexes embed the short :func:`dense_tool_document` text.
INDEX_FORMAT = 2

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_NON_WORD = re.compile(r"[^0-9A-Za-z\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")

STOPWORDS = frozenset(
    "a an and are as at be by for from has have how i in is it its of on or that the this to was "
    "were will with you your me my we our can do does if into it's not no so than then there "
    "these those which who what when where why all any some such".split()
)


def cache_root() -> Path:
    root = os.environ.get("ATLAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "atlas-plugins")
    return Path(root) / "index"


def split_identifier(name: str) -> list[str]:
    """``"getWeather_forecast-v2.json"`` -> ``["get", "weather", "forecast", "v", "2", "json"]``."""
    words: list[str] = []
    for chunk in _NON_WORD.split(name or ""):
        if not chunk:
            continue
        for cjk_or_latin in re.split(f"({_CJK.pattern})", chunk):
            if not cjk_or_latin:
                continue
            if _CJK.fullmatch(cjk_or_latin):
                words.append(cjk_or_latin)
            else:
                words.extend(w.lower() for w in _WORD.findall(cjk_or_latin))
    return words


def _stem(word: str) -> str:
    """A deliberately tiny English stemmer (plural/-ing/-ed), applied to queries and documents alike."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    return word


def lexical_tokens(text: str) -> list[str]:
    """Tokens for BM25: split identifiers, lowercase, drop stopwords, light stemming.

    CJK runs become character unigrams and bigrams (no word segmenter needed, never crashes).
    """
    out: list[str] = []
    for w in split_identifier(text):
        if _CJK.fullmatch(w):
            out.extend(w)
            out.extend(w[i : i + 2] for i in range(len(w) - 1))
        elif w not in STOPWORDS:
            out.append(_stem(w))
    return out


def _schema_args(schema: Any) -> list[str]:
    parts: list[str] = []
    props = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(props, dict):
        for arg, sub in props.items():
            parts.append(" ".join(split_identifier(str(arg))))
            if isinstance(sub, dict) and isinstance(sub.get("description"), str):
                parts.append(sub["description"])
    return parts


def tool_document(spec: ToolSpec, server_summary: str = "") -> str:
    """The text indexed for one tool (see the module docstring)."""
    parts = [
        " ".join(split_identifier(spec.server)),
        server_summary,
        " ".join(split_identifier(spec.name)),
        spec.description,
        *_schema_args(spec.input_schema),
    ]
    return "\n".join(p.strip() for p in parts if p and p.strip())


def dense_tool_document(spec: ToolSpec) -> str:
    """The shorter text embedded for one tool: ``"<server words>: <tool name words> — <description>"``.

    Why not :func:`tool_document`: MiniLM reads a fixed budget of word pieces, and the server
    summary that the lexical document leads with crowds out the tool's own description (one
    server's tools then embed almost alike). On the LiveMCPBench queries this text gives the
    same dense recall as the long document at half the word pieces, and ranks that fuse much
    better with BM25 (see benchmarks/notes/context.md).
    """
    head = f"{' '.join(split_identifier(spec.server))}: {' '.join(split_identifier(spec.name))}"
    desc = " ".join((spec.description or "").split())
    return f"{head} — {desc}" if desc else head


def server_document(name: str, summary: str, tool_names: list[str]) -> str:
    parts = [" ".join(split_identifier(name)), summary]
    if not summary.strip():  # a bare name says little; its tools' names say what it does
        parts.append(" ".join(" ".join(split_identifier(t)) for t in tool_names))
    return "\n".join(p for p in parts if p)


class RetrieverOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Rank servers first, then tools inside the ``top_servers`` best servers.
    two_level: bool = False
    top_servers: int = Field(default=5, ge=1)
    #: Read/write the on-disk index cache.
    cache: bool = True


def build_options(model: type[BaseModel], retriever: str, options: dict[str, Any]) -> Any:
    try:
        return model(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise AtlasError(f"invalid option(s) for retriever {retriever!r}: {problems}") from None


def cached_build(kind: str, key: str, build: Callable[[Path], None], *, use_cache: bool) -> tuple[Path, bool]:
    """Folder holding the index for ``key``; ``build(folder)`` fills it on a miss.

    Returns ``(folder, was_cached)``.
    """
    root = cache_root()
    target = root / f"{kind}-{key[:24]}"
    if use_cache and (target / "DONE").is_file():
        return target, True
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=root))
    try:
        build(tmp)
        (tmp / "DONE").write_text(key)
        if not use_cache:
            return tmp, False  # caller owns a private folder; nothing shared is touched
        if (target / "DONE").is_file():
            # Another process finished the same build meanwhile, and may be reading it now:
            # keep its index (it is equivalent) rather than delete it under the reader.
            shutil.rmtree(tmp, ignore_errors=True)
            return target, False
        if target.exists():  # a torn folder that never got its DONE mark
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its index is equivalent
            shutil.rmtree(tmp, ignore_errors=True)
        return target, False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class IndexedRetriever:
    """Base of the built-in retrievers.

    Subclasses implement ``_build(folder)`` / ``_load(folder)`` (their index files) and
    ``_scores(query) -> (tool_scores, server_scores)`` over all documents (higher is better).
    """

    kind: str = ""
    options_model: type[RetrieverOptions] = RetrieverOptions

    def __init__(self, **options: Any) -> None:
        self.options = build_options(self.options_model, self.kind, options)
        self.tools: list[ToolSpec] = []
        self.server_names: list[str] = []
        self.tool_docs: list[str] = []
        self.server_docs: list[str] = []
        self._tool_server: np.ndarray = np.zeros(0, dtype=np.int64)
        #: Whether the last :meth:`index` call was served from the disk cache.
        self.last_index_cached: bool = False
        #: Seconds the last :meth:`index` call took.
        self.last_index_seconds: float = 0.0
        self.index_key: str = ""

    # -- ToolRetriever ----------------------------------------------------------------------
    def index(self, tools: list[ToolSpec], server_summaries: dict[str, str] | None = None) -> None:
        t0 = time.perf_counter()
        summaries = dict(server_summaries or {})
        # Canonical order: the same catalogue gives the same index whatever order it came in.
        self.tools = sorted(tools, key=lambda t: (t.server, t.name))
        self.server_names = sorted({t.server for t in self.tools})
        by_server: dict[str, list[str]] = {}
        for t in self.tools:
            by_server.setdefault(t.server, []).append(t.name)
        self.tool_docs = self._tool_documents(summaries)
        self.server_docs = [server_document(s, summaries.get(s, ""), by_server.get(s, [])) for s in self.server_names]
        pos = {s: i for i, s in enumerate(self.server_names)}
        self._tool_server = np.array([pos[t.server] for t in self.tools], dtype=np.int64)
        digest = hashlib.sha256()
        digest.update(json.dumps([self.kind, INDEX_FORMAT, self._settings()], sort_keys=True).encode())
        for doc in (*self.tool_docs, "\x00servers\x00", *self.server_docs):
            digest.update(doc.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        self.index_key = digest.hexdigest()
        if self.tools:
            folder, cached = cached_build(self.kind, self.index_key, self._build, use_cache=self.options.cache)
            self._load(folder)
            if not self.options.cache:
                shutil.rmtree(folder, ignore_errors=True)
            self.last_index_cached = cached
        else:
            self.last_index_cached = False
        self.last_index_seconds = time.perf_counter() - t0

    def search(self, query: str, k: int = 5) -> list[RetrievalHit]:
        if not self.tools or not isinstance(query, str) or not query.strip() or k < 1:
            return []
        k = min(int(k), len(self.tools))
        tool_scores, server_scores = self._scores(query, need_servers=self.options.two_level)
        if self.options.two_level and server_scores is not None and np.any(server_scores > 0):
            top = _top(server_scores, self.options.top_servers)
            inside_mask = np.isin(self._tool_server, top)
            inside = _top(np.where(inside_mask, tool_scores, -np.inf), k)
            inside = inside[inside_mask[inside]]
            order = inside
            if len(inside) < k:  # top up from the flat ranking of the other servers
                rest = _top(np.where(inside_mask, -np.inf, tool_scores), k - len(inside))
                order = np.concatenate([inside, rest])
        else:
            order = _top(tool_scores, k)
        return [
            RetrievalHit(server=self.tools[i].server, tool=self.tools[i].name, score=float(tool_scores[i]))
            for i in order.tolist()
        ]

    # -- subclass API ------------------------------------------------------------------------
    def _tool_documents(self, summaries: dict[str, str]) -> list[str]:
        """The indexed text of each tool of ``self.tools`` (part of the cache key)."""
        return [tool_document(t, summaries.get(t.server, "")) for t in self.tools]

    def _settings(self) -> dict[str, Any]:
        """Settings that change the index (two-level/top_servers do not: both indexes are built)."""
        return {}

    def _build(self, folder: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, folder: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scores(self, query: str, *, need_servers: bool) -> tuple[np.ndarray, np.ndarray | None]:  # pragma: no cover
        raise NotImplementedError


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties: lower index first, deterministic)."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < scores.shape[0]:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(scores.shape[0])
    return part[np.lexsort((part, -scores[part]))]
