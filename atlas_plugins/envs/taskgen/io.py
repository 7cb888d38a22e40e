"""Task files: JSONL writing and reading, and the shipped default set."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from atlas_plugins.types import Task

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_TASKS_PATH = DATA_DIR / "tasks_seed0.jsonl"


def dumps_jsonl(tasks: list[Task]) -> str:
    return "".join(json.dumps(t.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n" for t in tasks)


def write_jsonl(tasks: list[Task], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps_jsonl(tasks), encoding="utf-8")
    return p


def load_tasks(path: str | Path, split: str | None = None) -> list[Task]:
    """Tasks from a JSONL file (one ``Task.model_dump()`` per line), optionally one split."""
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train', 'heldout' or None, got {split!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"task file not found: {p}")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = Task.model_validate_json(line)
        except ValueError as exc:
            raise ValueError(f"{p}:{n}: not a valid task: {exc}") from None
        if split is None or task.split == split:
            out.append(task)
    return out


def load_default_tasks(split: str | None = None) -> list[Task]:
    """The shipped default set (seed 0, env_seed 0): 240 train + 60 held-out tasks."""
    return load_tasks(DEFAULT_TASKS_PATH, split)


def world_seed(tasks: Iterable[Task]) -> int | None:
    """The world seed the tasks were generated for (``metadata["env_seed"]``, what
    ``Toolspace.default(seed=...)`` must run with for their answers to hold); None when no task
    says. Tasks of different worlds cannot share one toolspace: that is a ``ValueError`` naming them."""
    seeds: dict[int, str] = {}
    for t in tasks:
        seed = (t.metadata or {}).get("env_seed")
        if seed is not None:
            seeds.setdefault(int(seed), t.id)
    if len(seeds) > 1:
        named = ", ".join(f"{s} (e.g. {tid})" for s, tid in sorted(seeds.items()))
        raise ValueError(f"the tasks were generated for different world seeds: {named}; use one set per world")
    return next(iter(seeds), None)
