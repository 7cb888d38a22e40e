"""``atlas demo``: the whole loop on the embedded defaults, on CPU.

1. Evaluate the base SmolLM2-135M-Instruct on the held-out embedded tasks (by default every
   level-1 held-out task) under each trained design (ITL, ITL+PTC; ``--designs eager,itl,itl+ptc``
   adds eager as a contrast): greedy, one episode per task, a design's episodes batched together.
2. Warm start (:mod:`atlas_plugins.training.warmstart`): LoRA behaviour cloning on verified
   demonstrations of *training* tasks (a round-robin over the training templates), in every
   training design (ITL and ITL+PTC), with a short thought per turn. Then evaluate again.
3. Rubric GRPO (TRL, LoRA) on the training tasks under both training designs: the curriculum
   picks the groups with reward spread, dynamic sampling replaces groups that score alike
   (:mod:`atlas_plugins.training.curriculum`), and the shared-prefix trainer keeps each step cheap.
4. Evaluate once more; write ``report.md`` (per design: base / after warm start / after GRPO, with
   what the agent did: schemas loaded, meta-calls, repeated calls, parse failures),
   ``reward_curve.png`` (SFT loss; GRPO reward, success and the flat-group fraction per step) and
   ``results.json`` into the output folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from atlas_plugins.types import Task, Trajectory


class DemoSettings(BaseModel):
    """Settings of ``atlas demo`` (the defaults are the recipe measured in BENCHMARKS.md)."""

    seed: int = 0
    heldout_tasks: int | None = Field(
        default=None, description="held-out tasks to evaluate (None: all of level <= max_difficulty)"
    )
    max_difficulty: int = 1
    # Eager is left out by default: every schema in the prompt makes its batched evaluation the
    # costliest part of the demo on a CPU (measured: over 9 minutes for 27 tasks, 5 GB RSS).
    designs: list[str] = Field(default_factory=lambda: ["itl", "itl+ptc"], description="designs evaluated")
    train_designs: list[str] = Field(
        default_factory=lambda: ["itl", "itl+ptc"],
        description="designs trained (the first is the one before/after report)",
    )
    warm_start: bool = True
    warm_start_tasks: int = Field(
        default=48, description="demonstration tasks per training design (round-robin over templates)"
    )
    warm_start_epochs: float = 1.0
    warm_start_lr: float = 5e-4
    warm_start_think: bool = Field(default=True, description="a short <think> thought in each scripted turn")
    warm_start_batch: int = 8
    eval_warm_start: bool = Field(default=True, description="evaluate between warm start and GRPO (after_warm_start)")
    grpo_steps: int = 12
    grpo_batch: int = 8  # two groups of 4 per step
    grpo_group: int = 4
    grpo_lr: float = 5e-5
    grpo_max_completion_length: int = 768
    grpo_max_turn_tokens: int = 64
    dynamic_sampling_rounds: int = 1
    eval_max_turns: int = 6
    eval_max_new_tokens: int = 64
    eval_max_batch_tokens: int = 24_000  # episodes per batch so that their K/V stays ~1 GiB


def pick_tasks(tasks: list[Task], n: int | None, max_difficulty: int) -> list[Task]:
    """Tasks up to ``max_difficulty``, round-robin over templates, the first ``n`` (all when None)."""
    from atlas_plugins.evaluation.suites.embedded import round_robin

    ordered = round_robin([t for t in tasks if t.difficulty <= max_difficulty])
    return ordered if n is None else ordered[:n]


def run_demo(
    out_dir: str | Path, settings: DemoSettings | None = None, *, say: Callable[[str], None] = print
) -> dict[str, Any]:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import atlas_plugins as atlas
    from atlas_plugins.embedded_model import resolve_model_path
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.evaluation.designs import design_settings
    from atlas_plugins.rewards.scorer import Scorer
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer
    from atlas_plugins.training.warmstart import demonstrations, warm_start

    s = settings or DemoSettings()
    for d in {*s.designs, *s.train_designs}:
        design_settings(d)  # a bad design name fails now, before any model loads
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)
    t_start = time.perf_counter()
    heldout = pick_tasks(load_default_tasks("heldout"), s.heldout_tasks, s.max_difficulty)
    train = pick_tasks(load_default_tasks("train"), None, s.max_difficulty)
    path = resolve_model_path(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    results: dict[str, Any] = {
        "settings": s.model_dump(),
        "heldout_ids": [t.id for t in heldout],
        "train_tasks": len(train),
        "evaluations": {},
        "timings": {},
    }
    train_design = s.train_designs[0]

    def timed(name: str, t0: float) -> None:
        results["timings"][name] = round(time.perf_counter() - t0, 1)

    with atlas.Toolspace.default(seed=0) as ts:
        scorer = Scorer(toolspace=ts)

        def eval_all(tag: str, mdl: Any, designs: list[str]) -> dict[str, Any]:
            t0 = time.perf_counter()
            rows = {}
            for design in designs:
                say(f"[{tag}] evaluating {design} on {len(heldout)} held-out tasks …")
                summary, trajs = _evaluate(mdl, tokenizer, ts, heldout, design, scorer, s)
                rows[design] = summary
                with (out / f"eval_{tag}_{design.replace('+', '_')}.jsonl").open("w") as fh:
                    for t in trajs:
                        fh.write(
                            t.model_dump_json(exclude={"prompt_ids", "completion_ids", "env_mask", "logprobs"}) + "\n"
                        )
            results["evaluations"][tag] = rows
            timed(f"eval_{tag}", t0)
            return rows

        eval_all("before", model, s.designs)

        cfg = AtlasGRPOConfig.cpu_demo(
            str(out / "grpo"),
            max_steps=s.grpo_steps,
            seed=s.seed,
            learning_rate=s.grpo_lr,
            per_device_train_batch_size=s.grpo_batch,
            num_generations=s.grpo_group,
            max_completion_length=s.grpo_max_completion_length,
            max_turn_tokens=s.grpo_max_turn_tokens,
            designs=",".join(s.train_designs),
            dynamic_sampling_rounds=s.dynamic_sampling_rounds,
            curriculum=True,
            **design_settings(train_design),
        )
        warm_log: list[dict[str, Any]] = []
        if s.warm_start:
            t0 = time.perf_counter()
            demos: list[Trajectory] = []
            stats: dict[str, Any] = {}
            chosen = train[: s.warm_start_tasks]
            for design, agent_cfg in cfg.design_configs().items():
                say(f"warm start: playing reference solutions of {len(chosen)} training tasks under {design} …")
                kept, st = demonstrations(chosen, ts, tokenizer, agent_cfg, scorer, think=s.warm_start_think)
                demos += kept
                stats[design] = st
            results["warm_start"] = stats | {
                "rows": len(demos),
                "tokens": sum(len(d.prompt_ids) + len(d.completion_ids) for d in demos),
            }
            say(f"warm start: {len(demos)} verified demonstrations; LoRA behaviour cloning …")
            lora = LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM"
            )
            model, warm_log = warm_start(
                model,
                tokenizer,
                demos,
                output_dir=str(out / "warm_start"),
                epochs=s.warm_start_epochs,
                learning_rate=s.warm_start_lr,
                peft_config=lora,
                seed=s.seed,
                max_length=4096,
                batch_size=s.warm_start_batch,
            )
            timed("warm_start", t0)
            if s.eval_warm_start:
                eval_all("after_warm_start", model, s.designs)
        say(f"rubric GRPO: {s.grpo_steps} steps under {', '.join(s.train_designs)} …")
        t0 = time.perf_counter()
        trainer = AtlasTrainer(cfg, toolspace=ts, tasks=train, model=model, tokenizer=tokenizer)
        trainer.train()
        timed("grpo", t0)
        model = trainer.model
        results["grpo_log"] = trainer.state.log_history
        eval_all("after", model, s.designs)
        trainer.save_adapter(out / "adapter")

    results["wall_s"] = time.perf_counter() - t_start
    results["grpo"] = grpo_summary(results["grpo_log"])
    plot = _plot(out / "reward_curve.png", warm_log, results["grpo_log"])
    report = _report(out / "report.md", results)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    ev = results["evaluations"]

    def pick(tag: str) -> dict[str, Any] | None:
        row = ev.get(tag, {}).get(train_design)
        return None if row is None else {k: row[k] for k in ("reward", "success", "context_tokens")}

    designs = {d: {tag: ev[tag][d] for tag in ev if d in ev[tag]} for d in s.designs}
    return {
        "before": pick("before"),
        "after_warm_start": pick("after_warm_start"),
        "after": pick("after"),
        "heldout_tasks": len(heldout),
        "designs": designs,
        "plot": str(plot),
        "report": str(report),
        "grpo": results["grpo"],
        "timings": results["timings"],
        "wall_s": results["wall_s"],
    }


def _evaluate(
    model: Any, tokenizer: Any, ts: Any, tasks: list[Task], design: str, scorer: Any, s: DemoSettings
) -> tuple[dict[str, Any], list[Trajectory]]:
    """Greedy evaluation of one design, in batches whose K/V stays within ``eval_max_batch_tokens``."""
    from atlas_plugins.evaluation.episodes import play_design, summarize
    from atlas_plugins.policy.transformers_policy import TransformersPolicy, merged_adapters

    policy = TransformersPolicy(model=model, tokenizer=tokenizer, prefix_cache_bytes=1024**3)
    per_episode = 2600 if design.startswith("eager") else 1200  # measured context tokens, with room
    batch = max(1, s.eval_max_batch_tokens // per_episode)
    t0 = time.perf_counter()
    with merged_adapters(model):
        trajs = play_design(
            policy,
            ts,
            tasks,
            design,
            seed=s.seed,
            batch_size=batch,
            max_turns=s.eval_max_turns,
            max_new_tokens=s.eval_max_new_tokens,
            max_tool_calls=s.eval_max_turns,
        )
    for t in trajs:
        scorer.score(t)
    return summarize(design, trajs, time.perf_counter() - t0).model_dump(), trajs


def grpo_summary(log: list[dict[str, Any]]) -> dict[str, Any]:
    """The GRPO training curve: reward, success and the flat-group fraction per step, and the
    reward's least-squares slope per step."""
    steps = [h for h in log if "reward" in h and "step" in h]
    xs = [float(h["step"]) for h in steps]
    ys = [float(h["reward"]) for h in steps]
    slope = None
    if len(xs) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None
    return {
        "steps": len(steps),
        "reward": ys,
        "success": [h.get("atlas/success") for h in steps],
        "flat_fraction_sampled": [h.get("atlas/dynamic/flat_fraction_sampled") for h in steps],
        "flat_fraction_trained": [h.get("atlas/dynamic/flat_fraction_trained") for h in steps],
        "reward_slope_per_step": slope,
        "step_s": [h.get("atlas/time/rollout_s") for h in steps],
    }


def _plot(path: Path, warm_log: list[dict[str, Any]], grpo_log: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    wl = [(h["step"], h["loss"]) for h in warm_log if "loss" in h and "step" in h]
    if wl:
        axes[0].plot(*zip(*wl, strict=True), marker="o")
    axes[0].set_title("warm start: SFT loss (model tokens)")
    axes[0].set_xlabel("step")
    gl = [(h["step"], h.get("reward")) for h in grpo_log if "reward" in h]
    if gl:
        axes[1].plot(*zip(*gl, strict=True), marker="o", label="mean reward")
        for key, label, marker in (
            ("atlas/success", "success", "s"),
            ("atlas/dynamic/flat_fraction_sampled", "flat groups (sampled)", "x"),
        ):
            pts = [(h["step"], h.get(key)) for h in grpo_log if h.get(key) is not None]
            if pts:
                axes[1].plot(*zip(*pts, strict=True), marker=marker, label=label)
        axes[1].legend(fontsize=8)
    axes[1].set_title("rubric GRPO: training reward")
    axes[1].set_xlabel("step")
    axes[1].set_ylim(-0.05, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_TAGS = (("before", "base"), ("after_warm_start", "warm start"), ("after", "warm start + GRPO"))


def _report(path: Path, results: dict[str, Any]) -> Path:
    s = results["settings"]
    lines = [
        "# atlas demo report",
        "",
        f"Held-out tasks: {len(results['heldout_ids'])} (every level ≤ {s['max_difficulty']} held-out task); "
        f"training tasks: {results['train_tasks']}; wall time {results['wall_s']:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in results['timings'].items())}).",
        "",
    ]
    if results.get("warm_start"):
        ws = results["warm_start"]
        parts = [f"{d}: {v['kept']} of {v['tasks']}" for d, v in ws.items() if isinstance(v, dict)]
        lines += [
            f"Warm start: verified demonstrations {'; '.join(parts)} ({ws['rows']} rows, {ws['tokens']} tokens).",
            "",
        ]
    ev = results["evaluations"]
    for design in s["designs"]:
        lines += [
            f"## {design}",
            "",
            "| model | reward | success | TF | TA | TG | PA | context tokens | schemas loaded | loaded, unused | "
            "meta-calls | repeated calls | episodes repeating | parse failures |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for tag, label in _TAGS:
            r = ev.get(tag, {}).get(design)
            if r is None:
                continue
            c, b = r["by_category"], r.get("behaviour") or {}
            lines.append(
                f"| {label} | {r['reward']:.3f} | {r['success']:.3f} | {c.get('TF', 0):.2f} | {c.get('TA', 0):.2f} | "
                f"{c.get('TG', 0):.2f} | {c.get('PA', 0):.2f} | {r['context_tokens']:.0f} | {b.get('schemas_loaded', 0):.2f} | "
                f"{b.get('loaded_unused', 0):.2f} | {b.get('meta_calls', 0):.2f} | {b.get('repeated_calls', 0):.2f} | "
                f"{b.get('repeats', 0):.2f} | {b.get('parse_failures', 0):.2f} |"
            )
        lines.append("")
    g = results.get("grpo") or {}
    if g.get("steps"):
        lines += [
            "## GRPO training curve",
            "",
            "| step | reward | success | flat groups sampled | flat groups trained |",
            "|---|---|---|---|---|",
        ]
        for i in range(g["steps"]):
            lines.append(
                f"| {i + 1} | {g['reward'][i]:.3f} | {_f(g['success'][i])} | {_f(g['flat_fraction_sampled'][i])} | "
                f"{_f(g['flat_fraction_trained'][i])} |"
            )
        slope = g.get("reward_slope_per_step")
        lines += ["", f"Training reward slope: {slope:+.4f} per step (least squares)." if slope is not None else "", ""]
    lines += ["![reward curve](reward_curve.png)", ""]
    path.write_text("\n".join(lines))
    return path


def _f(x: Any) -> str:
    return "–" if x is None else f"{float(x):.2f}"
