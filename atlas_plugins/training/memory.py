"""How much memory a GRPO step needs, from its token counts — and what follows from it.

An adapted agent with a realistic tool set starts every episode from a long prompt (19 MCP tools
are ~2,400 tokens), and a step then trains a batch of rows of that length. Nothing about that is
known before the rollouts; afterwards every row's length is. So, on every step, between the
rollouts and the first training forward, :func:`plan_step`:

1. estimates the peak memory of the step's training pass from the rows' token counts and the
   model's shape (:func:`estimate`), with and without activation (gradient) checkpointing;
2. measures the memory available now (:func:`available_bytes`: ``MemAvailable`` on the CPU,
   free device memory on a GPU; the model and optimizer already hold theirs);
3. decides: no checkpointing when the step fits without it (recomputing activations only slows
   the backward pass), checkpointing when it fits only with it, and a clear
   :class:`~atlas_plugins.errors.AtlasError` — naming the sizes and the settings to lower — when
   it fits in neither way, instead of the kernel's silent kill minutes later.

The estimate (bytes, ``b`` the parameter dtype's size, per micro-batch of
``per_device_train_batch_size`` rows):

* tokens processed ``N``: the padded batch ``rows x longest row``, or, when the trainer scores the
  batch as a shared-prefix tree, the distinct prefix tokens of the tree;
* stored activations of one decoder layer per token: ``b (9 H + 5 I)`` (hidden ``H``,
  intermediate ``I``: norms, q/k/v, attention output, residuals, MLP gates) — ``L`` layers of them
  without checkpointing, ``L`` layer inputs (``b H`` per token) plus one recomputed layer with it;
* attention weights, where attention materialises them (the CPU's SDPA with a padding or tree
  mask, or eager attention; not flash/memory-efficient kernels on a GPU): ``N x T x heads x b``
  per layer (``T`` the longest row), 1.5 times per layer kept without checkpointing, 3 times for
  the one recomputed layer with it;
* logits: ``rows x completion x vocab x 4 x 2.5`` on the padded path (fp32 logits, log-softmax and
  its gradient); on the tree path, TRL's chunked log-softmax holds tile-sized fp32 temporaries
  instead: ``tile_copies x tile tokens x tile columns x 4`` (measured on a CPU, where the tile's
  softmax runs as torch ops, with ``benchmarks/logprob_tiles.py``: the peaks of four tile sizes
  fit about 8.6 tiles plus ~0.37 GiB the benchmark itself held; the estimate counts 9.5, so
  4.75 GiB at TRL's own 4,096 x 32,768 tiles and 0.3 GiB at the CPU's 1,024 x 8,192; on CUDA,
  TRL's Triton kernel keeps a tile in registers and the trainer counts 1.5);
* gradients of the trainable parameters, and on the first step the Adam moments (``2 x 4`` bytes
  per trainable parameter) that are not allocated yet.

On SmolLM2-135M, CPU, fp32, 8 rows of ~2,800 tokens (a 2,407-token prompt): the estimate is
~150 GB without checkpointing (the run was killed at 22 GB) and ~10 GB with it, on top of the
~2–3 GB the process already holds (14.3 GB measured).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from atlas_plugins.errors import AtlasError

__all__ = ["MemoryEstimate", "StepPlan", "available_bytes", "estimate", "plan_step", "prefix_tokens"]

GB = 1024**3


@dataclass
class MemoryEstimate:
    """Peak bytes of one micro-batch's training pass, with and without checkpointing."""

    rows: int
    tokens: int  # tokens the forward processes (padded batch, or distinct tree tokens)
    completion_tokens: int
    without_checkpointing: int
    with_checkpointing: int


@dataclass
class StepPlan:
    """What :func:`plan_step` decided for a step."""

    checkpointing: bool
    estimate: MemoryEstimate
    budget: int

    def metrics(self) -> dict[str, float]:
        return {
            "atlas/memory/estimate_gb": (
                self.estimate.with_checkpointing if self.checkpointing else self.estimate.without_checkpointing
            )
            / GB,
            "atlas/memory/estimate_no_checkpointing_gb": self.estimate.without_checkpointing / GB,
            "atlas/memory/budget_gb": self.budget / GB,
            "atlas/memory/checkpointing": float(self.checkpointing),
        }


def prefix_tokens(sequences: Sequence[Sequence[int]]) -> int:
    """Distinct prefix tokens of ``sequences`` (the size of their prefix tree)."""
    root: dict[int, Any] = {}
    count = 0
    for seq in sequences:
        node = root
        for tok in seq:
            nxt = node.get(tok)
            if nxt is None:
                nxt = node[tok] = {}
                count += 1
            node = nxt
    return count


def _shape(config: Any) -> tuple[int, int, int, int]:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or 1024)
    layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 24)
    inter = int(getattr(cfg, "intermediate_size", 0) or 4 * hidden)
    vocab = int(getattr(cfg, "vocab_size", 0) or 32000)
    return hidden, layers, inter, vocab


def estimate(
    config: Any,
    rows: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    micro_batch: int,
    tree: bool = False,
    dtype_bytes: int = 4,
    trainable_params: int = 0,
    first_step: bool = False,
    quadratic_attention: bool = True,
    logprob_tile: tuple[int, int] = (1024, 8192),
    tile_copies: float = 9.5,
) -> MemoryEstimate:
    """The largest micro-batch's estimate; ``rows`` are ``(prompt_ids, completion_ids)`` in the
    order the trainer slices them into micro-batches (see the module docs for the formula).
    ``logprob_tile`` is the tree path's log-softmax tile (tokens, columns), ``tile_copies`` how many
    tile-sized temporaries it holds at once (9.5 on a CPU; the trainer passes 1.5 on CUDA)."""
    hidden, layers, inter, vocab = _shape(config)
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(getattr(cfg, "num_attention_heads", 0) or max(1, hidden // 64))
    per_layer_token = dtype_bytes * (9 * hidden + 5 * inter)
    fixed = trainable_params * 4 + (trainable_params * 8 if first_step else 0)
    worst: MemoryEstimate | None = None
    step = max(1, micro_batch)
    for i in range(0, max(1, len(rows)), step):
        chunk = rows[i : i + step]
        if not chunk:
            break
        completion = sum(len(c) for _, c in chunk)
        if tree:
            tokens = prefix_tokens([list(p) + list(c) for p, c in chunk])
            tile_tokens, tile_columns = logprob_tile
            logits = int(tile_copies * min(completion, tile_tokens) * min(vocab, tile_columns) * 4)
        else:
            tokens = len(chunk) * max(len(p) + len(c) for p, c in chunk)
            logits = int(len(chunk) * max(len(c) for _, c in chunk) * vocab * 4 * 2.5)
        longest = max(len(p) + len(c) for p, c in chunk)
        scores = tokens * longest * heads * dtype_bytes if quadratic_attention else 0
        without = layers * (tokens * per_layer_token + 1.5 * scores) + logits + fixed
        with_ = layers * tokens * dtype_bytes * hidden + tokens * per_layer_token + 3 * scores + logits + fixed
        est = MemoryEstimate(
            rows=len(chunk),
            tokens=tokens,
            completion_tokens=completion,
            without_checkpointing=int(without),
            with_checkpointing=int(with_),
        )
        if worst is None or est.without_checkpointing > worst.without_checkpointing:
            worst = est
    return worst or MemoryEstimate(0, 0, 0, fixed, fixed)


def available_bytes(device: Any = None) -> int:
    """Memory available now: free device memory on a CUDA device, else ``MemAvailable`` (RAM)."""
    kind = getattr(device, "type", str(device or "cpu"))
    if kind == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other POSIX systems: free physical pages
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: never refuse on a guess


def plan_step(est: MemoryEstimate, *, budget: int, settings: str = "") -> StepPlan:
    """Checkpointing only when needed; :class:`AtlasError` when the step fits in neither way."""
    if est.without_checkpointing <= budget:
        return StepPlan(checkpointing=False, estimate=est, budget=budget)
    if est.with_checkpointing <= budget:
        return StepPlan(checkpointing=True, estimate=est, budget=budget)
    raise AtlasError(
        f"this GRPO step does not fit in memory: a micro-batch of {est.rows} rows ({est.tokens:,} tokens to process, "
        f"{est.completion_tokens:,} of them completion tokens) needs about {est.with_checkpointing / GB:.1f} GB even "
        f"with gradient checkpointing ({est.without_checkpointing / GB:.1f} GB without), and {budget / GB:.1f} GB "
        f"are available. Lower per_device_train_batch_size or max_completion_length, give the agent fewer tools "
        f"(a shorter first prompt), or raise memory_budget_gb if more memory is really free{settings}."
    )
