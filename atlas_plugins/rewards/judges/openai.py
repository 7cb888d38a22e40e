"""The ``openai`` judge: any OpenAI-compatible chat-completions endpoint.

Options: ``base_url`` (default ``$OPENAI_BASE_URL`` or api.openai.com), ``model`` (default
``$ATLAS_JUDGE_MODEL`` or ``gpt-4o-mini``), ``api_key`` (default ``$OPENAI_API_KEY``), plus
the LM-judge options (``mode``, ``checks``, ``temperature``, ``retries``: also the HTTP retries of
each request). Default mode is the paper's: all criteria in one prompt, numbers between
``<scores>`` tags.
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.hookspecs import hookimpl
from atlas_plugins.rewards._http import ChatClient
from atlas_plugins.rewards.judges._lm import LMJudge


class OpenAIJudge(LMJudge):
    name = "openai"
    default_mode = "list"

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
        # ``retries`` bounds both the HTTP attempts of one prompt and the re-asks of a reply
        # that does not parse: ``retries=0`` sends each prompt exactly once.
        self.client = ChatClient(base_url=base_url, model=model, api_key=api_key, timeout=timeout, retries=self.retries)

    def _generate(self, prompts: list[list[dict[str, str]]], *, temperature: float, max_tokens: int) -> list[str]:
        return [self.client.complete(p, temperature=temperature, max_tokens=max_tokens) for p in prompts]


@hookimpl
def atlas_register_judges(register):  # type: ignore[no-untyped-def]
    register("openai", OpenAIJudge)
