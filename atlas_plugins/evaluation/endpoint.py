"""``atlas eval`` / ``atlas bench`` against any OpenAI-compatible endpoint (``--base-url``).

The grid is :func:`~atlas_plugins.evaluation.bench.run_bench`'s — the same suites, designs,
paddings, scoring, ``results.json``/``results.md``/``bench.png`` — with the policy an
:class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy` on the endpoint instead of a local model.
The native agent plays every design through the chat API and its own tool calling
(:mod:`atlas_plugins.agent.chat_loop`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from atlas_plugins.evaluation.bench import BenchCell, file_label, run_bench

if TYPE_CHECKING:
    from atlas_plugins.policy.base import ChatPolicy

__all__ = ["endpoint_policy", "file_label", "run_endpoint_bench"]


def endpoint_policy(
    base_url: str,
    model: str,
    *,
    api_key_env: str | None = "OPENAI_API_KEY",
    timeout: float = 120.0,
    max_retries: int = 2,
) -> Any:
    """An :class:`OpenAIPolicy` for ``base_url``/``model``; the key is read from ``$api_key_env``
    (a local server takes any key; a missing variable is an error only when one was named explicitly)."""
    from atlas_plugins.policy.openai_policy import OpenAIPolicy

    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and api_key_env != "OPENAI_API_KEY" and key is None:
        raise ValueError(f"--api-key-env {api_key_env}: that environment variable is not set")
    return OpenAIPolicy(
        base_url, model, api_key=key if key is not None else "EMPTY", timeout=timeout, max_retries=max_retries
    )


def run_endpoint_bench(
    policy: ChatPolicy,
    suite_name: str,
    designs: Sequence[str],
    paddings: Sequence[int],
    *,
    label: str = "endpoint",
    **kwargs: Any,
) -> list[BenchCell]:
    """One endpoint over :func:`run_bench`'s grid, its cells labelled ``label`` (the other keyword
    arguments are ``run_bench``'s: ``limit``, ``out_dir``, ``tasks_file``, ``agent_overrides`` …)."""
    return run_bench(suite_name, designs, paddings, models={label: policy}, **kwargs)
