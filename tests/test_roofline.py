"""The FLOP accounting of benchmarks/roofline.py (pure functions; no model, no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def roofline():
    spec = importlib.util.spec_from_file_location("roofline_bench", ROOT / "benchmarks" / "roofline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_smollm2_dimensions(roofline):
    s = roofline.SMOLLM2_135M
    # 30 x (2 x 576^2 + 2 x 576 x 192 + 3 x 576 x 1536) linear weights; tied 49,152 x 576 embedding.
    assert s.backbone_linear_params == 106_168_320
    assert s.total_params == 134_515_008  # SmolLM2-135M's parameter count
    assert s.kv_bytes_per_token() == 46_080  # 2 x 30 layers x 3 heads x 64 x 4 bytes
    per_token = roofline.forward_flops(s, 1, 0, 1)
    assert per_token["linear"] == pytest.approx(0.2123e9, rel=1e-3)
    assert per_token["head"] == 2 * 576 * 49152
    assert roofline.forward_flops(s, 0, 10, 0)["attention"] == 4 * 30 * 576 * 10


def test_from_config_reads_the_same_shape(roofline):
    class Cfg:
        num_hidden_layers, hidden_size, intermediate_size = 30, 576, 1536
        num_attention_heads, num_key_value_heads, head_dim = 9, 3, 64
        vocab_size, tie_word_embeddings = 49152, True

    assert roofline.ModelShape.from_config(Cfg()) == roofline.SMOLLM2_135M


def test_lora_params(roofline):
    s = roofline.SMOLLM2_135M
    assert roofline.lora_params(s, 16) == 30 * 16 * (1152 + 768 + 768 + 1152 + 3 * 2112)
    assert roofline.lora_params(s, 16, "q_proj,k_proj,v_proj,o_proj") == 30 * 16 * (1152 + 768 + 768 + 1152)
    assert roofline.lora_params(s, 8, ["q_proj"]) == 30 * 8 * 1152


def test_train_flops_lora_backward(roofline):
    s = roofline.SMOLLM2_135M
    fwd = roofline.forward_flops(s, 100, 5000, 40, lora=1000)
    t = roofline.train_flops(s, 100, 5000, 40, lora=1000)
    assert t["forward"] == fwd["total"]
    # frozen weights: activation gradients only (1x), LoRA 2x its forward, attention 2x, head 2x
    expected_bwd = 2 * s.backbone_linear_params * 100 + 4 * 1000 * 100 + 2 * fwd["attention"] + 2 * fwd["head"]
    assert t["backward"] == pytest.approx(expected_bwd)
    assert t["total"] == pytest.approx(fwd["total"] + expected_bwd)
    ck = roofline.train_flops(s, 100, 5000, 40, lora=1000, checkpointing=True)
    assert ck["recompute"] == pytest.approx(fwd["linear"] + fwd["attention"])
    assert ck["total"] == pytest.approx(t["total"] + ck["recompute"])


def test_causal_keys(roofline):
    assert roofline.causal_keys([1, 3]) == 1 + 6
    assert roofline.causal_keys([]) == 0


def test_batch_counts_tree_vs_unshared(roofline):
    pytest.importorskip("torch")
    # one group of two rows: a 3-token prompt, completions of 1 and 2 tokens that differ at once
    seqs = [[1, 2, 3, 4], [1, 2, 3, 5, 6]]
    c = roofline.batch_counts(seqs, [3, 3])
    assert c["unshared_tokens"] == 9
    assert c["tree_tokens"] == 6  # 1 2 3 | 4 | 5 6
    assert c["head_positions"] == 3  # completion tokens only
    assert c["unshared_keys"] == 10 + 15
    assert c["tree_keys"] == (1 + 2 + 3) + 4 + (4 + 5)  # each token attends to its depth + 1 keys
    assert c["trl_padded_tokens"] == 2 * (3 + 2)
    assert c["trl_padded_head"] == 2 * 4
    assert (c["prompt_tokens"], c["completion_tokens"]) == (6, 3)


def test_prefill_counts(roofline):
    pytest.importorskip("torch")
    calls = [
        # turn 1: two identical 3-token prompts, nothing cached
        {"rows": 2, "width": 3, "new": [3, 3], "cached": [0, 0], "seqs": [[7, 8, 9], [7, 8, 9]]},
        # turn 2: 2 new tokens on 5 cached, and 1 on 4 (padded to width 2)
        {"rows": 2, "width": 2, "new": [2, 1], "cached": [5, 4], "seqs": None},
    ]
    c = roofline.prefill_counts(calls)
    assert c["tokens"] == 9 and c["rows"] == 4 and c["padded_tokens"] == 10 and c["head_positions"] == 4
    turn1 = 2 * 6
    turn2 = (2 * 5 + 3) + (1 * 4 + 1)
    assert c["keys"] == turn1 + turn2
    assert c["tree_tokens"] == 3 + 3  # the shared prompt once; cached turns stay as they are
    assert c["tree_keys"] == 6 + turn2


def test_decode_counts_bandwidth_bound(roofline):
    s = roofline.SMOLLM2_135M
    steps = [{"rows": 8, "ctx": [100] * 8}, {"rows": 1, "ctx": [50]}]
    weights = 0.54e9
    c = roofline.decode_counts(steps, s, 0, weights, bandwidth=30e9, peak=200e9)
    assert c["tokens"] == 9 and c["steps"] == 2 and c["mean_rows"] == 4.5
    assert c["bytes"] == pytest.approx(2 * weights + 850 * s.kv_bytes_per_token())
    flops = roofline.forward_flops(s, 8, 800, 8)["total"] + roofline.forward_flops(s, 1, 50, 1)["total"]
    assert c["flops"] == pytest.approx(flops)
    # both steps are bandwidth-bound at these rates: bound = bytes / bandwidth
    assert c["bound_s"] == pytest.approx(c["bytes"] / 30e9)
