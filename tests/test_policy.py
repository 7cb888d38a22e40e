"""Policy backends on the embedded SmolLM2-135M (real model, CPU), and the OpenAI-compatible
server in front of it (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import httpx
import pytest

torch = pytest.importorskip("torch", reason="the policy tests need the 'train' extra (torch)")

# Loads the embedded model (or trains): left out of `make test-fast`.
pytestmark = pytest.mark.slow

from atlas_plugins.errors import AtlasError  # noqa: E402
from atlas_plugins.policy import Generation, Policy, make_policy  # noqa: E402
from atlas_plugins.policy.openai_policy import OpenAIPolicy  # noqa: E402
from atlas_plugins.policy.serve import PolicyServer, assistant_message  # noqa: E402
from atlas_plugins.policy.transformers_policy import TransformersPolicy  # noqa: E402

QUESTIONS = [
    "What is 2+2?",
    "Write a haiku about the sea and the moon.",
    "List three fruits, one per line, then explain why you like each of them.",
]




@pytest.fixture(scope="module")
def policy() -> TransformersPolicy:
    return TransformersPolicy()


@pytest.fixture(scope="module")
def prompts(policy: TransformersPolicy) -> list[list[int]]:
    return [policy.apply_chat_template([{"role": "user", "content": q}]) for q in QUESTIONS]


def rescore(model, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    """TRL's way: one forward pass over prompt+completion, log_softmax(logits / T) of each token."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)


def test_is_a_policy(policy: TransformersPolicy, prompts: list[list[int]]) -> None:
    assert isinstance(policy, Policy)
    assert policy.name == "SmolLM2-135M-Instruct"
    # Our rendering agrees with the tokenizer's own chat template when no tools are involved.
    own = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]}], add_generation_prompt=True, tokenize=True
    )
    assert prompts[0] == list(own["input_ids"] if hasattr(own, "keys") else own)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9)])
def test_token_faithful_with_exact_logprobs(policy: TransformersPolicy, prompts, temperature, top_p) -> None:
    group = [prompts[0], prompts[0], prompts[1], prompts[2]]  # two groups of different prompt lengths
    gens = policy.generate(group, max_new_tokens=8, temperature=temperature, top_p=top_p, seed=3)
    assert len(gens) == 4 and all(isinstance(g, Generation) for g in gens)
    for prompt, gen in zip(group, gens):
        assert len(gen.logprobs) == gen.num_tokens
        # The length says why it stopped: the budget exactly, or an earlier sampled end-of-turn token.
        if gen.finish_reason == "length":
            assert gen.num_tokens == 8
        else:
            assert gen.finish_reason == "eos" and gen.completion_ids[-1] == policy.tokenizer.eos_token_id
        assert policy.tokenizer.decode(gen.completion_ids, skip_special_tokens=True) == gen.text
        assert gen.prompt_len == len(prompt)
        # The logprob is the model's at temperature T (pre top-p), as TRL computes it.
        expected = rescore(policy.model, prompt, gen.completion_ids, temperature)
        assert torch.allclose(expected, torch.tensor(gen.logprobs), atol=1e-4), (expected, gen.logprobs)
        if gen.finish_reason == "eos":
            assert gen.completion_ids[-1] == policy.tokenizer.eos_token_id
        else:
            assert gen.finish_reason == "length" and gen.num_tokens == 8


def test_batched_equals_one_at_a_time_greedy(policy: TransformersPolicy, prompts) -> None:
    batched = policy.generate(prompts, max_new_tokens=8, temperature=0)
    single = [policy.generate([p], max_new_tokens=8, temperature=0)[0] for p in prompts]
    assert [g.completion_ids for g in batched] == [g.completion_ids for g in single]
    for a, b in zip(batched, single):
        assert a.finish_reason == b.finish_reason
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4


def test_eos_is_kept_as_sampled(policy: TransformersPolicy, prompts) -> None:
    gen = policy.generate([prompts[0]], max_new_tokens=48, temperature=0)[0]
    # Greedy SmolLM2 answers "What is 2+2?" in one short sentence and ends its turn.
    assert gen.finish_reason == "eos", gen
    assert gen.completion_ids[-1] == policy.tokenizer.eos_token_id and gen.stop == "<|im_end|>"
    assert "<|im_end|>" not in gen.text  # text skips special tokens; the ids keep them


def test_stop_strings_and_per_prompt_limits(policy: TransformersPolicy, prompts) -> None:
    free = policy.generate([prompts[1]], max_new_tokens=16, temperature=0)[0]
    words = free.text.split()
    assert len(words) >= 4, free.text
    stop = words[2]  # a string the greedy completion is known to produce
    stopped, limited = policy.generate(
        [prompts[1], prompts[2]], max_new_tokens=[16, 3], temperature=0, stop=[[stop], []]
    )
    assert stopped.finish_reason == "stop" and stopped.stop == stop
    assert free.completion_ids[: stopped.num_tokens] == stopped.completion_ids  # truncated, not re-tokenized
    assert stop in stopped.text
    # It stopped at the first token that completed the stop string.
    assert stop not in policy.decode(stopped.completion_ids[:-1])
    assert limited.finish_reason == "length" and limited.num_tokens == 3


def test_seeded_determinism(policy: TransformersPolicy, prompts) -> None:
    batch = [prompts[1]] * 3
    first = policy.generate(batch, max_new_tokens=6, temperature=1.0, seed=11)
    again = policy.generate(batch, max_new_tokens=6, temperature=1.0, seed=11)
    assert [g.completion_ids for g in first] == [g.completion_ids for g in again]
    assert [g.logprobs for g in first] == [g.logprobs for g in again]
    # The group members differ from each other (a GRPO group needs diversity) and across seeds.
    assert len({tuple(g.completion_ids) for g in first}) > 1
    other = policy.generate(batch, max_new_tokens=6, temperature=1.0, seed=12)
    assert [g.completion_ids for g in other] != [g.completion_ids for g in first]


def test_bad_input_is_named(policy: TransformersPolicy, prompts) -> None:
    with pytest.raises(ValueError, match=r"batch\[1\]"):
        policy.generate([prompts[0], []], max_new_tokens=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        policy.generate([[10**9]], max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        policy.generate(prompts[:2], max_new_tokens=[2])
    with pytest.raises(ValueError, match="stop"):
        policy.generate(prompts[:2], max_new_tokens=2, stop=[["a"]])
    with pytest.raises(ValueError, match="exceed the model's context"):
        policy.generate([prompts[0]], max_new_tokens=10**6)
    with pytest.raises(ValueError, match="messages"):
        policy.apply_chat_template("hello")  # type: ignore[arg-type]
    assert policy.generate([], max_new_tokens=2) == []


def test_tools_reach_a_template_without_tool_support(policy: TransformersPolicy) -> None:
    tool = {"type": "function", "function": {"name": "math:add", "description": "Add two numbers",
                                             "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}
    messages = [
        {"role": "user", "content": "add 1 and 2"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "math:add", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "content": "3"},
    ]
    text = policy.decode(policy.apply_chat_template(messages, tools=[tool]))
    assert "<tools>" in text and '"math:add"' in text and "Add two numbers" in text
    assert '<tool_call>{"name": "math:add", "arguments": {"a": 1}}</tool_call>' in text
    assert text.rstrip().endswith("assistant")


def test_peft_lora_model_generates_and_updates_in_place(prompts) -> None:
    from peft import LoraConfig, get_peft_model

    base = TransformersPolicy()  # a separate copy: LoRA injection edits the model object
    reference = base.generate(prompts[:2], max_new_tokens=8, temperature=0)
    peft_model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    policy = TransformersPolicy(peft_model, tokenizer=base.tokenizer)
    # LoRA starts as the identity (B = 0): same greedy output as the base model.
    assert [g.completion_ids for g in policy.generate(prompts[:2], max_new_tokens=8, temperature=0)] == [
        g.completion_ids for g in reference
    ]
    # A training step changes the same object in place; the next generation sees it.
    peft_model.train()
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    sampled = policy.generate(prompts[:2], max_new_tokens=8, temperature=1.0, seed=0)
    assert peft_model.training  # the caller's mode is restored
    for prompt, gen in zip(prompts[:2], sampled):
        peft_model.eval()
        expected = rescore(peft_model, prompt, gen.completion_ids, 1.0)
        assert torch.allclose(expected, torch.tensor(gen.logprobs), atol=1e-4)
        with peft_model.disable_adapter():  # the adapter really is in the sampling path
            without_lora = rescore(peft_model, prompt, gen.completion_ids, 1.0)
        assert (without_lora - expected).abs().max() > 1e-2
    updated = policy.generate(prompts[:2], max_new_tokens=8, temperature=0)
    assert [g.completion_ids for g in updated] != [g.completion_ids for g in reference]


# --------------------------------------------------------------------------- OpenAI-compatible endpoint
@pytest.fixture(scope="module")
def server(policy: TransformersPolicy):
    with PolicyServer(policy) as srv:
        yield srv


def test_http_round_trip_records_token_ids(server: PolicyServer, policy: TransformersPolicy) -> None:
    messages = [{"role": "user", "content": QUESTIONS[1]}]
    before = len(server.records)
    with httpx.Client(timeout=60) as client:
        models = client.get(f"{server.base_url}/models").json()
        assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct"]
        resp = client.post(
            f"{server.base_url}/chat/completions",
            json={"model": "anything", "messages": messages, "max_tokens": 8, "temperature": 1.0, "seed": 5,
                  "n": 2, "logprobs": True, "return_token_ids": True},
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        records = client.get(server.base_url.replace("/v1", "/atlas/records"), params={"since": before}).json()["data"]
    assert len(server.records) == before + 1 and len(records) == 1
    record = server.records[-1]
    assert body["id"] == record.id == records[0]["id"]
    assert record.prompt_ids == policy.apply_chat_template(messages) == body["prompt_token_ids"]
    assert len(body["choices"]) == 2 and len(record.completions) == 2
    for choice, done in zip(body["choices"], record.completions):
        assert choice["message"]["content"] == done.text == policy.decode(done.completion_ids)
        assert choice["token_ids"] == done.completion_ids
        assert [t["logprob"] for t in choice["logprobs"]["content"]] == done.logprobs
        expected = rescore(policy.model, record.prompt_ids, done.completion_ids, 1.0)
        assert torch.allclose(expected, torch.tensor(done.logprobs), atol=1e-4)
    assert body["usage"]["prompt_tokens"] == len(record.prompt_ids)
    # The same request again, same seed: the same samples.
    direct = policy.generate([record.prompt_ids] * 2, max_new_tokens=8, temperature=1.0, seed=5)
    assert [g.completion_ids for g in direct] == [c.completion_ids for c in record.completions]


def test_http_errors_are_openai_shaped(server: PolicyServer) -> None:
    with httpx.Client(timeout=30) as client:
        bad = client.post(f"{server.base_url}/chat/completions", json={"messages": []})
        assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
        bad = client.post(f"{server.base_url}/chat/completions", content=b"{not json")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
        bad = client.post(f"{server.base_url}/chat/completions",
                          json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
        assert bad.status_code == 400 and "stream" in bad.json()["error"]["message"]
        assert client.get(f"{server.base_url}/nope").status_code == 404


def test_openai_policy_against_local_server(server: PolicyServer, policy: TransformersPolicy) -> None:
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    with make_policy("openai", base_url=server.base_url, model="smollm2") as remote:
        assert isinstance(remote, OpenAIPolicy) and remote.tokenizer is None
        assert remote.list_models() == ["SmolLM2-135M-Instruct"]
        got = remote.generate_chat(messages, max_new_tokens=12, temperature=0)
        local = policy.generate_chat(messages, max_new_tokens=12, temperature=0)
        assert got.text == local.text == server.records[-1].completions[0].text
        assert got.usage["completion_tokens"] == len(local.completion_ids)
        with pytest.raises(AtlasError, match="token ids"):
            remote.generate([[1, 2, 3]])
        with pytest.raises(AtlasError, match="HTTP 400"):
            remote.generate_chat([], max_new_tokens=4)
    with pytest.raises(AtlasError, match="base_url"):
        OpenAIPolicy("localhost:8000", "m")


def test_openai_client_round_trip(server: PolicyServer, policy: TransformersPolicy) -> None:
    openai = pytest.importorskip("openai", reason="the official openai client is not installed")
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": QUESTIONS[2]}]
    resp = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=6, temperature=0, stop=["\n"])
    record = server.records[-1]
    assert resp.id == record.id
    assert resp.choices[0].message.content == record.completions[0].text
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens == len(record.completions[0].completion_ids)


def test_tool_calls_become_openai_tool_calls(server: PolicyServer, policy: TransformersPolicy) -> None:
    text = '<think>need a sum</think><tool_call>{"name": "math:add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    message, found = assistant_message(text, parse_tools=True, call_id="c")
    assert found and message["content"] == "<think>need a sum</think>"
    assert message["tool_calls"] == [
        {"id": "c_0", "type": "function", "function": {"name": "math:add", "arguments": '{"a": 1, "b": 2}'}}
    ]
    openai = pytest.importorskip("openai", reason="the official openai client is not installed")
    parsed = openai.types.chat.ChatCompletionMessage.model_validate(message)  # the client's own schema
    assert parsed.tool_calls[0].function.name == "math:add"
    # A malformed call, or no tools in the request: the text is returned as written.
    assert assistant_message('<tool_call>{"arguments": {}}</tool_call>', parse_tools=True) == (
        {"role": "assistant", "content": '<tool_call>{"arguments": {}}</tool_call>'}, False)
    assert assistant_message(text, parse_tools=False)[1] is False
    # Over HTTP, the request's tools reach the prompt the policy saw.
    tool = {"type": "function", "function": {"name": "math:add", "parameters": {"type": "object"}}}
    with httpx.Client(timeout=60) as client:
        resp = client.post(f"{server.base_url}/chat/completions", json={
            "messages": [{"role": "user", "content": "add 1 and 2"}], "tools": [tool], "max_tokens": 4,
            "temperature": 0})
    assert resp.status_code == 200, resp.text
    assert '"math:add"' in policy.decode(server.records[-1].prompt_ids)
    assert resp.json()["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


# --------------------------------------------------------------------------- prefix (multi-turn KV) cache
ENV_TEXT = "<|im_start|>user\nTool result: 42. Continue.<|im_end|>\n<|im_start|>assistant\n"


def next_turn(policy: TransformersPolicy, prompt: list[int], gen: Generation, repeats: int = 1) -> list[int]:
    """What the agent does between turns: the sequence so far + sampled ids + environment tokens."""
    env = policy.tokenizer.encode(ENV_TEXT, add_special_tokens=False)
    return prompt + gen.completion_ids + env * repeats


def assert_same(got: list[Generation], expected: list[Generation]) -> None:
    assert [g.completion_ids for g in got] == [g.completion_ids for g in expected]
    for a, b in zip(got, expected):
        assert a.finish_reason == b.finish_reason and a.prompt_len == b.prompt_len
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4, (a.logprobs, b.logprobs)


def test_prefix_cache_multi_turn_greedy_is_exact(policy: TransformersPolicy, prompts) -> None:
    cached = TransformersPolicy(policy.model, tokenizer=policy.tokenizer)  # same weights, own store
    plain = TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache=False)
    turn1 = cached.generate(prompts[:2], max_new_tokens=[3, 6], temperature=0)
    assert cached.prefix_cache_stats["entries"] == 2
    # A batch mixing two cached rows of different cached lengths (and different suffix lengths)
    # with a row that has no cached prefix.
    turn2 = [next_turn(cached, prompts[1], turn1[1], repeats=2), prompts[2], next_turn(cached, prompts[0], turn1[0])]
    before = cached.prefix_cache_stats
    got = cached.generate(turn2, max_new_tokens=5, temperature=0)
    after = cached.prefix_cache_stats
    assert after["hits"] - before["hits"] == 2 and after["misses"] - before["misses"] == 1
    # The off-by-one: the last sampled id of turn 1 was never fed, so it is prefilled now.
    assert after["reused_tokens"] - before["reused_tokens"] == sum(
        len(p) + g.num_tokens - 1 for p, g in zip(prompts[:2], turn1))
    assert_same(got, plain.generate(turn2, max_new_tokens=5, temperature=0))
    # Used entries are gone (each sequence continues once); the three new sequences are stored.
    assert after["entries"] == 3
    # Turn 3 continues from turn 2's cache, including the row that was uncached in turn 2.
    turn3 = [next_turn(cached, p, g) for p, g in zip(turn2, got)]
    assert_same(cached.generate(turn3, max_new_tokens=4, temperature=0),
                plain.generate(turn3, max_new_tokens=4, temperature=0))
    assert cached.prefix_cache_stats["hits"] - after["hits"] == 3
    assert plain.prefix_cache_stats["entries"] == 0 and plain.prefix_cache_stats["hits"] == 0


def test_prefix_cache_sampled_logprobs_match_rescore(policy: TransformersPolicy, prompts) -> None:
    cached = TransformersPolicy(policy.model, tokenizer=policy.tokenizer)
    turn1 = cached.generate(prompts[:2], max_new_tokens=4, temperature=1.0, seed=1)
    turn2 = [next_turn(cached, p, g) for p, g in zip(prompts[:2], turn1)]
    got = cached.generate(turn2, max_new_tokens=6, temperature=0.8, top_p=0.9, seed=2)
    assert cached.prefix_cache_stats["hits"] == 2
    for prompt, gen in zip(turn2, got):
        expected = rescore(policy.model, prompt, gen.completion_ids, 0.8)
        assert torch.allclose(expected, torch.tensor(gen.logprobs), atol=1e-4), (expected, gen.logprobs)


def test_prefix_cache_is_dropped_when_weights_change(prompts) -> None:
    cached = TransformersPolicy()  # its own model: this test edits the weights
    plain = TransformersPolicy(cached.model, tokenizer=cached.tokenizer, prefix_cache=False)
    turn1 = cached.generate(prompts[:2], max_new_tokens=3, temperature=0)
    turn2 = [next_turn(cached, p, g) for p, g in zip(prompts[:2], turn1)]
    stale_reference = plain.generate(turn2, max_new_tokens=4, temperature=0)
    # An optimizer-style in-place update of a base parameter (bumps param._version).
    weight = cached.model.model.layers[3].self_attn.k_proj.weight
    with torch.no_grad():
        weight.add_(0.01)
    got = cached.generate(turn2, max_new_tokens=4, temperature=0)
    stats = cached.prefix_cache_stats
    assert stats["hits"] == 0 and stats["invalidations"] == 1, stats
    fresh = plain.generate(turn2, max_new_tokens=4, temperature=0)
    assert_same(got, fresh)
    # The update really changes the outputs: a stale cache would have been wrong.
    assert max(abs(x - y) for a, b in zip(fresh, stale_reference) for x, y in zip(a.logprobs, b.logprobs)) > 1e-3
    # A write through .data bumps no version counter; the sampled values of trainable params catch it
    # (here every element moves, as an optimizer step moves every element it trains).
    turn3 = [next_turn(cached, p, g) for p, g in zip(turn2, got)]
    with torch.no_grad():
        for param in cached.model.model.layers[5].parameters():
            param.data.mul_(1.01)
    got3 = cached.generate(turn3, max_new_tokens=3, temperature=0)
    assert cached.prefix_cache_stats["hits"] == 0 and cached.prefix_cache_stats["invalidations"] == 2
    assert_same(got3, plain.generate(turn3, max_new_tokens=3, temperature=0))
    # And the explicit way.
    assert cached.prefix_cache_stats["entries"] == 2
    cached.invalidate_cache()
    assert cached.prefix_cache_stats["entries"] == 0 and cached.prefix_cache_stats["invalidations"] == 3


def test_prefix_cache_memory_cap_evicts(policy: TransformersPolicy, prompts) -> None:
    probe = TransformersPolicy(policy.model, tokenizer=policy.tokenizer)
    probe.generate([prompts[0]], max_new_tokens=2, temperature=0)
    per_token = probe.prefix_cache_stats["bytes"] // probe.prefix_cache_stats["tokens"]
    assert per_token == 30 * 2 * 3 * 64 * 4  # layers x (K, V) x kv heads x head dim x float32
    # Room for the longest of the three turn-1 sequences, never for two.
    longest = max(len(p) for p in prompts) + 3
    cap = per_token * (longest + 10)
    capped = TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache_bytes=cap)
    turn1 = capped.generate(prompts, max_new_tokens=3, temperature=0)
    stats = capped.prefix_cache_stats
    assert stats["stored"] == 3 and stats["entries"] == 1 and stats["evictions"] == 2 and stats["bytes"] <= cap
    turn2 = [next_turn(capped, p, g) for p, g in zip(prompts, turn1)]
    got = capped.generate(turn2, max_new_tokens=3, temperature=0)
    assert capped.prefix_cache_stats["hits"] == 1  # only the survivor was reusable
    assert capped.prefix_cache_stats["bytes"] <= cap
    plain = TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache=False)
    assert_same(got, plain.generate(turn2, max_new_tokens=3, temperature=0))
    # A cap of 0 stores nothing; a bad cap is named.
    none = TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache_bytes=0)
    none.generate([prompts[0]], max_new_tokens=2, temperature=0)
    assert none.prefix_cache_stats["entries"] == 0
    with pytest.raises(AtlasError, match="prefix_cache_bytes"):
        TransformersPolicy(policy.model, tokenizer=policy.tokenizer, prefix_cache_bytes=-1)


def test_prefix_cache_identical_rows_each_use_their_own_entry(policy: TransformersPolicy, prompts) -> None:
    cached = TransformersPolicy(policy.model, tokenizer=policy.tokenizer)
    turn1 = cached.generate([prompts[0], prompts[0]], max_new_tokens=2, temperature=0)
    assert turn1[0].completion_ids == turn1[1].completion_ids and cached.prefix_cache_stats["entries"] == 2
    turn2 = [next_turn(cached, prompts[0], g) for g in turn1]
    hits_before = cached.prefix_cache_stats["hits"]  # turn 1's rows read their shared prefill
    got = cached.generate(turn2, max_new_tokens=2, temperature=0)
    stats = cached.prefix_cache_stats
    # Both stored copies were used and evicted; only turn 2's two sequences remain.
    assert stats["hits"] - hits_before == 2 and stats["entries"] == 2 and stats["tokens"] == sum(
        len(p) + g.num_tokens - 1 for p, g in zip(turn2, got))


def test_shared_prefixes_are_kept_only_when_cheaper_than_prefilling_alone() -> None:
    from atlas_plugins.policy.transformers_policy import shared_prefixes

    system = list(range(100, 200))  # 100 shared tokens
    a, b, c = system + [1, 2, 3], system + [4, 5], [7] * 50
    # Fresh rows: the 100-token prefix is prefilled once instead of twice; c shares nothing.
    assert shared_prefixes([a, b, c], [0, 0, 0], min_tokens=8) == [system]
    # Both rows already hold 95 of the 100 tokens: 2 x 5 to prefill alone beats 100 from scratch.
    assert shared_prefixes([a, b], [95, 95], min_tokens=8) == []
    # One fresh row and one that holds it: 100 + 5 alone is more than 100 once.
    assert shared_prefixes([a, b], [0, 95], min_tokens=8) == [system]
    # Below min_tokens nothing is shared.
    assert shared_prefixes([a[:5] + [9], a[:5] + [8]], [0, 0], min_tokens=8) == []
