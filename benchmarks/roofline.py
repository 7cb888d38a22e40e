"""Roofline of a GRPO step: where the time goes, against what this machine can do.

One run measures the machine and then a real GRPO workload, at the thread count the trainer uses:

1. **The machine** (torch fp32, ``--threads`` intra-op threads):
   - sustained matmul FLOP/s on square 1k-2k matmuls: the compute ceiling ("peak", measured
     again after the workload; the higher of the two is used);
   - the model's own GEMM shapes at ``--tokens`` rows (attention and MLP projections, the
     activation-gradient GEMM of the backward, the LM head as TRL's chunked log-softmax tiles it);
   - small-M GEMMs (M = 1, 8, 32 rows: decode) on the MLP and LM-head weights, as GFLOP/s and as
     effective weight-read GB/s;
   - memory read bandwidth (a large tensor ``sum``; ``copy_`` as read+write);
   - whole decode steps of the real model at 1, 8 and 32 rows (tokens/s against the
     bandwidth bound: all fp32 weights, 0.54 GB, plus the rows' K/V, read once per step).
2. **FLOPs per GRPO phase**, counted from the token counts of the step (SmolLM2-135M: 30
   layers, hidden 576, MLP 1536, 9 heads / 3 KV heads of 64, vocabulary 49,152, tied
   embeddings; the numbers are read from the model's config and checked against its parameter
   count):
   - forward = 2 x backbone linear parameters (+ LoRA) per token + 4 x layers x hidden x keys per
     query token (attention scores and values) + 2 x 576 x 49,152 per scored position (LM head);
   - LoRA backward: activation gradients through the frozen weights (1x the linear forward), LoRA
     activation and weight gradients (2x the LoRA forward), attention 2x its forward, and the
     LM head 2x (TRL's chunked log-softmax recomputes each logits tile, then ``grad_hidden``; the
     tied head is frozen: no weight-gradient GEMM); plus a recompute forward under gradient
     checkpointing;
   - each phase is counted twice: **unshared** (every row on its own, real tokens only, LM head
     on completion positions only) and **tree** (the batch packed into its prefix tree with
     ``atlas_plugins.training.shared_prefix.build_tree``: every distinct token prefix once).
     The "run" column is what this code actually computes: the tree for the reference and
     training passes (``AtlasGRPOTrainer``), unshared for the rollout's prefill (the policy
     prefills each row, so a group's prompt runs G times).
3. **One real GRPO workload per ``--workloads`` entry**: ``AtlasTrainer`` with
   ``AtlasGRPOConfig.cpu_demo``, the embedded toolspace, the first ``batch / group`` level-1
   train tasks, a fresh LoRA (r 16, alpha 32, all-linear, the config default), beta 0.001
   (a reference pass, adapter disabled), no gradient checkpointing. ``single-turn``: one turn of
   at most ``--length`` tokens (benchmarks/grpo_overhead.py's workload); ``multi-turn``: the
   demo's ITL episodes (4 turns of at most 64 tokens, 4 tool calls, ``--mt-length`` episode
   tokens). Per step the trainer's own phase times are read from ``trainer.state.log_history``
   (``atlas/time/*``, ``atlas/shared_prefix/token_fraction``); the token rows come from the
   rollout function's output, and the rollout is split with forward hooks on the policy's model
   into prefill calls, decode steps, and the rest (sampling, tool calls, parsing). The backward
   is timed around ``accelerator.backward``, the reward function around its call. The first
   step of each workload is a warm-up; the table shows medians over the others.

The output is one Markdown table for the machine and one per workload (achieved GFLOP/s per
phase and % of the measured matmul peak; decode tokens/s against the bandwidth bound), and
``benchmarks/results/roofline.json`` with everything, per step.

    PYTHONPATH=.:adapters .venv/bin/python benchmarks/roofline.py       # ~6.5 min on 2 cores
    python benchmarks/roofline.py --workloads multi-turn --steps 4
    python benchmarks/roofline.py --skip-workload                     # the machine only, ~1 min

Not covered: the old-logprob pass is counted only when TRL runs it (``num_iterations > 1`` or
``steps_per_generation > gradient_accumulation_steps``; in this config it is skipped); FLOPs
are useful FLOPs (padding, masked attention blocks and softmax/elementwise work are not
counted, so "achieved" is a lower bound on what the cores executed); the optimizer step and
norms/activations are not counted as FLOPs; the bandwidth bound ignores activations and
caches; rollout sharing is estimated only for uncached prefills (turn 1: a group's identical
prompts), later turns' prefills count as unshared; the numbers are for fp32 on CPU (no GPU,
no bf16, no vLLM). The machine is shared: a light job elsewhere lowers a measurement, and the
peak is taken as the better of two measurements for that reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

GFLOP = 1e9
GB = 1e9
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------------------------------- FLOPs
@dataclass(frozen=True)
class ModelShape:
    """The dimensions FLOP counting needs (defaults: SmolLM2-135M)."""

    layers: int = 30
    hidden: int = 576
    mlp: int = 1536
    heads: int = 9
    kv_heads: int = 3
    head_dim: int = 64
    vocab: int = 49152
    tied: bool = True

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        heads = int(config.num_attention_heads)
        return cls(
            layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
            mlp=int(config.intermediate_size),
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(config, "head_dim", None) or config.hidden_size // heads),
            vocab=int(config.vocab_size),
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of one decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, m = self.hidden, self.mlp
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, m),
            "up_proj": (h, m),
            "down_proj": (m, h),
        }

    @property
    def backbone_linear_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear_shapes().values())

    @property
    def head_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        """Every parameter: linears, embedding (and an untied head), RMSNorm weights."""
        norms = self.layers * 2 * self.hidden + self.hidden
        return self.backbone_linear_params + self.head_params * (1 if self.tied else 2) + norms

    def kv_bytes_per_token(self, dtype_bytes: int = 4) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


SMOLLM2_135M = ModelShape()


def lora_params(shape: ModelShape, r: int, targets: str | list[str] | tuple[str, ...] = "all-linear") -> int:
    """Parameters of a rank-``r`` LoRA on ``targets`` (``"all-linear"`` or module names)."""
    names = (
        _LINEARS
        if targets == "all-linear"
        else ([t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets))
    )
    shapes = shape.linear_shapes()
    return shape.layers * sum(r * (shapes[n][0] + shapes[n][1]) for n in names if n in shapes)


def forward_flops(
    shape: ModelShape, tokens: int, attn_keys: int, head_positions: int, lora: int = 0
) -> dict[str, float]:
    """FLOPs of one forward: ``tokens`` through the backbone (with a LoRA of ``lora`` parameters),
    ``attn_keys`` = the sum over query tokens of the keys each attends to, and the LM head on
    ``head_positions`` positions."""
    linear = 2.0 * (shape.backbone_linear_params + lora) * tokens
    attention = 4.0 * shape.layers * shape.heads * shape.head_dim * attn_keys
    head = 2.0 * shape.hidden * shape.vocab * head_positions
    return {"linear": linear, "attention": attention, "head": head, "total": linear + attention + head}


def train_flops(
    shape: ModelShape, tokens: int, attn_keys: int, head_positions: int, lora: int = 0, checkpointing: bool = False
) -> dict[str, float]:
    """FLOPs of a LoRA training forward and backward (frozen base weights, frozen tied head)."""
    fwd = forward_flops(shape, tokens, attn_keys, head_positions, lora)
    bwd_linear = 2.0 * shape.backbone_linear_params * tokens + 4.0 * lora * tokens
    bwd = bwd_linear + 2.0 * fwd["attention"] + 2.0 * fwd["head"]
    recompute = fwd["linear"] + fwd["attention"] if checkpointing else 0.0
    return {
        "forward": fwd["total"],
        "backward": bwd + recompute,
        "recompute": recompute,
        "total": fwd["total"] + bwd + recompute,
    }


def causal_keys(lengths: list[int]) -> int:
    """Attention keys of rows computed on their own (causal): sum of n (n + 1) / 2."""
    return sum(n * (n + 1) // 2 for n in lengths)


def batch_counts(sequences: list[list[int]], prompt_lengths: list[int]) -> dict[str, int]:
    """Token, attention-key and LM-head counts of one scoring pass over a batch, three ways:
    ``tree`` (the prefix tree the trainer packs), ``unshared`` (every row on its own, real tokens,
    head on completion positions), ``trl_padded`` (TRL's own CPU path: the padded ``[B, P + C]``
    batch, every position through the head)."""
    from atlas_plugins.training.shared_prefix import build_tree

    layout = build_tree(sequences, prompt_lengths)
    positions = layout.position_ids[0]
    lengths = [len(s) for s in sequences]
    width = (max(prompt_lengths) + max(n - p for n, p in zip(lengths, prompt_lengths, strict=True))) if sequences else 0
    rows = len(sequences)
    return {
        "rows": rows,
        "tree_tokens": layout.packed_tokens,
        "tree_keys": int((positions + 1).sum()) if positions.numel() else 0,
        "head_positions": int(layout.targets.numel()),
        "unshared_tokens": sum(lengths),
        "unshared_keys": causal_keys(lengths),
        "trl_padded_tokens": rows * width,
        "trl_padded_keys": rows * width * (width + 1) // 2,
        "trl_padded_head": rows * max(0, width - 1),
        "prompt_tokens": sum(prompt_lengths),
        "completion_tokens": sum(n - p for n, p in zip(lengths, prompt_lengths, strict=True)),
    }


def prefill_counts(calls: list[dict[str, Any]]) -> dict[str, int]:
    """Tokens and attention keys of the rollout's prefill calls (as recorded by
    :class:`RolloutRecorder`: per row ``new`` tokens on top of ``cached`` ones), run as they are
    (each row its own) and as they would be if a call without a cache shared identical prefixes
    (a group's first prompt) through a prefix tree."""
    from atlas_plugins.training.shared_prefix import build_tree

    out = dict.fromkeys(
        ("calls", "rows", "tokens", "keys", "padded_tokens", "head_positions", "tree_tokens", "tree_keys"), 0
    )
    for c in calls:
        run_keys = sum(n * k + n * (n + 1) // 2 for n, k in zip(c["new"], c["cached"], strict=True))
        out["calls"] += 1
        out["rows"] += c["rows"]
        out["tokens"] += sum(c["new"])
        out["keys"] += run_keys
        out["padded_tokens"] += c["rows"] * c["width"]
        out["head_positions"] += c["rows"]
        if c.get("seqs") is not None and not any(c["cached"]):
            layout = build_tree(c["seqs"], [len(s) for s in c["seqs"]])
            out["tree_tokens"] += layout.packed_tokens
            out["tree_keys"] += int((layout.position_ids[0] + 1).sum())
        else:
            out["tree_tokens"] += sum(c["new"])
            out["tree_keys"] += run_keys
    return out


def decode_counts(
    steps: list[dict[str, Any]], shape: ModelShape, lora: int, weight_bytes: float, bandwidth: float, peak: float
) -> dict[str, float]:
    """FLOPs, bytes and the roofline bound of the rollout's decode steps (each: ``rows`` rows, one
    new token each, ``ctx`` keys per row). Every step reads all weights once and each row's K/V."""
    flops = bytes_ = bound = 0.0
    tokens = 0
    for s in steps:
        rows, keys = s["rows"], sum(s["ctx"])
        f = forward_flops(shape, rows, keys, rows, lora)["total"]
        b = weight_bytes + keys * shape.kv_bytes_per_token()
        flops, bytes_, tokens = flops + f, bytes_ + b, tokens + rows
        bound += max(b / bandwidth, f / peak)
    return {
        "steps": len(steps),
        "tokens": tokens,
        "flops": flops,
        "bytes": bytes_,
        "bound_s": bound,
        "mean_rows": tokens / max(1, len(steps)),
    }


# ------------------------------------------------------------------------------ machine measurements
def _time(fn: Any, min_time: float, min_reps: int = 3, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _rate(name: str, flops: float, times: list[float], weight_bytes: float = 0.0) -> dict[str, Any]:
    med, best = statistics.median(times), min(times)
    row = {
        "name": name,
        "ms_median": 1e3 * med,
        "ms_best": 1e3 * best,
        "reps": len(times),
        "gflops_median": flops / med / GFLOP,
        "gflops_best": flops / best / GFLOP,
    }
    if weight_bytes:
        row["weight_gbs_median"] = weight_bytes / med / GB
    return row


def measure_square(min_time: float, sizes: tuple[int, ...] = (1024, 1536, 2048)) -> list[dict[str, Any]]:
    import torch

    rows = []
    for n in sizes:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        rows.append(
            _rate(f"square {n}x{n} @ {n}x{n}", 2.0 * n**3, _time(lambda a=a, b=b, c=c: torch.mm(a, b, out=c), min_time))
        )
    return rows


def measure_model_shapes(shape: ModelShape, tokens: int, min_time: float) -> list[dict[str, Any]]:
    """The GEMMs a training or prefill pass runs, at ``tokens`` rows (weights stored [out, in],
    applied as ``F.linear`` like the model does)."""
    import torch
    import torch.nn.functional as F

    T, h, m = tokens, shape.hidden, shape.mlp
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    cases = [
        (f"q/o proj [{T},{h}]@[{h},{q}]", (T, h), (q, h)),
        (f"k/v proj [{T},{h}]@[{h},{kv}]", (T, h), (kv, h)),
        (f"mlp gate/up [{T},{h}]@[{h},{m}]", (T, h), (m, h)),
        (f"mlp down [{T},{m}]@[{m},{h}]", (T, m), (h, m)),
    ]
    rows = []
    for name, xs, ws in cases:
        x, w = torch.randn(*xs), torch.randn(*ws)
        rows.append(_rate(name, 2.0 * xs[0] * xs[1] * ws[0], _time(lambda x=x, w=w: F.linear(x, w), min_time)))
    # Backward activation gradient of the MLP up projection: dX = dY @ W, W as stored (no transpose).
    dy, w = torch.randn(T, m), torch.randn(m, h)
    rows.append(
        _rate(f"backward dX [{T},{m}]@[{m},{h}] (W as stored)", 2.0 * T * m * h, _time(lambda: dy @ w, min_time))
    )
    # The LM head as TRL's chunked log-softmax runs it: [n, 576] @ [576, 32768] tiles into a buffer.
    n, chunk = min(T, 4096), min(32768, shape.vocab)
    hid, emb, buf = torch.randn(n, h), torch.randn(shape.vocab, h), torch.empty(n, chunk)
    rows.append(
        _rate(
            f"LM head tile [{n},{h}]@[{h},{chunk}]",
            2.0 * n * h * chunk,
            _time(lambda: torch.mm(hid, emb[:chunk].t(), out=buf), min_time),
        )
    )
    return rows


def measure_small_m(shape: ModelShape, min_time: float, ms: tuple[int, ...] = (1, 8, 32)) -> list[dict[str, Any]]:
    """Decode-shaped GEMMs: M rows against a whole weight matrix (GEMV-like, weight-read bound)."""
    import torch
    import torch.nn.functional as F

    h, m, v = shape.hidden, shape.mlp, shape.vocab
    weights = {
        f"mlp up [{{M}},{h}]@[{h},{m}]": torch.randn(m, h),
        f"mlp down [{{M}},{m}]@[{m},{h}]": torch.randn(h, m),
        f"LM head [{{M}},{h}]@[{h},{v}]": torch.randn(v, h),
    }
    rows = []
    for name, w in weights.items():
        for M in ms:
            x = torch.randn(M, w.shape[1])
            row = _rate(
                name.format(M=M),
                2.0 * M * w.shape[0] * w.shape[1],
                _time(lambda x=x, w=w: F.linear(x, w), min_time, min_reps=5),
                weight_bytes=w.numel() * 4,
            )
            row["M"] = M
            rows.append(row)
    return rows


def measure_memory(min_time: float, mib: int = 512) -> list[dict[str, Any]]:
    import torch

    n = mib * 2**20 // 4
    x = torch.rand(n)
    y = torch.empty_like(x)
    nbytes = x.numel() * 4
    rows = []
    for name, fn, moved in (
        (f"read: sum of a {mib} MiB tensor", x.sum, nbytes),
        (f"read+write: copy_ of a {mib} MiB tensor", lambda: y.copy_(x), 2 * nbytes),
    ):
        times = _time(fn, min_time, min_reps=5)
        rows.append(
            {
                "name": name,
                "gbs_median": moved / statistics.median(times) / GB,
                "gbs_best": moved / min(times) / GB,
                "reps": len(times),
            }
        )
    return rows


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class HeadTimer:
    """Forward hooks on a model's LM head: seconds spent in it since the last :meth:`take`."""

    def __init__(self, model: Any) -> None:
        head = model.get_output_embeddings()
        self.seconds, self._t = 0.0, 0.0
        self.handles = [head.register_forward_pre_hook(self._pre), head.register_forward_hook(self._post)]

    def _pre(self, *a: Any) -> None:
        self._t = time.perf_counter()

    def _post(self, *a: Any) -> None:
        self.seconds += time.perf_counter() - self._t

    def take(self) -> float:
        s, self.seconds = self.seconds, 0.0
        return s

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def measure_decode_steps(
    model: Any,
    shape: ModelShape,
    bandwidth: float,
    peak: float,
    context: int = 320,
    rows_list: tuple[int, ...] = (1, 8, 32),
    steps: int = 8,
) -> list[dict[str, Any]]:
    """Whole decode steps of the real model: ``rows`` sequences with ``context`` tokens of K/V
    (and the share of the step spent in the LM head)."""
    import torch

    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out = []
    head = HeadTimer(model)
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        prompt = torch.randint(0, shape.vocab, (1, context), generator=g)
        for rows in rows_list:
            pre = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
            cache = _cache_of(pre)
            cache.batch_repeat_interleave(rows)
            tok = torch.randint(0, shape.vocab, (rows, 1), generator=g)
            times, head_times = [], []
            for i in range(steps + 2):
                pos = torch.full((rows, 1), context + i)
                mask = torch.ones(rows, context + i + 1, dtype=torch.long)
                head.take()
                t0 = time.perf_counter()
                o = model(input_ids=tok, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
                dt = time.perf_counter() - t0
                head_dt = head.take()
                cache = _cache_of(o)
                tok = o.logits[:, -1].argmax(-1, keepdim=True)
                if i >= 2:
                    times.append(dt)
                    head_times.append(head_dt)
            ctx = context + 2 + steps // 2
            counts = decode_counts([{"rows": rows, "ctx": [ctx] * rows}], shape, 0, weight_bytes, bandwidth, peak)
            med = statistics.median(times)
            out.append(
                {
                    "rows": rows,
                    "context": ctx,
                    "ms_median": 1e3 * med,
                    "head_ms_median": 1e3 * statistics.median(head_times),
                    "tokens_per_s": rows / med,
                    "bound_tokens_per_s": rows / counts["bound_s"],
                    "of_bound": counts["bound_s"] / med,
                    "gflops": counts["flops"] / med / GFLOP,
                    "weight_gb": weight_bytes / GB,
                }
            )
            del cache, pre
    head.remove()
    return out


# --------------------------------------------------------------------------------- the GRPO workload
class RolloutRecorder:
    """Context manager: forward hooks on the policy's model (prefill calls and decode steps, with
    their shapes and times) and a timer around ``policy.generate``."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.prefill: list[dict[str, Any]] = []
        self.decode: list[dict[str, Any]] = []
        self.generate_s = 0.0
        self._cur: tuple[str, dict[str, Any]] | None = None
        self._t = 0.0

    def __enter__(self) -> RolloutRecorder:
        model = self.policy.model
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]
        inner = self.policy.generate

        def generate(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.generate_s += time.perf_counter() - t0

        self.policy.generate = generate
        self._head = HeadTimer(model)
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._head.remove()
        self.policy.__dict__.pop("generate", None)

    def _pre(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        self._cur = None
        if ids is None or mask is None:
            return
        n, w = ids.shape
        c_width = mask.shape[1] - w
        if "logits_to_keep" in kwargs:  # the policy's prefill call
            new = mask[:, c_width:].sum(-1).tolist()
            cached = mask[:, :c_width].sum(-1).tolist() if c_width else [0] * n
            seqs = [ids[i, w - new[i] :].tolist() for i in range(n)] if not c_width else None
            self._cur = (
                "prefill",
                {"rows": n, "width": w, "c_width": c_width, "new": new, "cached": cached, "seqs": seqs},
            )
        else:
            self._cur = ("decode", {"rows": n, "ctx": mask.sum(-1).tolist()})
        self._head.take()
        self._t = time.perf_counter()

    def _post(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self._cur is None:
            return
        kind, rec = self._cur
        rec["s"] = time.perf_counter() - self._t
        rec["head_s"] = self._head.take()
        (self.prefill if kind == "prefill" else self.decode).append(rec)
        self._cur = None


def _recording_trainer_class() -> Any:
    from atlas_plugins.training.trainer import AtlasTrainer

    class RecordingTrainer(AtlasTrainer):
        """``AtlasTrainer`` that keeps each rollout's token rows and hook records, and times the
        backward and the reward function. Nothing it computes changes."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.rollouts: list[dict[str, Any]] = []
            self.reward_s: list[float] = []
            self.backward_s: list[float] = []
            super().__init__(*args, **kwargs)
            acc = self.trainer.accelerator
            inner = acc.backward

            def backward(loss: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(loss, **kw)
                finally:
                    self.backward_s.append(time.perf_counter() - t0)

            acc.backward = backward

        def _scored_reward(self) -> Any:
            fn = super()._scored_reward()

            def atlas_reward(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    self.reward_s.append(time.perf_counter() - t0)

            atlas_reward.__name__ = fn.__name__
            return atlas_reward

        def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
            policy = self._policy(trainer)
            t0 = time.perf_counter()
            with RolloutRecorder(policy) as rec:
                out = super()._rollout(prompts, trainer)
            self.rollouts.append(
                {
                    "wall_s": time.perf_counter() - t0,
                    "prefill": rec.prefill,
                    "decode": rec.decode,
                    "generate_s": rec.generate_s,
                    "prompt_ids": [list(p) for p in out["prompt_ids"]],
                    "completion_ids": [list(c) for c in out["completion_ids"]],
                    "env_mask": [list(m) for m in out["env_mask"]],
                }
            )
            return out

    return RecordingTrainer


def _step_timer() -> tuple[Any, list[float]]:
    from transformers import TrainerCallback

    times: list[float] = []
    state = {"t": 0.0}

    class _CB(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):  # noqa: ANN001
            state["t"] = time.perf_counter()

        def on_step_end(self, args, st, control, **kw):  # noqa: ANN001
            times.append(time.perf_counter() - state["t"])

    return _CB(), times


def run_workload(kind: str, args: argparse.Namespace, path: str, tok: Any, shape: ModelShape) -> dict[str, Any]:
    """Train ``args.steps`` GRPO steps of workload ``kind``; return the raw per-step records."""
    import torch
    from transformers import AutoModelForCausalLM

    import atlas_plugins as atlas
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.training.config import AtlasGRPOConfig

    tasks = [t for t in load_default_tasks("train") if t.difficulty == 1][:8]
    n_tasks = max(1, args.batch // args.group)
    if kind == "single-turn":
        length, agent = args.length, dict(max_turns=1, max_tool_calls=1, max_turn_tokens=args.length)
    else:
        length, agent = args.mt_length, dict(max_turns=4, max_tool_calls=4, max_turn_tokens=64)
    tmp = Path(tempfile.mkdtemp(prefix=f"roofline-{kind}-"))
    cb, step_times = _step_timer()
    with atlas.Toolspace.default(servers=sorted({s for t in tasks[:n_tasks] for s in t.servers})) as ts:
        cfg = AtlasGRPOConfig.cpu_demo(
            str(tmp),
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            num_generations=args.group,
            max_completion_length=length,
            loading="itl",
            max_train_tasks=n_tasks,
            beta=args.beta,
            learning_rate=1e-5,
            report_to=[],
            logging_steps=1,
            save_strategy="no",
            seed=0,
            gradient_checkpointing=False,
            **agent,
        )
        model = AutoModelForCausalLM.from_pretrained(path)
        trainer = _recording_trainer_class()(
            cfg, toolspace=ts, tasks=tasks[:n_tasks], model=model, tokenizer=tok, callbacks=[cb]
        )
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        tr = trainer.trainer
        peft_model = tr.model
        lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n and p.requires_grad)
        weight_bytes = sum(p.numel() * p.element_size() for p in peft_model.parameters())
        gen_every = cfg.steps_per_generation * tr.num_iterations
        info = {
            "kind": kind,
            "tasks": [t.id for t in tasks[:n_tasks]],
            "batch": args.batch,
            "group": args.group,
            "max_completion_length": length,
            **agent,
            "beta": cfg.beta,
            "wall_s": wall,
            "lora_params": lora,
            "weight_bytes": weight_bytes,
            "gradient_checkpointing": bool(getattr(tr.model, "is_gradient_checkpointing", False)),
            "shared_prefix": bool(getattr(tr, "_tree", False)),
            "ref_uses_adapter": "ref" in getattr(peft_model, "peft_config", {}),
            "old_pass": bool(cfg.gradient_accumulation_steps % gen_every != 0),
            "log_history": [h for h in trainer.state.log_history if "atlas/time/rollout_s" in h],
            "step_s": step_times,
            "rollouts": trainer.rollouts,
            "reward_s": trainer.reward_s,
            "backward_s": trainer.backward_s,
            "threads": torch.get_num_threads(),
        }
    return info


def analyse_step(info: dict[str, Any], i: int, shape: ModelShape, peak: float, bandwidth: float) -> dict[str, Any]:
    """Per-phase tokens, FLOPs (run / unshared / tree) and times of step ``i`` of a workload."""
    h = info["log_history"][i]
    ro = info["rollouts"][i]
    lora = info["lora_params"]
    seqs = [list(p) + list(c) for p, c in zip(ro["prompt_ids"], ro["completion_ids"], strict=True)]
    plens = [len(p) for p in ro["prompt_ids"]]
    bc = batch_counts(seqs, plens)
    pf = prefill_counts(ro["prefill"])
    dc = decode_counts(ro["decode"], shape, lora, info["weight_bytes"], bandwidth, peak)
    prefill_s = sum(c["s"] for c in ro["prefill"])
    decode_s = sum(s["s"] for s in ro["decode"])
    ref_lora = lora if info["ref_uses_adapter"] else 0

    def fwd(tokens: int, keys: int, lo: int) -> float:
        return forward_flops(shape, tokens, keys, bc["head_positions"], lo)["total"]

    def trn(tokens: int, keys: int) -> dict[str, float]:
        return train_flops(shape, tokens, keys, bc["head_positions"], lora, info["gradient_checkpointing"])

    no_grad_passes = [ref_lora] * (info["beta"] != 0) + [lora] * info["old_pass"]
    t_tree, t_un = trn(bc["tree_tokens"], bc["tree_keys"]), trn(bc["unshared_tokens"], bc["unshared_keys"])
    run_tree = info["shared_prefix"]
    t_run = t_tree if run_tree else t_un
    backward_s = info["backward_s"][i] if i < len(info["backward_s"]) else float("nan")
    reward_s = info["reward_s"][i] if i < len(info["reward_s"]) else float("nan")
    pre = lambda tokens, keys: forward_flops(shape, tokens, keys, pf["head_positions"], lora)["total"]  # noqa: E731
    phases = {
        "rollout_prefill": {
            "tokens": pf["tokens"],
            "flops": pre(pf["tokens"], pf["keys"]),
            "unshared_flops": pre(pf["tokens"], pf["keys"]),
            "tree_flops": pre(pf["tree_tokens"], pf["tree_keys"]),
            "tree_tokens": pf["tree_tokens"],
            "padded_tokens": pf["padded_tokens"],
            "calls": pf["calls"],
            "s": prefill_s,
        },
        "rollout_decode": {
            "tokens": dc["tokens"],
            "flops": dc["flops"],
            "unshared_flops": dc["flops"],
            "tree_flops": dc["flops"],
            "steps": dc["steps"],
            "mean_rows": dc["mean_rows"],
            "bytes": dc["bytes"],
            "bound_s": dc["bound_s"],
            "s": decode_s,
            "head_s": sum(x.get("head_s", 0.0) for x in ro["decode"]),
        },
        "rollout_rest": {
            "s": max(0.0, h["atlas/time/rollout_s"] - prefill_s - decode_s),
            "generate_other_s": max(0.0, ro["generate_s"] - prefill_s - decode_s),
        },
        "old_logprobs": {"skipped": not info["old_pass"]},
        "score_no_grad": {
            "passes": len(no_grad_passes),
            "tokens": (bc["tree_tokens"] if run_tree else bc["unshared_tokens"]) * len(no_grad_passes),
            "flops": sum(
                fwd(
                    bc["tree_tokens"] if run_tree else bc["unshared_tokens"],
                    bc["tree_keys"] if run_tree else bc["unshared_keys"],
                    lo,
                )
                for lo in no_grad_passes
            ),
            "unshared_flops": sum(fwd(bc["unshared_tokens"], bc["unshared_keys"], lo) for lo in no_grad_passes),
            "tree_flops": sum(fwd(bc["tree_tokens"], bc["tree_keys"], lo) for lo in no_grad_passes),
            "s": h["atlas/time/score_no_grad_s"],
        },
        "train_forward": {
            "tokens": bc["tree_tokens"] if run_tree else bc["unshared_tokens"],
            "flops": t_run["forward"],
            "unshared_flops": t_un["forward"],
            "tree_flops": t_tree["forward"],
            "s": h["atlas/time/train_forward_s"],
        },
        "train_backward": {
            "tokens": bc["tree_tokens"] if run_tree else bc["unshared_tokens"],
            "flops": t_run["backward"],
            "unshared_flops": t_un["backward"],
            "tree_flops": t_tree["backward"],
            "s": backward_s,
        },
        "rewards": {"s": reward_s},
    }
    phases["train_total"] = {
        k: phases["train_forward"][k] + phases["train_backward"][k]
        for k in ("tokens", "flops", "unshared_flops", "tree_flops", "s")
    }
    phases["train_total"]["tokens"] = phases["train_forward"]["tokens"]
    step_s = info["step_s"][i] if i < len(info["step_s"]) else float("nan")
    accounted = (
        h["atlas/time/rollout_s"]
        + h["atlas/time/score_no_grad_s"]
        + h["atlas/time/train_forward_s"]
        + backward_s
        + reward_s
    )
    phases["step_rest"] = {"s": max(0.0, step_s - accounted)}
    flop_phases = ("rollout_prefill", "rollout_decode", "score_no_grad", "train_forward", "train_backward")
    phases["step"] = {
        "s": step_s,
        **{k: sum(phases[p][k] for p in flop_phases) for k in ("flops", "unshared_flops", "tree_flops")},
    }
    return {
        "step": i + 1,
        "counts": bc,
        "prefill_counts": pf,
        "phases": phases,
        "logged": {
            k: v
            for k, v in h.items()
            if k.startswith(("atlas/time/", "atlas/shared_prefix/", "completions/"))
            or k in ("reward", "reward_std", "frac_reward_zero_std", "step_time")
        },
        "computed_token_fraction": bc["tree_tokens"] / max(1, bc["unshared_tokens"]),
    }


def summarise(steps: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median over steps of every numeric phase field."""
    out: dict[str, dict[str, float]] = {}
    for name in steps[0]["phases"]:
        fields = steps[0]["phases"][name]
        out[name] = {}
        for k, v in fields.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                out[name][k] = v
                continue
            vals = [s["phases"][name][k] for s in steps if s["phases"][name][k] == s["phases"][name][k]]
            out[name][k] = statistics.median(vals) if vals else float("nan")
    return out


# ---------------------------------------------------------------------------------------- output
def _f(x: float, nd: int = 1) -> str:
    return "—" if x is None or x != x else f"{x:,.{nd}f}"


def machine_table(m: dict[str, Any]) -> str:
    lines = ["| measurement | ms (median) | GFLOP/s (median / best) | % of peak | GB/s |", "|---|---|---|---|---|"]
    peak = m["peak_gflops"]
    for r in m["square"] + m["square_after"] + m["model_shapes"] + m["small_m"]:
        gbs = _f(r["weight_gbs_median"]) if "weight_gbs_median" in r else ""
        lines.append(
            f"| {r['name']} | {_f(r['ms_median'], 2)} | {_f(r['gflops_median'])} / {_f(r['gflops_best'])} | "
            f"{_f(100 * r['gflops_median'] / peak, 0)} % | {gbs} |"
        )
    for r in m["memory"]:
        lines.append(f"| {r['name']} | | | | {_f(r['gbs_median'])} (best {_f(r['gbs_best'])}) |")
    for r in m["decode_steps"]:
        lines.append(
            f"| model decode step, {r['rows']} rows × {r['context']} ctx: {_f(r['tokens_per_s'])} tok/s, "
            f"bound {_f(r['bound_tokens_per_s'])} tok/s ({_f(100 * r['of_bound'], 0)} % of it), "
            f"LM head {_f(r['head_ms_median'], 1)} ms of the step | "
            f"{_f(r['ms_median'], 1)} | {_f(r['gflops'])} | {_f(100 * r['gflops'] / peak, 0)} % | |"
        )
    lines.append(
        f"\npeak (sustained square matmul, better of before/after the workload): **{_f(peak)} GFLOP/s** on "
        f"{m['threads']} threads; memory read bandwidth: **{_f(m['bandwidth_gbs'])} GB/s**"
    )
    return "\n".join(lines)


def workload_table(w: dict[str, Any], peak: float) -> str:
    s = w["median"]
    g = GFLOP

    def row(label: str, p: dict[str, float], note: str = "") -> str:
        flops, t = p.get("flops"), p.get("s", float("nan"))
        ach = flops / t / g if flops is not None and t and t == t else float("nan")
        tok = p.get("tokens")
        return (
            f"| {label} | {_f(tok, 0) if tok is not None else ''} | {_f(flops / g) if flops is not None else ''} | "
            f"{_f(p['unshared_flops'] / g) if 'unshared_flops' in p else ''} | "
            f"{_f(p['tree_flops'] / g) if 'tree_flops' in p else ''} | {_f(t, 2)} | "
            f"{_f(ach) if flops is not None else ''} | {_f(100 * ach / peak, 0) + ' %' if flops is not None else ''} | {note} |"
        )

    d = s["rollout_decode"]
    dec_note = (
        (
            f"{_f(d['tokens'] / d['s'])} tok/s vs bound {_f(d['tokens'] / d['bound_s'])} tok/s "
            f"({_f(100 * d['bound_s'] / d['s'], 0)} % of the bandwidth roofline); {_f(d['steps'], 0)} steps, "
            f"{_f(d['mean_rows'])} rows/step, {_f(d['bytes'] / d['steps'] / GB, 2)} GB read/step; "
            f"LM head {_f(d['head_s'], 2)} s of the decode time"
        )
        if d["s"]
        else ""
    )
    pf = s["rollout_prefill"]
    lines = [
        "| phase | tokens run | GFLOP run | GFLOP unshared | GFLOP tree | time s | GFLOP/s | % of peak | notes |",
        "|---|---|---|---|---|---|---|---|---|",
        row(
            "rollout: prefill",
            pf,
            f"prefill calls: {_f(pf['calls'], 0)}; {_f(pf['padded_tokens'], 0)} padded tokens run; "
            f"tree would prefill {_f(pf['tree_tokens'], 0)} tokens",
        ),
        row("rollout: decode", d, dec_note),
        row(
            "rollout: rest",
            s["rollout_rest"],
            f"sampling, stop checks and cache bookkeeping "
            f"{_f(s['rollout_rest']['generate_other_s'], 2)} s; tools, parsing",
        ),
        "| old logprobs | | 0 | | | 0 | | | "
        + (
            "skipped: TRL reuses the training forward (num_iterations 1, one step per generation) |"
            if s["old_logprobs"]["skipped"]
            else "run (counted under no-grad scoring) |"
        ),
        row(
            "reference logprobs (no grad)",
            s["score_no_grad"],
            f"{_f(s['score_no_grad']['passes'], 0)} pass(es) over the prefix tree"
            if w["info"]["shared_prefix"]
            else "unshared",
        ),
        row("training forward", s["train_forward"]),
        row("training backward", s["train_backward"], "timed around accelerator.backward"),
        row("**training forward + backward**", s["train_total"], "goal ≥ 50 % of peak"),
        row("rewards (rubric)", s["rewards"]),
        row("rest of the step", s["step_rest"], "padding, advantages, loss, optimizer, logging"),
        row("**whole step**", s["step"]),
    ]
    c = w["median_counts"]
    lines.append(
        f"\nrows {w['info']['batch']} (group {w['info']['group']}); per step (median): prompt tokens "
        f"{_f(c['prompt_tokens'], 0)}, completion tokens {_f(c['completion_tokens'], 0)}, unshared "
        f"{_f(c['unshared_tokens'], 0)} → tree {_f(c['tree_tokens'], 0)} tokens "
        f"(fraction {_f(w['token_fraction_computed'], 3)}, trainer logged {_f(w['token_fraction_logged'], 3)}); "
        f"TRL's own CPU path would run {_f(c['trl_padded_tokens'], 0)} padded tokens and "
        f"{_f(c['trl_padded_head'], 0)} LM-head positions (vs {_f(c['head_positions'], 0)}). "
        f"LoRA {w['info']['lora_params']:,} params; gradient checkpointing "
        f"{'on' if w['info']['gradient_checkpointing'] else 'off'}; {len(w['steps'])} measured steps "
        f"(step 1 dropped as warm-up)."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the trainer's)")
    ap.add_argument("--workloads", default="single-turn,multi-turn", help="comma-separated: single-turn, multi-turn")
    ap.add_argument("--skip-workload", action="store_true", help="measure the machine only")
    ap.add_argument("--batch", type=int, default=8, help="rows per step (tasks × group)")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--length", type=int, default=64, help="single-turn: max completion tokens")
    ap.add_argument("--mt-length", type=int, default=256, help="multi-turn: max episode tokens after the prompt")
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per workload (the first is a warm-up)")
    ap.add_argument("--beta", type=float, default=0.001)
    ap.add_argument("--tokens", type=int, default=2048, help="rows of the model-shape GEMMs")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per micro-benchmark")
    ap.add_argument("--out", default=str(HERE / "results" / "roofline.json"))
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atlas_plugins.embedded_model import resolve_model_path

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    shape = ModelShape.from_config(model.config)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != shape.total_params:
        print(f"warning: the model has {n_params:,} parameters, the FLOP model counts {shape.total_params:,}")

    print(
        f"# roofline: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads\n",
        flush=True,
    )
    machine: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
    }
    machine["square"] = measure_square(args.min_time)
    print(
        "square matmuls: " + ", ".join(f"{_f(r['gflops_median'])}" for r in machine["square"]) + " GFLOP/s", flush=True
    )
    machine["model_shapes"] = measure_model_shapes(shape, args.tokens, args.min_time)
    machine["small_m"] = measure_small_m(shape, args.min_time / 2)
    machine["memory"] = measure_memory(args.min_time)
    bandwidth = machine["memory"][0]["gbs_median"] * GB
    peak0 = max(r["gflops_median"] for r in machine["square"]) * GFLOP
    machine["decode_steps"] = measure_decode_steps(model, shape, bandwidth, peak0)
    del model
    print(f"machine measured in {time.perf_counter() - t_start:.0f} s", flush=True)

    workloads: dict[str, Any] = {}
    if not args.skip_workload:
        for kind in [k.strip() for k in args.workloads.split(",") if k.strip()]:
            t0 = time.perf_counter()
            workloads[kind] = {"info": run_workload(kind, args, path, tok, shape)}
            print(f"{kind}: {args.steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)

    machine["square_after"] = [dict(r, name=r["name"] + " (after)") for r in measure_square(args.min_time)]
    machine["load_avg_end"] = os.getloadavg()
    peak = max(r["gflops_median"] for r in machine["square"] + machine["square_after"]) * GFLOP
    machine["peak_gflops"] = peak / GFLOP
    machine["bandwidth_gbs"] = bandwidth / GB

    print("\n## The machine\n")
    print(machine_table(machine))
    for kind, w in workloads.items():
        info = w["info"]
        n = len(info["log_history"])
        first = 1 if n > 1 else 0
        w["steps"] = [analyse_step(info, i, shape, peak, bandwidth) for i in range(first, n)]
        w["median"] = summarise(w["steps"])
        w["median_counts"] = {k: statistics.median(s["counts"][k] for s in w["steps"]) for k in w["steps"][0]["counts"]}
        w["token_fraction_computed"] = statistics.median(s["computed_token_fraction"] for s in w["steps"])
        logged = [s["logged"].get("atlas/shared_prefix/token_fraction") for s in w["steps"]]
        w["token_fraction_logged"] = (
            statistics.median([x for x in logged if x is not None])
            if any(x is not None for x in logged)
            else float("nan")
        )
        print(f"\n## GRPO workload: {kind}\n")
        print(workload_table(w, peak / GFLOP))
        info.pop("rollouts")  # raw token rows: too large for the JSON; the counts are kept per step

    result = {
        "settings": vars(args),
        "model": asdict(shape) | {"params": n_params, "backbone_linear_params": shape.backbone_linear_params},
        "machine": machine,
        "workloads": workloads,
        "wall_s": time.perf_counter() - t_start,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
