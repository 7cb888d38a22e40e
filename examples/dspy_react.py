"""Finetune an existing DSPy program in place: a real ``dspy.ReAct`` over ATLAS toolspace tools.

The program is ordinary DSPy — ``dspy.ReAct("task -> answer", tools=...)`` — running on an
:class:`atlas_dspy.AtlasLM` over the embedded SmolLM2-135M-Instruct. The script

1. evaluates it on a few level-1 held-out tasks (rubric reward through the ``template``
   provider + ``rules`` judge, task success, answers, tool calls, DSPy parse failures),
2. trains it with rubric GRPO (:class:`~atlas_plugins.training.trainer.AtlasTrainer` with
   ``runner=DSPyRunner(...)``) for a few steps on train tasks — every LM call of an episode
   (ReAct's react steps, its extract step, JSON-adapter retries) is recorded token for token and
   shares the episode's reward,
3. evaluates the *same* program and LM object again: it now samples from the trained weights.

Offline on CPU with the embedded defaults::

    python examples/dspy_react.py --out /tmp/dspy_react

What to expect from a 135M model: DSPy's ChatAdapter asks for ``[[ ## field ## ]]`` sections and
a Python-literal tool name; the base model rarely produces them, so most episodes end in a DSPy
parse error (recorded, reward ~0). Two GRPO steps do not change that; the point is that the loop
is real and the numbers printed are measured, not that the model learns DSPy's format in two steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

# A handful of tools keeps ReAct's prompt short: every tool schema is paid for on every call.
TOOLS = ["math:add", "math:subtract", "timezones:convert", "weather:get_current"]
SERVERS = sorted({t.split(":")[0] for t in TOOLS})


def pick(split: str, n: int) -> list:
    from atlas_plugins.envs.taskgen import load_default_tasks

    tasks = [t for t in load_default_tasks(split) if t.difficulty == 1 and t.metadata.get("expected_tools", [{}])[0].get("tool") in TOOLS]
    return tasks[:n]


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
    ap.add_argument("--eval-tasks", type=int, default=3)
    ap.add_argument("--train-tasks", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per DSPy LM call")
    ap.add_argument("--max-iters", type=int, default=2, help="ReAct iterations")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import dspy
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import atlas_plugins as atlas
    from atlas_dspy import AtlasLM, DSPyRunner, toolspace_tools
    from atlas_plugins.policy.embedded import resolve_model_path
    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.evaluate import Scorer
    from atlas_plugins.training.trainer import AtlasTrainer

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)

    with atlas.Toolspace.default(servers=SERVERS) as ts:
        # --- the user's DSPy program, unchanged except for its LM -------------------------
        lm = AtlasLM(TransformersPolicy(model=model, tokenizer=tok), max_tokens=args.max_tokens, temperature=1.0)
        dspy.configure(lm=lm)
        program = dspy.ReAct("task -> answer", tools=toolspace_tools(ts, SERVERS, tools=TOOLS), max_iters=args.max_iters)

        runner = DSPyRunner(program, lm, ts, max_concurrency=2)
        scorer = Scorer(toolspace=ts)
        heldout, train = pick("heldout", args.eval_tasks), pick("train", args.train_tasks)
        print(f"held-out tasks: {[t.id for t in heldout]}\ntrain tasks: {[t.id for t in train]}")

        before = evaluate(runner, heldout, scorer, seed=args.seed + 1)
        print(f"before: reward {before['reward']:.3f}, answered {before['answered']:.2f}, ({before['wall_s']} s)")

        cfg = AtlasGRPOConfig.cpu_demo(
            str(out / "grpo"), max_steps=args.steps, per_device_train_batch_size=2, num_generations=2,
            max_completion_length=args.max_tokens, save_steps=max(args.steps, 1), logging_steps=1, seed=args.seed,
        )
        t0 = time.perf_counter()
        trainer = AtlasTrainer(cfg, toolspace=ts, tasks=train, model=model, tokenizer=tok, runner=runner)
        trainer.train()
        train_s = time.perf_counter() - t0
        steps = [
            {"step": h.get("step"), "reward": h.get("reward"), "reward_std": h.get("reward_std"), "grad_norm": h.get("grad_norm")}
            for h in trainer.trainer.state.log_history if "reward" in h
        ]
        trained = trainer.trainer.accelerator.unwrap_model(trainer.trainer.model)
        assert lm.policy.model is trained, "the program's LM should sample from the trained model"

        after = evaluate(runner, heldout, scorer, seed=args.seed + 1)

    total = time.perf_counter() - t_start
    rows = ["reward", "success", "answered", "tool_calls", "lm_calls", "parse_failures", "program_errors"]
    print(f"\n{'metric':<16}{'before':>10}{'after':>10}")
    for k in rows:
        print(f"{k:<16}{before[k]:>10.3f}{after[k]:>10.3f}")
    print(f"\nGRPO: {len(steps)} steps in {train_s:.0f} s: {steps}")
    print(f"total wall time {total:.0f} s (torch threads {args.threads})")
    for ex in after["examples"]:
        print(f"  after  {ex['task']}: answer={ex['answer']!r} tools={ex['tools']} {ex['error'][:80]}")
    summary = {"before": before, "after": after, "grpo_steps": steps, "train_s": round(train_s, 1),
               "total_s": round(total, 1), "tools": TOOLS, "args": vars(args)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
