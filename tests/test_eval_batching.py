"""Evaluation batched across tasks: greedy episodes played together through one policy (with
the system text's K/V shared between tasks) give the same tokens as one episode at a time."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs the train extra (torch, transformers)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup():
    import atlas_plugins as atlas
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.evaluation.suites.embedded import round_robin
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    # Two timezones tasks (same server: one shared system text), one shop and one weather task.
    level1 = [t for t in load_default_tasks("heldout") if t.difficulty == 1]
    tz = [t for t in level1 if t.servers == ["timezones"]][:2]
    tasks = tz + [t for t in round_robin(level1) if t.servers != ["timezones"]][:2]
    servers = sorted({s for t in tasks for s in t.servers})
    with atlas.Toolspace.default(servers=servers) as ts:
        yield ts, tasks, TransformersPolicy("embedded")


@pytest.mark.parametrize("design", ["itl", "eager"])
def test_batched_greedy_evaluation_equals_one_at_a_time(setup, design):
    from atlas_plugins.evaluation.episodes import play_design

    ts, tasks, policy = setup
    if design == "eager":  # every schema in the prompt: the two same-server tasks are enough (and 4x cheaper)
        tasks = [t for t in tasks if t.servers == ["timezones"]]
    overrides = {"max_turns": 2, "max_tool_calls": 2, "max_new_tokens": 16}
    before = dict(policy.prefix_cache_stats)
    batched = play_design(policy, ts, tasks, design, **overrides)
    shared = policy.prefix_cache_stats["shared_prefills"] - before["shared_prefills"]
    alone = [play_design(policy, ts, [t], design, **overrides)[0] for t in tasks]
    for b, a in zip(batched, alone):
        assert b.task_id == a.task_id
        assert b.completion_ids == a.completion_ids, f"{design} {b.task_id}: batched and alone differ"
        assert b.final_answer == a.final_answer
    # Tasks on the same server share their system text: it was prefilled once for the batch.
    by_server: dict[tuple[str, ...], int] = {}
    for t in tasks:
        by_server[tuple(t.servers)] = by_server.get(tuple(t.servers), 0) + 1
    assert any(n > 1 for n in by_server.values()) and shared >= 1


def test_merged_adapters_generate_the_same_and_restore_the_weights(setup):
    """Folding LoRA into the weights for generation gives the same greedy tokens, and the
    weights after unfolding equal the weights before (up to float rounding)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from atlas_plugins.policy.transformers_policy import TransformersPolicy, merged_adapters

    _, _, base_policy = setup
    model = get_peft_model(base_policy.model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                         task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    try:
        policy = TransformersPolicy(model=model, tokenizer=base_policy.tokenizer, prefix_cache=False)
        prompts = [policy.apply_chat_template([{"role": "user", "content": f"Count to {n}."}]) for n in (3, 5)]
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        plain = policy.generate(prompts, max_new_tokens=12, temperature=0)
        with merged_adapters(model):
            assert all(getattr(m, "merged", True) for m in model.modules() if hasattr(m, "merged_adapters"))
            merged = policy.generate(prompts, max_new_tokens=12, temperature=0)
        assert [g.completion_ids for g in merged] == [g.completion_ids for g in plain]
        for n, p in model.named_parameters():
            assert (p.detach() - before[n]).abs().max().item() < 1e-5, n
    finally:
        model.unload()  # the module fixture's base model goes back to having no adapters
