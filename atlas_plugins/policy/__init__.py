"""Policy backends: the language model an agent acts with and the trainer updates.

* :class:`~atlas_plugins.policy.transformers_policy.TransformersPolicy` — local and trainable;
  batched, KV-cached generation that records sampled ids and their logprobs.
* :class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy` — any OpenAI-compatible endpoint,
  for evaluation only (text out, no token ids).
* :class:`~atlas_plugins.policy.vllm_policy.VLLMPolicy` — vLLM (extra ``vllm``, GPU): TRL's
  colocated engine or a ``trl vllm-serve`` server during training, or a standalone engine.
* :class:`~atlas_plugins.serving.server.PolicyServer` — serves a local policy as an
  OpenAI-compatible endpoint and records token ids per request.
* :class:`~atlas_plugins.policy.batching.BatchedPolicy` — merges concurrent callers' generation
  calls into one batch (adapted agents run one episode per thread).

Importing this package is cheap: torch and transformers load only when a backend is built.
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.policy.base import ChatGeneration, ChatPolicy, Generation, Policy, SamplingParams, TokenPolicy

__all__ = [
    "ChatGeneration",
    "ChatPolicy",
    "Generation",
    "OpenAIPolicy",
    "Policy",
    "PolicyServer",
    "SamplingParams",
    "TokenPolicy",
    "TransformersPolicy",
    "VLLMPolicy",
    "BatchedPolicy",
    "make_policy",
    "POLICY_KINDS",
]

_LAZY = {
    "TransformersPolicy": "atlas_plugins.policy.transformers_policy",
    "OpenAIPolicy": "atlas_plugins.policy.openai_policy",
    "PolicyServer": "atlas_plugins.serving.server",
    "VLLMPolicy": "atlas_plugins.policy.vllm_policy",
    "BatchedPolicy": "atlas_plugins.policy.batching",
}

#: Backend kinds accepted by :func:`make_policy` (a config's ``policy.kind``).
POLICY_KINDS = {"transformers": "TransformersPolicy", "openai": "OpenAIPolicy", "vllm": "VLLMPolicy"}


def make_policy(kind: str = "transformers", **options: Any) -> Any:
    """Build a policy from config: ``make_policy("transformers", model="embedded")`` or
    ``make_policy("openai", base_url=..., model=...)``."""
    if kind not in POLICY_KINDS:
        raise ValueError(f"unknown policy kind {kind!r}; expected one of {sorted(POLICY_KINDS)}")
    cls = __getattr__(POLICY_KINDS[kind])
    if kind == "vllm":  # a standalone engine: make_policy("vllm", model="Qwen/Qwen3-4B-Instruct-2507", ...)
        return cls.from_pretrained(**options)
    return cls(**options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'atlas_plugins.policy' has no attribute {name!r}")
