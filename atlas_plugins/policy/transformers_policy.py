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
next ``generate`` call samples from the updated weights (there is nothing to refresh).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from atlas_plugins.errors import AtlasError
from atlas_plugins.policy.base import ChatGeneration, Generation, per_prompt, per_prompt_stops
from atlas_plugins.policy.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_ALIASES, resolve_model_path

if TYPE_CHECKING:  # pragma: no cover - typing only; torch is imported lazily
    import torch

_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}

#: Hermes-style tool block, used when the model's chat template ignores ``tools`` (SmolLM2's
#: does): without it the tool schemas would silently never reach the model.
_TOOLS_PREAMBLE = (
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


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
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        name: str | None = None,
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
            self.model = loaded.to(self.device)
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
            kwargs["tools"] = tools
        text = self.tokenizer.apply_chat_template(msgs, **kwargs)
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
            usage={"prompt_tokens": len(prompt_ids), "completion_tokens": gen.num_tokens,
                   "total_tokens": len(prompt_ids) + gen.num_tokens},
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
            for i, (p, lim) in enumerate(zip(prompts, limits)):
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
            try:
                with torch.inference_mode():
                    out_ids, out_lps, reasons, stop_hit = self._decode_loop(
                        prompts, limits, stops, greedy, scale, top_p, generator
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
        generator: "torch.Generator | None",
    ) -> tuple[list[list[int]], list[list[float]], list[str], list[str | None]]:
        import torch

        n = len(prompts)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every row's next token sits in the last column
            input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        out = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        cache = _output_cache(out)
        logits = out.logits[:, -1, :]
        next_pos = positions[:, -1] + 1

        eos = set(self._eos_ids)
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        reasons: list[str] = ["length"] * n
        stop_hit: list[str | None] = [None] * n
        rows = list(range(n))  # original index of each batch position still decoding
        alive = [True] * n  # only used with a cache type that cannot drop rows
        can_prune = hasattr(cache, "batch_select_indices")

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
            if not keep:
                break
            if can_prune and len(keep) < len(rows):
                # Drop finished rows from the batch and the KV cache: the rest decode faster.
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


def _top_p_filter(probs: "torch.Tensor", top_p: float) -> "torch.Tensor":
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
    content = msg.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):  # OpenAI content parts
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    elif not isinstance(content, str):
        content = str(content)
    calls = msg.get("tool_calls")
    if inline_tool_calls and calls:
        rendered = []
        for call in calls:
            fn = call.get("function", call) if isinstance(call, dict) else {}
            args = fn.get("arguments", {})
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    pass
            rendered.append(
                "<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + "</tool_call>"
            )
        content = (content + "\n" if content else "") + "\n".join(rendered)
        msg.pop("tool_calls", None)
    msg["content"] = content
    return msg
