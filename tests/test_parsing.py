"""Tolerant tool-call parsing of small-model output (atlas_plugins.agent.parsing)."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_plugins.agent.parsing import EXPECTED_FORMAT, format_tool_call, parse_assistant


# --------------------------------------------------------------------------- accepted shapes
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<tool_call>{"name": "time:now", "arguments": {"tz": "UTC"}}</tool_call>', [("time:now", {"tz": "UTC"})]),
        (
            '<tool_call>{"name": "a:b", "arguments": {"x": 1}}</tool_call>\n'
            '<tool_call>{"name": "a:c", "arguments": {}}</tool_call>',
            [("a:b", {"x": 1}), ("a:c", {})],
        ),
        ('<tool_call>[{"name": "a:b", "arguments": {}}, {"name": "a:c", "arguments": {"k": [1]}}]</tool_call>',
         [("a:b", {}), ("a:c", {"k": [1]})]),
        ('<tool_call>{"name": "a:b", "arguments": "{\\"x\\": 2}"}</tool_call>', [("a:b", {"x": 2})]),
        ('<tool_call>{"name": "a:b", "parameters": {"x": 3}}</tool_call>', [("a:b", {"x": 3})]),
        ('<tool_call>\n```json\n{"name": "a:b", "arguments": {}}\n```\n</tool_call>', [("a:b", {})]),
        ('Sure.\n```json\n{"name": "math:add", "parameters": {"a": 1, "b": 2}}\n```', [("math:add", {"a": 1, "b": 2})]),
        ('I will call {"name": "math:add", "args": {"a": 1}} now.', [("math:add", {"a": 1})]),
        ('{"type": "function", "function": {"name": "x:y", "arguments": "{\\"q\\": 1}"}}', [("x:y", {"q": 1})]),
        ('{"name": "fetch_tools", "arguments": {"server": "math"}}', [("fetch_tools", {"server": "math"})]),
        ('{"name": "time:now"}', [("time:now", {})]),
    ],
)
def test_accepted_shapes(text: str, expected: list) -> None:
    turn = parse_assistant(text)
    assert turn.errors == []
    assert [(c.name, c.arguments) for c in turn.tool_calls] == expected
    assert not any(c.repaired for c in turn.tool_calls)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<tool_call>{"name": "a:b", "arguments": {"x": 1,},}</tool_call>', [("a:b", {"x": 1})]),  # trailing commas
        ("<tool_call>{'name': 'a:b', 'arguments': {'x': 'y'}}</tool_call>", [("a:b", {"x": "y"})]),  # single quotes
        ('<tool_call>{"name": "a:b", "arguments": {"x": 1}', [("a:b", {"x": 1})]),  # unclosed brace and tag
        ('<tool_call>{"name": "a:b", "arguments": {}}</tool_call><tool_call>{"name": "a:c", "arguments": {}}',
         [("a:b", {}), ("a:c", {})]),  # unclosed final tag
        ('{"name": "math:add", "arguments": {"a": 1, "b": 2', [("math:add", {"a": 1, "b": 2})]),  # bare, cut off
    ],
)
@pytest.mark.parametrize("backend", ["json_repair", "stdlib"])
def test_light_damage_is_repaired(text: str, expected: list, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "stdlib":
        monkeypatch.setitem(sys.modules, "json_repair", None)  # makes `import json_repair` fail
    turn = parse_assistant(text)
    assert turn.errors == []
    assert [(c.name, c.arguments) for c in turn.tool_calls] == expected
    assert any(c.repaired for c in turn.tool_calls)


def test_think_answer_and_content() -> None:
    turn = parse_assistant(
        '<think>I need the sum.</think>Let me add.\n<tool_call>{"name": "math:add", "arguments": {"a": 1}}</tool_call>'
    )
    assert turn.thought == "I need the sum."
    assert turn.content == "Let me add."
    assert turn.answer is None
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("math:add", {"a": 1})]
    assert turn.tool_calls[0].raw.startswith("<tool_call>") and turn.tool_calls[0].raw.endswith("</tool_call>")

    turn = parse_assistant("<think>so 2+2 is 4</think><answer>4</answer>")
    assert (turn.thought, turn.answer, turn.tool_calls, turn.errors) == ("so 2+2 is 4", "4", [], [])

    # Qwen3 templates open <think> in the prompt: a lone closing tag ends the thought.
    turn = parse_assistant("reasoning here</think><answer>4</answer>")
    assert (turn.thought, turn.answer) == ("reasoning here", "4")

    # An unclosed answer runs to the end; an unclosed thought ends at the next tag.
    assert parse_assistant("<answer>Paris, France").answer == "Paris, France"
    turn = parse_assistant('<think>call it <tool_call>{"name": "a:b", "arguments": {}}</tool_call>')
    assert turn.thought == "call it"
    assert [c.name for c in turn.tool_calls] == ["a:b"]


def test_calls_inside_a_thought_are_not_actions() -> None:
    turn = parse_assistant('<think>maybe <tool_call>{"name": "x:y", "arguments": {}}</tool_call>?</think><answer>no</answer>')
    assert turn.tool_calls == [] and turn.errors == [] and turn.answer == "no"


def test_plain_text_and_data_json_are_not_calls() -> None:
    for text in ["The answer is 4.", 'The person is {"name": "Alice", "age": 3}.', "Use {braces} freely {", ""]:
        turn = parse_assistant(text)
        assert turn.tool_calls == [] and turn.errors == [], text
    assert parse_assistant("The answer is 4.").content == "The answer is 4."


# --------------------------------------------------------------------------- malformed calls
@pytest.mark.parametrize(
    ("text", "kind", "says"),
    [
        ("<tool_call>not json at all</tool_call>", "invalid_json", "not a JSON object"),
        ('<tool_call>{"arguments": {"x": 1}}</tool_call>', "missing_name", '"name"'),
        ('<tool_call>{"name": "a:b", "arguments": [1, 2]}</tool_call>', "bad_arguments", "must be a JSON object"),
        ('<tool_call>{"name": "a:b", "arguments": "x=1"}</tool_call>', "bad_arguments", "must be a JSON object"),
        ("<tool_call></tool_call>", "empty_tool_call", "empty"),
        # json-repair reads the bare word as a string: the error names the real problem.
        ('{"name": "math:add", "arguments": oops', "bad_arguments", "must be a JSON object"),
    ],
)
def test_malformed_calls_become_instructive_errors(text: str, kind: str, says: str) -> None:
    turn = parse_assistant(text)
    assert turn.tool_calls == []
    assert [e.kind for e in turn.errors] == [kind]
    message = turn.errors[0].message
    assert says in message and EXPECTED_FORMAT in message
    assert turn.error_observation() == message and not turn.ok


def test_unrecoverable_bare_call_without_json_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "json_repair", None)
    turn = parse_assistant('Calling {"name": "math:add", "arguments": oops')
    assert turn.tool_calls == [] and [e.kind for e in turn.errors] == ["invalid_json"]
    assert "not valid JSON" in turn.errors[0].message and turn.content == "Calling"


def test_one_bad_call_does_not_hide_the_good_ones() -> None:
    turn = parse_assistant(
        '<tool_call>{"name": "a:b", "arguments": {}}</tool_call><tool_call>{"arguments": {}}</tool_call>'
    )
    assert [c.name for c in turn.tool_calls] == ["a:b"]
    assert [e.kind for e in turn.errors] == ["missing_name"]


# --------------------------------------------------------------------------- properties
FRAGMENTS = st.sampled_from(
    ["<tool_call>", "</tool_call>", "<think>", "</think>", "<answer>", "</answer>", "```json\n", "```", "{", "}",
     "[", "]", '"name"', '"arguments"', ":", ",", '"a:b"', "'", '"', "null", "1e999", "\\", "\n", " ", "tru"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=40).map("".join)))
def test_parser_never_raises(text: str) -> None:
    turn = parse_assistant(text)
    for call in turn.tool_calls:
        assert isinstance(call.name, str) and call.name and isinstance(call.arguments, dict)
    for error in turn.errors:
        assert EXPECTED_FORMAT in error.message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z_]{0,8}:[a-z][a-z_]{0,8}", fullmatch=True),
            st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_formatted_calls_round_trip(call_list: list[tuple[str, dict]]) -> None:
    text = "<think>plan</think>\n" + "\n".join(format_tool_call(n, a) for n, a in call_list)
    turn = parse_assistant(text)
    assert turn.errors == []
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [(n, json.loads(json.dumps(a))) for n, a in call_list]


def test_non_string_input_is_tolerated() -> None:
    assert parse_assistant(None).tool_calls == []
    assert parse_assistant(42).content == "42"
