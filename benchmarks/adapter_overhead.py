"""Capture overhead of the LangGraph adapter: rollout time of the same graph with and without it.

The same ``create_react_agent`` graph (same tools, same tasks, same greedy decoding, same policy
object) runs on the same tasks with two chat models:

* **plain** — a minimal LangChain chat model over the same policy (written here): render the
  messages with the chat template, generate, parse tool calls; records nothing;
* **atlas** — :class:`atlas_langgraph.AtlasChatModel` with recording on (each run inside its own
  ``recording_scope`` and episode id, token fields stitched at the end, as the runner does).

Repetitions are interleaved (plain, atlas, plain, atlas, …) so machine-load drift hits both.
The policy's prefix cache is off by default, so both models prefill every prompt in full and the
ratio isolates the cost of capture (append-only rendering, parsing, recording, stitching);
``--prefix-cache`` turns it on (then AtlasChatModel's append-only prompts also *save* prefill).

Run:  python benchmarks/adapter_overhead.py [--tasks 4] [--reps 3] [--max-new-tokens 48]
Writes benchmarks/results/adapter_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "adapter_overhead.json"
TOOLS = ["math:add", "math:subtract", "math:multiply", "math:power"]


class PlainChatModel(BaseChatModel):
    """The baseline: a chat model over a policy that records nothing (what a user would write)."""

    policy: Any
    max_new_tokens: int = 48

    @property
    def _llm_type(self) -> str:
        return "plain"

    def bind_tools(self, tools, *, tool_choice=None, **kw):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kw)

    def _generate(self, messages, stop=None, run_manager=None, **kw) -> ChatResult:
        from atlas_plugins.agent.loop import STOP_STRINGS
        from atlas_plugins.agent.parsing import parse_assistant
        from atlas_langgraph.chat_model import to_openai_messages
        from atlas_langgraph.tools import lc_name_for

        ids = self.policy.apply_chat_template(to_openai_messages(messages), tools=kw.get("tools"))
        gen = self.policy.generate([ids], max_new_tokens=self.max_new_tokens, temperature=0.0, stop=STOP_STRINGS)[0]
        parsed = parse_assistant(gen.text)
        calls = [{"name": lc_name_for(c.name) or c.name, "args": c.arguments, "id": f"p{i}", "type": "tool_call"} for i, c in enumerate(parsed.tool_calls)]
        content = (parsed.answer or parsed.content or ("" if calls else gen.text)).strip()
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=content, tool_calls=calls))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prefix-cache", action="store_true", help="keep the policy's prefix cache on")
    args = ap.parse_args()

    import torch
    from langgraph.prebuilt import create_react_agent

    import atlas_plugins as atlas
    from atlas_plugins.agent.recorder import token_fields
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_langgraph import AtlasChatModel, episode_scope, recording_scope, toolspace_tools

    torch.set_num_threads(args.threads)
    tasks = [t for t in load_default_tasks("train") if t.difficulty == 1 and t.servers == ["math"]][: args.tasks]
    with atlas.Toolspace.default(servers=["math"]) as ts:
        policy = TransformersPolicy(prefix_cache=args.prefix_cache)
        tools = toolspace_tools(ts, tools=TOOLS)
        models = {
            "plain": PlainChatModel(policy=policy, max_new_tokens=args.max_new_tokens),
            "atlas": AtlasChatModel(policy=policy, max_new_tokens=args.max_new_tokens, temperature=0.0),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graphs = {k: create_react_agent(m, tools) for k, m in models.items()}

        def rollout(kind: str, rep: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            turns = recorded = 0
            for i, task in enumerate(tasks):
                inp = {"messages": [("user", task.prompt)]}
                eid = f"{task.id}-bench-{rep}-{i}"
                cfg = {"configurable": {"atlas_episode": eid}, "recursion_limit": 8}
                if kind == "atlas":
                    with episode_scope(eid), recording_scope(eid) as rec:
                        state = graphs[kind].invoke(inp, cfg)
                    fields = token_fields(rec.calls)
                    recorded += len(rec.calls)
                    assert len(fields["completion_ids"]) >= sum(len(c.completion_ids) for c in rec.calls)
                else:
                    state = graphs[kind].invoke(inp, cfg)
                turns += sum(isinstance(m, AIMessage) for m in state["messages"])
            return {"seconds": time.perf_counter() - t0, "turns": turns, "recorded_calls": recorded}

        rollout("plain", -1)  # warm-up (first-call allocations), not timed
        rows: list[dict[str, Any]] = []
        for rep in range(args.reps):
            for kind in ("plain", "atlas"):
                r = rollout(kind, rep)
                rows.append({"rep": rep, "model": kind, **r})
                print(f"rep {rep} {kind:5s} {r['seconds']:7.2f} s  model turns {r['turns']}", flush=True)

    plain = [r["seconds"] for r in rows if r["model"] == "plain"]
    atl = [r["seconds"] for r in rows if r["model"] == "atlas"]
    ratios = [a / p for a, p in zip(atl, plain)]
    turns_equal = all(a["turns"] == p["turns"] for a, p in zip(rows[1::2], rows[0::2]))
    summary = {
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "plain_median_s": statistics.median(plain),
        "atlas_median_s": statistics.median(atl),
        "same_turns": turns_equal,
        "goal": "<= 1.1",
    }
    print("\n| model | median rollout s | ratio vs plain |\n|---|---|---|")
    print(f"| plain chat model (no capture) | {summary['plain_median_s']:.2f} | 1.00 |")
    print(f"| AtlasChatModel (recording) | {summary['atlas_median_s']:.2f} | {summary['ratio_median']:.3f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "adapter_overhead",
        "settings": vars(args) | {"tools": TOOLS, "task_ids": [t.id for t in tasks]},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
        "summary": summary,
        "rows": rows,
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
