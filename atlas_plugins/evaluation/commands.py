"""``atlas eval`` (one model, one design, one suite) and ``atlas bench`` (a grid)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import typer

from atlas_plugins.hookspecs import hookimpl
from atlas_plugins.values import printable


def _csv(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise typer.BadParameter(f"{what} is empty")
    return items


def _models(model: str, adapter: str | None, trained: str | None) -> dict[str, tuple[str, str | None]]:
    models: dict[str, tuple[str, str | None]] = {"base" if not adapter else "adapter": (model, adapter)}
    if trained:
        models["trained"] = (model, trained)
    return models


def _run(as_json: bool, **kwargs: Any) -> list[Any]:
    from atlas_plugins.cli_support import fail

    try:
        from atlas_plugins.evaluation.bench import run_bench
    except ImportError as exc:
        fail(f"evaluation needs the 'train' extra: pip install 'atlas-plugins[train]' ({exc})", as_json=as_json)
    say = (lambda m: print(m, file=sys.stderr)) if as_json else typer.echo
    try:
        # transformers may print to stdout; keep stdout for the JSON contract.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            return run_bench(say=say, **kwargs)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        fail(str(exc), as_json=as_json)
    raise AssertionError("unreachable")


def _task_file(path: Path | None, as_json: bool) -> Path | None:
    """Check a ``--tasks`` file before any model loads: it exists and every line is a valid task."""
    if path is None:
        return None
    from atlas_plugins.cli_support import fail
    from atlas_plugins.envs.taskgen import load_tasks as load_task_file

    if not path.is_file():
        fail(f"--tasks {path}: no such file", as_json=as_json)
    try:
        if not load_task_file(path):
            fail(f"--tasks {path}: the file holds no tasks", as_json=as_json)
    except (ValueError, OSError) as exc:
        fail(f"--tasks {path}: {exc}", as_json=as_json)
    return path


def _run_endpoint(
    as_json: bool,
    base_url: str,
    model: str,
    api_key_env: str,
    adapter: str | None,
    trained: str | None,
    device: str | None,
    **kwargs: Any,
) -> list[Any]:
    """The grid against an OpenAI-compatible endpoint (``--base-url``)."""
    from atlas_plugins.cli_support import fail
    from atlas_plugins.errors import AtlasError

    if adapter or trained or device:
        fail(
            "--adapter, --trained and --device apply to local models; with --base-url the server holds the model",
            as_json=as_json,
        )
    kwargs["tasks_file"] = _task_file(kwargs.pop("tasks", None), as_json)
    if model == "embedded":
        fail("--base-url needs --model: the model name the endpoint serves (see its /v1/models)", as_json=as_json)
    from atlas_plugins.evaluation.endpoint import endpoint_policy, run_endpoint_bench

    say = (lambda m: print(m, file=sys.stderr)) if as_json else typer.echo
    try:
        policy = endpoint_policy(base_url, model, api_key_env=api_key_env)
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext(), policy:
            return run_endpoint_bench(policy, label=model, say=say, **kwargs)
    except (AtlasError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(str(exc), as_json=as_json)
    raise AssertionError("unreachable")


def _grid(
    as_json: bool,
    *,
    base_url: str | None,
    model: str,
    api_key_env: str,
    adapter: str | None,
    trained: str | None,
    device: str | None,
    tasks: Path | None,
    limit: int | None,
    max_turns: int | None,
    max_new_tokens: int | None,
    **grid: Any,
) -> list[Any]:
    """``atlas eval`` and ``atlas bench`` alike: the grid on a local model or, with ``--base-url``, an endpoint."""
    common = dict(limit=limit or None, agent_overrides=_overrides(max_turns, max_new_tokens), tasks=tasks, **grid)
    if base_url:
        return _run_endpoint(as_json, base_url, model, api_key_env, adapter, trained, device, **common)
    common["tasks_file"] = _task_file(common.pop("tasks"), as_json)
    return _run(as_json, models=_models(model, adapter, trained), device=device, **common)


def _overrides(max_turns: int | None, max_new_tokens: int | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if max_turns:
        out.update(max_turns=max_turns, max_tool_calls=max_turns)
    if max_new_tokens:
        out["max_new_tokens"] = max_new_tokens
    return out


def register(app: typer.Typer) -> None:
    suite_help = (
        "Suite: embedded (held-out embedded tasks) or bfcl-multi-turn (needs: pip install --no-deps bfcl-eval)."
    )
    model_help = "'embedded', an HF model folder/id, or with --base-url the name the endpoint serves the model under."
    base_url_help = (
        "Evaluate a model behind this OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1: vLLM, "
        "llama.cpp, transformers serve, a hosted API) instead of a local one; the agent uses the chat "
        "API's own tool calling."
    )
    key_help = "Environment variable holding the endpoint's API key (local servers take any key)."

    @app.command("eval")
    def eval_cmd(
        suite: str = typer.Option("embedded", "--suite", help=suite_help),
        design: str = typer.Option("itl", "--design", help="eager, isl, itl, itl+ptc or search."),
        model: str = typer.Option("embedded", "--model", help=model_help),
        base_url: str | None = typer.Option(None, "--base-url", help=base_url_help),
        api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help=key_help),
        adapter: str | None = typer.Option(
            None, "--adapter", help="LoRA adapter folder from atlas train / atlas demo."
        ),
        padding: int = typer.Option(
            0, "--padding", help="Distractor catalogue servers added to each task's tool space."
        ),
        limit: int | None = typer.Option(8, "--limit", help="Number of tasks (fixed order; 0: all)."),
        tasks: Path | None = typer.Option(
            None,
            "--tasks",
            help="Evaluate the tasks of this JSONL file (as `atlas tasks generate` writes it) instead of the suite's own; the suite still provides the servers.",
        ),
        max_turns: int | None = typer.Option(None, "--max-turns", help="Model turns (and tool calls) per episode."),
        max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Tokens per model turn."),
        device: str | None = typer.Option(
            None, "--device", help="Torch device for the model, e.g. cuda (default: cpu)."
        ),
        out: Path = typer.Option(
            Path("eval-out"), "--out", help="Folder for results.json/.md, the chart and trajectories."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Evaluate one model under one design on one suite."""
        from atlas_plugins.cli_support import print_json

        cells = _grid(
            as_json,
            base_url=base_url,
            model=model,
            api_key_env=api_key_env,
            adapter=adapter,
            trained=None,
            device=device,
            tasks=tasks,
            limit=limit,
            max_turns=max_turns,
            max_new_tokens=max_new_tokens,
            suite_name=suite,
            designs=[design],
            paddings=[padding],
            out_dir=out,
        )
        row = cells[0].model_dump()
        if as_json:
            print_json(row)
        else:
            typer.echo(printable((out / "results.md").read_text()))  # it quotes task text

    @app.command("bench")
    def bench_cmd(
        suite: str = typer.Option("embedded", "--suite", help=suite_help),
        designs: str = typer.Option("eager,itl,itl+ptc", "--designs", help="Comma-separated designs."),
        padding: str = typer.Option(
            "0", "--padding", help="Comma-separated distractor-server counts, e.g. 0,100,500,1000."
        ),
        model: str = typer.Option("embedded", "--model", help=model_help),
        base_url: str | None = typer.Option(None, "--base-url", help=base_url_help),
        api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help=key_help),
        adapter: str | None = typer.Option(
            None, "--adapter", help="Evaluate this LoRA adapter instead of the base model."
        ),
        trained: str | None = typer.Option(
            None, "--trained", help="Also evaluate this LoRA adapter (base vs trained)."
        ),
        limit: int | None = typer.Option(8, "--limit", help="Number of tasks per cell (fixed order; 0: all)."),
        tasks: Path | None = typer.Option(
            None,
            "--tasks",
            help="Evaluate the tasks of this JSONL file (as `atlas tasks generate` writes it) instead of the suite's own; the suite still provides the servers.",
        ),
        max_turns: int | None = typer.Option(None, "--max-turns", help="Model turns (and tool calls) per episode."),
        max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Tokens per model turn."),
        device: str | None = typer.Option(
            None, "--device", help="Torch device for the model, e.g. cuda (default: cpu)."
        ),
        out: Path = typer.Option(
            Path("bench-out"), "--out", help="Folder for results.json/.md, bench.png and trajectories."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """A grid: designs × padding (× base/trained) on a suite; JSON, Markdown and a chart."""
        from atlas_plugins.cli_support import fail, print_json

        try:
            pads = [int(p) for p in _csv(padding, "--padding")]
        except ValueError:
            fail(f"--padding must be comma-separated integers, got {padding!r}", as_json=as_json)
        cells = _grid(
            as_json,
            base_url=base_url,
            model=model,
            api_key_env=api_key_env,
            adapter=adapter,
            trained=trained,
            device=device,
            tasks=tasks,
            limit=limit,
            max_turns=max_turns,
            max_new_tokens=max_new_tokens,
            suite_name=suite,
            designs=_csv(designs, "--designs"),
            paddings=pads,
            out_dir=out,
        )
        if as_json:
            print_json(
                {
                    "results": [c.model_dump() for c in cells],
                    "markdown": str(out / "results.md"),
                    "plot": str(out / "bench.png"),
                }
            )
        else:
            typer.echo(printable((out / "results.md").read_text()))  # it quotes task text


@hookimpl
def atlas_register_commands(app: typer.Typer) -> None:
    """This area's commands reach ``atlas`` through the same hook as a third-party plugin's."""
    register(app)
