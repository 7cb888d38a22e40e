"""Exact shared-prefix computation of per-token log-probabilities (training and reference passes).

A GRPO group's episodes start from the same prompt, and often the same first tokens of their
completions too; within one design many tasks share the system text. Computing each row on its
own repeats all of that in the forward and in the backward. Here the rows of a batch are merged
into a *prefix tree* (a radix tree over their token sequences): every distinct token prefix
appears once, in one packed sequence, and each tree segment attends to the keys and values of
its ancestors plus its own causal past. The outputs are the same per-token log-probs as the
unshared computation, and the gradients are the same, since a shared position's hidden state
feeds every row below it and autograd sums those contributions (the idea of Prefix Grouper,
arXiv 2506.05433, generalised from one shared prompt to a tree).

What is covered:

* :func:`build_tree` makes the layout (packed ids, positions, per-segment key/value index and
  mask, and which hidden state predicts which completion token);
* ``atlas_tree`` is registered as a transformers attention implementation: with a layout in the
  call it runs the tree attention (one ``scaled_dot_product_attention`` per segment); without
  one it *is* ``sdpa`` (generation, evaluation, anything else), so a model can keep it set;
* :func:`tree_logprobs` runs the backbone once over the packed tree and scores only the
  completion positions, with TRL's chunked log-softmax (no ``[tokens, vocab]`` logits held; off
  the GPU in tiles of 1,024 tokens x 8,192 columns, see :func:`logprob_tile`).

It works with gradient checkpointing (the layout travels as a call argument, so a recompute
sees it) and with PEFT/LoRA (adapters are layers of the same modules). Not covered: models
whose attention does not go through transformers' attention interface (use the unshared path),
multimodal inputs, and sliding-window attention (the tree attends to every ancestor token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ATTN_NAME = "atlas_tree"
LAYOUT_KWARG = "atlas_tree_layout"


@dataclass
class Segment:
    """One run of packed positions ``[start, end)`` and what its queries attend to."""

    start: int
    end: int
    kv_index: torch.Tensor | None = None  # packed positions of the keys (ancestors, then itself); None = itself only
    mask: torch.Tensor | None = None  # bool [end-start, len(kv_index)]; None = plain causal over itself


@dataclass
class TreeLayout:
    """A batch of rows as one packed prefix tree."""

    input_ids: torch.Tensor  # [1, L]
    position_ids: torch.Tensor  # [1, L]
    segments: list[Segment]
    gather: torch.Tensor  # [N] packed position whose hidden state predicts target n
    targets: torch.Tensor  # [N] token ids to score
    rows: torch.Tensor  # [N] row of target n
    cols: torch.Tensor  # [N] completion column of target n
    unshared_tokens: int = 0  # tokens the rows hold without sharing (for metrics)
    packed_tokens: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def build_tree(
    sequences: list[list[int]],
    prompt_lengths: list[int] | None = None,
    device: torch.device | str = "cpu",
    *,
    targets: list[list[int]] | None = None,
) -> TreeLayout:
    """The prefix tree of ``sequences`` (each a row's real tokens: prompt then completion).

    Targets are every completion token of every row (token ``t >= prompt_lengths[i]``, scored
    from the hidden state at ``t - 1``; ``cols`` is ``t - prompt_lengths[i]``), or, with
    ``targets``, the listed token positions of each row (``cols`` is then the index in that list).
    """
    if (prompt_lengths is None) == (targets is None):
        raise ValueError("give either prompt_lengths or targets")
    arrays = [np.asarray(s, dtype=np.int64) for s in sequences]
    tokens: list[np.ndarray] = []
    seg_ranges: list[tuple[int, int, int]] = []  # (start, end, parent segment index or -1)
    depths: list[int] = []
    paths: list[list[np.ndarray]] = [[] for _ in arrays]
    cursor = 0
    # (rows sharing tokens[:depth], depth, parent segment); a stack keeps it iterative
    stack: list[tuple[list[int], int, int]] = [([i for i, a in enumerate(arrays) if len(a)], 0, -1)]
    while stack:
        idx, depth, parent = stack.pop()
        first = arrays[idx[0]]
        lcp = len(first) - depth
        for r in idx[1:]:
            a = arrays[r]
            n = min(len(first), len(a)) - depth
            diff = np.flatnonzero(first[depth : depth + n] != a[depth : depth + n])
            lcp = min(lcp, int(diff[0]) if len(diff) else n)
            if lcp == 0:
                break
        here = parent
        if lcp > 0:
            here = len(seg_ranges)
            seg_ranges.append((cursor, cursor + lcp, parent))
            depths.append(depth)
            tokens.append(first[depth : depth + lcp])
            span = np.arange(cursor, cursor + lcp)
            for r in idx:
                paths[r].append(span)
            cursor += lcp
        end = depth + lcp
        by_next: dict[int, list[int]] = {}
        for r in idx:
            if len(arrays[r]) > end:
                by_next.setdefault(int(arrays[r][end]), []).append(r)
        # Reverse so that the pops keep the rows' order (deterministic packing).
        for group in reversed(list(by_next.values())):
            stack.append((group, end, here))

    packed = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64)
    positions = (
        np.concatenate([np.arange(d, d + (e - s)) for (s, e, _), d in zip(seg_ranges, depths, strict=True)])
        if tokens
        else packed
    )
    segments: list[Segment] = []
    for s, e, parent in seg_ranges:
        chain: list[tuple[int, int]] = []
        p = parent
        while p >= 0:
            chain.append(seg_ranges[p][:2])
            p = seg_ranges[p][2]
        if not chain:
            segments.append(Segment(s, e))
            continue
        chain.reverse()
        anc = np.concatenate([np.arange(a, b) for a, b in chain])
        n = e - s
        mask = torch.ones(n, len(anc) + n, dtype=torch.bool, device=device)
        mask[:, len(anc) :] = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        kv = torch.as_tensor(np.concatenate([anc, np.arange(s, e)]), device=device)
        segments.append(Segment(s, e, kv, mask))

    gather, wanted, rows, cols = [], [], [], []
    for i, a in enumerate(arrays):
        path = np.concatenate(paths[i]) if paths[i] else np.zeros(0, dtype=np.int64)
        if targets is not None:
            t = np.asarray(targets[i], dtype=np.int64)
            if len(t) and (t.min() < 1 or t.max() >= len(a)):
                raise ValueError(f"row {i}: target positions must lie in [1, {len(a)})")
            col = np.arange(len(t))
        else:
            assert prompt_lengths is not None
            t = np.arange(max(1, prompt_lengths[i]), len(a))  # a completion token needs a token before it
            col = t - prompt_lengths[i]
        gather.append(path[t - 1])
        wanted.append(a[t])
        rows.append(np.full(len(t), i))
        cols.append(col)

    def cat(xs: list[np.ndarray]) -> torch.Tensor:
        return torch.as_tensor(np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64), device=device)

    return TreeLayout(
        input_ids=torch.as_tensor(packed, device=device).unsqueeze(0),
        position_ids=torch.as_tensor(positions, device=device).unsqueeze(0),
        segments=segments,
        gather=cat(gather),
        targets=cat(wanted),
        rows=cat(rows),
        cols=cat(cols),
        unshared_tokens=int(sum(len(a) for a in arrays)),
        packed_tokens=int(len(packed)),
    )


def tree_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The ``atlas_tree`` attention: tree attention when the call carries a layout, else sdpa."""
    layout: TreeLayout | None = kwargs.pop(LAYOUT_KWARG, None)
    if layout is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    outs = []
    for seg in layout.segments:
        q = query[:, :, seg.start : seg.end]
        if seg.kv_index is None:
            k, v = key[:, :, seg.start : seg.end], value[:, :, seg.start : seg.end]
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa)
        else:
            k, v = key.index_select(2, seg.kv_index), value.index_select(2, seg.kv_index)
            o = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=seg.mask, scale=scaling, enable_gqa=gqa
            )
        outs.append(o)
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Register ``atlas_tree`` with transformers (idempotent): attention and its mask function."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if ATTN_NAME not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(ATTN_NAME, tree_attention)
    if ATTN_NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)  # the sdpa fallback needs sdpa's masks


_LOGIT_SCALING = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def supports(model: PreTrainedModel) -> bool:
    """Whether the tree path computes exactly what ``model`` does: its attention dispatches through
    transformers' interface, it has no sliding window, and its LM head is a plain projection (no
    logit scaling or soft-capping, which the tree path does not apply)."""
    config = model.config.get_text_config()
    plain_head = all(getattr(config, name, None) is None for name in _LOGIT_SCALING)
    return (
        bool(getattr(model, "_supports_attention_backend", False))
        and plain_head
        and not getattr(config, "sliding_window", None)
    )


def enable(model: PreTrainedModel) -> None:
    """Switch ``model`` (a transformers model, not a PEFT wrapper) to ``atlas_tree`` attention."""
    register()
    model.set_attn_implementation(ATTN_NAME)


def tree_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, TreeLayout]:
    """Per-token log-probs (and entropies) of the completion part of a TRL batch, computed over
    its prefix tree. ``input_ids``/``attention_mask`` are TRL's ``[B, P + C]`` (prompts left-padded,
    completions right-padded), ``logits_to_keep`` is ``C``. Returns ``[B, C]`` tensors (0 on
    padding) and the layout. ``model`` is the transformers model (PEFT's base model is fine)."""
    B, total = input_ids.shape
    P = total - logits_to_keep
    ids, mask = input_ids.tolist(), attention_mask.bool().tolist()
    sequences = [[t for t, m in zip(ids[i], mask[i], strict=True) if m] for i in range(B)]
    prompt_lengths = [sum(mask[i][:P]) for i in range(B)]
    layout = build_tree(sequences, prompt_lengths, device=input_ids.device)
    logps_flat, entropy_flat = score_tree(model, layout, temperature=temperature, compute_entropy=compute_entropy)
    logps = logps_flat.new_zeros(B, logits_to_keep).index_put((layout.rows, layout.cols), logps_flat)
    entropy = None
    if compute_entropy and entropy_flat is not None:
        entropy = entropy_flat.new_zeros(B, logits_to_keep).index_put((layout.rows, layout.cols), entropy_flat)
    return logps, entropy, layout


# Log-softmax tiles off the GPU. TRL's chunked log-prob kernel scores ``4,096 tokens x 32,768
# vocabulary columns`` per tile. On a GPU one Triton program folds a tile in registers; elsewhere
# it runs as torch ops that hold several tile-sized fp32 temporaries at once (the tile, its
# scaled and shifted copies, the probabilities, the gradient): 0.5 GiB each at that size, several
# GiB in the backward, and the largest allocation of a CPU training step. Smaller tiles compute
# the same log-softmax, in a different order of the same sums.
CPU_TILE_TOKENS = 1024
CPU_TILE_COLUMNS = 8192
# Tile-sized fp32 temporaries held at once (benchmarks/logprob_tiles.py measured ~8.6 on a CPU;
# on CUDA the Triton kernel keeps a tile in registers).
CPU_TILE_COPIES = 9.5
CUDA_TILE_COPIES = 1.5


def trl_logprob_tile() -> tuple[None, int]:
    """TRL's own tile: its token chunking (``None``) and its vocabulary chunk."""
    from trl.trainer import utils as trl_utils

    return None, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE


def logprob_tile(device: torch.device) -> tuple[int | None, int]:
    """``(tokens, vocabulary columns)`` per log-softmax tile on ``device``; ``None`` tokens means
    TRL's own token chunking (on CUDA, where its Triton kernel needs no temporaries)."""
    if device.type == "cuda":
        return trl_logprob_tile()
    return CPU_TILE_TOKENS, CPU_TILE_COLUMNS


def logprob_footprint(device: torch.device) -> tuple[tuple[int, int], float]:
    """What the memory plan counts for the log-softmax on ``device``: the tile in tokens and
    columns (TRL's token chunk where the tile leaves tokens to TRL) and its copies held at once."""
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE

    tokens, columns = logprob_tile(device)
    copies = CUDA_TILE_COPIES if device.type == "cuda" else CPU_TILE_COPIES
    return (tokens or TOKEN_CHUNK_SIZE, columns), copies


def score_tree(
    model: PreTrainedModel, layout: TreeLayout, *, temperature: float = 1.0, compute_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of ``layout.targets``, flat, from one pass over the packed tree."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=layout.input_ids, position_ids=layout.position_ids, use_cache=False, **{LAYOUT_KWARG: layout}
    ).last_hidden_state[0]
    head = model.get_output_embeddings()
    return target_logprobs(
        hidden.index_select(0, layout.gather),
        head.weight,
        head.bias,
        layout.targets,
        temperature=temperature,
        compute_entropy=compute_entropy,
    )


def target_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    tile: tuple[int | None, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log_softmax(hidden @ weight.T + bias)[n, targets[n]]`` (and each row's entropy) without
    the ``[N, vocab]`` logits: TRL's chunked kernel, in ``tile`` sized pieces (default
    :func:`logprob_tile`)."""
    from trl.kernels import ChunkedLogProbFunction

    tokens, columns = tile or logprob_tile(hidden.device)
    step = tokens or max(1, len(hidden))
    outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
    logps, entropies = [], []
    # One autograd node per token slice: each slice's backward recomputes only its own tiles.
    # ``split`` (not indexing) so the slices' gradients join in one concatenation.
    for hidden_part, targets_part in zip(hidden.split(step), targets.split(step), strict=True):
        logps_part, entropy_part, *_ = ChunkedLogProbFunction.apply(
            hidden_part,
            weight,
            bias,
            targets_part,
            temperature,
            columns,
            None,  # no soft-capping and no logit scale: see supports()
            1.0,
            outputs,
        )
        logps.append(logps_part)
        entropies.append(entropy_part)
    logps_flat = logps[0] if len(logps) == 1 else torch.cat(logps)
    if not compute_entropy:
        return logps_flat, None
    return logps_flat, (entropies[0] if len(entropies) == 1 else torch.cat(entropies))
