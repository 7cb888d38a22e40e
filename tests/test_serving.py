"""The serving package and its old entry point, without a model (a scripted stand-in policy)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from atlas_plugins.policy.base import Generation


class _EchoPolicy:
    """Answers every prompt with a fixed tool call; prompt ids are the message count."""

    name = "echo"
    tokenizer = None

    def apply_chat_template(self, messages, tools=None, add_generation_prompt=True):
        return list(range(len(messages) + 1))

    def generate(self, batch, *, max_new_tokens, temperature, top_p, stop, seed):
        text = '<think>add</think><tool_call>{"name": "math:add", "arguments": {"a": 1}}</tool_call>'
        return [Generation(completion_ids=[7, 8], logprobs=[-0.1, -0.2], text=text, finish_reason="stop") for _ in batch]


@pytest.mark.parametrize("module", ["atlas_plugins.serving", "atlas_plugins.policy.serve"])
def test_python_m_entry_points_start(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--model" in out.stdout and "--no-stream" in out.stdout


def test_main_help_exits_zero():
    from atlas_plugins.policy.serve import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_round_trip_records_and_old_names():
    from atlas_plugins.policy import serve
    from atlas_plugins.serving.server import PolicyServer

    assert serve.PolicyServer is PolicyServer and serve.ROLLOUT_HEADER == "X-Atlas-Rollout"
    with PolicyServer(_EchoPolicy(), append_only=False, streaming=True) as srv:
        body = {"model": "x", "messages": [{"role": "user", "content": "1+1"}], "tools": [{"type": "function"}],
                "temperature": 1, "n": 2}
        r = httpx.post(srv.base_url + "/chat/completions", json=body, headers={serve.ROLLOUT_HEADER: "r1"}, timeout=30)
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "<think>add</think>"
        assert choice["message"]["tool_calls"][0]["function"] == {"name": "math:add", "arguments": '{"a": 1}'}
        (rec,) = srv.records_since(0)
        assert rec.rollout == "r1" and rec.prompt_ids == [0, 1] and len(rec.completions) == 2
        assert rec.sampling == {"max_tokens": 256, "temperature": 1, "top_p": 1.0, "stop": None, "seed": None, "n": 2}
        bad = httpx.post(srv.base_url + "/chat/completions", json={**body, "n": 65}, timeout=30)
        assert bad.status_code == 400 and "'n' must be between 1 and 64" in bad.json()["error"]["message"]
        stream = httpx.post(srv.base_url + "/chat/completions", json={**body, "stream": True, "n": 1}, timeout=30)
        assert stream.text.endswith("data: [DONE]\n\n") and '"tool_calls"' in stream.text
        dumped = httpx.get(srv.url + "/atlas/records", timeout=30).json()["data"]
        assert [d["index"] for d in dumped] == [0, 1] and set(dumped[0]) >= {"prompt_ids", "completions", "chain", "rollout"}
