"""``atlas eval`` and ``atlas bench``: agent designs × tool-space padding on a suite.

One *cell* is (model, design, padding): every task of the suite is played once, greedily, by
the native agent under the design, with ``padding`` distractor servers from a third-party
catalogue added to each task's tool space (so the task sees its own servers plus ``padding``
others, as in a large real deployment). Each trajectory is scored by the rubric judge (TF/TA/
TG/PA, reported on MCP-Bench's 0–10 scale) and, where the suite has one, by its objective
checker (``success``). A prompt that does not fit the model's context at all (eager over a
large tool space) is not played: the episode ends as ``context_overflow`` — success 0, reward 0,
its context tokens counted — which is exactly the failure the paper describes.

Results: ``results.json`` (one row per cell), ``results.md`` (a table) and ``bench.png``
(success and context tokens against padding, one line per design and model).
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from atlas_plugins.evaluation.designs import design_settings
from atlas_plugins.evaluation.episodes import mean, play_design
from atlas_plugins.rewards.rubric import CATEGORIES
from atlas_plugins.types import Task, Trajectory

if TYPE_CHECKING:
    from types import ModuleType

    from atlas_plugins.policy.base import ChatPolicy, Policy
    from atlas_plugins.toolspace import Toolspace

#: The catalogue distractor servers come from (../shared/data/toolspace; see its README).
DEFAULT_PADDING_CATALOG = "toucan_servers.jsonl"


class BenchCell(BaseModel):
    """One (model, design, padding) cell; the first six fields are the ``atlas bench`` contract."""

    design: str
    padding: int
    success: float
    reward: float
    context_tokens: float
    turns: float
    model: str = "base"
    suite: str = ""
    tasks: int = 0
    initial_context_tokens: float = 0.0
    scores_0_10: dict[str, float] = Field(default_factory=dict, description="TF/TA/TG/PA on MCP-Bench's 0-10 scale")
    tool_calls: float = 0.0
    tool_errors: float = 0.0
    context_overflow: float = 0.0
    wall_s: float = 0.0
    task_ids: list[str] = Field(default_factory=list)


# -- suites ----------------------------------------------------------------------------------------
def suite_module(name: str) -> Any:
    """The suite's module (``load_tasks``, ``check``, ``toolspace``), with a clear error."""
    from atlas_plugins.evaluation.suites import SUITES

    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(sorted(SUITES))}")
    try:
        return importlib.import_module(SUITES[name])
    except ImportError as exc:
        raise ImportError(f"suite {name!r} cannot be loaded: {exc}") from exc


def find_catalog(name_or_path: str | Path = DEFAULT_PADDING_CATALOG) -> Path:
    """A catalogue path: as given, else under ``$ATLAS_SHARED_DATA`` or ``../shared/data/toolspace``."""
    import os

    p = Path(name_or_path)
    if p.exists():
        return p
    roots = [
        os.environ.get("ATLAS_SHARED_DATA"),
        Path.cwd() / "../shared/data/toolspace",
        Path(__file__).resolve().parents[3] / "shared/data/toolspace",
    ]
    for root in roots:
        if root and (Path(root) / p.name).exists():
            return Path(root) / p.name
    raise FileNotFoundError(
        f"padding catalogue {str(name_or_path)!r} not found (set ATLAS_SHARED_DATA to the folder holding it)"
    )


def pad_tasks(tasks: Sequence[Task], distractors: Sequence[str]) -> list[Task]:
    """Copies of ``tasks`` whose tool space also holds the ``distractors`` servers."""
    out = []
    for t in tasks:
        c = t.model_copy(deep=True)
        c.servers = list(t.servers) + [d for d in distractors if d not in t.servers]
        out.append(c)
    return out


# -- one cell --------------------------------------------------------------------------------------
def run_cell(
    policy: Policy | ChatPolicy,
    toolspace: Toolspace,
    suite: Any,
    tasks: Sequence[Task],
    design: str,
    *,
    padding: int = 0,
    distractors: Sequence[str] = (),
    scorer: Any,
    model_label: str = "base",
    agent_overrides: dict[str, Any] | None = None,
    seed: int | None = 0,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[BenchCell, list[Trajectory]]:
    """Play and score every task under one design and padding."""
    played = pad_tasks(tasks, list(distractors)[:padding]) if padding else list(tasks)
    t0 = time.perf_counter()
    trajs = play_design(
        policy,
        toolspace,
        played,
        design,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        **(agent_overrides or {}),
    )
    wall = time.perf_counter() - t0
    for task, traj in zip(played, trajs, strict=True):
        scorer.score(traj)
        traj.metadata.update({"design": design, "padding": padding, "suite_check": suite.check(task, traj)})
    cell = summarize_cell(
        trajs, design=design, padding=padding, model=model_label, suite=getattr(suite, "SUITE", ""), wall_s=wall
    )
    return cell, trajs


def summarize_cell(
    trajs: Sequence[Trajectory], *, design: str, padding: int, model: str, suite: str, wall_s: float = 0.0
) -> BenchCell:
    """One cell's numbers from its scored, checked trajectories (``metadata["suite_check"]``)."""
    return BenchCell(
        design=design,
        padding=padding,
        model=model,
        suite=suite,
        tasks=len(trajs),
        success=mean([float(bool((t.metadata.get("suite_check") or {}).get("success"))) for t in trajs]),
        reward=mean([t.reward or 0.0 for t in trajs]),
        context_tokens=mean([t.context_tokens for t in trajs]),
        initial_context_tokens=mean([t.initial_context_tokens for t in trajs]),
        turns=mean([t.turns for t in trajs]),
        scores_0_10={c: 10 * mean([t.reward_by_category.get(c, 0.0) for t in trajs]) for c in CATEGORIES},
        tool_calls=mean([len(t.tool_calls) for t in trajs]),
        tool_errors=mean([t.tool_errors for t in trajs]),
        context_overflow=mean([float(t.metadata.get("finish") == "context_overflow") for t in trajs]),
        wall_s=wall_s,
        task_ids=[t.task_id for t in trajs],
    )


# -- models ----------------------------------------------------------------------------------------
def load_policy(model: str = "embedded", adapter: str | None = None, *, device: str | None = None) -> Any:
    """A :class:`TransformersPolicy` for ``model`` (``embedded``, an HF folder or id), with an
    optional LoRA adapter folder (from ``atlas train`` / ``atlas demo``) applied on top."""
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    policy = TransformersPolicy(None if model == "embedded" else model, device=device)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").exists():
            raise FileNotFoundError(f"{adapter!r} is not a LoRA adapter folder (no adapter_config.json)")
        policy = TransformersPolicy(
            PeftModel.from_pretrained(policy.model, adapter),
            policy.tokenizer,
            name=f"{model}+{Path(adapter).name}",
            device=device,
        )
    return policy


def context_limit(policy: Policy | ChatPolicy, requested: int = 32768) -> int:
    """The paper's 32k, or less when the model's own context is shorter (SmolLM2: 8,192)."""
    cfg = getattr(getattr(policy, "model", None), "config", None)
    max_pos = getattr(cfg, "max_position_embeddings", None)
    return min(requested, int(max_pos)) if isinstance(max_pos, int) else requested


def _suite_toolspace(suite: ModuleType, tasks: Sequence[Task] | None) -> Toolspace:
    """The suite's toolspace, in the world a task file was generated for (``metadata["env_seed"]``,
    ``atlas tasks generate --env-seed``): the tasks' answers hold in that world only."""
    import inspect

    from atlas_plugins.envs.taskgen import world_seed

    seed = world_seed(tasks) if tasks is not None else None  # ValueError when they disagree
    if seed is None:
        return suite.toolspace()
    if "seed" in inspect.signature(suite.toolspace).parameters:
        return suite.toolspace(seed=seed)
    if seed != 0:
        raise ValueError(
            f"the tasks were generated for world seed {seed}, but suite {suite.__name__.rsplit('.', 1)[-1]!r} "
            "has one fixed world; evaluate them with --suite embedded"
        )
    return suite.toolspace()


# -- the grid --------------------------------------------------------------------------------------
def run_bench(
    suite_name: str,
    designs: Sequence[str],
    paddings: Sequence[int],
    *,
    models: dict[str, tuple[str, str | None] | Any] | None = None,
    limit: int | None = 8,
    out_dir: str | Path = "bench-out",
    catalog: str | Path = DEFAULT_PADDING_CATALOG,
    agent_overrides: dict[str, Any] | None = None,
    judge: str = "rules",
    seed: int = 0,
    device: str | None = None,
    tasks_file: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> list[BenchCell]:
    """Run the grid; ``models`` maps a label to ``(model, adapter)`` to load (default: the embedded
    base) or to a ready policy (e.g. an ``OpenAIPolicy`` on an endpoint, :mod:`.endpoint`).
    ``tasks_file`` (a task JSONL, as ``atlas tasks generate`` writes it) replaces the suite's own
    tasks, every line of it (``limit`` still applies); the suite still provides servers and checks."""
    from atlas_plugins.rewards.scorer import Scorer

    for d in designs:
        design_settings(d)  # validates the name
    if any(p < 0 for p in paddings):
        raise ValueError(f"padding must be >= 0, got {list(paddings)}")
    suite = suite_module(suite_name)
    if tasks_file is not None:
        from atlas_plugins.envs.taskgen import load_tasks as load_task_file
        from atlas_plugins.envs.taskgen import world_seed

        every_task = load_task_file(tasks_file)
        world_seed(every_task)  # one world for the whole file, not only the first --limit tasks
        tasks = every_task[:limit] if limit else every_task
    else:
        tasks = suite.load_tasks(limit=limit)
    if not tasks:
        raise ValueError(f"suite {suite_name!r} has no tasks (limit={limit})")
    models = models or {"base": ("embedded", None)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[BenchCell] = []
    ts = _suite_toolspace(suite, tasks if tasks_file is not None else None)
    distractors: list[str] = []
    if max(paddings, default=0) > 0:
        distractors = ts.add_catalog(find_catalog(catalog), limit=max(paddings))
        if len(distractors) < max(paddings):
            say(f"note: the catalogue has only {len(distractors)} servers; larger paddings are capped")
    with ts:
        scorer = Scorer(judge=judge, toolspace=ts)
        for label, spec in models.items():
            policy = load_policy(*spec, device=device) if isinstance(spec, tuple) else spec
            overrides = {"max_context_tokens": context_limit(policy), **(agent_overrides or {})}
            for design in designs:
                for padding in paddings:
                    say(f"[{label}] {suite_name} · {design} · padding {padding} · {len(tasks)} tasks …")
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
                        agent_overrides=overrides,
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
                        f"turns {cell.turns:.1f} · overflow {cell.context_overflow:.0%} · {cell.wall_s:.0f} s"
                    )
    write_outputs(out, suite_name, results)
    return results


def file_label(label: str) -> str:
    """``label`` as part of a file name: a served model name may be a path or ``org/name``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.") or "model"


def write_outputs(out: Path, suite_name: str, results: Sequence[BenchCell]) -> dict[str, Path]:
    """``results.json``, ``results.md`` and ``bench.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"suite": suite_name, "results": [r.model_dump() for r in results]}, indent=2)
    )
    lines = [
        f"# atlas bench · suite `{suite_name}`",
        "",
        "| model | design | padding | tasks | success | reward | TF | TA | TG | PA | context tokens | turns | overflow | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.scores_0_10
        lines.append(
            f"| {r.model} | {r.design} | {r.padding} | {r.tasks} | {r.success:.2f} | {r.reward:.3f} | "
            + " | ".join(f"{s.get(c, 0):.1f}" for c in CATEGORIES)
            + f" | {r.context_tokens:,.0f} | {r.turns:.1f} | {r.context_overflow:.0%} | {r.wall_s:.0f} |"
        )
    lines += ["", "TF/TA/TG/PA: rubric category scores on MCP-Bench's 0–10 scale. ![chart](bench.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    try:
        paths["plot"] = _plot(out / "bench.png", results)
    except ImportError:  # matplotlib is in the 'train' extra; the table and JSON still stand
        pass
    return paths


def _plot(path: Path, results: Sequence[BenchCell]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    series: dict[tuple[str, str], list[BenchCell]] = {}
    for r in results:
        series.setdefault((r.model, r.design), []).append(r)
    for (model, design), rows in series.items():
        rows = sorted(rows, key=lambda r: r.padding)
        xs = [r.padding for r in rows]
        style = "-" if model == "base" else "--"
        axes[0].plot(xs, [r.success for r in rows], style, marker="o", label=f"{design} ({model})")
        axes[1].plot(xs, [max(1.0, r.context_tokens) for r in rows], style, marker="o", label=f"{design} ({model})")
    axes[0].set(title="task success", xlabel="padding servers", ylim=(-0.05, 1.05))
    axes[1].set(title="context tokens (largest prompt)", xlabel="padding servers", yscale="log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
