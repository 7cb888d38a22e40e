"""Rubric model, providers (static, template, llm), aggregators and the ``atlas rubric`` command."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from typer.testing import CliRunner

import atlas_plugins as atlas
from atlas_plugins.errors import AtlasError, ConfigError
from atlas_plugins.rewards.rubric import Rubric

ADD_TASK = {
    "id": "add-17-25",
    "prompt": "What is 17 + 25? Use the math server.",
    "servers": ["math"],
    "answer": "42",
    "metadata": {"expected_tools": [{"tool": "math:add", "arguments": {"a": 17, "b": 25}}]},
}


class CannedChatServer:
    """A real local HTTP server speaking the OpenAI chat-completions protocol that answers
    with queued canned texts (no model behind it): it exercises our HTTP client, strict
    validation, retries and the disk cache. Records every request body."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                text = outer.replies.pop(0) if outer.replies else "no more canned replies"
                payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def paper_rubric(n: int = 12, weight: object = 7) -> str:
    items = [{"criteria_name": f"Criterion {i}", "criteria_description": f"Checks aspect {i} of the trace", "weight": weight}
             for i in range(n)]
    return "Here is the rubric:\n```json\n" + json.dumps(items) + "\n```"


# -- the model -------------------------------------------------------------------------------
def test_rubric_errors_point_at_the_bad_field(tmp_path):
    crit = [{"name": f"c{i}", "weight": 5} for i in range(3)] + [{"name": "too heavy", "weight": 12}]
    with pytest.raises(ConfigError) as e:
        Rubric.from_dict({"criteria": crit})
    assert "criteria[3].weight: must be 1..10, got 12" in str(e.value)

    bad = tmp_path / "r.yaml"
    bad.write_text("criteria:\n  - name: a\n    check: {type: tool_calld, tool: x}\n  - name: b\n    check: {type: tool_called}\n")
    with pytest.raises(ConfigError) as e:
        Rubric.from_file(bad)
    msg = str(e.value)
    assert str(bad) in msg
    assert "criteria[0].check: unknown check type 'tool_calld'" in msg
    assert "criteria[1].check.tool: required field is missing" in msg
    with pytest.raises(ConfigError, match="criteria\\[0\\].check.pattern: invalid regular expression"):
        Rubric.from_dict([{"name": "r", "check": {"type": "answer_regex", "pattern": "("}}])
    with pytest.raises(ConfigError, match="does not exist"):
        Rubric.from_file(tmp_path / "missing.json")


def test_rubric_loads_yaml_and_paper_keys(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(
        "criteria:\n"
        "  - {criteria_name: Answer right, criteria_description: says 42, weight: 9, category: tf}\n"
        "  - {name: Calls add, category: TA, weight: 4, check: {type: tool_called, tool: 'math:add'}}\n"
        "  - {name: Style, category: Tone, weight: 2}\n"
    )
    r = Rubric.from_file(p)
    assert [c.id for c in r.criteria] == ["answer_right", "calls_add", "style"]
    assert [c.kind for c in r.criteria] == ["judge", "check", "judge"]
    assert r.categories() == ["TF", "TA", "Tone"]  # 'tf' normalised, custom category kept
    assert Rubric.from_dict(r.to_dict()).content_hash() == r.content_hash()


# -- providers ---------------------------------------------------------------------------------
def test_static_provider_reads_task_rubric_and_rejects_missing():
    prov = atlas.get_rubric_provider("static")
    task = {**ADD_TASK, "rubric": {"criteria": [{"name": "says 42", "check": {"type": "answer_contains", "value": "42"}}]}}
    r = prov.rubric_for(task)
    assert r.task_id == "add-17-25" and r.source == "static" and r.criteria[0].check.values == ["42"]
    with pytest.raises(ConfigError, match="task 'add-17-25' has no rubric"):
        prov.rubric_for(ADD_TASK)


def test_template_provider_four_categories_from_metadata():
    r = atlas.get_rubric_provider("template").rubric_for(ADD_TASK)
    assert r.categories() == ["TF", "TA", "TG", "PA"]
    assert all(c.kind == "check" for c in r.criteria)  # fully scorable without an LLM
    by = r.by_id()
    assert by["answer_correct"].check.values == ["42"] and by["answer_correct"].weight == 10
    assert by["args_1"].check.arguments == {"a": 17, "b": 25}
    # deterministic
    assert atlas.get_rubric_provider("template").rubric_for(ADD_TASK).content_hash() == r.content_hash()
    # no ground truth at all -> natural-language TF/TA criteria for an LM judge
    bare = atlas.get_rubric_provider("template").rubric_for({"id": "b", "prompt": "Plan my week"})
    assert {c.category for c in bare.judge_criteria()} == {"TF", "TA"}
    with pytest.raises(ConfigError, match="expected_tools\\[0\\]"):
        atlas.get_rubric_provider("template").rubric_for({"id": "x", "prompt": "p", "metadata": {"expected_tools": [{"args": 1}]}})


def test_llm_provider_validates_retries_and_caches(tmp_path):
    """Against CannedChatServer (canned replies, no model): first reply has 11 criteria,
    second a weight of 12, third is valid. The rubric is cached and never regenerated."""
    srv = CannedChatServer([paper_rubric(11), paper_rubric(12, weight=12), paper_rubric(12)])
    try:
        prov = atlas.get_rubric_provider("llm", base_url=srv.base_url, model="canned", api_key="k", cache_dir=tmp_path)
        r = prov.rubric_for(ADD_TASK)
        assert len(srv.requests) == 3
        # the retry tells the model what was wrong
        assert "expected exactly 12 criteria, got 11" in srv.requests[1]["messages"][-1]["content"]
        assert "weight must be an integer 1..10, got 12" in srv.requests[2]["messages"][-1]["content"]
        assert "17 + 25" in srv.requests[0]["messages"][1]["content"]
        cats = [c.category for c in r.criteria]
        assert cats == ["TF"] * 5 + ["TA"] * 3 + ["TG"] * 2 + ["PA"] * 2
        assert prov.cache_path(ADD_TASK).is_file()
        # a fresh provider (new process, same cache) reads the file; the server is not asked again
        again = atlas.get_rubric_provider("llm", base_url=srv.base_url, model="canned", cache_dir=tmp_path).rubric_for(ADD_TASK)
        assert len(srv.requests) == 3 and again.content_hash() == r.content_hash()
        # exhausting retries is a clear error, not a half rubric
        srv.replies = ["not json"] * 2
        with pytest.raises(AtlasError, match="no valid rubric for task 'other'.*no JSON list found"):
            atlas.get_rubric_provider("llm", base_url=srv.base_url, model="canned", cache_dir=tmp_path, retries=1).rubric_for(
                {"id": "other", "prompt": "p"}
            )
    finally:
        srv.close()


# -- aggregators -------------------------------------------------------------------------------
RUB = Rubric.from_dict(
    [
        {"id": "tf1", "name": "a", "category": "TF", "weight": 10},
        {"id": "tf2", "name": "b", "category": "TF", "weight": 5},
        {"id": "ta1", "name": "c", "category": "TA", "weight": 4},
        {"id": "pa1", "name": "d", "category": "PA", "weight": 2},
    ]
)


def test_atlas_aggregator_formula_and_unscored():
    agg = atlas.get_aggregator("atlas")
    out = agg.aggregate(RUB, {"tf1": 1.0, "tf2": 0.4, "ta1": 0.5, "pa1": 0.0})
    s_tf = (10 * 1.0 + 5 * 0.4) / 15
    assert out.by_category == pytest.approx({"TF": s_tf, "TA": 0.5, "PA": 0.0})
    # alpha renormalised over present categories (no TG): (0.4, 0.3, 0.1) / 0.8
    assert out.value == pytest.approx((0.4 * s_tf + 0.3 * 0.5 + 0.1 * 0.0) / 0.8)
    # unscored criteria leave the denominators and are reported
    part = agg.aggregate(RUB, {"tf1": 1.0, "ta1": 0.5})
    assert part.unscored == ["tf2", "pa1"] and part.by_category == {"TF": 1.0, "TA": 0.5}
    assert part.value == pytest.approx((0.4 + 0.15) / 0.7)
    assert agg.aggregate(RUB, {}).empty
    custom = atlas.get_aggregator("atlas", alpha={"TF": 1.0, "TA": 0.0, "PA": 0.0})
    assert custom.aggregate(RUB, {"tf1": 1.0, "tf2": 0.4, "ta1": 0.5, "pa1": 0.0}).value == pytest.approx(s_tf)


def test_weighted_mean_gated_and_group_relative():
    scores = {"tf1": 1.0, "tf2": 0.4, "ta1": 0.5, "pa1": 0.0}
    wm = atlas.get_aggregator("weighted_mean").aggregate(RUB, scores)
    assert wm.value == pytest.approx((10 + 2 + 2 + 0) / 21)
    gated = atlas.get_aggregator("gated", hard=["tf2"])
    g = gated.aggregate(RUB, scores)
    assert g.value == 0.0 and g.details["gate_failed"] == ["tf2"]
    ok = gated.aggregate(RUB, {**scores, "tf2": 1.0})
    assert ok.value == pytest.approx(atlas.get_aggregator("atlas").aggregate(RUB, {**scores, "tf2": 1.0}).value)
    # an unscored hard criterion does not zero the reward (a judge failure is not a fail)
    u = gated.aggregate(RUB, {"tf1": 1.0})
    assert u.value > 0 and u.details["gate_unscored"] == ["tf2"]
    gr = atlas.get_aggregator("group_relative")
    outs = gr.aggregate_group(RUB, [{"tf1": 1.0}, {"tf1": 0.5}, {"tf1": 0.0}, {}])
    assert [o.value for o in outs[:3]] == pytest.approx([1.0, 0.5, 0.0]) and outs[3].empty
    ranks = atlas.get_aggregator("group_relative", normalize="rank").aggregate_group(RUB, [{"tf1": 0.2}, {"tf1": 0.9}, {"tf1": 0.2}])
    assert [o.value for o in ranks] == pytest.approx([0.25, 1.0, 0.25])


# -- CLI ----------------------------------------------------------------------------------------
@pytest.fixture()
def cli():
    from atlas_plugins.rewards.commands import register

    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps typer from collapsing the app into one command
    def _noop() -> None:
        pass

    return app


def test_cli_rubric_task_tasks_and_validate(cli, tmp_path):
    runner = CliRunner()
    tf = tmp_path / "task.json"
    tf.write_text(json.dumps(ADD_TASK))
    res = runner.invoke(cli, ["rubric", "--task", str(tf), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["source"] == "template" and {c["category"] for c in out["criteria"]} == {"TF", "TA", "TG", "PA"}

    tl = tmp_path / "tasks.jsonl"
    with_rubric = {"id": "s", "prompt": "p", "rubric": [{"name": "x", "weight": 3}]}
    tl.write_text(json.dumps(ADD_TASK) + "\n" + json.dumps(with_rubric) + "\n")
    res = runner.invoke(cli, ["rubric", "--tasks", str(tl), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["task_id"] for r in rows] == ["add-17-25", "s"] and rows[1]["rubric"]["source"] == "static"

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"criteria": [{"name": "x", "weight": 3}]}))
    res = runner.invoke(cli, ["rubric", "--validate", str(good), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["valid"] is True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"criteria": [{"name": "x", "weight": 30}]}))
    res = runner.invoke(cli, ["rubric", "--validate", str(bad), "--json"])
    assert res.exit_code == 1
    assert "criteria[0].weight: must be 1..10, got 30" in json.loads(res.stdout)["error"]

    res = runner.invoke(cli, ["rubric", "--task", str(tf), "--provider", "nope", "--json"])
    assert res.exit_code == 1 and "unknown rubric provider 'nope'" in res.output
    res = runner.invoke(cli, ["rubric", "--task", str(tf)])  # rich table
    assert res.exit_code == 0 and "answer_correct" in res.stdout


def test_cli_rubric_table_prints_criteria_text_literally(cli, tmp_path):
    """A rubric's criteria are a provider's text: ``[/dim]`` in one was read as a rich closing
    tag (MarkupError: the command crashed) and escape sequences reached the terminal."""
    hostile = "[/dim] quotes [bold]x[/bold] \x1b[2J and \u202eright-to-left"
    tf = tmp_path / "task.json"
    tf.write_text(json.dumps({"id": "[/t]", "prompt": "p", "rubric": [{"name": "n", "description": hostile, "weight": 2}]}))
    res = CliRunner().invoke(cli, ["rubric", "--task", str(tf)], terminal_width=300)
    assert res.exit_code == 0, (res.output, res.exception)
    assert "[/dim] quotes [bold]x[/bold]" in res.stdout and "[/t]" in res.stdout, res.stdout
    assert "\x1b" not in res.stdout and "\u202e" not in res.stdout and "\\x1b[2J" in res.stdout, ascii(res.stdout)
