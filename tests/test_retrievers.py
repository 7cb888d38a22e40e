"""Retrievers on real catalogues (first 50 Toucan servers, the embedded toolspace), caching, CJK, ``atlas retrieve``."""

from __future__ import annotations

import importlib.util
import json

import pytest
import typer
from typer.testing import CliRunner

from atlas_plugins.context.base import ToolRetriever
from atlas_plugins.context.retrievers._common import dense_tool_document, lexical_tokens, split_identifier, tool_document
from atlas_plugins.errors import AtlasError
from atlas_plugins.plugins import get_retriever
from atlas_plugins.toolspace import Toolspace
from atlas_plugins.toolspace.catalog import load_catalog
from atlas_plugins.types import ToolSpec

TOUCAN = "../shared/data/toolspace/toucan_servers.jsonl"


@pytest.fixture(autouse=True)
def _isolated_index_cache(tmp_path_factory, monkeypatch):
    # Index cache only: the embedded model cache is unaffected (it does not use index/).
    root = tmp_path_factory.getbasetemp() / "atlas-cache"
    monkeypatch.setattr("atlas_plugins.context.retrievers._common.cache_root", lambda: root / "index")


@pytest.fixture(scope="module")
def toucan50():
    servers = load_catalog(TOUCAN, limit=50)
    return [t for s in servers for t in s.tools], {s.name: s.summary for s in servers}


@pytest.fixture(scope="module")
def embedded_ts():
    transport = "hub" if importlib.util.find_spec("atlas_plugins.envs.hub") else "stdio"
    space = Toolspace.default(servers=["calendar", "email", "files"], transport=transport)
    space.start()
    yield space
    space.close()


def test_document_text():
    assert split_identifier("getWeather_forecast-v2.json") == ["get", "weather", "forecast", "v", "2", "json"]
    spec = ToolSpec(
        server="Mail-Server",
        name="sendEmail",
        description="Send a message.",
        input_schema={"type": "object", "properties": {"toAddress": {"type": "string", "description": "Recipient"}}},
    )
    doc = tool_document(spec, "Email things")
    for part in ("mail server", "Email things", "send email", "Send a message.", "to address", "Recipient"):
        assert part in doc
    # The dense text is short: no server summary, no arguments.
    assert dense_tool_document(spec) == "mail server: send email — Send a message."
    assert dense_tool_document(spec.model_copy(update={"description": " "})) == "mail server: send email"


@pytest.mark.parametrize("name", ["bm25", pytest.param("dense", marks=pytest.mark.slow), pytest.param("hybrid", marks=pytest.mark.slow)])
@pytest.mark.parametrize("two_level", [False, True])
def test_finds_obvious_tool_on_toucan50(name, two_level, toucan50):
    tools, summaries = toucan50
    r = get_retriever(name, two_level=two_level)
    assert isinstance(r, ToolRetriever)
    r.index(tools, summaries)
    hits = r.search("get the weather forecast for a city in the United States", k=5)
    assert len(hits) == 5
    assert any(h.tool == "get_weather_forecast" for h in hits[:3]), hits
    papers = r.search("search PubMed for biomedical articles", k=5)
    assert any("PubMed" in h.server for h in papers), papers
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) or two_level


@pytest.mark.parametrize("name", ["bm25", pytest.param("hybrid", marks=pytest.mark.slow)])
def test_finds_tool_on_embedded_toolspace(name, embedded_ts):
    r = get_retriever(name)
    r.index(embedded_ts.list_tools(), {s.name: s.summary for s in embedded_ts.servers})
    hits = r.search("send an email to someone", k=3)
    assert hits[0].server == "email", hits
    hits = r.search("create a new calendar event", k=3)
    assert hits[0].server == "calendar", hits


@pytest.mark.parametrize("name", ["bm25", pytest.param("dense", marks=pytest.mark.slow)])
def test_index_cached_on_second_build(name):
    servers = load_catalog(TOUCAN, limit=6)  # small: a dense build per variant stays cheap
    tools, summaries = [t for s in servers for t in s.tools], {s.name: s.summary for s in servers}
    first = get_retriever(name)
    first.index(tools, summaries)
    second = get_retriever(name)
    second.index(list(reversed(tools)), summaries)  # order does not change the catalogue
    assert second.last_index_cached and second.index_key == first.index_key
    q = "read a file from disk"
    assert [h.model_dump() for h in first.search(q, 5)] == [h.model_dump() for h in second.search(q, 5)]
    changed = get_retriever(name)
    changed.index(tools[:-1], summaries)
    assert not changed.last_index_cached and changed.index_key != first.index_key


@pytest.mark.parametrize("name", ["bm25", pytest.param("dense", marks=pytest.mark.slow), pytest.param("hybrid", marks=pytest.mark.slow)])
def test_chinese_text_and_edge_cases(name):
    tools = [
        ToolSpec(server="天气服务", name="查询天气", description="查询城市的天气预报"),
        ToolSpec(server="天气服务", name="get_air", description="空气质量 air quality index"),
        ToolSpec(server="notes", name="add_note", description="Add a note."),
    ]
    r = get_retriever(name, two_level=True)
    r.index(tools, {"天气服务": "中国城市天气", "notes": ""})
    assert r.search("北京明天的天气预报", k=2)[0].tool == "查询天气"
    assert r.search("", k=3) == [] and r.search("zzzz qqqq", k=2) is not None
    assert len(r.search("note", k=50)) == 3  # k larger than the catalogue
    assert "天气" in lexical_tokens("查询天气")
    empty = get_retriever(name)
    empty.index([], {})
    assert empty.search("anything") == []


def test_bad_retriever_options():
    with pytest.raises(AtlasError, match="top_servers"):
        get_retriever("bm25", top_servers=0)
    with pytest.raises(AtlasError, match="bogus"):
        get_retriever("dense", bogus=True)
    with pytest.raises(AtlasError, match="query_precision"):
        get_retriever("dense", query_precision="int4")
    with pytest.raises(AtlasError, match="build_precision"):
        get_retriever("hybrid", dense={"build_precision": "fp16"})


@pytest.mark.slow
def test_dense_precision_options_and_query_cache():
    servers = load_catalog(TOUCAN, limit=6)
    tools, summaries = [t for s in servers for t in s.tools], {s.name: s.summary for s in servers}
    fp32 = get_retriever("dense", build_precision="fp32")
    fp32.index(tools, summaries)
    bf16 = get_retriever("dense", build_precision="bf16")
    bf16.index(tools, summaries)
    # Precision is part of the cache key: a bf16 index is never served for an fp32 request
    # (the bf16 one may already be cached by the default "auto" build of another test).
    assert bf16.index_key != fp32.index_key
    auto = get_retriever("dense")
    assert auto.effective_build_precision in ("fp32", "bf16")
    cos = (fp32._tool_emb * bf16._tool_emb).sum(axis=1)
    assert cos.min() > 0.99, cos.min()  # bf16 autocast changes embeddings only slightly
    longer = get_retriever("dense", build_precision="fp32", max_seq_length=128)
    longer.index(tools, summaries)
    assert not longer.last_index_cached and longer.index_key != fp32.index_key

    q = "read a file from disk"
    int8 = get_retriever("dense", build_precision="fp32", query_precision="int8", query_cache_size=1)
    int8.index(tools, summaries)
    assert int8.last_index_cached  # query settings do not touch the index
    e8, e32 = int8.query_embedding(q), fp32.query_embedding(q)
    assert 0.85 < float(e8 @ e32) < 0.99999  # a different (quantised) model, same space
    assert fp32.search(q, 1)[0].tool in [h.tool for h in int8.search(q, 3)]
    # LRU cache: a repeated query is served from the cache; size 1 evicts the older query.
    assert int8.query_embedding(q) is e8
    int8.query_embedding("list directory contents")
    assert list(int8._query_cache) == ["list directory contents"]
    assert int8.query_embedding(q) is not e8


def test_cli_retrieve(tmp_path):
    from atlas_plugins.context.commands import register

    app = typer.Typer()
    register(app)
    catalog = tmp_path / "cat.jsonl"
    with open(TOUCAN, encoding="utf-8") as src:
        catalog.write_text("".join(next(src) for _ in range(50)), encoding="utf-8")
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        json.dumps({"id": "w", "query": "weather forecast for a US city"}) + "\n"
        + json.dumps({"id": "p", "query": "search PubMed articles"}) + "\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    res = runner.invoke(app, ["retrieve", "--catalog", str(catalog), "--queries", str(queries), "--retriever", "bm25", "--k", "3", "--two-level", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [d["id"] for d in data] == ["w", "p"]
    assert all(len(d["hits"]) == 3 and set(d["hits"][0]) == {"server", "tool", "score"} for d in data)
    assert any("weather" in h["tool"] for h in data[0]["hits"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n', encoding="utf-8")
    res = runner.invoke(app, ["retrieve", "--catalog", str(catalog), "--queries", str(bad), "--json"])
    assert res.exit_code == 1 and "bad.jsonl:1" in json.loads(res.stdout)["error"]
    res = runner.invoke(app, ["retrieve", "--catalog", str(catalog), "--queries", str(queries), "--retriever", "bm52", "--json"])
    assert res.exit_code == 1 and "did you mean 'bm25'" in json.loads(res.stdout)["error"].lower()
