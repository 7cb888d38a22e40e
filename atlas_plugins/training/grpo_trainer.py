"""``AtlasGRPOTrainer``: TRL's ``GRPOTrainer`` with the same loss at a fraction of the FLOPs.

Two changes, both exact (the same outputs and gradients as the parent class):

* **Shared-prefix log-probs.** Every pass that scores completions (the training forward and
  backward, and the reference pass when ``beta > 0``) runs over the batch's prefix tree
  (:mod:`atlas_plugins.training.shared_prefix`): a group's shared prompt, and any tokens rows
  share beyond it, are computed once; only completion positions go through the LM head. Used
  when the model supports it (a transformers model with attention through the attention
  interface and a plain LM head, not wrapped for distributed training); otherwise the parent's
  path runs unchanged.
* **No work for rows that cannot move the policy.** Under the default ``dapo`` loss with
  ``beta == 0``, a row whose advantage is zero (every member of its group scored alike)
  contributes exactly zero to the loss and its gradient, so the training pass skips it; the loss
  normaliser still counts its tokens, so the loss is identical. (TRL logs how often it happens as
  ``frac_reward_zero_std``; the per-step entropy and clip metrics then cover the live rows.)

The passes that remain, and why: the rollout (generation, with the policy's own prefix KV cache);
the reference pass only when ``beta > 0``; an "old" pass only when TRL needs one
(``num_iterations > 1`` or ``steps_per_generation > gradient_accumulation_steps``); the training
forward and backward.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from trl import GRPOTrainer

from atlas_plugins.training import shared_prefix as prefix_tree

_MULTIMODAL = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


class TimedGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that logs each step's time per phase (``atlas/time/*``); nothing else changes.
    Phases: ``rollout``, ``score_no_grad`` (reference/old passes), ``train_forward``, and
    ``backward_and_rest`` (backward, optimizer step, rewards, padding)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: dict[str, float] = {"rollout": 0.0, "score_no_grad": 0.0, "train_forward": 0.0}

    def _generate(self, prompts: list[Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return super()._generate(prompts)
        finally:
            self._phase["rollout"] += time.perf_counter() - t0

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        phase = "train_forward" if torch.is_grad_enabled() else "score_no_grad"
        t0 = time.perf_counter()
        try:
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)
        finally:
            self._phase[phase] += time.perf_counter() - t0

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = super().training_step(model, inputs, num_items_in_batch)
        total = time.perf_counter() - t0
        assert self.model is not None  # the Trainer holds its model while it trains
        mode = "train" if self.model.training else "eval"
        for name, seconds in self._phase.items():
            self._metrics[mode][f"atlas/time/{name}_s"].append(seconds)
        self._metrics[mode]["atlas/time/backward_and_rest_s"].append(max(0.0, total - sum(self._phase.values())))
        self._phase = dict.fromkeys(self._phase, 0.0)
        self._after_step(mode)
        return out

    def _after_step(self, mode: str) -> None:
        """Hook for subclasses' per-step metrics."""


class AtlasGRPOTrainer(TimedGRPOTrainer):
    """``GRPOTrainer`` with exact shared-prefix scoring (see the module docs), timed by phase
    (:class:`TimedGRPOTrainer`). Extra keyword argument: ``shared_prefix`` (default True) turns
    the tree path off when False."""

    def __init__(self, *args: Any, shared_prefix: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        base = self._transformers_model()
        self._tree = bool(shared_prefix and base is not None and shared_prefix_supported(base))
        if self._tree:
            prefix_tree.enable(base)
        self.prefix_stats = {"packed_tokens": 0, "unshared_tokens": 0}

    def _after_step(self, mode: str) -> None:
        if self.prefix_stats["unshared_tokens"]:
            self._metrics[mode]["atlas/shared_prefix/token_fraction"].append(
                self.prefix_stats["packed_tokens"] / self.prefix_stats["unshared_tokens"]
            )
        self.prefix_stats = {"packed_tokens": 0, "unshared_tokens": 0}

    def _transformers_model(self) -> Any:
        model = self.model
        get_base_model = getattr(model, "get_base_model", None)  # a PEFT model's unwrapping
        return get_base_model() if get_base_model is not None else model

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **multimodal: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        phase = "train_forward" if torch.is_grad_enabled() else "score_no_grad"
        t0 = time.perf_counter()
        try:
            return self._logps(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                multimodal,
            )
        finally:
            self._phase[phase] += time.perf_counter() - t0

    def _logps(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None,
        compute_entropy: bool,
        compute_aux_loss: bool,
        multimodal: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        wrapped = self.accelerator.unwrap_model(model) is not model  # DDP/FSDP: go through the wrapper
        if not self._tree or wrapped or compute_aux_loss or any(multimodal.get(k) is not None for k in _MULTIMODAL):
            return GRPOTrainer._get_per_token_logps_and_entropies(
                self,
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **multimodal,
            )
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        with self.accelerator.autocast():
            logps, entropy, layout = prefix_tree.tree_logprobs(
                base,
                input_ids,
                attention_mask,
                logits_to_keep,
                temperature=self.temperature,
                compute_entropy=compute_entropy,
            )
        self.prefix_stats["packed_tokens"] += layout.packed_tokens
        self.prefix_stats["unshared_tokens"] += layout.unshared_tokens
        return logps, entropy, None

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        advantages = inputs["advantages"]
        live = advantages.reshape(advantages.shape[0], -1).abs().amax(dim=1) > 0
        if not self._can_skip_dead_rows() or bool(live.all()) or advantages.shape[0] == 0:
            return super()._compute_loss(model, inputs)
        if not bool(live.any()):
            live[0] = True  # keep one row: the loss is zero either way, and TRL's metrics need a row
        n = advantages.shape[0]
        keep = {
            k: (v[live] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n else v)
            for k, v in inputs.items()
        }
        return super()._compute_loss(model, keep)

    def _can_skip_dead_rows(self) -> bool:
        """Skipping zero-advantage rows is exact only for a loss that is a plain token sum over a
        fixed normaliser (``dapo``), with no KL term and no batch-dependent token masks; and on one
        process only: TRL gathers per-row tensors across processes, which must keep equal sizes
        (a rank with fewer rows aborted gloo: "Received data size doesn't match expected size")."""
        return (
            self.accelerator.num_processes == 1
            and self.beta == 0.0
            and self.loss_type == "dapo"
            and self.top_entropy_quantile >= 1.0
            and getattr(self, "off_policy_mask_threshold", None) is None
        )


def shared_prefix_supported(model: Any) -> bool:
    return prefix_tree.supports(model)
