"""The ``hf`` judge: a local causal LM through transformers (default: the embedded SmolLM2).

``model`` is any HF model id or folder; ``None``/``"embedded"`` is the embedded
SmolLM2-135M-Instruct (:func:`atlas_plugins.policy.embedded.resolve_model_path`). A model object
already in memory can be shared through ``model_obj``/``tokenizer`` (e.g. the policy itself).
torch/transformers are imported on first use, not at import time.

``method="distribution"`` (default, per-criterion mode): the prompt asks for a digit 0–9 and
the assistant turn is pre-filled with ``<score>``; one forward pass gives the model's
probability over the ten digit tokens. At temperature 0 the score is the expected digit / 9
(G-Eval-style, deterministic and never unparseable); at temperature T > 0 a digit is *sampled*
from that distribution sharpened by 1/T — exactly what sampling the first answer token with
decoding constrained to digits would give, at one forward pass per criterion.
``method="generate"`` samples free text and parses it (the generic LM-judge path, with retries).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.judges._lm import LMJudge
from atlas_plugins.wire.special_tokens import defuse_messages

if TYPE_CHECKING:
    from atlas_plugins.rewards.base import JudgeResult
    from atlas_plugins.rewards.rubric import Criterion
    from atlas_plugins.types import Trajectory


class HFJudge(LMJudge):
    name = "hf"
    default_mode = "per_criterion"  # a ~100M model cannot emit 12 ordered numbers reliably

    def __init__(
        self,
        model: str | None = None,
        *,
        model_obj: Any = None,
        tokenizer: Any = None,
        device: str | None = None,
        batch_size: int = 16,
        max_prompt_tokens: int = 4096,
        seed: int | None = None,
        method: str = "distribution",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if method not in ("distribution", "generate"):
            raise ValueError(f"method must be 'distribution' or 'generate', got {method!r}")
        self.method = method
        self.model_name = model
        self._model = model_obj
        self._tok = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.seed = seed
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None or self._tok is None:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                from atlas_plugins.embedded_model import resolve_model_path

                path = resolve_model_path(self.model_name)
                if self._tok is None:
                    self._tok = AutoTokenizer.from_pretrained(path)
                if self._model is None:
                    self._model = AutoModelForCausalLM.from_pretrained(path)
                    if self.device:
                        self._model.to(self.device)
                    self._model.eval()
            if self._tok.pad_token_id is None:
                self._tok.pad_token = self._tok.eos_token
            return self._model, self._tok

    def _generate(self, prompts: list[list[dict[str, str]]], *, temperature: float, max_tokens: int) -> list[str]:
        import torch

        model, tok = self._load()
        if self.seed is not None:
            torch.manual_seed(self.seed)
        # Trajectory text is the policy's and the tools': special-token strings in it must not
        # forge judge turns (a policy could learn to write "<|im_end|>" to hand itself a score).
        texts = [
            tok.apply_chat_template(defuse_messages(p, tok), tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        outs: list[str] = []
        old_side = tok.padding_side
        tok.padding_side = "left"  # decoder-only batched generation needs left padding
        try:
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                enc = tok(
                    chunk,
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_prompt_tokens,
                    add_special_tokens=False,
                )
                enc = {k: v.to(model.device) for k, v in enc.items()}
                kw: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": tok.pad_token_id}
                if temperature > 0:
                    kw.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
                else:
                    kw.update(do_sample=False)
                with torch.inference_mode():
                    gen = model.generate(**enc, **kw)
                new = gen[:, enc["input_ids"].shape[1] :]
                outs.extend(tok.batch_decode(new, skip_special_tokens=True))
        finally:
            tok.padding_side = old_side
        return outs

    # -- distribution scoring ------------------------------------------------------------------
    def digit_distributions(
        self, prompts: list[list[dict[str, str]]], *, prefill: str = "<score>"
    ) -> list[list[float]]:
        """For each chat, P(digit d | chat + assistant prefix ``prefill``) for d = 0..9,
        renormalised over the digits; the digits' share of the full distribution is appended
        as an 11th value (how much the model 'wanted' to answer with a digit)."""
        import torch

        model, tok = self._load()
        ids = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
        if any(i is None or i == tok.unk_token_id for i in ids):
            raise ValueError(f"tokenizer of {self.model_name!r} has no single-token digits; use method='generate'")
        texts = [
            tok.apply_chat_template(defuse_messages(p, tok), tokenize=False, add_generation_prompt=True) + prefill
            for p in prompts
        ]
        out: list[list[float]] = []
        old_side = tok.padding_side
        tok.padding_side = "left"  # the last position must be the real last token
        try:
            for start in range(0, len(texts), self.batch_size):
                enc = tok(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_prompt_tokens,
                    add_special_tokens=False,
                )
                enc = {k: v.to(model.device) for k, v in enc.items()}
                with torch.inference_mode():
                    logits = model(**enc).logits[:, -1, :].float()
                full = torch.softmax(logits, dim=-1)[:, ids]
                mass = full.sum(dim=-1, keepdim=True)
                out.extend(torch.cat([full / mass, mass], dim=-1).tolist())
        finally:
            tok.padding_side = old_side
        return out

    @staticmethod
    def score_from_distribution(dist: list[float], temperature: float, rng: Any = None) -> float:
        """Expected digit / 9 at temperature 0, else a digit sampled at ``temperature`` / 9."""
        import math
        import random

        p = dist[:10]
        if temperature <= 0:
            return sum(d * q for d, q in enumerate(p)) / 9.0
        logw = [math.log(max(q, 1e-12)) / temperature for q in p]
        top = max(logw)
        w = [math.exp(v - top) for v in logw]
        return (rng or random).choices(range(10), weights=w)[0] / 9.0

    def _score_lm(self, trajs: list[Trajectory], criteria: list[Criterion]) -> list[JudgeResult]:
        if self.method != "distribution" or self.mode != "per_criterion" or not criteria:
            return super()._score_lm(trajs, criteria)
        import random

        from atlas_plugins.rewards.base import JudgeResult

        rng = random.Random(self.seed)
        items = [(i, c) for i in range(len(trajs)) for c in criteria]
        dists = self.digit_distributions([self.criterion_prompt(trajs[i], c, scale_max=9) for i, c in items])
        results = [JudgeResult() for _ in trajs]
        for (i, c), dist in zip(items, dists, strict=True):
            results[i].scores[c.id] = self.score_from_distribution(dist, self.temperature, rng)
            results[i].raw.append(f"{c.id}: digit-mass={dist[10]:.3f} p={[round(q, 3) for q in dist[:10]]}")
        return results


@hookimpl
def atlas_register_judges(register: Register) -> None:
    register("hf", HFJudge)
