"""Finetune an existing DSPy program in place: a real ``dspy.ReAct`` over ATLAS toolspace tools.

The program is ordinary DSPy — ``dspy.ReAct("task -> answer", tools=...)`` — running on an
:class:`atlas_dspy.AtlasLM` over the embedded SmolLM2-135M-Instruct. The script

1. evaluates it greedily on a few level-1 held-out tasks (rubric reward through the ``template``
   provider + ``rules`` judge, task success, answers, tool calls, DSPy parse failures);
2. warm start: the 135M model never writes DSPy's ``[[ ## field ## ]]`` format on its own (every
   episode ends in a parse error, every GRPO group scores 0), so the reference solutions of a few
   *training* tasks are played through the same program (:func:`atlas_dspy.demonstrations`: the
   replies are written by DSPy's own adapter, the tools are real MCP calls, each kept only if its
   rubric scores 1.0) and the model is LoRA-cloned on every recorded LM call;
3. trains it with rubric GRPO (:class:`~atlas_plugins.training.trainer.AtlasTrainer` with
   ``runner=DSPyRunner(...)``) for a few steps on train tasks — every LM call of an episode
   (ReAct's react steps, its extract step, adapter retries) is recorded token for token and
   shares the episode's reward;
4. evaluates the *same* program and LM object again: it now samples from the trained weights.

Offline on CPU with the embedded defaults::

    python examples/dspy_react.py --out /tmp/dspy_react
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

# A handful of tools keeps ReAct's prompt short: every tool schema is paid for on every call
# (DSPy's ReAct prompt is ~1,100 tokens with these three).
TOOLS = ["math:add", "math:subtract", "weather:get_current"]
SERVERS = sorted({t.split(":")[0] for t in TOOLS})


def pick(split: str, n: int) -> list:
    from atlas_plugins.envs.taskgen import load_default_tasks

    from atlas_plugins.evaluation.suites.embedded import round_robin

    tasks = [t for t in load_default_tasks(split) if t.difficulty == 1 and t.metadata.get("reference_solution")
             and all(f"{s['server']}:{s['tool']}" in TOOLS for s in t.metadata["reference_solution"])]
    return round_robin(tasks)[:n]  # one task per template first: a few tasks still cover every tool


def evaluate(runner, tasks, scorer, seed: int) -> dict:
    from atlas_plugins.training.trainer import is_success

    t0 = time.perf_counter()
    trajs = [scorer.score(t) for t in runner.run(tasks, seed=seed)]
    mean = lambda xs: float(statistics.fmean(xs)) if xs else 0.0  # noqa: E731
    return {
        "reward": mean([t.reward or 0.0 for t in trajs]),
        "success": mean([float(is_success(t)) for t in trajs]),
        "answered": mean([float(t.final_answer is not None) for t in trajs]),
        "tool_calls": mean([len(t.tool_calls) for t in trajs]),
        "lm_calls": mean([t.turns for t in trajs]),
        "parse_failures": mean([t.parse_failures for t in trajs]),
        "program_errors": mean([float("error" in t.metadata) for t in trajs]),
        "wall_s": round(time.perf_counter() - t0, 1),
        "examples": [
            {"task": t.task_id, "answer": t.final_answer, "reward": t.reward,
             "tools": [c.name for c in t.tool_calls], "error": " ".join((t.metadata.get("error") or "").split())[:120]}
            for t in trajs
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="dspy_react_out")
    ap.add_argument("--steps", type=int, default=2, help="GRPO steps")
    ap.add_argument("--eval-tasks", type=int, default=3, help="up to this many held-out tasks (2 match the tools)")
    ap.add_argument("--warm-tasks", type=int, default=3, help="training tasks whose reference solutions are cloned")
    ap.add_argument("--train-tasks", type=int, default=2, help="training tasks GRPO samples from")
    ap.add_argument("--max-tokens", type=int, default=80, help="tokens per DSPy LM call (a scripted react reply is ~60)")
    # Level-1 tasks need one tool call: one react step, then ReAct's extract step. Every further
    # iteration is one more ~1,100-token LM call per episode (and SFT row), which CPU pays for.
    ap.add_argument("--max-iters", type=int, default=1, help="ReAct iterations")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice, all cores)")
    ap.add_argument("--eval-warm", action="store_true",
                    help="also evaluate between warm start and GRPO (~25 s more on 2 cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import dspy
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import atlas_plugins as atlas
    from atlas_dspy import AtlasLM, DSPyRunner, demonstrations, toolspace_tools
    from atlas_plugins.policy.embedded import resolve_model_path
    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.evaluate import Scorer
    from atlas_plugins.training.trainer import AtlasTrainer
    from atlas_plugins.training.warmstart import warm_start

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        print(f"{time.perf_counter() - t_start:6.0f}s  {msg}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)

    with atlas.Toolspace.default(servers=SERVERS) as ts:
        # --- the user's DSPy program, unchanged except for its LM -------------------------
        lm = AtlasLM(TransformersPolicy(model=model, tokenizer=tok), max_tokens=args.max_tokens, temperature=0.0)
        dspy.configure(lm=lm)
        program = dspy.ReAct("task -> answer", tools=toolspace_tools(ts, SERVERS, tools=TOOLS), max_iters=args.max_iters)

        runner = DSPyRunner(program, lm, ts, max_concurrency=4)
        scorer = Scorer(toolspace=ts)
        heldout = pick("heldout", args.eval_tasks)
        warm_tasks = pick("train", args.warm_tasks)
        train = pick("train", args.warm_tasks + args.train_tasks)[args.warm_tasks:]  # GRPO on tasks not cloned
        if not heldout or not warm_tasks or not train:
            raise SystemExit(f"not enough level-1 tasks for the tools {TOOLS}: {len(heldout)} held-out, "
                             f"{len(warm_tasks)} warm-start, {len(train)} GRPO (lower --warm-tasks/--train-tasks)")
        say(f"held-out tasks: {[t.id for t in heldout]}")

        # --- 1. before (greedy) ----------------------------------------------------------------
        before = evaluate(runner, heldout, scorer, seed=args.seed + 1)
        say(f"[before] reward {before['reward']:.3f}  success {before['success']:.0%}  parse failures/episode {before['parse_failures']:.1f}")

        # --- 2. warm start: scripted reference solutions played through the same program -------------
        demos, stats = demonstrations(runner, warm_tasks, scorer)
        say(f"[warm start] {stats['kept']} verified demonstrations of {stats['tasks']} training tasks "
            f"({sum(len(d.segments) or 1 for d in demos)} LM calls)")
        cfg = AtlasGRPOConfig.cpu_demo(
            str(out / "grpo"), max_steps=args.steps, per_device_train_batch_size=2, num_generations=2,
            max_completion_length=args.max_tokens, save_steps=max(args.steps, 1), logging_steps=1, seed=args.seed,
            learning_rate=5e-5, max_turn_tokens=96,  # the settings its BENCHMARKS.md rows were measured with
        )
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
        tuned, _ = warm_start(model, tok, demos, output_dir=str(out / "warm_start"), epochs=2, learning_rate=3e-3,
                              batch_size=1, peft_config=lora, max_length=2048, seed=args.seed,
                              gradient_checkpointing=False)
        lm.set_policy(TransformersPolicy(model=tuned, tokenizer=tok, name="warm"))
        warm = None
        if args.eval_warm:
            warm = evaluate(runner, heldout, scorer, seed=args.seed + 1)
            say(f"[warm]   reward {warm['reward']:.3f}  success {warm['success']:.0%}  parse failures/episode {warm['parse_failures']:.1f}")

        # --- 3. rubric GRPO through the runner --------------------------------------------------
        lm.kwargs["temperature"] = cfg.temperature  # sample as GRPO scores (logprobs at this temperature)
        t0 = time.perf_counter()
        trainer = AtlasTrainer(cfg, toolspace=ts, tasks=train, model=tuned, tokenizer=tok, runner=runner)
        trainer.train()
        train_s = time.perf_counter() - t0
        steps = [
            {"step": h.get("step"), "reward": h.get("reward"), "reward_std": h.get("reward_std"), "grad_norm": h.get("grad_norm")}
            for h in trainer.trainer.state.log_history if "reward" in h
        ]
        trained = trainer.trainer.accelerator.unwrap_model(trainer.trainer.model)
        assert lm.policy.model is trained, "the program's LM should sample from the trained model"
        say(f"[grpo]   {len(steps)} steps in {train_s:.0f} s, mean reward per step {[round(x['reward'], 3) for x in steps]}")

        # --- 4. after: the same program and LM object, now on the trained weights ----------------
        lm.kwargs["temperature"] = 0.0
        after = evaluate(runner, heldout, scorer, seed=args.seed + 1)
        say(f"[after]  reward {after['reward']:.3f}  success {after['success']:.0%}  parse failures/episode {after['parse_failures']:.1f}")
        adapter = trainer.save_adapter(out / "adapter")

    total = time.perf_counter() - t_start
    rows = ["reward", "success", "answered", "tool_calls", "lm_calls", "parse_failures", "program_errors"]
    print(f"\n| held-out (level 1) | {' | '.join(rows)} |\n|---|{'---|' * len(rows)}")
    stages = [("before", before), ("warm start", warm), (f"after warm start + {len(steps)} GRPO steps", after)]
    for name, row in [(n, r) for n, r in stages if r is not None]:
        print(f"| {name} | {' | '.join(f'{row[k]:.3f}' for k in rows)} |")
    print(f"\ntotal wall time {total:.0f} s (torch threads {torch.get_num_threads()}); LoRA adapter: {adapter}")
    for ex in after["examples"]:
        print(f"  after  {ex['task']}: answer={ex['answer']!r} tools={ex['tools']} {ex['error'][:80]}")
    summary = {"before": before, "warm": warm, "after": after, "warm_start": stats, "grpo_steps": steps,
               "train_s": round(train_s, 1), "total_s": round(total, 1), "tools": TOOLS, "args": vars(args)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
