"""Recording other frameworks' model calls: append-only rendering, stitching into segments,
the trainer's training view, and batching concurrent callers (real embedded SmolLM2-135M)."""

from __future__ import annotations

import random
import threading

import pytest

torch = pytest.importorskip("torch", reason="the recorder tests need the 'train' extra (torch)")

# Loads the embedded model (or trains): left out of `make test-fast`.
pytestmark = pytest.mark.slow

from atlas_plugins.agent.recorder import ChatRenderer, LLMCall, stitch, token_fields  # noqa: E402
from atlas_plugins.policy.batching import BatchedPolicy  # noqa: E402
from atlas_plugins.policy.transformers_policy import TransformersPolicy  # noqa: E402
from atlas_plugins.training.trainer import training_view  # noqa: E402
from atlas_plugins.types import Trajectory  # noqa: E402




@pytest.fixture(scope="module")
def policy() -> TransformersPolicy:
    return TransformersPolicy()


def _call(policy, renderer, messages, tools=None, seed=0):
    ids, continued = renderer.prompt_ids(messages, tools)
    gen = policy.generate([ids], max_new_tokens=12, temperature=1.0, seed=seed)[0]
    reply = {"role": "assistant", "content": gen.text.removesuffix(policy.tokenizer.eos_token or "\0")}
    renderer.remember(messages, tools, ids, gen.completion_ids, gen.text, reply)
    return LLMCall(messages=messages, tools=tools, prompt_ids=ids, completion_ids=gen.completion_ids,
                   logprobs=gen.logprobs, text=gen.text, continued=continued), reply


def test_continued_conversation_is_a_prefix_extension(policy) -> None:
    renderer = ChatRenderer(policy)
    msgs = [{"role": "system", "content": "You help."}, {"role": "user", "content": "Add 2 and 3."}]
    first, reply = _call(policy, renderer, msgs)
    assert not first.continued
    assert first.prompt_ids == policy.apply_chat_template(msgs)
    msgs2 = msgs + [reply, {"role": "tool", "content": '{"result": 5}'}]
    second, reply2 = _call(policy, renderer, msgs2, seed=1)
    assert second.continued
    # The second prompt is the first prompt + the *sampled* ids + the template's tool turn.
    head = first.prompt_ids + first.completion_ids
    assert second.prompt_ids[: len(head)] == head
    assert '{"result": 5}' in policy.tokenizer.decode(second.prompt_ids[len(head):])
    third, _ = _call(policy, renderer, msgs2 + [reply2, {"role": "user", "content": "Thanks"}], seed=2)
    assert third.continued

    segs = stitch([first, second, third])
    assert len(segs) == 1
    seg = segs[0]
    # Model tokens are exactly the sampled ids, in order; everything else is masked.
    sampled = [t for t, m in zip(seg.completion_ids, seg.env_mask) if m == 1]
    assert sampled == first.completion_ids + second.completion_ids + third.completion_ids
    lps = [lp for lp, m in zip(seg.logprobs, seg.env_mask) if m == 1]
    assert lps == first.logprobs + second.logprobs + third.logprobs
    assert all(lp == 0.0 for lp, m in zip(seg.logprobs, seg.env_mask) if m == 0)
    assert seg.prompt_ids + seg.completion_ids == third.prompt_ids + third.completion_ids


def test_rewritten_history_is_a_prefix_break(policy) -> None:
    renderer = ChatRenderer(policy)
    msgs = [{"role": "user", "content": "Name a colour."}]
    first, reply = _call(policy, renderer, msgs)
    # The framework edits the assistant turn before sending it back: not a continuation.
    edited = msgs + [{"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]
    second, _ = _call(policy, renderer, edited, seed=3)
    assert not second.continued
    fields = token_fields([first, second])
    assert fields["prefix_breaks"] == 1 and len(fields["segments"]) == 2
    assert fields["prompt_ids"] == first.prompt_ids and fields["completion_ids"] == first.completion_ids

    traj = Trajectory(task_id="t", **fields)
    picked = {training_view(traj, random.Random(s))["prompt_ids"] == second.prompt_ids for s in range(20)}
    assert picked == {True, False}  # both segments get drawn
    row = training_view(traj, random.Random(0), max_completion_length=3)
    assert len(row["completion_ids"]) == len(row["env_mask"]) == len(row["logprobs"]) == 3
    assert traj.metadata["truncated_completion"] > 3


def test_batched_policy_merges_concurrent_callers(policy) -> None:
    batched = BatchedPolicy(policy, max_wait_ms=2000)
    questions = ["What is 2+2?", "Name a fruit.", "Say hello.", "Count to three."]
    prompts = [policy.apply_chat_template([{"role": "user", "content": q}]) for q in questions]
    alone = [policy.generate([p], max_new_tokens=6, temperature=0)[0].completion_ids for p in prompts]
    results: dict[int, list[int]] = {}
    start = threading.Barrier(len(prompts))

    def worker(i: int) -> None:
        with batched.episode():
            start.wait()
            results[i] = batched.generate([prompts[i]], max_new_tokens=6, temperature=0)[0].completion_ids

    with batched.episode():  # hold registrations open until every worker has registered
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
    for t in threads:
        t.join(timeout=120)
    assert batched.batch_sizes == [4]  # one underlying call for all four episodes
    assert [results[i] for i in range(len(prompts))] == alone  # each caller got its own completion


def test_batched_policy_isolates_a_bad_caller(policy) -> None:
    batched = BatchedPolicy(policy, max_wait_ms=500)
    good = policy.apply_chat_template([{"role": "user", "content": "Hi"}])
    out: dict[str, object] = {}

    def run(tag: str, prompt) -> None:
        with batched.episode():
            try:
                out[tag] = batched.generate([prompt], max_new_tokens=3, temperature=0)[0].completion_ids
            except ValueError as exc:
                out[tag] = exc

    threads = [threading.Thread(target=run, args=("good", good)), threading.Thread(target=run, args=("bad", [10**9]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert isinstance(out["bad"], ValueError) and "vocabulary" in str(out["bad"])
    assert isinstance(out["good"], list) and len(out["good"]) >= 1
