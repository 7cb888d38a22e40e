"""Peak memory of GRPO steps with a long prompt: batch 8 of an agent whose tools fill ~2,400 tokens.

The case behind it: an adapted agent with 19 MCP tools starts every episode from a 2,407-token
prompt, and two GRPO steps at batch 8 were killed by the kernel at 22 GB (14.3 GB with gradient
checkpointing). Here the native agent plays *eager* (every schema of the task's servers in the
prompt) on the training tasks whose first prompt is closest to the target length, so a step trains
8 rows of that length, with the `cpu_demo` settings and the trainer's own memory plan
(checkpointing chosen per step by measured need, ``atlas_plugins.training.memory``).

Each case runs in its own process; its peak RSS is the kernel's ``ru_maxrss`` for that process
(``os.wait4``), the same figure ``/usr/bin/time -v`` prints as "Maximum resident set size".

    python benchmarks/memory.py                       # ~5 min on 2 idle cores
    python benchmarks/memory.py --prompt-tokens 2400 --batch 8 --group 4 --steps 2
    python benchmarks/memory.py --allocator both       # glibc default vs release_memory, ~12 min
    python benchmarks/memory.py --loading itl --prompt-tokens 1000 --length 1536 --tiles both

``--allocator release`` trains with ``release_memory=True`` (glibc's mmap threshold fixed at 1 MiB,
``atlas_plugins.training.allocator``), so that freed activation-sized blocks go back to the OS;
``both`` runs the default case, then the released one, each in its own process.

``--tiles trl`` scores completions with TRL's own log-softmax tiles (4,096 tokens x 32,768
columns, what ran before 2026-12-03) instead of the CPU tiles of
``atlas_plugins.training.shared_prefix`` (1,024 x 8,192); ``both`` runs each, for every allocator
case, TRL's first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> None:
    """One case, in this process: pick the tasks, train ``--steps`` steps, print a JSON line."""
    import torch
    from transformers import AutoTokenizer

    import atlas_plugins as atlas
    from atlas_plugins.agent.loop import Agent
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.policy.embedded import resolve_model_path
    from atlas_plugins.training.config import AtlasGRPOConfig
    from atlas_plugins.training.trainer import AtlasTrainer
    from atlas_plugins.training.warmstart import ScriptedPolicy

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if args.tiles == "trl":  # the log-softmax tiles before 2026-12-03 (see the module docs)
        from atlas_plugins.training import shared_prefix

        shared_prefix.CPU_TILE_TOKENS, shared_prefix.CPU_TILE_COLUMNS = shared_prefix.trl_logprob_tile()
    tok = AutoTokenizer.from_pretrained(resolve_model_path(None))
    n_tasks = max(1, args.batch // args.group)
    out = Path(tempfile.mkdtemp(prefix="atlas-memory-"))
    cfg = AtlasGRPOConfig.cpu_demo(
        str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        num_generations=args.group,
        max_completion_length=args.length,
        max_turn_tokens=min(128 if args.loading == "itl" else 96, args.length),
        loading=args.loading,
        max_train_tasks=n_tasks,
        report_to=[],
        save_strategy="no",
        release_memory=args.allocator == "release",
    )
    tasks = [t for t in load_default_tasks("train") if len(t.servers) == 1]
    with atlas.Toolspace.default(servers=sorted({s for t in tasks for s in t.servers})) as ts:
        probe = Agent(ScriptedPolicy(tok, []), ts, cfg.agent_config())
        by_server: dict[str, int] = {}
        for t in tasks:  # the eager prompt depends on the server only: one probe per server
            if t.servers[0] not in by_server:
                ep = probe._start(t, "probe")
                by_server[t.servers[0]] = len(
                    tok.apply_chat_template(
                        ep.traj.messages, tokenize=True, add_generation_prompt=True, return_dict=False
                    )
                )
        server = min(by_server, key=lambda s: abs(by_server[s] - args.prompt_tokens))
        chosen = [t for t in tasks if t.servers == [server]][:n_tasks]
        tools = len([x for x in ts.list_tools() if x.server == server])
        trainer = AtlasTrainer(cfg, toolspace=ts, tasks=chosen, model=None, tokenizer=tok)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        steps = [h for h in trainer.state.log_history if "reward" in h]
    print(
        "RESULT "
        + json.dumps(
            {
                "server": server,
                "tools": tools,
                "prompt_tokens": by_server[server],
                "eager_prompt_tokens_by_server": by_server,
                "rows_per_step": args.batch,
                "steps": len(steps),
                "train_s": wall,
                "checkpointing_last_step": trainer._checkpointing,
                "completion_tokens_per_step": [h.get("completions/mean_length") for h in steps],
            }
        ),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-tokens", type=int, default=2400, help="target length of the eager first prompt")
    ap.add_argument("--batch", type=int, default=8, help="rows per step (tasks x group)")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--length", type=int, default=256, help="max completion tokens per episode")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument(
        "--loading",
        choices=("eager", "itl"),
        default="eager",
        help="design the agent plays (itl: the demo's; its first prompt is the server index)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--allocator",
        choices=("default", "release", "both"),
        default="default",
        help="glibc's default mmap threshold, release_memory=True, or one case of each",
    )
    ap.add_argument(
        "--tiles",
        choices=("atlas", "trl", "both"),
        default="atlas",
        help="log-softmax tiles: atlas's CPU tiles, TRL's own, or one case of each",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, default=HERE / "results" / "memory.json")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    allocators = ["default", "release"] if args.allocator == "both" else [args.allocator]
    tiles = ["trl", "atlas"] if args.tiles == "both" else [args.tiles]
    results = [run_case(args, allocator, tile) for allocator in allocators for tile in tiles]
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    print(f"wrote {args.json_out}")


def run_case(args: argparse.Namespace, allocator: str, tiles: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--allocator", allocator, "--tiles", tiles]
    for name in ("prompt_tokens", "batch", "group", "length", "steps", "threads", "loading"):
        cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout is not None
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"the training process failed (exit {proc.returncode}); its last output:\n" + "\n".join(lines[-20:])
        )
    result = json.loads(next(x for x in reversed(lines) if x.startswith("RESULT "))[len("RESULT ") :])
    result["peak_rss_gib"] = usage.ru_maxrss / 1024**2  # KiB on Linux
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("child", "json_out")} | {
        "allocator": allocator,
        "tiles": tiles,
    }
    print(
        f"[{allocator} allocator, {tiles} tiles] {result['steps']} GRPO steps, batch {args.batch}, {args.loading} on '{result['server']}' "
        f"({result['tools']} tools, {result['prompt_tokens']}-token prompt): peak RSS {result['peak_rss_gib']:.2f} GiB, "
        f"{result['train_s']:.0f} s, checkpointing {'on' if result['checkpointing_last_step'] else 'off'} "
        "(the memory plan's choice)",
        flush=True,
    )
    return result


if __name__ == "__main__":
    main()
