"""``atlas demo``: the whole loop on the embedded defaults, on CPU.

1. Evaluate the base SmolLM2-135M-Instruct on the held-out embedded tasks (by default every
   level-1 held-out task) under each trained design (ITL, ITL+PTC; ``--designs eager,itl,itl+ptc``
   adds eager as a contrast): greedy, one episode per task, a design's episodes batched together.
2. Warm start (:mod:`atlas_plugins.training.warmstart`): LoRA behaviour cloning on verified
   demonstrations of *training* tasks (a round-robin over the training templates), in every
   training design (ITL and ITL+PTC), with a short thought per turn. Then evaluate again.
3. Rubric GRPO (TRL, LoRA) on the training tasks (or, with ``grpo_task_seeds``, on training tasks of
   other generator seeds that the warm start never saw) under both training designs: the curriculum
   picks the groups with reward spread, dynamic sampling replaces groups that score alike
   (:mod:`atlas_plugins.training.curriculum`), and the shared-prefix trainer keeps each step cheap.
4. Evaluate once more; write ``report.md`` (per design: base / after warm start / after GRPO, with
   what the agent did: schemas loaded, meta-calls, repeated calls, parse failures),
   ``reward_curve.png`` (SFT loss; GRPO reward, success and the flat-group fraction per step) and
   ``results.json`` into the output folder.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from atlas_plugins.training.allocator import trim_heap, trim_heap_callback
from atlas_plugins.types import Task, Trajectory

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace


class DemoSettings(BaseModel):
    """Settings of ``atlas demo`` (the defaults are the recipe measured in BENCHMARKS.md)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt --settings key is an error, not ignored

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
    # Measured (seed 0, BENCHMARKS.md "Demo v5"): all 108 level-1 training tasks instead of 63 (3 per
    # template) took ITL+PTC's warm-start success from 0.26 to 0.37 and ITL's after GRPO from 0.19 to
    # 0.33, and the demo from 96 to 49 minutes (cleaner episodes are shorter to play and train).
    warm_start_tasks: int | None = Field(
        default=None,
        ge=1,
        description="demonstration tasks per training design, round-robin over templates (None: every training "
        "task up to max_difficulty, 108 at level 1)",
    )
    # Measured (seed 0, BENCHMARKS.md "Demo v4"): 2 epochs with described tools took the warm-start
    # model's ITL held-out success from 0 (1 epoch, names only) to 0.22; the SFT loss was still
    # falling at the end of one epoch (0.14).
    warm_start_epochs: float = 2.0
    warm_start_lr: float = 3e-3  # measured: 1e-3 left the SFT loss at 0.37 after 16 steps (0.14 at 3e-3)
    warm_start_think: bool = Field(default=True, description="a short <think> thought in each scripted turn")
    warm_start_describe_tools: bool = Field(
        default=True, description="thoughts quote what each tool does (its description's first clause)"
    )
    warm_start_batch: int = 8
    eval_warm_start: bool = Field(default=True, description="evaluate between warm start and GRPO (after_warm_start)")
    grpo_steps: int = 8
    grpo_batch: int = 8  # two groups of 4 per step
    grpo_group: int = 4
    grpo_lr: float = 2e-4  # LoRA: 5e-5 left the policy where it was in 12 steps
    # Measured on the demonstrations: an ITL episode (fetch, select, call, answer) has 775
    # completion tokens at the median and 1,598 at most; a code cell takes up to 101 tokens.
    grpo_max_completion_length: int = 1536
    grpo_max_turn_tokens: int = 128
    grpo_temperature: float = Field(default=1.0, gt=0, description="sampling temperature of GRPO rollouts")
    grpo_scale_rewards: Literal["group", "batch", "none"] = Field(
        default="group",
        description="TRL's advantage scaling: by each group's reward std, the batch's, or none "
        "(group: a group of near-equal rewards gets full-size advantages)",
    )
    grpo_iterations: int = Field(
        default=1,
        ge=1,
        description="TRL's num_iterations: optimizer steps per batch of rollouts (grpo_steps counts optimizer "
        "steps, so 2 iterations play half the episodes)",
    )
    grpo_alpha: dict[str, float] | None = Field(
        default=None,
        description="category weights of the *training* reward (e.g. {'TF': 0.6, 'TA': 0.2, 'TG': 0.1, 'PA': 0.1}); "
        "held-out evaluation always scores with the default weights",
    )
    grpo_beta: float = Field(
        default=0.0,
        ge=0,
        description="KL coefficient toward the model GRPO starts from: after the warm start, TRL's reference is "
        "a frozen copy of the warm-start adapter; 0 = no KL term and no reference pass (DAPO)",
    )
    grpo_task_seeds: list[int] = Field(
        default_factory=list,
        description="GRPO trains on the training-split tasks of these task-generator seeds that are not in the "
        "default set (new parameters of the training templates, so none the warm start trained on; never a "
        "held-out task or prompt) instead of the default training tasks; [] = the default training tasks",
    )
    dynamic_sampling_rounds: int = 1
    # On by default since 2026-12-03 (BENCHMARKS, "Demo v5, seed 1, 24 GRPO steps with shaping"):
    # without it, longer GRPO trained the policy into repeated calls (the rubric pays a looping
    # episode more than a wrong answer); 0 turns it off.
    grpo_unfinished_penalty: float = Field(
        default=0.3,
        ge=0,
        description="training reward penalty of an episode cut at a cap without answering "
        "(atlas_plugins.rewards.shaping; evaluation is unshaped)",
    )
    grpo_repeat_penalty: float = Field(
        default=0.1, ge=0, description="training reward penalty of an episode that repeats an identical call"
    )
    eval_max_turns: int = 6
    eval_max_new_tokens: int = 128
    release_memory: bool = Field(
        default=False,
        description="freed tensor memory goes back to the OS (glibc mmap threshold): measured on the warm start, "
        "6.7 -> 2.2 GiB peak RSS at 1.10x its time (BENCHMARKS.md, log-softmax tiles)",
    )
    memory_budget_gb: float | None = Field(
        default=None,
        gt=0,
        description="memory a GRPO step may use (AtlasGRPOConfig.memory_budget_gb): below a step's estimate "
        "without gradient checkpointing, the step recomputes activations; None = 90% of available memory",
    )
    trim_memory: bool = Field(
        default=False,
        description="give the heap's free pages back to the OS (glibc malloc_trim) after every training step, "
        "rollout and evaluation batch",
    )
    # Context tokens per evaluation batch: 10 ITL episodes (their K/V ~1.1 GB at 46 KB per token,
    # held once live and once in the prefix store between turns).
    eval_max_batch_tokens: int = 24_000

    @field_validator("grpo_task_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        # [1, 1] trains on the same tasks as [1]: one spelling, so one progress.json key
        return list(dict.fromkeys(seeds))

    @field_validator("grpo_alpha")
    @classmethod
    def _alpha_weights(cls, alpha: dict[str, float] | None) -> dict[str, float] | None:
        # Checked here, before any model loads: the trainer builds its scorer only after the warm start.
        if alpha is None:
            return None
        from atlas_plugins.rewards.aggregators.atlas import DEFAULT_ALPHA
        from atlas_plugins.rewards.rubric import CATEGORIES

        unknown = sorted(set(alpha) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"grpo_alpha: unknown categories {unknown}; the rubric categories are {list(CATEGORIES)}")
        merged = {**DEFAULT_ALPHA, **alpha}  # as the aggregator reads it: given weights over the defaults
        if any(v < 0 for v in merged.values()) or not any(v > 0 for v in merged.values()):
            raise ValueError(f"grpo_alpha weights must be non-negative with at least one positive, got {merged}")
        return alpha


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
    if s.release_memory:
        from atlas_plugins.training.allocator import release_large_blocks

        release_large_blocks()  # before the model's tensors are allocated
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)
    t_start = time.perf_counter()
    default_set = load_default_tasks()  # read once: both splits, and what GRPO's other tasks must avoid
    heldout = pick_tasks([t for t in default_set if t.split == "heldout"], s.heldout_tasks, s.max_difficulty)
    train = pick_tasks([t for t in default_set if t.split == "train"], None, s.max_difficulty)
    path = resolve_model_path(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model: Any = AutoModelForCausalLM.from_pretrained(path)  # a PeftModel once the warm start wraps it
    results: dict[str, Any] = {
        "settings": s.model_dump(),
        "heldout_ids": [t.id for t in heldout],
        "train_tasks": len(train),
        "evaluations": {},
        "timings": {},
        "kept_phases": [],  # phases taken whole from progress.json: their timing is not a measurement
    }
    train_design = s.train_designs[0]

    def timed(name: str, t0: float, kept: bool = False) -> None:
        results["timings"][name] = round(time.perf_counter() - t0, 1)
        if kept:
            results["kept_phases"].append(name)

    progress = _Progress(out / "progress.json")
    eval_key, warm_key, grpo_key = phase_keys(s)
    warm_dir, grpo_dir = out / "warm_start", out / "grpo"

    with atlas.Toolspace.default(seed=0) as ts:
        scorer = Scorer(toolspace=ts)

        def eval_all(tag: str, mdl: Any, designs: list[str], after: dict[str, Any]) -> None:
            t0 = time.perf_counter()
            rows, kept = {}, []
            for design in designs:
                key = eval_key | after | {"design": design}
                done = progress.get(f"eval/{tag}/{design}", key)
                if done is not None:
                    say(f"[{tag}] {design}: kept from {progress.path}")
                    rows[design] = done
                    kept.append(design)
                    continue
                say(f"[{tag}] evaluating {design} on {len(heldout)} held-out tasks …")
                summary, trajs = _evaluate(mdl, tokenizer, ts, heldout, design, scorer, s)
                rows[design] = summary
                with (out / f"eval_{tag}_{design.replace('+', '_')}.jsonl").open("w") as fh:
                    for t in trajs:
                        fh.write(
                            t.model_dump_json(exclude={"prompt_ids", "completion_ids", "env_mask", "logprobs"}) + "\n"
                        )
                progress.put(f"eval/{tag}/{design}", key, summary)
            results["evaluations"][tag] = rows
            timed(f"eval_{tag}", t0, kept=len(kept) == len(designs))

        eval_all("before", model, s.designs, {})

        cfg = AtlasGRPOConfig.cpu_demo(
            str(grpo_dir),
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
            release_memory=s.release_memory,
            memory_budget_gb=s.memory_budget_gb,
            trim_memory=s.trim_memory,
            temperature=s.grpo_temperature,
            scale_rewards=s.grpo_scale_rewards,
            num_iterations=s.grpo_iterations,
            aggregator_options={"alpha": s.grpo_alpha} if s.grpo_alpha else {},
            unfinished_penalty=s.grpo_unfinished_penalty,
            repeat_penalty=s.grpo_repeat_penalty,
            beta=s.grpo_beta,
            **design_settings(train_design),
        )
        warm_log: list[dict[str, Any]] = []
        if s.warm_start:
            t0 = time.perf_counter()
            kept_run = progress.get("warm_start", warm_key)
            warm_kept = kept_run is not None and (warm_dir / "adapter" / "adapter_config.json").is_file()
            if warm_kept:
                from peft import PeftModel

                say(f"warm start: adapter kept from {warm_dir / 'adapter'}")
                model = PeftModel.from_pretrained(model, str(warm_dir / "adapter"), is_trainable=True)
                results["warm_start"], warm_log = kept_run["stats"], kept_run["log"]
            else:
                demos: list[Trajectory] = []
                stats: dict[str, Any] = {}
                chosen = train if s.warm_start_tasks is None else train[: s.warm_start_tasks]
                for design, agent_cfg in cfg.design_configs().items():
                    say(f"warm start: playing reference solutions of {len(chosen)} training tasks under {design} …")
                    kept, st = demonstrations(
                        chosen,
                        ts,
                        tokenizer,
                        agent_cfg,
                        scorer,
                        think=s.warm_start_think,
                        describe_tools=s.warm_start_describe_tools,
                    )
                    demos += kept
                    stats[design] = st
                results["warm_start"] = stats | {
                    "rows": len(demos),
                    "tokens": sum(len(d.prompt_ids) + len(d.completion_ids) for d in demos),
                }
                say(f"warm start: {len(demos)} verified demonstrations; LoRA behaviour cloning …")
                lora = LoraConfig(
                    r=cfg.lora_r,
                    lora_alpha=cfg.lora_alpha,
                    target_modules=cfg.lora_target_modules,
                    task_type="CAUSAL_LM",
                )
                model, warm_log = warm_start(
                    model,
                    tokenizer,
                    demos,
                    output_dir=str(warm_dir),
                    epochs=s.warm_start_epochs,
                    learning_rate=s.warm_start_lr,
                    peft_config=lora,
                    seed=s.seed,
                    max_length=4096,
                    batch_size=s.warm_start_batch,
                    callbacks=[trim_heap_callback()] if s.trim_memory else [],
                )
                # Saved so that a killed demo resumes after it, and the warm-start-only model can be evaluated.
                model.save_pretrained(str(warm_dir / "adapter"))
                progress.put("warm_start", warm_key, {"stats": results["warm_start"], "log": warm_log})
            timed("warm_start", t0, kept=warm_kept)
            if s.eval_warm_start:
                eval_all("after_warm_start", model, s.designs, warm_key)
        t0 = time.perf_counter()
        grpo_run = progress.get("grpo", grpo_key) or {}
        grpo_kept = bool(grpo_run.get("finished_at")) and (out / "adapter" / "adapter_config.json").is_file()
        if grpo_kept:
            from peft import PeftModel

            say(f"rubric GRPO: adapter kept from {out / 'adapter'}")
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path), str(out / "adapter"))
            results["grpo_log"] = grpo_run["log"]
        else:
            grpo_tasks = train
            if s.grpo_task_seeds:
                from atlas_plugins.envs.taskgen import unseen_train_tasks

                # Nothing of the default set: neither what the warm start trained on nor a held-out prompt.
                grpo_tasks = unseen_train_tasks(
                    s.grpo_task_seeds, avoid=default_set, max_difficulty=s.max_difficulty, say=say
                )
                if not grpo_tasks:
                    raise ValueError(f"grpo_task_seeds {s.grpo_task_seeds}: no training task outside the default set")
                say(
                    f"rubric GRPO: {len(grpo_tasks)} training tasks of seeds {s.grpo_task_seeds}, none in the default set"
                )
            results["grpo_tasks"] = len(grpo_tasks)
            trainer = AtlasTrainer(cfg, toolspace=ts, tasks=grpo_tasks, model=model, tokenizer=tokenizer)
            resume = bool(grpo_run) and _has_checkpoint(grpo_dir)
            say(
                f"rubric GRPO: {s.grpo_steps} steps under {', '.join(s.train_designs)}"
                + (" (resuming from the last checkpoint) …" if resume else " …")
            )
            if not resume:
                for old in grpo_dir.glob("checkpoint-*"):  # another recipe's: never resume from it
                    shutil.rmtree(old, ignore_errors=True)
                # nor continue its curriculum (the trainer loads curriculum.json on its first rollout)
                (grpo_dir / "curriculum.json").unlink(missing_ok=True)
            progress.put("grpo", grpo_key, {"started": True})
            trainer.train(resume=resume)
            model = trainer.model
            results["grpo_log"] = trainer.state.log_history
            trainer.save_adapter(out / "adapter")
            grpo_run = {"finished_at": time.time(), "log": results["grpo_log"]}
            progress.put("grpo", grpo_key, grpo_run)
        timed("grpo", t0, kept=grpo_kept)
        # Keyed by the GRPO run that made the model: a retrained model is evaluated anew.
        eval_all("after", model, s.designs, grpo_key | {"grpo_finished_at": grpo_run["finished_at"]})

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
        "kept_phases": results["kept_phases"],
        "wall_s": results["wall_s"],
    }


def _evaluate(
    model: Any, tokenizer: Any, ts: Toolspace, tasks: list[Task], design: str, scorer: Any, s: DemoSettings
) -> tuple[dict[str, Any], list[Trajectory]]:
    """Greedy evaluation of one design, in batches whose K/V stays within ``eval_max_batch_tokens``."""
    from atlas_plugins.evaluation.episodes import play_design, summarize
    from atlas_plugins.policy.transformers_policy import TransformersPolicy, merged_adapters

    # Context tokens an episode reaches (measured: ~1,000 for the base model under ITL, ~2,250 once
    # it calls tools; eager starts from every schema). The prefix store must hold the whole
    # batch's K/V between turns: a smaller one evicts rows, which then re-prefill their entire
    # context every turn (measured: an ITL evaluation of 27 trained episodes slowed from ~6 to
    # over 15 minutes with a 1 GiB store).
    per_episode = 3200 if design.startswith("eager") else 2400
    batch = max(1, s.eval_max_batch_tokens // per_episode)
    store = int(1.25 * batch * per_episode * _kv_bytes_per_token(model))
    policy = TransformersPolicy(model=model, tokenizer=tokenizer, prefix_cache_bytes=store)
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
            progress=_trim_between_batches if s.trim_memory else None,
        )
    del policy  # its prefix store
    if s.trim_memory:
        trim_heap()
    for t in trajs:
        scorer.score(t)
    return summarize(design, trajs, time.perf_counter() - t0).model_dump(), trajs


def _trim_between_batches(done: int, total: int) -> None:
    trim_heap()  # what the finished batch's generation freed (its live K/V, evicted store entries)


def _kv_bytes_per_token(model: Any) -> int:
    """Bytes of K/V one token holds in ``model``'s cache (all layers, keys and values)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    size = next(model.parameters()).element_size()
    return int(cfg.num_hidden_layers * 2 * heads * head_dim * size)


class _Progress:
    """What a demo has finished, with the settings each phase depended on (``progress.json``).

    A rerun with the same ``--out`` keeps every phase whose settings are unchanged (evaluations,
    the warm-start adapter) and resumes GRPO from its last checkpoint, so a killed demo loses at
    most the phase it was in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.phases: dict[str, Any] = {}
        if path.is_file():
            try:
                self.phases = json.loads(path.read_text()).get("phases", {})
            except (ValueError, AttributeError):
                self.phases = {}  # a torn write: start over rather than trust it

    def get(self, name: str, key: dict[str, Any]) -> Any:
        entry = self.phases.get(name)
        return entry["result"] if isinstance(entry, dict) and entry.get("key") == _jsonable(key) else None

    def put(self, name: str, key: dict[str, Any], result: Any) -> None:
        self.phases[name] = {"key": _jsonable(key), "result": _jsonable(result)}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"phases": self.phases}, indent=1))
        tmp.replace(self.path)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


#: Settings added after demos had been run, with the value those demos ran with: in a phase's
#: key only when they differ from it, so that a finished demo's GRPO phase (recorded without
#: them) is still recognised as done instead of being trained again, and is not taken for a run
#: of a default that changed since (the penalties were 0 until 2026-12-03).
_KEYED_ONLY_WHEN_CHANGED: dict[str, Any] = {
    "grpo_temperature": 1.0,
    "grpo_scale_rewards": "group",
    "grpo_iterations": 1,
    "grpo_alpha": None,
    "grpo_unfinished_penalty": 0.0,
    "grpo_repeat_penalty": 0.0,
    "grpo_beta": 0.0,
    "grpo_task_seeds": [],
}


def phase_keys(s: DemoSettings) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The settings each phase depends on (``progress.json`` keys): evaluation, warm start, GRPO."""
    eval_key = _subset(s, "seed", "heldout_tasks", "max_difficulty", "eval_max_turns", "eval_max_new_tokens")
    fields = type(s).model_fields
    warm_key = _subset(s, "seed", "max_difficulty", "train_designs", *[k for k in fields if k.startswith("warm_start")])
    grpo = [k for k in fields if k.startswith("grpo_") and k not in _KEYED_ONLY_WHEN_CHANGED]
    grpo_key = warm_key | _subset(s, "dynamic_sampling_rounds", *grpo)
    grpo_key |= {k: getattr(s, k) for k, ran in sorted(_KEYED_ONLY_WHEN_CHANGED.items()) if getattr(s, k) != ran}
    return eval_key, warm_key, grpo_key


def _subset(s: DemoSettings, *names: str) -> dict[str, Any]:
    return {n: getattr(s, n) for n in names}


def _has_checkpoint(folder: Path) -> bool:
    from transformers.trainer_utils import get_last_checkpoint  # what AtlasTrainer.train(resume=True) reads

    return folder.is_dir() and get_last_checkpoint(str(folder)) is not None


def grpo_summary(log: list[dict[str, Any]]) -> dict[str, Any]:
    """The GRPO training curve: rubric reward, success and the flat-group fraction per step, and
    the rubric reward's least-squares slope per step. ``reward`` is the rubric reward (what
    evaluation scores); ``trained_reward`` is what GRPO trained on (the same unless shaped)."""
    steps = [h for h in log if "reward" in h and "step" in h]
    xs = [float(h["step"]) for h in steps]
    ys = [float(h.get("rubric/reward", h["reward"])) for h in steps]
    slope = None
    if len(xs) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None
    return {
        "steps": len(steps),
        "reward": ys,
        "trained_reward": [float(h["reward"]) for h in steps],
        "repeating_episodes": [h.get("atlas/repeating_episodes") for h in steps],
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
    gl = [(h["step"], h.get("rubric/reward", h["reward"])) for h in grpo_log if "reward" in h]
    if gl:
        axes[1].plot(*zip(*gl, strict=True), marker="o", label="mean rubric reward")
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


def _timing(name: str, seconds: float, kept: list[str]) -> str:
    return f"{name} kept from progress.json" if name in kept else f"{name} {seconds:.0f} s"


def _report(path: Path, results: dict[str, Any]) -> Path:
    s = results["settings"]
    kept = results.get("kept_phases", [])
    lines = [
        "# atlas demo report",
        "",
        f"Held-out tasks: {len(results['heldout_ids'])} (every level ≤ {s['max_difficulty']} held-out task); "
        f"training tasks: {results['train_tasks']}"
        + (
            f" (GRPO: {results['grpo_tasks']} tasks of generator seeds {s['grpo_task_seeds']}, none in the default set)"
            if s.get("grpo_task_seeds") and "grpo_tasks" in results
            else ""
        )
        + f"; wall time {results['wall_s']:.0f} s{' in this run' if kept else ''} "
        f"({', '.join(_timing(k, v, kept) for k, v in results['timings'].items())}).",
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
            "Reward is the rubric reward; trained reward is what GRPO trained on (lower when the reward is shaped).",
            "",
            "| step | reward | trained reward | success | episodes repeating a call | flat groups sampled | "
            "flat groups trained |",
            "|---|---|---|---|---|---|---|",
        ]
        trained = g.get("trained_reward") or g["reward"]
        repeating = g.get("repeating_episodes") or [None] * g["steps"]
        for i in range(g["steps"]):
            lines.append(
                f"| {i + 1} | {g['reward'][i]:.3f} | {trained[i]:.3f} | {_f(g['success'][i])} | {_f(repeating[i])} | "
                f"{_f(g['flat_fraction_sampled'][i])} | {_f(g['flat_fraction_trained'][i])} |"
            )
        slope = g.get("reward_slope_per_step")
        lines += ["", f"Training reward slope: {slope:+.4f} per step (least squares)." if slope is not None else "", ""]
    lines += ["![reward curve](reward_curve.png)", ""]
    path.write_text("\n".join(lines))
    return path


def _f(x: Any) -> str:
    return "–" if x is None else f"{float(x):.2f}"
