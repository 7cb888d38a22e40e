"""GRPO step time: `AtlasTrainer` (agent rollouts through rollout_func) vs plain TRL single-turn.

Same model (embedded SmolLM2-135M + the same LoRA settings), same batch (B prompts × group G),
same prompt (the atlas agent's first prompt of each task, rendered identically for TRL), and
the same completion budget: the agent plays ONE turn of at most L tokens (max_turns=1), TRL
generates at most L tokens. Both sample at temperature 1 with EOS allowed, so completion
lengths can differ a little; the table also reports time per generated token.

Plain TRL: `GRPOTrainer` with its own transformers generation and a trivial reward
(so the ratio includes our rollout machinery AND the rubric reward). Trainers alternate
(plain, atlas, plain, atlas …) for R rounds of S steps each; step times exclude each round's
first step (warm-up). Ratio = median atlas step / median plain step.

    python benchmarks/grpo_overhead.py            # ~5-8 min on 2 idle cores
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
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

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
        temperature=1.0, beta=0.001,
        # TRL's default turns gradient checkpointing on, which also turns the KV cache off for its
        # generation (measured: one plain step of 4 x 64 tokens took 13 min on CPU). Off for both.
        gradient_checkpointing=False,
    )
    lora = dict(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    plain_times: list[float] = []
    atlas_times: list[float] = []
    plain_tokens: list[float] = []
    atlas_tokens: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="grpo-overhead-"))

    with atlas.Toolspace.default(servers=sorted({s for t in tasks for s in t.servers})) as ts:
        acfg = AtlasGRPOConfig.cpu_demo(str(tmp / "atlas"), max_steps=args.steps, max_turns=1, max_tool_calls=1,
                                        max_turn_tokens=args.length, loading="itl", max_train_tasks=n_tasks, **common)
        # The agent's first prompt of each task, as text: TRL gets exactly the same prompt tokens.
        probe = Agent(ScriptedPolicy(tok, []), ts, acfg.agent_config())
        prompts = []
        for t in tasks[:n_tasks]:
            ep = probe._start(t, "probe")
            prompts.append(ep.traj.messages)
        prompt_len = statistics.fmean(len(tok.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=False)) for p in prompts)

        def plain_reward(prompts, completions, **kw):  # noqa: ANN001
            return [float(len(str(c)) % 7) / 7 for c in completions]

        for r in range(args.rounds):
            # -- plain TRL ---------------------------------------------------------------------
            timer = StepTimer()
            model = AutoModelForCausalLM.from_pretrained(path)
            cfg = GRPOConfig(output_dir=str(tmp / f"plain{r}"), max_steps=args.steps, **common)
            tr = GRPOTrainer(model=model, args=cfg, reward_funcs=[plain_reward], train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                             processing_class=tok, peft_config=LoraConfig(**lora), callbacks=[timer.callback])
            tr.train()
            plain_times += timer.times[1:]
            plain_tokens += [h["completions/mean_length"] for h in tr.state.log_history if "completions/mean_length" in h][1:]
            # -- atlas -----------------------------------------------------------------------------
            timer = StepTimer()
            model = AutoModelForCausalLM.from_pretrained(path)
            acfg.output_dir = str(tmp / f"atlas{r}")
            at = AtlasTrainer(acfg, toolspace=ts, tasks=tasks[:n_tasks], model=model, tokenizer=tok, callbacks=[timer.callback])
            at.train()
            atlas_times += timer.times[1:]
            atlas_tokens += [h["completions/mean_length"] for h in at.trainer.state.log_history if "completions/mean_length" in h][1:]
            print(f"round {r}: plain {plain_times[-1]:.2f} s/step, atlas {atlas_times[-1]:.2f} s/step", flush=True)

    med = statistics.median
    result = {
        "settings": vars(args) | {"prompt_tokens": prompt_len},
        "plain_step_s": plain_times,
        "atlas_step_s": atlas_times,
        "plain_completion_tokens": plain_tokens,
        "atlas_completion_tokens": atlas_tokens,
        "ratio_median_step": med(atlas_times) / med(plain_times),
        "ratio_per_token": (med(atlas_times) / max(1e-9, statistics.fmean(atlas_tokens))) / (med(plain_times) / max(1e-9, statistics.fmean(plain_tokens))),
    }
    print("\n| trainer | median step s | mean completion tokens |\n|---|---|---|")
    print(f"| plain TRL GRPOTrainer | {med(plain_times):.2f} | {statistics.fmean(plain_tokens):.1f} |")
    print(f"| atlas (rollout_func, agent, rubric reward) | {med(atlas_times):.2f} | {statistics.fmean(atlas_tokens):.1f} |")
    print(f"\nratio (median step): {result['ratio_median_step']:.3f}   per generated token: {result['ratio_per_token']:.3f}   (goal ≤ 1.15)")
    out = HERE / "results" / "grpo_overhead.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
