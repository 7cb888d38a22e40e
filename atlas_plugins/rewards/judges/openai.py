"""The ``openai`` judge: any OpenAI-compatible chat-completions endpoint.

Options: ``base_url`` and ``model`` — both required (or ``$OPENAI_BASE_URL`` and
``$ATLAS_JUDGE_MODEL``): there is no default endpoint, so rewards never go to a public API by
accident; ``api_key`` (default ``$OPENAI_API_KEY``), ``timeout`` (seconds per request), plus the
LM-judge options (``mode``, ``checks``, ``temperature``, ``max_tokens``, ``retries``: also the HTTP
retries of each request). Default mode is the paper's: all criteria in one prompt, numbers between
``<scores>`` tags. Default reply budgets leave a real model room for a sentence before its numbers:
64 tokens per criterion, ``64 + 16`` per criterion of a list.

In a training config::

    judge: openai
    judge_options: {base_url: "http://127.0.0.1:8000/v1", model: Qwen/Qwen3-4B, max_tokens: 256}
"""

from __future__ import annotations

import os
from typing import Any

from atlas_plugins.errors import ConfigError
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards._http import ChatClient
from atlas_plugins.rewards.judges._lm import LMJudge


def require_endpoint(owner: str, base_url: str | None, model: str | None, *, model_env: str) -> tuple[str, str]:
    """``(base_url, model)`` from the options or the environment; a :class:`ConfigError` saying
    what to set when either is missing (there is no silent public default)."""
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    model = model or os.environ.get(model_env)
    missing = [name for name, value in (("base_url", base_url), ("model", model)) if not value]
    if missing:
        raise ConfigError(
            f"{owner} needs {' and '.join(missing)}: the OpenAI-compatible endpoint to call, e.g. "
            f"base_url='http://127.0.0.1:8000/v1', model='Qwen/Qwen3-4B' (options, or $OPENAI_BASE_URL and "
            f"${model_env}); there is no default endpoint"
        )
    assert base_url is not None and model is not None
    return base_url, model


class OpenAIJudge(LMJudge):
    name = "openai"
    default_mode = "list"
    criterion_tokens = 64
    list_tokens_base, list_tokens_per_criterion = 64, 16

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        base_url, model = require_endpoint(
            "the 'openai' judge (judge_options)", base_url, model, model_env="ATLAS_JUDGE_MODEL"
        )
        # ``retries`` bounds both the HTTP attempts of one prompt and the re-asks of a reply
        # that does not parse: ``retries=0`` sends each prompt exactly once.
        self.client = ChatClient(base_url=base_url, model=model, api_key=api_key, timeout=timeout, retries=self.retries)

    def _generate(self, prompts: list[list[dict[str, str]]], *, temperature: float, max_tokens: int) -> list[str]:
        return [self.client.complete(p, temperature=temperature, max_tokens=max_tokens) for p in prompts]


@hookimpl
def atlas_register_judges(register: Register) -> None:
    register("openai", OpenAIJudge)
