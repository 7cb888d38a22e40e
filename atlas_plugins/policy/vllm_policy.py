"""A vLLM-backed policy (extra ``vllm``, GPU): fast rollouts for the same agent and trainer.

Two ways to reach vLLM, matching TRL's two vLLM modes:

* **colocate** — a ``vllm.LLM`` in the training process. During GRPO it is TRL's own engine
  (``trainer.vllm_generation.llm``), whose weights TRL syncs from the training model (LoRA
  merged into the pushed weights) before each ``rollout_func`` call — so the agent acts with the
  current policy, "in place". Standalone (evaluation): :meth:`VLLMPolicy.from_pretrained`.
* **server** — ``trl vllm-serve`` on other GPUs, through TRL's ``VLLMClient``
  (``trainer.vllm_generation.vllm_client``); TRL pushes the weights to it each step.

Either way the agent passes token ids and gets back the sampled ids with their logprobs. TRL
starts vLLM with ``logprobs_mode="processed_logprobs"``, i.e. log-probabilities after
temperature scaling (and top-p, when used), which is the convention of
:mod:`atlas_plugins.policy.base` up to the top-p renormalisation. The trainer picks this policy
when ``use_vllm=True`` (see :meth:`atlas_plugins.training.trainer.AtlasTrainer._policy`).

Not verified on a GPU in this repository's CI (no GPU there); see BENCHMARKS.md for status.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from atlas_plugins.policy.base import FinishReason, Generation, per_prompt, per_prompt_stops
from atlas_plugins.wire.special_tokens import defuse_all, defuse_messages

if TYPE_CHECKING:  # vllm, trl and torch load only when a vLLM policy is built
    import torch
    from trl import GRPOTrainer
    from trl.generation.vllm_client import VLLMClient
    from vllm import LLM

    from atlas_plugins.types import TokenizerLike

#: Per prompt: the sampled ids, and their log-probabilities.
_Sampled = tuple[list[list[int]], list[list[float]]]


class VLLMPolicy:
    """Token-level policy over vLLM. Give exactly one of ``llm`` (a ``vllm.LLM``) or ``client``
    (a ``trl.generation.vllm_client.VLLMClient``), and the tokenizer."""

    def __init__(
        self,
        *,
        llm: LLM | None = None,
        client: VLLMClient | None = None,
        tokenizer: TokenizerLike,
        name: str = "vllm",
        model: torch.nn.Module | None = None,
    ) -> None:
        if (llm is None) == (client is None):
            raise ValueError("VLLMPolicy needs exactly one of llm= (colocate) or client= (server mode)")
        self.llm = llm
        self.client = client
        self.tokenizer = tokenizer
        self.name = name
        #: The training model when built by the trainer (the agent only reads ``tokenizer``).
        self.model = model
        self.lock = threading.RLock()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model: str, **llm_kwargs: Any) -> VLLMPolicy:
        """A standalone engine for evaluation, e.g. ``from_pretrained("Qwen/Qwen3-4B-Instruct-2507")``."""
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError(
                "the vLLM policy needs the 'vllm' extra: pip install 'atlas-plugins[vllm]' (GPU)"
            ) from exc
        from atlas_plugins.embedded_model import resolve_model_path

        path = str(resolve_model_path(model))
        llm = LLM(model=path, logprobs_mode="processed_logprobs", **llm_kwargs)
        return cls(llm=llm, tokenizer=llm.get_tokenizer(), name=model)

    @classmethod
    def from_trainer(cls, trainer: GRPOTrainer, tokenizer: TokenizerLike, name: str = "vllm") -> VLLMPolicy:
        """The engine TRL made for a ``GRPOTrainer`` with ``use_vllm=True`` (either mode)."""
        gen = getattr(trainer, "vllm_generation", None)
        if gen is None:
            raise ValueError("the trainer has no vLLM engine; set use_vllm=True in the config")
        model = trainer.accelerator.unwrap_model(trainer.model)
        if getattr(gen, "mode", None) == "server":
            return cls(client=gen.vllm_client, tokenizer=tokenizer, name=name, model=model)
        return cls(llm=gen.llm, tokenizer=tokenizer, name=name, model=model)

    # -- the Policy protocol --------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        kwargs: dict[str, Any] = {"add_generation_prompt": add_generation_prompt, "tokenize": False}
        if tools:
            kwargs["tools"] = defuse_all(tools, self.tokenizer)
        # Outside text must not forge control tokens (see atlas_plugins.wire.special_tokens).
        text = self.tokenizer.apply_chat_template(defuse_messages(messages, self.tokenizer), **kwargs)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

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
        n = len(batch)
        if n == 0:
            return []
        limits = [int(x) for x in per_prompt(max_new_tokens, n, what="max_new_tokens", scalar=int)]
        stops = per_prompt_stops(stop, n)
        with self.lock:
            if self.llm is not None:
                ids, lps = self._colocate(batch, limits, stops, temperature, top_p, seed)
            else:
                ids, lps = self._server(batch, limits, stops, temperature, top_p, seed)
        return [self._generation(batch[i], ids[i], lps[i], limits[i], stops[i]) for i in range(n)]

    # -- backends ------------------------------------------------------------------------------------
    def _colocate(
        self,
        batch: list[list[int]],
        limits: list[int],
        stops: list[list[str]],
        temperature: float,
        top_p: float,
        seed: int | None,
    ) -> _Sampled:
        from vllm import SamplingParams

        assert self.llm is not None

        params = [
            SamplingParams(
                n=1,
                max_tokens=lim,
                temperature=temperature,
                top_p=top_p,
                stop=st or None,
                include_stop_str_in_output=True,
                logprobs=0,
                seed=None if seed is None else seed + i,
            )
            for i, (lim, st) in enumerate(zip(limits, stops, strict=True))
        ]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in batch], sampling_params=params, use_tqdm=False)
        ids: list[list[int]] = []
        lps: list[list[float]] = []
        for out in outs:
            o = out.outputs[0]
            ids.append(list(o.token_ids))
            # logprobs=0: one dict per position holding (at least) the sampled token's Logprob.
            lps.append([float(pos[tok].logprob) for tok, pos in zip(o.token_ids, o.logprobs or [], strict=False)])
        return ids, lps

    def _server(
        self,
        batch: list[list[int]],
        limits: list[int],
        stops: list[list[str]],
        temperature: float,
        top_p: float,
        seed: int | None,
    ) -> _Sampled:
        # The client takes one max_tokens/stop per request: group prompts that share them.
        assert self.client is not None
        ids: list[list[int]] = [[] for _ in batch]
        lps: list[list[float]] = [[] for _ in batch]
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, (lim, st) in enumerate(zip(limits, stops, strict=True)):
            groups.setdefault((lim, tuple(st)), []).append(i)
        for (max_tokens, stop_strings), idx in groups.items():
            kwargs: dict[str, Any] = {"include_stop_str_in_output": True}
            if stop_strings:
                kwargs["stop"] = list(stop_strings)
            if seed is not None:
                kwargs["seed"] = seed + idx[0]
            out = self.client.generate(
                prompts=[list(batch[i]) for i in idx],
                n=1,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                logprobs=0,
                generation_kwargs=kwargs,
            )
            # Per token, the top logprobs (the sampled token's first); TRL annotates all values as ids.
            logprobs = cast("list[list[list[float]]]", out["logprobs"])
            for j, i in enumerate(idx):
                ids[i] = list(out["completion_ids"][j])
                lps[i] = [float(p[0]) for p in logprobs[j]]
        return ids, lps

    def _generation(
        self, prompt: list[int], ids: list[int], lps: list[float], limit: int, stops: list[str]
    ) -> Generation:
        if len(lps) != len(ids):
            raise RuntimeError(f"vLLM returned {len(lps)} logprobs for {len(ids)} tokens; it must run with logprobs=0")
        text = self.decode(ids)
        eos = self.tokenizer.eos_token_id
        hit = next((s for s in stops if s and s in text), None)
        reason: FinishReason
        stop: str | None
        if hit is not None:
            reason, stop = "stop", hit
        elif ids and eos is not None and ids[-1] == eos:
            reason, stop = "eos", self.tokenizer.eos_token
        else:
            reason, stop = "length", None
        return Generation(
            completion_ids=ids, logprobs=lps, text=text, finish_reason=reason, stop=stop, prompt_len=len(prompt)
        )
