"""The ``llm`` provider: the paper's 12-criterion rubric, generated once per task.

Any OpenAI-compatible chat-completions endpoint writes the rubric from the task, its tool
context and (when known) the reference answer: exactly 12 criteria, in order 5 TF, 3 TA, 2 TG,
2 PA, each ``{criteria_name, criteria_description, weight}`` with an integer weight 1–10. The
output is validated strictly; on a violation the model is told what was wrong and asked again
(``retries`` times). A valid rubric is written to
``$ATLAS_CACHE_DIR/rubrics/<hash>.json`` (default ``~/.cache/atlas-plugins``), keyed by a hash
of the task (id, prompt, servers, metadata, answer, expected state) and the model name, and is
never regenerated: later calls read the file.

Options: ``base_url`` and ``model`` (both required, or ``$OPENAI_BASE_URL`` and
``$ATLAS_RUBRIC_MODEL``: there is no default endpoint), ``api_key``, ``toolspace`` (tool
names/descriptions of the task's servers go into the prompt), ``cache_dir``, ``retries``
(default 3: re-asks after an invalid answer, which also count against the budget),
``temperature`` (default 0.2), ``max_tokens`` (default 1200: twelve criteria need ~700),
``timeout_s`` (default 120: the budget for one rubric, every attempt included — a slow server fails
in that time with what it answered, not after minutes) and ``response_format``:

* ``"auto"`` (default): ask for JSON with the request's ``response_format`` (a JSON schema of the
  12 criteria, as OpenAI, vLLM and llama.cpp take it); a server that refuses the field with a 4xx
  answer is asked again without it, and not asked with it again (``transformers serve`` takes the
  request and ignores the field, so there only the prompt's own hint applies);
* ``"json_schema"``, ``"json_object"``: always send that format; ``"none"``: never.

The prompt itself shows the expected shape (an example object) either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_plugins.errors import AtlasError, ConfigError
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards._http import ChatClient
from atlas_plugins.rewards.base import coerce_task
from atlas_plugins.rewards.judges.openai import require_endpoint
from atlas_plugins.rewards.rubric import Rubric
from atlas_plugins.types import Task

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace

LAYOUT: tuple[tuple[str, int], ...] = (("TF", 5), ("TA", 3), ("TG", 2), ("PA", 2))
PROMPT_VERSION = "atlas-rubric-v1"

SYSTEM = """You write grading rubrics for AI agents that solve tasks by calling tools.
Return ONLY a JSON list of exactly 12 objects, each {"criteria_name": str, "criteria_description": str, "weight": int}, in this order:
- 5 Task Fulfillment criteria (did the agent achieve what was asked; highest weights),
- 3 Tool Appropriateness criteria (right tools, no needless calls),
- 2 Tool Grounding criteria (answer based on tool outputs, no invented facts),
- 2 Parameter Accuracy criteria (correct arguments and formats).
Weights are integers 1-10 (1-3 low, 4-6 moderate, 7-8 high, 9-10 critical). Criteria must be observable from the execution trace, non-overlapping, and about function, not wording.
Answer with the JSON only: no prose before or after it, no code fences. Shape:
[{"criteria_name": "Correct total", "criteria_description": "The final answer states 42, the sum the tool returned.", "weight": 9}, ...]"""

_CRITERION_SCHEMA = {
    "type": "object",
    "properties": {
        "criteria_name": {"type": "string"},
        "criteria_description": {"type": "string"},
        "weight": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["criteria_name", "criteria_description", "weight"],
    "additionalProperties": False,
}
#: ``response_format`` of the request (json_schema needs an object at the top: the list is inside it;
#: the validator reads the list wherever it is).
RESPONSE_FORMATS: dict[str, dict[str, Any]] = {
    "json_schema": {
        "type": "json_schema",
        "json_schema": {
            "name": "rubric",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "criteria": {"type": "array", "items": _CRITERION_SCHEMA, "minItems": 12, "maxItems": 12}
                },
                "required": ["criteria"],
                "additionalProperties": False,
            },
        },
    },
    "json_object": {"type": "json_object"},
}


def default_cache_dir() -> Path:
    root = os.environ.get("ATLAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "atlas-plugins")
    return Path(root) / "rubrics"


def task_hash(task: Task, model: str) -> str:
    payload = {
        "v": PROMPT_VERSION,
        "model": model,
        "task": task.model_dump(
            mode="json", include={"id", "prompt", "servers", "metadata", "answer", "expected_state"}
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def validate_paper_rubric(text: str) -> tuple[list[dict[str, Any]] | None, str]:
    """Strictly validate the model's answer. Returns ``(criteria, "")`` or ``(None, problem)``."""
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = m.group(1) if m else text
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end <= start:
        return None, "no JSON list found"
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        return None, f"the list is not valid JSON ({exc})"
    if not isinstance(data, list):
        return None, "expected a JSON list"
    if len(data) != 12:
        return None, f"expected exactly 12 criteria, got {len(data)}"
    out: list[dict[str, Any]] = []
    cats = [cat for cat, n in LAYOUT for _ in range(n)]
    for i, (item, cat) in enumerate(zip(data, cats, strict=True)):  # both 12 long (checked above)
        if not isinstance(item, dict):
            return None, f"item {i + 1} is not an object"
        extra = set(item) - {"criteria_name", "criteria_description", "weight"}
        if extra:
            return None, f"item {i + 1} has unknown key(s) {sorted(extra)}"
        name, desc, w = item.get("criteria_name"), item.get("criteria_description"), item.get("weight")
        if not isinstance(name, str) or not name.strip():
            return None, f"item {i + 1}: criteria_name must be a non-empty string"
        if not isinstance(desc, str) or not desc.strip():
            return None, f"item {i + 1}: criteria_description must be a non-empty string"
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 10:
            return None, f"item {i + 1}: weight must be an integer 1..10, got {w!r}"
        out.append({"name": name.strip(), "description": desc.strip(), "weight": w, "category": cat, "kind": "judge"})
    names = [c["name"].casefold() for c in out]
    if len(set(names)) != len(names):
        return None, "criteria names must be distinct"
    return out, ""


class _OutOfTime(Exception):
    """The rubric's time budget ran out."""


class LLMProvider:
    name = "llm"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        toolspace: Toolspace | None = None,
        cache_dir: str | Path | None = None,
        retries: int = 3,
        temperature: float = 0.2,
        timeout_s: float = 120.0,
        max_tokens: int = 1200,
        response_format: str = "auto",
        timeout: float | None = None,
    ) -> None:
        base_url, model = require_endpoint(
            "the 'llm' rubric provider (rubric_provider_options)", base_url, model, model_env="ATLAS_RUBRIC_MODEL"
        )
        if response_format not in ("auto", "none", *RESPONSE_FORMATS):
            raise ConfigError(
                f"response_format must be auto, none, json_schema or json_object, got {response_format!r}"
            )
        if timeout is not None:  # the old name: seconds per request; now the budget of one rubric
            timeout_s = timeout
        if not timeout_s or timeout_s <= 0:
            raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        # Retries here are re-asks (below), each within the budget; the HTTP client does not retry.
        self.client = ChatClient(base_url=base_url, model=model, api_key=api_key, timeout=timeout_s, retries=0)
        self.toolspace = toolspace
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.retries = retries
        self.temperature = temperature
        self.timeout_s = float(timeout_s)
        self.max_tokens = max_tokens
        self.response_format = response_format
        #: The format still sent (``None`` once the server refused it, or with ``"none"``).
        self._format: dict[str, Any] | None = (
            None
            if response_format == "none"
            else RESPONSE_FORMATS["json_schema" if response_format == "auto" else response_format]
        )
        #: How many rubrics this instance generated (0 when all came from the cache).
        self.generated = 0

    def cache_path(self, task: Any) -> Path:
        return self.cache_dir / f"{task_hash(coerce_task(task), self.client.model)}.json"

    def _tool_context(self, t: Task) -> str:
        lines: list[str] = []
        tools = t.metadata.get("tools")
        if isinstance(tools, list):
            lines += [
                f"- {x.get('name', x) if isinstance(x, dict) else x}: {x.get('description', '') if isinstance(x, dict) else ''}"
                for x in tools
            ]
        elif self.toolspace is not None:
            for spec in self.toolspace.list_tools():
                if not t.servers or spec.server in t.servers:
                    lines.append(
                        f"- {spec.qualified_name}: {spec.description.splitlines()[0][:160] if spec.description else ''}"
                    )
        return "\n".join(lines[:200]) or "(not given)"

    def _user_prompt(self, t: Task) -> str:
        parts = [
            f"Task:\n{t.prompt}",
            f"Servers: {', '.join(t.servers) or '(not given)'}",
            f"Available tools:\n{self._tool_context(t)}",
        ]
        ref = t.metadata.get("reference_solution") or t.metadata.get("expected_tools")
        if ref:
            parts.append(f"Reference solution:\n{json.dumps(ref, default=str)[:2000]}")
        if t.answer is not None:
            parts.append(f"Expected answer: {t.answer}")
        return "\n\n".join(parts)

    def rubric_for(self, task: Any) -> Rubric:
        t = coerce_task(task)
        path = self.cache_path(t)
        if path.is_file():
            return Rubric.from_file(path)
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": self._user_prompt(t)},
        ]
        problems: list[str] = []
        deadline = time.monotonic() + self.timeout_s
        for _attempt in range(self.retries + 1):
            try:
                text = self._complete(messages, deadline)
            except _OutOfTime as exc:
                problems.append(str(exc))
                break
            criteria, problem = validate_paper_rubric(text)
            if criteria is not None:
                rubric = Rubric.from_dict(
                    {
                        "criteria": criteria,
                        "task_id": t.id,
                        "source": "llm",
                        "metadata": {"model": self.client.model, "prompt_version": PROMPT_VERSION},
                    },
                    source=f"llm rubric for {t.id!r}",
                )
                self._write(path, rubric)
                self.generated += 1
                return rubric
            problems.append(problem)
            # Tell the model what was wrong; a fresh sample alone often repeats the mistake.
            messages = messages[:2] + [
                {"role": "assistant", "content": text[:4000]},
                {
                    "role": "user",
                    "content": f"That is invalid: {problem}. Return only the corrected JSON list of exactly 12 objects.",
                },
            ]
        raise AtlasError(
            f"llm provider: model {self.client.model!r} at {self.client.base_url} gave no valid rubric for task "
            f"{t.id!r} within {len(problems)} attempt(s) and timeout_s={self.timeout_s:g}: {'; '.join(problems)}"
        )

    def _complete(self, messages: list[dict[str, str]], deadline: float) -> str:
        """One chat completion within the budget; drops ``response_format`` once if it is refused."""
        import httpx

        url = f"{self.client.base_url}/chat/completions"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0.5:
                raise _OutOfTime(f"the {self.timeout_s:g} s budget (timeout_s) ran out")
            body: dict[str, Any] = {
                "model": self.client.model,
                "messages": messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
            if self._format is not None:
                body["response_format"] = self._format
            try:
                r = self.client.http.client.post(url, json=body, timeout=remaining)
            except httpx.TimeoutException:
                raise _OutOfTime(f"no answer within the {self.timeout_s:g} s budget (timeout_s)") from None
            except httpx.HTTPError as exc:
                raise AtlasError(f"llm provider: request to {url} failed: {type(exc).__name__}: {exc}") from None
            if (
                r.status_code >= 400
                and self._format is not None
                and self.response_format == "auto"
                and 400 <= r.status_code < 500
            ):
                self._format = None  # the server does not take response_format: the prompt's own hint remains
                continue
            if r.status_code >= 400:
                raise AtlasError(f"llm provider: {url} answered HTTP {r.status_code}: {r.text[:300]}")
            try:
                return r.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise AtlasError(
                    f"llm provider: {url} returned a response that is not a chat completion: {exc}"
                ) from None

    @staticmethod
    def _write(path: Path, rubric: Rubric) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rubric-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rubric.to_dict(), f, indent=2)
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file


@hookimpl
def atlas_register_rubric_providers(register: Register) -> None:
    register("llm", LLMProvider)
