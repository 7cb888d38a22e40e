"""Capture overhead of the zero-code-change proxy path.

The same unchanged ``ChatOpenAI`` + ``create_react_agent`` graph (real SmolLM2-135M, real MCP
math server, real HTTP) plays the same batch of episodes, concurrently, against:

* **recorded** — ``ProxyRunner.run``: the policy server records every request token for token,
  attributes requests to chains/episodes (start gate + conversation chaining) and the runner
  builds the token-faithful trajectories;
* **plain** — the same server with ``record=False`` (no records, no attribution), the graph
  invoked on the same threads with the same batching policy, no trajectories built.

Both use append-only rendering and greedy decoding, so both runs generate the same tokens and
the ratio isolates the capture cost. Repetitions are interleaved (plain, recorded, plain, ...).
Goal: recorded / plain <= 1.1.

    .venv/bin/python benchmarks/proxy_overhead.py [--reps 3] [--episodes 4] [--max-new-tokens 24]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "proxy_overhead.json"

SYSTEM = "You call tools. Write <tool_call>{json}</tool_call> to call one; after the result, give the answer."
EXAMPLE = [
    {"role": "user", "content": "Add 5 and 9."},
    {"role": "assistant", "content": '<tool_call>{"name": "math__add", "arguments": {"a": 5, "b": 9}}</tool_call>'},
]
PROMPTS = ["Add 17 and 25.", "What is 6 times 7?", "Add 3 and 4 with the math tool.", "Multiply 12 by 11."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from langchain_openai import ChatOpenAI

    import atlas_plugins as atlas
    from atlas_plugins.policy.batching import BatchedPolicy
    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.types import Task
    from atlas_langgraph.proxy import ProxyRunner, start_proxy
    from atlas_langgraph.tools import EPISODE_CONFIG_KEY, episode_scope, toolspace_tools

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    policy = TransformersPolicy()
    tasks = [Task(id=f"t{i}", prompt=PROMPTS[i % len(PROMPTS)], servers=["math"]) for i in range(args.episodes)]

    def graph_for(base_url: str, ts):
        llm = ChatOpenAI(base_url=base_url, api_key="x", model="policy", max_retries=0, temperature=0)
        tools = [t for t in toolspace_tools(ts, ["math"]) if t.name in ("math__add", "math__multiply")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return create_react_agent(llm, tools, prompt=lambda s: [{"role": "system", "content": SYSTEM}, *EXAMPLE, *s["messages"]])

    with atlas.Toolspace.default(servers=["math"]) as ts:
        recorded = start_proxy(max_new_tokens=args.max_new_tokens)
        plain = start_proxy(max_new_tokens=args.max_new_tokens, record=False)
        runner = ProxyRunner(graph_for(recorded.base_url, ts), toolspace=ts, proxy=recorded, recursion_limit=4)
        plain_graph = graph_for(plain.base_url, ts)
        plain_policy = BatchedPolicy(policy, max_wait_ms=runner.batch_wait_ms)
        plain.set_policy(plain_policy)

        def run_plain() -> list:
            cms = [plain_policy.episode() for _ in tasks]
            for cm in cms:
                cm.__enter__()

            def one(i: int):
                try:
                    with episode_scope(f"{tasks[i].id}-plain{i}"):
                        return plain_graph.invoke({"messages": [{"role": "user", "content": tasks[i].prompt}]},
                                                  {"configurable": {EPISODE_CONFIG_KEY: f"{tasks[i].id}-plain{i}"}, "recursion_limit": 4})
                except Exception as exc:  # noqa: BLE001 - same as the runner: failures are outcomes
                    return exc
                finally:
                    cms[i].__exit__(None, None, None)

            with concurrent.futures.ThreadPoolExecutor(len(tasks)) as pool:
                return list(pool.map(one, range(len(tasks))))

        runner.run(tasks, policy=policy)  # warm-up (imports, first HTTP connections)
        run_plain()
        times: dict[str, list[float]] = {"plain": [], "recorded": []}
        tokens: dict[str, list[int]] = {"plain": [], "recorded": []}
        for _ in range(args.reps):
            t0 = time.perf_counter()
            run_plain()
            times["plain"].append(time.perf_counter() - t0)
            tokens["plain"].append(-1)
            t0 = time.perf_counter()
            trajs = runner.run(tasks, policy=policy)
            times["recorded"].append(time.perf_counter() - t0)
            tokens["recorded"].append(sum(sum(t.env_mask) for t in trajs))
        recorded.stop()
        plain.stop()

    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [r / p for r, p in zip(times["recorded"], times["plain"])]
    result = {
        "episodes_per_batch": args.episodes, "reps": args.reps, "max_new_tokens": args.max_new_tokens,
        "seconds": times, "median_s": med, "ratio_median_of_medians": med["recorded"] / med["plain"],
        "ratio_per_pair": ratios, "sampled_tokens_per_recorded_batch": tokens["recorded"], "goal": 1.1,
        "model": "SmolLM2-135M-Instruct (CPU, 1 thread)", "decoding": "greedy",
    }
    print(f"{'variant':<10} {'median s/batch':>15} {'per episode s':>14}")
    for k in ("plain", "recorded"):
        print(f"{k:<10} {med[k]:>15.2f} {med[k] / args.episodes:>14.2f}")
    print(f"ratio recorded/plain: {result['ratio_median_of_medians']:.3f} (pairs: {', '.join(f'{r:.3f}' for r in ratios)}; goal <= 1.1)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
