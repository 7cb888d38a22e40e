"""``atlas eval`` / ``atlas bench`` against any OpenAI-compatible endpoint (``--base-url``).

The grid is :func:`~atlas_plugins.evaluation.bench.run_bench`'s — the same suites, designs,
paddings, scoring, ``results.json``/``results.md``/``bench.png`` — with the policy an
:class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy` on the endpoint instead of a local model.
The native agent plays every design through the chat API and its own tool calling
(:mod:`atlas_plugins.agent.chat_loop`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atlas_plugins.evaluation.bench import (
    DEFAULT_PADDING_CATALOG,
    BenchCell,
    find_catalog,
    run_cell,
    suite_module,
    write_outputs,
)
from atlas_plugins.evaluation.designs import design_settings

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


def file_label(label: str) -> str:
    """``label`` as part of a file name: a served model name may be a path or ``org/name``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.") or "endpoint"


def run_endpoint_bench(
    policy: Any,
    suite_name: str,
    designs: Sequence[str],
    paddings: Sequence[int],
    *,
    label: str = "endpoint",
    limit: int | None = 8,
    out_dir: str | Path = "bench-out",
    catalog: str | Path = DEFAULT_PADDING_CATALOG,
    agent_overrides: dict[str, Any] | None = None,
    judge: str = "rules",
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> list[BenchCell]:
    """One endpoint over the grid (see the module docs); cells labelled ``label``."""
    from atlas_plugins.rewards.scorer import Scorer

    for d in designs:
        design_settings(d)
    if any(p < 0 for p in paddings):
        raise ValueError(f"padding must be >= 0, got {list(paddings)}")
    suite = suite_module(suite_name)
    tasks = suite.load_tasks(limit=limit)
    if not tasks:
        raise ValueError(f"suite {suite_name!r} has no tasks (limit={limit})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ts = suite.toolspace()
    distractors: list[str] = []
    if max(paddings, default=0) > 0:
        distractors = ts.add_catalog(find_catalog(catalog), limit=max(paddings))
    results: list[BenchCell] = []
    with ts:
        scorer = Scorer(judge=judge, toolspace=ts)
        for design in designs:
            for padding in paddings:
                say(
                    f"[{label}] {suite_name} · {design} · padding {padding} · {len(tasks)} tasks via {policy.base_url} …"
                )
                cell, trajs = run_cell(
                    policy,
                    ts,
                    suite,
                    tasks,
                    design,
                    padding=padding,
                    distractors=distractors,
                    scorer=scorer,
                    model_label=label,
                    agent_overrides=agent_overrides or {},
                    seed=seed,
                )
                results.append(cell)
                name = f"traj_{file_label(label)}_{design.replace('+', '_')}_{padding}.jsonl"
                with (out / name).open("w") as fh:
                    for t in trajs:
                        fh.write(
                            t.model_dump_json(
                                exclude={"prompt_ids", "completion_ids", "env_mask", "logprobs", "segments"}
                            )
                            + "\n"
                        )
                say(
                    f"    success {cell.success:.2f} · reward {cell.reward:.3f} · context {cell.context_tokens:.0f} tok · "
                    f"turns {cell.turns:.1f} · {cell.wall_s:.0f} s"
                )
    write_outputs(out, suite_name, results)
    return results
