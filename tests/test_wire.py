"""The wire helpers (atlas_plugins.wire): one copy of each message, text and format rule."""

from __future__ import annotations

from atlas_plugins.wire.messages import (
    arguments_json,
    content_text,
    loads_arguments,
    message_key,
    record_arguments,
    tool_call_functions,
)
from atlas_plugins.wire.text import closest, cut, listing, one_line, ranked_names, truncate


def test_content_text_parts_none_and_other():
    assert content_text("hi") == "hi"
    assert content_text(None) == ""
    assert content_text([{"type": "text", "text": "a"}, "b", {"type": "image_url"}, {"text": None}]) == "ab"
    assert content_text(3) == "3"


def test_argument_decoding_per_site_semantics():
    assert loads_arguments('{"a": 1}') == {"a": 1}
    assert loads_arguments("not json") == "not json" and loads_arguments(None) is None
    # the TRL reward's text calls: undecodable -> _raw, non-dict -> _value, "" decoded like any text
    assert record_arguments("oops", non_dict="wrap", blank="raw") == {"_raw": "oops"}
    assert record_arguments("5", non_dict="wrap", blank="raw") == {"_value": 5}
    assert record_arguments("", non_dict="wrap", blank="raw") == {"_raw": ""}
    # the TRL reward's chat tool_calls: non-dicts are dropped to {}
    assert record_arguments([1], non_dict="empty", blank="raw") == {}
    # the LangGraph proxy: "" means no arguments
    assert record_arguments("", non_dict="wrap", blank="empty") == {}
    assert record_arguments({"x": 1}, non_dict="empty", blank="empty") == {"x": 1}
    assert arguments_json({"q": "é"}) == '{"q": "é"}'


def test_tool_call_functions_and_message_key():
    msg = {"role": "assistant", "content": [{"type": "text", "text": "ok"}],
           "tool_calls": [{"id": "1", "function": {"name": "math:add", "arguments": '{"a": 1}'}},
                          {"name": "lc", "args": {"b": 2}}]}
    assert tool_call_functions(msg) == [("math:add", '{"a": 1}'), ("lc", {})]
    assert tool_call_functions(msg, accept_args_key=True)[1] == ("lc", {"b": 2})
    same = {"role": "assistant", "content": "ok",
            "tool_calls": [{"id": "other", "type": "function", "function": {"name": "math:add", "arguments": {"a": 1}}},
                           {"name": "lc", "args": {"b": 2}}]}
    assert message_key(msg) == message_key(same)  # ids and argument serialisation do not matter
    assert message_key({"role": "user", "content": None}) == '["user", "", []]'


def test_truncation_marker_and_suggestions():
    assert truncate("abc", 5) == ("abc", False)
    assert truncate("x" * 10, 4) == ("xxxx\n…[truncated 6 of 10 characters]", True)
    assert cut("x" * 10, 4) == "xxxx\n…[truncated 6 of 10 characters]"
    assert closest("ad", ["add", "sub"]) == ["add"]
    assert closest("", ["add", "sub"]) == []  # an empty name suggests nothing
    assert ranked_names("emial", ["calendar", "email"])[0] == "email"
    assert listing([str(i) for i in range(25)]).endswith(", 19, … (25 in all)")
    assert one_line("First. Second.") == "First." and one_line("x" * 10, 5) == "xxxx…"


def test_both_json_styles_of_a_call():
    from atlas_plugins.wire.toolcall import format_call, format_call_compact

    # spaced: what demonstrations clone (fixes the SFT tokens); compact: every prompt hint
    assert format_call("math:add", {"a": 1, "q": "é"}) == '<tool_call>{"name": "math:add", "arguments": {"a": 1, "q": "é"}}</tool_call>'
    assert format_call_compact("math:add", {"a": 1}) == '<tool_call>{"name":"math:add","arguments":{"a":1}}</tool_call>'
    assert format_call(None, "raw") == '<tool_call>{"name": null, "arguments": "raw"}</tool_call>'


def test_strict_reader_keeps_the_trl_reward_semantics():
    from atlas_plugins.wire.toolcall import find_answers, parse_assistant, strict_tagged_calls, strip_tagged_calls

    text = ('<tool_call>{"name": "a:b", "arguments": "{\\"x\\": 1}"}</tool_call>'
            "<tool_call>{'name': 'broken'}</tool_call>"
            '<tool_call>[{"name": "c:d"}]</tool_call> done <answer> 42 ')
    # strict: no repair, no list splitting, raw arguments as written
    assert strict_tagged_calls(text) == [("a:b", '{"x": 1}')]
    assert [c.name for c in parse_assistant(text).tool_calls] == ["a:b", "broken", "c:d"]  # tolerant: repaired
    assert find_answers(text) == [" 42 "]
    assert strip_tagged_calls("pre <tool_call>{}</tool_call> post") == "pre  post"


def test_old_import_paths_are_the_wire():
    from atlas_plugins.agent import loop, parsing
    from atlas_plugins.context import prompts
    from atlas_plugins.toolspace import toolspace
    from atlas_plugins.wire import text, toolcall

    assert parsing.parse_assistant is toolcall.parse_assistant and parsing.format_tool_call is toolcall.format_call
    assert loop.STOP_STRINGS is toolcall.STOP_STRINGS == ["</tool_call>", "</answer>"]
    assert prompts.tool_call_example is toolcall.format_call_compact and prompts.TOOL_CALL_OPEN == "<tool_call>"
    assert toolspace.truncate is text.truncate and toolspace.closest is text.closest


class _FailingEndpoint:
    """A local HTTP server answering every request with ``status`` (counts the requests)."""

    def __init__(self, status: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = b'{"error": "nope"}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *a):  # noqa: ANN002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self) -> "_FailingEndpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_one_retry_loop_and_retries_zero_is_one_attempt():
    import pytest

    import atlas_plugins as atlas
    from atlas_plugins.errors import AtlasError
    from atlas_plugins.policy.openai_policy import OpenAIPolicy
    from atlas_plugins.rewards._http import ChatClient
    from atlas_plugins.wire.http import OpenAIHTTP

    with _FailingEndpoint(503) as ep:
        with OpenAIHTTP(ep.url, headers={}, retries=0) as http, pytest.raises(AtlasError, match="request to .* failed: HTTP 503"):
            http.request("GET", "/models")
        assert ep.requests == 1
        with OpenAIHTTP(ep.url, headers={}, retries=1) as http, pytest.raises(AtlasError):
            http.request("GET", "/models")
        assert ep.requests == 3  # one attempt + one retry
        with pytest.raises(AtlasError, match=r"chat completion at .* \(model 'm'\) failed: HTTP 503"):
            ChatClient(base_url=ep.url, model="m", retries=0).complete([{"role": "user", "content": "x"}])
        assert ep.requests == 4
        with OpenAIPolicy(ep.url, "m", max_retries=0) as remote, pytest.raises(AtlasError, match="request to .* failed"):
            remote.list_models()
        assert ep.requests == 5
        judge = atlas.get_judge("openai", base_url=ep.url, model="m", retries=0)
        with pytest.raises(AtlasError):
            judge.client.complete([{"role": "user", "content": "x"}])
        assert ep.requests == 6  # the judge's retries=0 also means one HTTP attempt
    with _FailingEndpoint(401) as ep:
        with OpenAIHTTP(ep.url, headers={}, retries=2) as http, pytest.raises(AtlasError, match="HTTP 401"):
            http.request("POST", "/chat/completions", {})
        assert ep.requests == 1  # client errors are not retried
    assert ChatClient(base_url="http://x/v1").retries == 2  # the old default: 3 attempts
