"""Exact shared-prefix scoring: the same per-token log-probs, loss and LoRA gradients as TRL's
own unshared path, on the embedded SmolLM2-135M (fp32), for single-turn and multi-turn batches
(environment tokens masked out of the loss), shuffled rows, and with gradient checkpointing."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch", reason="the shared-prefix path needs the train extra (torch)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_model():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from atlas_plugins.policy.embedded import resolve_model_path
    from atlas_plugins.training import shared_prefix

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("embedded"), dtype=torch.float32)
    assert shared_prefix.supports(base)
    add_fused_lm_head(base, temperature=0.7, outputs=("log_probs", "entropy"))  # TRL's own path: the oracle
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero adapters, so LoRA gradients reach every layer
            torch.nn.init.normal_(p, std=0.02)
    shared_prefix.enable(model.get_base_model())
    model.train()
    return model


def _batch(seed: int, *, multi_turn: bool):
    """Two GRPO groups of 3 (prompts of 40 and 25 tokens), completions that share first tokens
    within a group, rows shuffled; in multi-turn rows an env block sits between model turns."""
    rng = random.Random(seed)

    def toks(n):
        return [rng.randrange(100, 49_000) for _ in range(n)]

    rows = []
    for prompt in (toks(40), toks(25)):
        opening = toks(6)
        for g in range(3):
            completion, env = (opening if g < 2 else []) + toks(rng.randint(4, 12)), []
            env = [0] * len(completion)
            if multi_turn:
                obs = toks(rng.randint(8, 20))
                more = toks(rng.randint(3, 9))
                completion, env = completion + obs + more, env + [1] * len(obs) + [0] * len(more)
            rows.append((prompt, completion, env))
    rng.shuffle(rows)
    P, C = max(len(p) for p, _, _ in rows), max(len(c) for _, c, _ in rows)
    ids = torch.zeros(len(rows), P + C, dtype=torch.long)
    am = torch.zeros_like(ids)
    tool = torch.ones(len(rows), C)
    for i, (p, c, env) in enumerate(rows):
        ids[i, P - len(p) : P], am[i, P - len(p) : P] = torch.tensor(p), 1
        ids[i, P : P + len(c)], am[i, P : P + len(c)] = torch.tensor(c), 1
        tool[i, : len(c)] = 1 - torch.tensor(env, dtype=torch.float)
    loss_mask = am[:, P:].float() * tool
    return ids, am, C, loss_mask


def _loss_and_grads(model, logps, loss_mask, adv):
    loss = -(logps * adv * loss_mask).sum() / loss_mask.sum()
    model.zero_grad()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("multi_turn", [False, True], ids=["single-turn", "multi-turn"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_tree_matches_unshared_logps_loss_and_lora_grads(lora_model, multi_turn, checkpointing):
    from atlas_plugins.training import shared_prefix

    model = lora_model
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        ids, am, C, loss_mask = _batch(1 + multi_turn, multi_turn=multi_turn)
        adv = torch.randn(ids.shape[0], 1, generator=torch.Generator().manual_seed(3))
        labels = ids.masked_fill(am == 0, -100)
        labels[:, :-C] = -100
        ref = model(input_ids=ids, attention_mask=am, labels=labels, fused_lm_head=True)
        ref_lp, ref_ent = ref.log_probs[:, -C:], ref.entropy[:, -C:]
        ref_loss, ref_grads = _loss_and_grads(model, ref_lp, loss_mask, adv)
        lp, ent, layout = shared_prefix.tree_logprobs(model.get_base_model(), ids, am, C, temperature=0.7,
                                                      compute_entropy=True)
        loss, grads = _loss_and_grads(model, lp, loss_mask, adv)
    finally:
        model.gradient_checkpointing_disable()
    valid = am[:, -C:].bool()
    assert layout.packed_tokens < layout.unshared_tokens  # something was shared
    assert (lp - ref_lp)[valid].abs().max().item() < 1e-4  # |logp| ~ 10 here: ~1e-6 relative
    assert (ent - ref_ent)[valid].abs().max().item() < 1e-4
    assert abs(loss - ref_loss) < 1e-5
    assert set(grads) == set(ref_grads) and len(grads) > 100  # every LoRA matrix got a gradient
    for name, g in ref_grads.items():
        assert (grads[name] - g).abs().max().item() < 1e-5, name


def test_tree_reference_pass_without_grad_and_with_adapter_disabled(lora_model):
    """The reference pass runs under no_grad with the adapter disabled (TRL's ``use_adapter``)."""
    from atlas_plugins.training import shared_prefix

    ids, am, C, _ = _batch(7, multi_turn=True)
    labels = ids.masked_fill(am == 0, -100)
    labels[:, :-C] = -100
    with torch.no_grad(), lora_model.disable_adapter():
        ref = lora_model(input_ids=ids, attention_mask=am, labels=labels, fused_lm_head=True).log_probs[:, -C:]
        lp, _, _ = shared_prefix.tree_logprobs(lora_model.get_base_model(), ids, am, C, temperature=0.7)
    assert (lp - ref)[am[:, -C:].bool()].abs().max().item() < 1e-4


def test_build_tree_shares_prefixes_and_keeps_every_target():
    from atlas_plugins.training.shared_prefix import build_tree

    rows = [[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3, 4, 5], [7, 8]]
    layout = build_tree(rows, prompt_lengths=[3, 3, 3, 1])
    assert layout.packed_tokens == 3 + 2 + 1 + 2  # [1,2,3] once, then [4,5], [9], [7,8]
    assert layout.targets.tolist() == [4, 5, 9, 4, 5, 8]
    packed = layout.input_ids[0].tolist()
    # Each target is predicted from the packed position of the token before it.
    for g, t, r, c in zip(layout.gather.tolist(), layout.targets.tolist(), layout.rows.tolist(), layout.cols.tolist()):
        assert packed[g] == rows[r][[3, 3, 3, 1][r] + c - 1] and rows[r][[3, 3, 3, 1][r] + c] == t
    assert layout.position_ids[0].tolist() == [0, 1, 2, 3, 4, 3, 0, 1]


@pytest.mark.parametrize("tile", [(7, 1000), (64, 4096), (None, 3000)])
def test_log_softmax_tiles_give_the_same_logprobs_entropies_and_gradients(tile):
    """Scoring in small tiles (the CPU default is 1,024 tokens x 8,192 columns) is the same
    log-softmax as TRL's whole-batch call and as a plain ``log_softmax`` over full logits; with
    token slices that do not divide the batch and columns that do not divide the vocabulary."""
    from atlas_plugins.training.shared_prefix import target_logprobs

    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(5003, 48, generator=gen, dtype=torch.float64).float() * 0.3
    bias = torch.randn(5003, generator=gen).float() * 0.1
    hidden = torch.randn(150, 48, generator=gen).requires_grad_(True)
    targets = torch.randint(0, 5003, (150,), generator=gen)
    up = torch.randn(150, generator=gen)  # an arbitrary upstream gradient for both outputs

    def grads(fn):
        hidden.grad = None
        logps, entropy = fn()
        ((logps * up).sum() + (entropy * up.flip(0)).sum()).backward()
        return logps.detach(), entropy.detach(), hidden.grad.clone()

    def plain():
        logits = (hidden @ weight.T + bias) / 0.7
        logp = logits.log_softmax(-1)
        return logp.gather(1, targets[:, None])[:, 0], -(logp.exp() * logp).sum(-1)

    def tiled():
        return target_logprobs(hidden, weight, bias, targets, temperature=0.7, compute_entropy=True, tile=tile)

    for want, got in zip(grads(plain), grads(tiled), strict=True):
        assert torch.allclose(want, got, atol=1e-5, rtol=1e-5), (want - got).abs().max()
    logps_only, no_entropy = target_logprobs(hidden, weight, bias, targets, temperature=0.7, tile=tile)
    assert no_entropy is None and torch.allclose(logps_only, grads(plain)[0], atol=1e-5)


def test_cpu_log_softmax_tiles_are_bounded():
    """Off the GPU a tile is at most 1,024 x 8,192 fp32 (32 MiB), whatever the batch: TRL's own
    4,096 x 32,768 tiles held several 512 MiB temporaries at once on a CPU."""
    from atlas_plugins.training.shared_prefix import logprob_tile

    tokens, columns = logprob_tile(torch.device("cpu"))
    assert tokens is not None and tokens * columns * 4 <= 32 * 2**20
