"""A local, trainable policy on Hugging Face transformers.

:class:`TransformersPolicy` generates a whole batch (a GRPO group, or several groups) in one
left-padded, KV-cached decoding loop written here rather than through ``model.generate``,
because the loop must give things ``generate`` does not give together:

* exact per-token log-probabilities of the sampled ids under the model at temperature ``T``
  (see :mod:`atlas_plugins.policy.base` for the convention — it is TRL's);
* per-prompt stop strings and per-prompt token limits, with the completion ending at the token
  that completed the stop string (no re-tokenization, ever);
* rows that have finished are dropped from the batch (and from the KV cache), so a group whose
  completions have very different lengths does not keep paying for the short ones;
* seeded sampling from a private ``torch.Generator``, independent of the global RNG state.

The loop only calls ``model(input_ids, attention_mask, position_ids, past_key_values)``, so it
works unchanged for a PEFT-wrapped model; training updates that same object in place and the
next ``generate`` call samples from the updated weights.

**Prefix cache.** An agent calls ``generate`` once per turn with each episode's whole token
sequence so far, and sequences only grow (turn k+1's prompt = turn k's prompt + the sampled ids
+ environment tokens). Re-prefilling ~2,000 prompt tokens every turn dominates the cost, so after
each call the policy keeps, per returned row, its full sequence and that row's per-layer K/V
(the real tokens only; :class:`_PrefixStore`). A later prompt that extends a stored sequence
prefills only its new suffix on top of the stored K/V. The store is emptied whenever the
weights change (see :meth:`TransformersPolicy.invalidate_cache`), because reusing K/V computed by
older weights would silently break token faithfulness (logprobs no longer the model's).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_plugins.embedded_model import EMBEDDED_ALIASES, EMBEDDED_MODEL_NAME, resolve_model_path
from atlas_plugins.errors import AtlasError
from atlas_plugins.policy.base import ChatGeneration, FinishReason, Generation, per_prompt, per_prompt_stops
from atlas_plugins.wire.messages import content_text, loads_arguments, tool_call_functions
from atlas_plugins.wire.special_tokens import defuse_all, defuse_messages
from atlas_plugins.wire.toolcall import HERMES_TOOLS_PREAMBLE, format_call

if TYPE_CHECKING:  # pragma: no cover - typing only; torch is imported lazily
    import torch

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}

#: Hermes-style tool block, used when the model's chat template ignores ``tools`` (SmolLM2's
#: does): without it the tool schemas would silently never reach the model.
_TOOLS_PREAMBLE = HERMES_TOOLS_PREAMBLE


class TransformersPolicy:
    """A trainable policy (:class:`~atlas_plugins.policy.base.Policy`) on a local model.

    Args:
        model: ``None`` or ``"embedded"`` for the embedded SmolLM2-135M-Instruct, a model path
            or hub id (loaded with ``AutoModelForCausalLM``), or an already loaded model —
            a ``PreTrainedModel`` or a PEFT ``PeftModel`` — used as is (not copied).
        tokenizer: a tokenizer, a path, or ``None`` (the model's own).
        device: where to run. ``None`` means ``"cpu"`` for a model loaded here and the model's
            current device for a model object passed in.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` or a ``torch.dtype``; only
            used when the model is loaded here (``None``: the checkpoint's dtype).
        name: display name (defaults to the model folder's name).
        prefix_cache: reuse the KV cache of earlier calls for prompts that extend a sequence an
            earlier call returned (prompt + sampled ids): only the new suffix is prefilled.
            Outputs are the same as without it (up to float rounding); ``False`` turns it off.
        prefix_cache_bytes: cap on the K/V bytes the prefix cache holds (least recently stored
            entries are evicted first; an entry larger than the cap is not stored). It lives
            where the model runs. SmolLM2-135M in float32 needs 46 KB per token, so the default
            2 GiB holds ~46k tokens (e.g. 23 episodes of 2,000 tokens).
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        name: str | None = None,
        prefix_cache: bool = True,
        prefix_cache_bytes: int = 2 * 1024**3,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if model is None or isinstance(model, (str, os.PathLike)):
            path = resolve_model_path(model)
            kwargs: dict[str, Any] = {}
            if dtype is not None:
                kwargs["dtype"] = _resolve_dtype(dtype)
            try:
                loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            except OSError as exc:
                raise AtlasError(f"could not load a causal LM from {str(model)!r}: {exc}") from exc
            self.device = torch.device(device or "cpu")
            # transformers declares PreTrainedModel.to with @wraps(torch.nn.Module.to): mypy sees the
            # unbound wrapper and wants the model as the first argument.
            self.model = loaded.to(self.device)  # type: ignore[arg-type]
            self.model.eval()
            default_name = EMBEDDED_MODEL_NAME if model in EMBEDDED_ALIASES else Path(path).name or str(path)
            tok_source: Any = tokenizer if tokenizer is not None else path
        else:
            if not callable(model) or not hasattr(model, "parameters"):
                raise AtlasError(
                    f"model must be None, a path/hub id or a loaded transformers/PEFT model, got {type(model).__name__}"
                )
            self.model = model
            param = next(iter(model.parameters()), None)
            current = param.device if param is not None else torch.device("cpu")
            self.device = torch.device(device) if device is not None else current
            if self.device != current:
                self.model.to(self.device)
            config = getattr(model, "config", None)
            default_name = Path(str(getattr(config, "_name_or_path", "") or "model")).name
            tok_source = tokenizer if tokenizer is not None else getattr(config, "_name_or_path", None)
            if tok_source is None:
                raise AtlasError("pass tokenizer= when passing a model object without a name_or_path")

        if isinstance(tok_source, (str, os.PathLike)):
            tok_source = AutoTokenizer.from_pretrained(str(tok_source))
        self.tokenizer = tok_source
        self.name = name or default_name
        self._eos_ids = _eos_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else (self._eos_ids[0] if self._eos_ids else 0))
        self._vocab = int(self.model.get_input_embeddings().weight.shape[0])
        template = getattr(self.tokenizer, "chat_template", None) or ""
        self._template_has_tools = "tools" in template
        self._cache_kwarg = _cache_kwarg(self.model)
        # One generation at a time per policy object: the server shares a policy across threads.
        self.lock = threading.RLock()
        if isinstance(prefix_cache_bytes, bool) or not isinstance(prefix_cache_bytes, int) or prefix_cache_bytes < 0:
            raise AtlasError(f"prefix_cache_bytes must be a non-negative int, got {prefix_cache_bytes!r}")
        self.prefix_cache = bool(prefix_cache)
        self._prefix = _PrefixStore(prefix_cache_bytes)
        # Reserve K/V room for the decode after the prefill (:mod:`.reserved_cache`); off: the
        # transformers cache, which copies all K/V on every step (kept for A/B benchmarks).
        self.reserve_kv = True

    # ------------------------------------------------------------------ prefix cache
    def invalidate_cache(self) -> None:
        """Drop every stored prefix K/V. Call it after changing the weights in a way the
        automatic check may miss (writes through ``param.data`` to parameters it does not
        sample); optimizer steps and in-place ``param.add_``-style updates are detected."""
        with self.lock:
            self._prefix.clear(invalidation=True)

    @property
    def prefix_cache_stats(self) -> dict[str, int]:
        """Counters of the prefix cache: ``hits``/``misses`` (prompts that did / did not reuse
        a stored prefix), ``reused_tokens``/``prefilled_tokens``, ``stored``, ``evictions`` (by
        the byte cap, an entry too large to store included), ``invalidations`` (non-empty store
        dropped because the weights changed), and the current ``entries``, ``tokens`` and ``bytes``."""
        with self.lock:
            return self._prefix.stats()

    def _weights_fingerprint(self) -> tuple:
        """A cheap value that changes when the weights do.

        Every in-place op on a parameter (optimizer steps, ``with no_grad(): p.add_(...)``,
        ``load_state_dict``) bumps its ``_version``; moving the model changes ``data_ptr``.
        Writes through ``param.data`` bump neither, so 16 strided values of every trainable
        parameter are sampled as well (an optimizer step moves essentially every element of a
        tensor it trains; a ``.data`` write to only a few elements could still be missed).
        Cost: ~2 ms for SmolLM2-135M's 272 parameter tensors on CPU, one device sync on GPU.
        """
        import torch

        params = list(self.model.parameters())
        versions = tuple((p.data_ptr(), p._version) for p in params)
        trainable = [p for p in params if p.requires_grad] or params
        with torch.no_grad():
            samples = []
            for p in trainable:
                flat = p.detach().reshape(-1)
                samples.append(flat[:: max(1, flat.numel() // 16)][:16].float())
            probe = tuple(torch.cat(samples).cpu().tolist()) if samples else ()
        return versions, probe

    # ------------------------------------------------------------------ chat templates
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        """Render ``messages`` (OpenAI-style dicts) with the tokenizer's chat template to ids.

        When the template has no notion of tools (SmolLM2's), ``tools`` are written into the
        system message in the Hermes format and assistant ``tool_calls`` become
        ``<tool_call>{...}</tool_call>`` text, so that nothing given is silently dropped.
        """
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {messages!r:.200}")
        msgs = [_normalise_message(m, inline_tool_calls=not self._template_has_tools) for m in messages]
        if tools and not self._template_has_tools:
            block = _TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
            if msgs and msgs[0]["role"] == "system":
                msgs[0] = {**msgs[0], "content": f"{msgs[0]['content']}\n\n{block}".strip()}
            else:
                msgs.insert(0, {"role": "system", "content": block})
        kwargs: dict[str, Any] = {"add_generation_prompt": add_generation_prompt, "tokenize": False}
        if tools and self._template_has_tools:
            kwargs["tools"] = defuse_all(tools, self.tokenizer)
        # Message contents and tool schemas hold outside text (tool results, MCP descriptions):
        # their special-token strings must not become control tokens in the rendered prompt.
        text = self.tokenizer.apply_chat_template(defuse_messages(msgs, self.tokenizer), **kwargs)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def generate_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> ChatGeneration:
        """Chat messages in, one completion out (with its token ids)."""
        prompt_ids = self.apply_chat_template(messages, tools=tools)
        gen = self.generate(
            [prompt_ids], max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop, seed=seed
        )[0]
        return ChatGeneration(
            text=gen.text,
            finish_reason=gen.finish_reason,
            prompt_ids=prompt_ids,
            completion_ids=gen.completion_ids,
            logprobs=gen.logprobs,
            usage={
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": gen.num_tokens,
                "total_tokens": len(prompt_ids) + gen.num_tokens,
            },
        )

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` as :class:`Generation` reports it (special tokens skipped)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        batch: list[list[int]],
        *,
        max_new_tokens: int | Sequence[int] = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] | Sequence[Sequence[str]] | None = None,
        seed: int | None = None,
    ) -> list[Generation]:
        """Sample one completion per prompt, all prompts decoded together with a KV cache.

        Returns one :class:`Generation` per prompt, in order. ``temperature == 0`` is greedy.
        """
        import torch

        n = len(batch)
        if n == 0:
            return []
        prompts = [self._check_prompt(i, p) for i, p in enumerate(batch)]
        limits = [int(x) for x in per_prompt(max_new_tokens, n, what="max_new_tokens", scalar=int)]
        if any(x < 1 for x in limits):
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        stops = per_prompt_stops(stop, n)
        max_pos = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(max_pos, int):
            for i, (p, lim) in enumerate(zip(prompts, limits, strict=True)):
                if len(p) + lim > max_pos:
                    raise ValueError(
                        f"batch[{i}]: {len(p)} prompt tokens + max_new_tokens {lim} exceed the model's context "
                        f"of {max_pos} tokens; shorten the prompt or lower max_new_tokens"
                    )
        greedy = temperature == 0
        scale = 1.0 if greedy else float(temperature)

        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed))

        with self.lock:
            was_training = self.model.training
            self.model.eval()  # no dropout (LoRA dropout included) while sampling
            store = self._prefix if self.prefix_cache else None
            if store is not None:
                store.check_weights(self._weights_fingerprint())
            try:
                with torch.inference_mode():
                    out_ids, out_lps, reasons, stop_hit = self._decode_loop(
                        prompts, limits, stops, greedy, scale, top_p, generator, store
                    )
            finally:
                if was_training:
                    self.model.train()

        return [
            Generation(
                completion_ids=out_ids[i],
                logprobs=out_lps[i],
                text=self.decode(out_ids[i]),
                finish_reason=reasons[i],
                stop=stop_hit[i],
                prompt_len=len(prompts[i]),
            )
            for i in range(n)
        ]

    def _prefill_shared(self, prompts: list[list[int]], store: _PrefixStore) -> None:
        """Prefill once each prefix several prompts of this batch share (see
        :func:`shared_prefixes`) and store it, so the batch's prefill reads it instead of
        computing it per prompt. Exact: the K/V of a prefix does not depend on what follows."""
        import torch

        matched = store.match(prompts)
        have = [e.cached_len if e is not None else 0 for e in matched]
        todo = shared_prefixes(prompts, have)
        if not todo:
            return
        # A stored entry's K/V covers all of its ids but the last (the last is fed with the
        # suffix): store each prefix with the K/V of prefix[:-1].
        rows = [p[:-1] for p in todo]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = _output_cache(out)
        if not _plain_dynamic(cache):
            return
        for j, prefix in enumerate(todo):
            real = mask[j].bool()
            store.put(
                prefix,
                [(layer.keys[j][:, real, :].clone(), layer.values[j][:, real, :].clone()) for layer in cache.layers],
            )
        store.counters["shared_prefills"] += len(todo)
        store.counters["shared_tokens"] += sum(len(r) for r in rows)

    def _check_prompt(self, i: int, prompt: Any) -> list[int]:
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ValueError(f"batch[{i}] must be a non-empty list of token ids, got {prompt!r:.100}")
        try:
            ids = [int(t) for t in prompt]
        except (TypeError, ValueError):
            raise ValueError(f"batch[{i}] must hold integer token ids, got {prompt!r:.100}") from None
        bad = [t for t in ids if not 0 <= t < self._vocab]
        if bad:
            raise ValueError(f"batch[{i}] has token ids outside the vocabulary (size {self._vocab}): {bad[:5]}")
        return ids

    def _decode_loop(
        self,
        prompts: list[list[int]],
        limits: list[int],
        stops: list[list[str]],
        greedy: bool,
        scale: float,
        top_p: float,
        generator: torch.Generator | None,
        store: _PrefixStore | None = None,
    ) -> tuple[list[list[int]], list[list[float]], list[FinishReason], list[str | None]]:
        import torch

        n = len(prompts)
        if store is not None and store.max_bytes > 0 and n > 1:
            self._prefill_shared(prompts, store)
        # Which prompts extend a stored sequence: their K/V for all but the suffix is reused.
        entries: list[_PrefixEntry | None] = store.match(prompts) if store is not None else [None] * n
        cached = [e.cached_len if e is not None else 0 for e in entries]
        suffixes = [p[c:] for p, c in zip(prompts, cached, strict=True)]
        c_width, width = max(cached), max(len(x) for x in suffixes)
        # Left padding of both parts: row i's columns are [pad | cached K/V | pad | suffix], so
        # every row's next token sits in the last column. Pads in the middle are masked out.
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, c_width + width), dtype=torch.long)
        for i, (suffix, c) in enumerate(zip(suffixes, cached, strict=True)):
            input_ids[i, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            mask[i, c_width - c : c_width] = 1
            mask[i, c_width + width - len(suffix) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        # Real tokens count up from 0 through the cached part, so the suffix continues at cached_len.
        positions = ((mask.cumsum(-1) - 1).clamp(min=0))[:, c_width:]
        cache_kwargs: dict[str, Any] = {}
        if c_width:
            cache_kwargs[self._cache_kwarg] = _batch_cache(entries, c_width, n, self.device)
        if store is not None:
            store.record(entries, prompts, cached)

        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **cache_kwargs,
        )
        cache = _output_cache(out)
        if self.reserve_kv and _plain_dynamic(cache):
            from atlas_plugins.policy.reserved_cache import reserve

            reserve(cache, max(limits))  # decode writes in place instead of re-copying the K/V each step
        logits = out.logits[:, -1, :]
        next_pos = positions[:, -1] + 1

        eos = set(self._eos_ids)
        max_pos = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        max_pos = max_pos if isinstance(max_pos, int) else None
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        reasons: list[FinishReason] = ["length"] * n
        stop_hit: list[str | None] = [None] * n
        rows = list(range(n))  # original index of each batch position still decoding
        alive = [True] * n  # only used with a cache type that cannot drop rows
        can_prune = hasattr(cache, "batch_select_indices")
        # Only a cache of plain full-attention layers can be sliced per row and rebuilt later
        # (a sliding-window layer keeps only its window; other kinds hold other state).
        capture = store is not None and store.max_bytes > 0 and _plain_dynamic(cache)

        while True:
            logps = torch.log_softmax(logits.float() / scale, dim=-1)
            if greedy:
                tokens = logits.argmax(dim=-1)
            else:
                probs = logps.exp()
                if top_p < 1.0:
                    probs = _top_p_filter(probs, top_p)
                tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            token_lps = logps.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            tok_list, lp_list = tokens.tolist(), token_lps.tolist()

            keep: list[int] = []
            for j, i in enumerate(rows):
                if not alive[j]:
                    continue
                out_ids[i].append(tok_list[j])
                out_lps[i].append(lp_list[j])
                if tok_list[j] in eos:
                    reasons[i] = "eos"
                    stop_hit[i] = self.tokenizer.convert_ids_to_tokens(tok_list[j])
                elif stops[i] and (hit := _find_stop(self.decode(out_ids[i]), stops[i])) is not None:
                    reasons[i], stop_hit[i] = "stop", hit
                elif len(out_ids[i]) >= limits[i]:
                    reasons[i] = "length"
                else:
                    keep.append(j)
                    continue
                if capture and store is not None:  # capture implies a store
                    # The row is done: its cache holds prompt + all sampled ids but the last one
                    # (not fed yet). Keep the real columns only (the mask's ones), copied out.
                    real = mask[j].bool()
                    kv = [(layer.keys[j][:, real, :], layer.values[j][:, real, :]) for layer in cache.layers]
                    store.put(prompts[i] + out_ids[i], kv)
            if not keep:
                break
            # A riding dead row must not run past the model's positions (learned position tables).
            near_end = max_pos is not None and int(next_pos.max()) >= max_pos - 1
            if can_prune and (len(keep) <= 0.75 * len(rows) or (near_end and len(keep) < len(rows))):
                # Drop finished rows from the batch and the KV cache: the rest decode faster. Not
                # for every finished row: the selection copies the whole cache (measured: 10 % of
                # a 27-row evaluation's time when done per row), so dead rows ride along until a
                # quarter of the batch is done.
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                tokens, mask, next_pos = tokens[idx], mask[idx], next_pos[idx]
                rows = [rows[j] for j in keep]
                alive = [True] * len(rows)
            elif len(keep) < len(rows):
                # A cache that cannot drop rows: finished rows keep decoding, their output ignored.
                kept = set(keep)
                alive = [j in kept for j in range(len(rows))]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            out = self.model(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=mask,
                position_ids=next_pos.unsqueeze(-1),
                use_cache=True,
                **{self._cache_kwarg: cache},
            )
            cache = _output_cache(out)
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        return out_ids, out_lps, reasons, stop_hit


@contextlib.contextmanager
def merged_adapters(model: Any) -> Iterator[None]:
    """Fold a PEFT model's active LoRA adapters into its base weights for the duration (and
    unfold them after): generation then runs one matmul per layer instead of three, which on a
    CPU is most of a decode step (measured: 235 vs 143 ms per step at batch 8 for SmolLM2-135M).
    The weights after are the weights before up to float rounding (W + d - d), and nothing may
    train while merged. A model without adapters, or already merged, is left as it is."""
    import torch

    tuner = getattr(model, "base_model", None)
    layers = [m for m in model.modules() if hasattr(m, "merged_adapters")] if tuner is not None else []
    if (
        tuner is None
        or not hasattr(tuner, "merge_adapter")
        or not layers
        or any(getattr(m, "merged", False) for m in layers)
    ):
        yield
        return
    with torch.no_grad():
        tuner.merge_adapter()
    try:
        yield
    finally:
        with torch.no_grad():
            tuner.unmerge_adapter()


#: Prompts of one batch that share at least this many leading tokens (and have no longer stored
#: prefix) get the shared part prefilled once: a GRPO group's identical prompts, or evaluation
#: tasks whose system text is the same.
MIN_SHARED_TOKENS = 32


def shared_prefixes(prompts: list[list[int]], have: list[int], min_tokens: int = MIN_SHARED_TOKENS) -> list[list[int]]:
    """Token prefixes worth prefilling once for this batch: for each prompt, the longest prefix
    it shares with another prompt of the batch (at least ``min_tokens`` long, and at most all
    but its last token, which is always fed), when that is longer than the ``have[i]`` tokens
    it already has stored. Sorted, a prompt's longest shared prefix is with a neighbour; these
    are the deepest branching points of the batch's prefix tree (tasks on the same server share
    their whole system text, a GRPO group its whole prompt).

    A prefix is prefilled from scratch, so it is kept only when that costs less than what the
    rows sharing it would prefill on their own (the sum of ``k - have[i]`` over them, above
    ``k``): rows that already hold most of it (turn 2 of identical greedy rows) extend their
    own stored sequences instead."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])

    def lcp(a: list[int], b: list[int]) -> int:
        n = min(len(a), len(b))
        k = 0
        while k < n and a[k] == b[k]:
            k += 1
        return k

    adjacent = [lcp(prompts[order[j]], prompts[order[j + 1]]) for j in range(len(order) - 1)]
    saving: dict[tuple[int, ...], int] = {}  # prefix -> tokens its rows would prefill without it
    for j, i in enumerate(order):
        k = max(adjacent[j - 1] if j > 0 else 0, adjacent[j] if j < len(adjacent) else 0)
        k = min(k, len(prompts[i]) - 1)
        if k >= min_tokens and have[i] < k:
            key = tuple(prompts[i][:k])
            saving[key] = saving.get(key, 0) + k - have[i]
    return [list(p) for p, own in saving.items() if own > len(p)]


@dataclass(eq=False)
class _PrefixEntry:
    """One finished row: its full sequence and the K/V of all of it but the last token.

    The last sampled token was never fed through the model, so ``kv`` covers ``ids[:-1]``:
    ``cached_len == len(ids) - 1``. ``kv`` holds one ``(keys, values)`` pair per layer, each
    ``[kv_heads, cached_len, head_dim]`` on the model's device, padding already removed.
    """

    ids: tuple[int, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    nbytes: int = 0

    @property
    def cached_len(self) -> int:
        return len(self.ids) - 1


@dataclass
class _PrefixStore:
    """Stored prefixes, least recently stored first, capped at ``max_bytes`` of K/V.

    An entry is removed once a prompt used it: each sequence continues once (the next turn
    stores the longer sequence), so keeping it would only hold memory.
    """

    max_bytes: int
    entries: OrderedDict[int, _PrefixEntry] = field(default_factory=OrderedDict)
    fingerprint: Any = None
    bytes: int = 0
    _next: int = 0
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "hits",
                "misses",
                "reused_tokens",
                "prefilled_tokens",
                "stored",
                "evictions",
                "invalidations",
                "shared_prefills",
                "shared_tokens",
            ),
            0,
        )
    )

    def clear(self, *, invalidation: bool = False) -> None:
        if invalidation and self.entries:
            self.counters["invalidations"] += 1
        self.entries.clear()
        self.bytes = 0

    def check_weights(self, fingerprint: Any) -> None:
        """Empty the store when the weights changed since the entries were computed."""
        if self.fingerprint is not None and fingerprint != self.fingerprint:
            self.clear(invalidation=True)
        self.fingerprint = fingerprint

    def match(self, prompts: list[list[int]]) -> list[_PrefixEntry | None]:
        """For each prompt, the longest stored sequence that is a prefix of it (or ``None``).

        Two prompts may share one entry (its tensors are only read), but between equally long
        candidates an entry no other prompt of the batch took is preferred: identical sequences
        (a GRPO group's rows often start alike) are stored once per row and should each be used
        and so evicted."""
        found: list[_PrefixEntry | None] = []
        taken: set[int] = set()
        for prompt in prompts:
            best: _PrefixEntry | None = None
            for entry in self.entries.values():
                k = len(entry.ids)
                if k > len(prompt) or prompt[k - 1] != entry.ids[-1]:  # cheap rejections first
                    continue
                if best is not None and (k < len(best.ids) or (k == len(best.ids) and id(best) not in taken)):
                    continue
                if tuple(prompt[:k]) == entry.ids:
                    best = entry
            if best is not None:
                taken.add(id(best))
            found.append(best)
        return found

    def record(self, used: list[_PrefixEntry | None], prompts: list[list[int]], cached: list[int]) -> None:
        """Count hits and misses, and evict the entries just used."""
        for entry, prompt, c in zip(used, prompts, cached, strict=True):
            self.counters["hits" if entry is not None else "misses"] += 1
            self.counters["reused_tokens"] += c
            self.counters["prefilled_tokens"] += len(prompt) - c
        gone = {id(e) for e in used if e is not None}
        for key in [k for k, e in self.entries.items() if id(e) in gone]:
            self.bytes -= self.entries.pop(key).nbytes

    def put(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if nbytes > self.max_bytes:
            self.counters["evictions"] += 1  # would not fit even alone
            return
        self.entries[self._next] = _PrefixEntry(tuple(ids), kv, nbytes)
        self._next += 1
        self.bytes += nbytes
        self.counters["stored"] += 1
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.nbytes
            self.counters["evictions"] += 1

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "entries": len(self.entries),
            "tokens": sum(e.cached_len for e in self.entries.values()),
            "bytes": self.bytes,
        }


def _plain_dynamic(cache: Any) -> bool:
    """Whether ``cache`` is a ``DynamicCache`` of full-attention layers only, all filled — the
    one kind whose rows can be cut out per token and rebuilt by :func:`_batch_cache`."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    from atlas_plugins.policy.reserved_cache import ReservedLayer

    return isinstance(cache, DynamicCache) and all(
        type(layer) in (DynamicLayer, ReservedLayer)
        and getattr(layer, "keys", None) is not None
        and layer.keys.dim() == 4  # type: ignore[union-attr]  # a DynamicLayer, by the type check
        for layer in cache.layers
    )


def _batch_cache(entries: list[_PrefixEntry | None], width: int, n: int, device: Any) -> Any:
    """A ``DynamicCache`` for a batch of ``n`` rows whose row ``i`` holds ``entries[i]``'s K/V
    right-aligned in ``width`` columns (zeros to its left and for rows without an entry; the
    attention mask hides them)."""
    from transformers.cache_utils import DynamicCache

    first = next(e for e in entries if e is not None)
    layers = []
    for layer_idx, (k0, v0) in enumerate(first.kv):
        keys = k0.new_zeros((n, k0.shape[0], width, k0.shape[-1]))
        values = v0.new_zeros((n, v0.shape[0], width, v0.shape[-1]))
        for i, entry in enumerate(entries):
            if entry is not None:
                k, v = entry.kv[layer_idx]
                keys[i, :, width - entry.cached_len :] = k
                values[i, :, width - entry.cached_len :] = v
        layers.append((keys.to(device), values.to(device)))
    return DynamicCache(ddp_cache_data=layers)


def _cache_kwarg(model: Any) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache``; older model code still uses the
    old name. Look at the innermost model's ``forward`` (PEFT wrappers forward ``**kwargs``)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability mass reaches ``top_p``."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly before each token
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always survives
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def _find_stop(text: str, stops: list[str]) -> str | None:
    """The stop string that occurs first in ``text`` (``None`` when none does)."""
    best: tuple[int, str] | None = None
    for s in stops:
        k = text.find(s)
        if k >= 0 and (best is None or k < best[0]):
            best = (k, s)
    return best[1] if best else None


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
    ids: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for source in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        for t in source if isinstance(source, (list, tuple)) else [source]:
            if int(t) not in ids:
                ids.append(int(t))
    return ids


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise AtlasError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16, auto")
    return getattr(torch, _DTYPES[key])


def _normalise_message(message: dict[str, Any], *, inline_tool_calls: bool) -> dict[str, Any]:
    """Make a message safe for simple templates: ``content`` always a string, content parts
    joined, and (for templates without tool support) assistant tool calls written inline."""
    msg = dict(message)
    content = content_text(msg.get("content"))  # OpenAI content parts joined
    calls = msg.get("tool_calls")
    if inline_tool_calls and calls:
        rendered = []
        for name, args in tool_call_functions(msg):
            rendered.append(format_call(name, loads_arguments(args)))
        content = (content + "\n" if content else "") + "\n".join(rendered)
        msg.pop("tool_calls", None)
    msg["content"] = content
    return msg
