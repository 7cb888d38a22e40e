"""``atlas train`` and ``atlas demo``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from atlas_plugins.hookspecs import hookimpl


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path = typer.Option(..., "--config", "-c", help="Training config YAML (AtlasGRPOConfig fields)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in output_dir."),
        output_dir: str | None = typer.Option(None, "--output-dir", "-o", help="Override output_dir."),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Override max_steps."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Rubric-based GRPO of the native agent (TRL GRPOTrainer + LoRA).

        Several processes: ``accelerate launch --num_processes N -m atlas_plugins.cli train -c run.yaml``
        on GPUs, ``torchrun --nproc_per_node N -m atlas_plugins.cli train ...`` with ``use_cpu: true``
        on CPUs (gloo; accelerate's ``--cpu`` launcher starts one process). Each process plays its
        share of the rollouts; gradients are all-reduced; the main process writes checkpoints, the
        trajectory log and the adapter."""
        from atlas_plugins.cli_support import fail, print_json
        from atlas_plugins.errors import AtlasError

        try:
            from atlas_plugins.training.config import AtlasGRPOConfig
            from atlas_plugins.training.trainer import AtlasTrainer
        except ImportError as exc:
            fail(f"training needs the 'train' extra: pip install 'atlas-plugins[train]' ({exc})", as_json=as_json)
        try:
            cfg = AtlasGRPOConfig.from_yaml(config, output_dir=output_dir, max_steps=max_steps)
            trainer = AtlasTrainer(cfg)
        except AtlasError as exc:
            fail(str(exc), as_json=as_json)
        try:
            with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
                out = trainer.train(resume=resume)
        except AtlasError as exc:
            fail(str(exc), as_json=as_json)
        finally:
            trainer.close()
        adapter = trainer.save_adapter(cfg.output_path / "adapter")
        accelerator = trainer.trainer.accelerator
        in_sync = trainer.replicas_in_sync()
        if not accelerator.is_main_process:
            return  # under `accelerate launch` the main process reports for all of them
        result = {
            "output_dir": cfg.output_dir,
            "global_step": trainer.trainer.state.global_step,
            "train_runtime_s": out.metrics.get("train_runtime"),
            "trajectory_log": str(cfg.trajectory_log_path),
            "adapter": str(adapter),
            "processes": accelerator.num_processes,
            "replicas_in_sync": in_sync,
            "last_log": next((h for h in reversed(trainer.trainer.state.log_history) if "reward" in h), {}),
        }
        if as_json:
            print_json(result)
        else:
            typer.echo(json.dumps(result, indent=2, default=str))

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for report.md, the plot and results."),
        heldout: int | None = typer.Option(
            None, "--heldout", help="Held-out tasks to evaluate (default: all level-1)."
        ),
        steps: int | None = typer.Option(None, "--steps", help="GRPO steps (default: the recipe's)."),
        designs: str = typer.Option(
            "itl,itl+ptc",
            "--designs",
            help="Designs to evaluate (add eager for the contrast; it is the slowest to evaluate).",
        ),
        train_designs: str = typer.Option(
            "itl,itl+ptc", "--train-designs", help="Designs to train (the first is reported)."
        ),
        no_warm_start: bool = typer.Option(False, "--no-warm-start", help="Skip the behaviour-cloning warm start."),
        settings_json: str | None = typer.Option(
            None, "--settings", help="JSON object of further DemoSettings fields."
        ),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """The whole loop on the embedded defaults: evaluate, warm start, rubric GRPO, re-evaluate."""
        from atlas_plugins.cli_support import fail, print_json

        try:
            from atlas_plugins.training.demo import DemoSettings, run_demo
        except ImportError as exc:
            fail(f"the demo needs the 'train' extra: pip install 'atlas-plugins[train]' ({exc})", as_json=as_json)
        fields: dict = {
            "seed": seed,
            "heldout_tasks": heldout,
            "warm_start": not no_warm_start,
            "designs": [d.strip() for d in designs.split(",") if d.strip()],
            "train_designs": [d.strip() for d in train_designs.split(",") if d.strip()],
        }
        if steps is not None:
            fields["grpo_steps"] = steps
        try:
            fields |= json.loads(settings_json) if settings_json else {}
            settings = DemoSettings(**fields)
            from atlas_plugins.evaluation.designs import design_settings

            for d in {*settings.designs, *settings.train_designs}:
                design_settings(d)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            fail(f"invalid demo settings: {exc}", as_json=as_json)
        say = (lambda m: print(m, file=sys.stderr)) if as_json else typer.echo
        # transformers' progress callback prints log dicts to stdout; keep stdout for the JSON.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = run_demo(out, settings, say=say)
        if as_json:
            keys = (
                "before",
                "after_warm_start",
                "after",
                "heldout_tasks",
                "designs",
                "plot",
                "report",
                "grpo",
                "wall_s",
            )
            print_json({k: result.get(k) for k in keys})
            return
        from rich.console import Console

        from atlas_plugins.cli_support import shown

        # report.md quotes task prompts and model output: printed as text, never as rich markup.
        Console().print(shown(Path(result["report"]).read_text()))


@hookimpl
def atlas_register_commands(app: typer.Typer) -> None:
    """This area's commands reach ``atlas`` through the same hook as a third-party plugin's."""
    register(app)
