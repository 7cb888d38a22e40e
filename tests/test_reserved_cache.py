"""The decode loop's reserved K/V cache: same attention inputs as transformers' DynamicLayer
(which re-copies the whole cache per token), same greedy tokens and logprobs from the model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch, transformers)")

from transformers.cache_utils import DynamicCache, DynamicLayer  # noqa: E402

from atlas_plugins.policy.reserved_cache import ReservedLayer, reserve  # noqa: E402


def _kv(b: int, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, t, 8, generator=g), torch.randn(b, 3, t, 8, generator=g)


def test_reserved_layer_matches_dynamic_layer_through_updates_selection_and_growth():
    k, v = _kv(4, 5, 0)
    plain, reserved = DynamicLayer(), None
    plain.update(k, v)
    reserved = ReservedLayer(k, v, extra=3)
    assert reserved.capacity == 8 and reserved.get_seq_length() == 5
    for step in range(6):  # three steps past the reservation: the buffer grows
        nk, nv = _kv(plain.keys.shape[0], 1, step + 1)
        pk, pv = plain.update(nk, nv)
        rk, rv = reserved.update(nk, nv)
        assert torch.equal(pk, rk) and torch.equal(pv, rv)
        assert reserved.get_seq_length() == plain.get_seq_length()
        if step == 1:  # rows finish: both drop them
            idx = torch.tensor([0, 2, 3])
            plain.batch_select_indices(idx)
            reserved.batch_select_indices(idx)
    assert reserved.capacity >= reserved.get_seq_length() == 11
    reserved.crop(-2)
    plain.crop(-2)
    assert torch.equal(plain.keys, reserved.keys)
    with pytest.raises(ValueError, match="negative"):
        reserved.crop(1)


def test_reserve_swaps_only_plain_filled_layers():
    k, v = _kv(2, 4, 0)
    cache = DynamicCache(ddp_cache_data=[(k, v), (k.clone(), v.clone())])
    assert reserve(cache, 0) == 0
    assert reserve(cache, 16) == 2 and all(isinstance(layer, ReservedLayer) for layer in cache.layers)
    assert reserve(cache, 16) == 0  # already reserved
    assert torch.equal(cache.layers[0].keys, k)


@pytest.mark.slow
def test_greedy_decode_with_reserved_cache_equals_transformers_cache():
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    policy = TransformersPolicy("embedded", prefix_cache=False)
    texts = ["List three colours.", "What is 2 + 2? Answer briefly.", "Name a city in France."]
    prompts = [policy.apply_chat_template([{"role": "user", "content": t}]) for t in texts]
    runs = {}
    for flag in (True, False):
        policy.reserve_kv = flag
        runs[flag] = policy.generate(prompts, max_new_tokens=[12, 30, 20], temperature=0)
    for a, b in zip(runs[True], runs[False], strict=True):
        assert a.completion_ids == b.completion_ids and a.finish_reason == b.finish_reason
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
