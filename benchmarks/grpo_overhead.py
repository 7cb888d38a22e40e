"""GRPO step time: `AtlasTrainer` vs plain TRL `GRPOTrainer` on the same work, per phase.

Same model (embedded SmolLM2-135M), the same LoRA (r 16, alpha 32, on q/k/v/o for both), same
batch (B prompts × group G), same prompt (the atlas agent's first prompt of each task, rendered
identically for TRL), the same completion budget (one turn of at most L tokens), the same beta
(a reference pass on both sides) and no gradient checkpointing on either side. Both sample at
temperature 1 with EOS allowed, so completion lengths can differ a little; the table also
reports time per generated token.

Plain TRL: `GRPOTrainer` with its own transformers generation and a trivial reward (timed by
phase through `TimedGRPOTrainer`, which changes nothing else). Atlas: `AtlasTrainer` (agent
rollouts, rubric reward, exact shared-prefix scoring). `--unshared` adds atlas with
`shared_prefix: false` as a third trainer. `--workload multi-turn` plays the demo's real
multi-turn ITL episodes instead (plain TRL cannot: it compares atlas shared vs unshared).
Trainers alternate for R rounds of S steps; step times exclude each round's first step.

    python benchmarks/grpo_overhead.py                              # ~8 min on 2 idle cores
    python benchmarks/grpo_overhead.py --workload multi-turn --length 512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class StepTimer:
    """A TrainerCallback recording each optimizer step's wall time."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
                outer._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                outer.times.append(time.perf_counter() - outer._t)

        self.times: list[float] = []
        self._t = 0.0
        self.callback = _CB()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="rows per step (tasks × group)")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--length", type=int, default=64, help="max completion tokens")
    ap.add_argument("--steps", type=int, default=3, help="steps per round (first one is warm-up)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workload", choices=("single-turn", "multi-turn"), default="single-turn")
    ap.add_argument("--unshared", action="store_true", help="also time atlas with shared_prefix off")
    ap.add_argument("--beta", type=float, default=0.001)
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from atlas_plugins.training.grpo_trainer import TimedGRPOTrainer

    import atlas_plugins as atlas
    from atlas_plugins.agent.loop import Agent
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.policy.embedded import resolve_model_path
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer
    from atlas_plugins.training.warmstart import ScriptedPolicy

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    tasks = [t for t in load_default_tasks("train") if t.difficulty == 1][:8]
    n_tasks = max(1, args.batch // args.group)
    common = dict(
        per_device_train_batch_size=args.batch, num_generations=args.group, max_completion_length=args.length,
        learning_rate=1e-5, use_cpu=True, bf16=False, seed=0, report_to=[], logging_steps=1, save_strategy="no",
        temperature=1.0, beta=args.beta,
        # TRL's default turns gradient checkpointing on, which also turns the KV cache off for its
        # generation (measured: one plain step of 4 x 64 tokens took 13 min on CPU). Off for both.
        gradient_checkpointing=False,
    )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    lora = dict(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM")
    names = (["plain"] if args.workload == "single-turn" else []) + ["atlas"] + (
        ["atlas-unshared"] if args.unshared or args.workload == "multi-turn" else [])
    times: dict[str, list[float]] = {n: [] for n in names}
    tokens: dict[str, list[float]] = {n: [] for n in names}
    phases: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    tmp = Path(tempfile.mkdtemp(prefix="grpo-overhead-"))
    turns = dict(max_turns=1, max_tool_calls=1) if args.workload == "single-turn" else dict(max_turns=6, max_tool_calls=5)

    with atlas.Toolspace.default(servers=sorted({s for t in tasks for s in t.servers})) as ts:
        per_turn = args.length if args.workload == "single-turn" else 64
        acfg = AtlasGRPOConfig.cpu_demo(str(tmp / "atlas"), max_steps=args.steps, **turns, max_turn_tokens=per_turn,
                                        loading="itl", max_train_tasks=n_tasks, lora_target_modules=targets, **common)
        # The agent's first prompt of each task, as text: TRL gets exactly the same prompt tokens.
        probe = Agent(ScriptedPolicy(tok, []), ts, acfg.agent_config())
        prompts = []
        for t in tasks[:n_tasks]:
            ep = probe._start(t, "probe")
            prompts.append(ep.traj.messages)
        prompt_len = statistics.fmean(len(tok.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=False)) for p in prompts)

        def plain_reward(prompts, completions, **kw):  # noqa: ANN001
            return [float(len(str(c)) % 7) / 7 for c in completions]

        def record(name: str, timer: StepTimer, history: list[dict]) -> None:
            times[name] += timer.times[1:]
            tokens[name] += [h["completions/mean_length"] for h in history if "completions/mean_length" in h][1:]
            for h in [h for h in history if "atlas/time/rollout_s" in h][1:]:
                for k, v in h.items():
                    if k.startswith("atlas/time/"):
                        phases[name].setdefault(k.removeprefix("atlas/time/").removesuffix("_s"), []).append(v)

        for r in range(args.rounds):
            for name in names:
                timer = StepTimer()
                model = AutoModelForCausalLM.from_pretrained(path)
                if name == "plain":
                    cfg = GRPOConfig(output_dir=str(tmp / f"plain{r}"), max_steps=args.steps, **common)
                    tr = TimedGRPOTrainer(model=model, args=cfg, reward_funcs=[plain_reward],
                                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                                          processing_class=tok, peft_config=LoraConfig(**lora), callbacks=[timer.callback])
                    tr.train()
                    history = tr.state.log_history
                else:
                    acfg.output_dir = str(tmp / f"{name}{r}")
                    acfg.shared_prefix = name == "atlas"
                    at = AtlasTrainer(acfg, toolspace=ts, tasks=tasks[:n_tasks], model=model, tokenizer=tok,
                                      callbacks=[timer.callback])
                    at.train()
                    history = at.state.log_history
                record(name, timer, history)
                print(f"round {r}: {name} {statistics.median(timer.times[1:]):.2f} s/step", flush=True)

    med = statistics.median
    base = "plain" if "plain" in names else "atlas-unshared"
    result = {
        "settings": vars(args) | {"prompt_tokens": prompt_len, "baseline": base},
        "step_s": times,
        "completion_tokens": tokens,
        "phases_median_s": {n: {k: med(v) for k, v in ph.items()} for n, ph in phases.items()},
        "ratio_median_step": {n: med(times[n]) / med(times[base]) for n in names},
        "ratio_per_token": {n: (med(times[n]) / max(1e-9, statistics.fmean(tokens[n])))
                            / (med(times[base]) / max(1e-9, statistics.fmean(tokens[base]))) for n in names},
    }
    cols = ["rollout", "score_no_grad", "train_forward", "backward_and_rest"]
    print("\n| trainer | median step s | mean completion tokens | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for n in names:
        ph = result["phases_median_s"][n]
        print(f"| {n} | {med(times[n]):.2f} | {statistics.fmean(tokens[n]):.1f} | "
              + " | ".join(f"{ph.get(c, float('nan')):.2f}" for c in cols) + " |")
    for n in names:
        if n != base:
            print(f"ratio {n} / {base}: median step {result['ratio_median_step'][n]:.3f}, "
                  f"per generated token {result['ratio_per_token'][n]:.3f}")
    out = HERE / "results" / ("grpo_overhead.json" if args.workload == "single-turn" else "grpo_overhead_multiturn.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
