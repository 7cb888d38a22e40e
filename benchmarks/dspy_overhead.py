"""Capture overhead of the DSPy adapter: AtlasLM recording + DSPyRunner vs a plain LM.

Both sides run the same DSPy program (``dspy.Predict("task -> answer")``, which makes 1–2 LM calls
per task: the ChatAdapter call and, on a parse error, the JSON-adapter retry) over the same
policy object, with the same per-call seeds, so they sample the same tokens and do the same
model work. The baseline is a minimal non-recording ``dspy.BaseLM`` (chat template render +
``policy.generate``); the measured side is :class:`atlas_dspy.DSPyRunner` with
:class:`atlas_dspy.AtlasLM` (render through ChatRenderer, one LLMCall per generation, episode
scope, Trajectory with token fields). Repetitions are interleaved; the ratio of medians is
reported. Writes ``benchmarks/results/dspy_overhead.json``.

    python benchmarks/dspy_overhead.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import dspy
    import torch

    import atlas_plugins as atlas
    from atlas_dspy import AtlasLM, DSPyRunner
    from atlas_plugins.envs.taskgen import load_default_tasks
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    torch.set_num_threads(args.threads)
    policy = TransformersPolicy(None, prefix_cache=False)  # no cross-call reuse: equal work per side

    class PlainLM(dspy.BaseLM):
        """The baseline: render, generate, return text. No recording."""

        def __init__(self) -> None:
            super().__init__(model="plain/smollm2", cache=False, num_retries=0, max_tokens=args.max_tokens, temperature=1.0)
            self.seed: int | None = None
            self.k = 0

        def forward(self, prompt=None, messages=None, **kw):
            ids = policy.apply_chat_template(messages or [{"role": "user", "content": prompt}])
            seed = self.seed + 7919 * self.k  # the same per-call seed schedule as AtlasLM's recording
            self.k += 1
            g = policy.generate([ids], max_new_tokens=args.max_tokens, temperature=1.0, seed=seed)[0]
            msg = {"role": "assistant", "content": g.text}
            return _Resp(model=self.model, choices=[_Resp(index=0, finish_reason="stop", message=_Resp(msg))],
                         usage={"prompt_tokens": len(ids), "completion_tokens": len(g.completion_ids)})

    class _Resp(dict):
        def __getattr__(self, k):
            try:
                return self[k]
            except KeyError:
                raise AttributeError(k) from None

    tasks = [t for t in load_default_tasks("heldout") if t.difficulty == 1][: args.tasks]
    program = dspy.Predict("task -> answer")
    plain = PlainLM()
    lm = AtlasLM(policy, max_tokens=args.max_tokens, temperature=1.0)
    with atlas.Toolspace.default(servers=["math"]) as ts:
        runner = DSPyRunner(program, lm, ts, max_concurrency=1)

        def run_plain(seed: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            calls = 0
            for i, t in enumerate(tasks):
                plain.seed, plain.k = seed + 104_729 * i, 0
                with dspy.context(lm=plain):
                    try:
                        program(task=t.prompt)
                    except Exception:
                        pass  # parse errors: same on both sides
                calls += plain.k
            return time.perf_counter() - t0, calls

        def run_atlas(seed: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            trajs = runner.run(tasks, seed=seed)
            return time.perf_counter() - t0, sum(t.turns for t in trajs)

        run_plain(0), run_atlas(0)  # warm-up
        plain_s, atlas_s, same_calls = [], [], True
        for r in range(args.reps):
            seed = 1000 + r
            order = [("plain", run_plain), ("atlas", run_atlas)] if r % 2 == 0 else [("atlas", run_atlas), ("plain", run_plain)]
            got = {}
            for name, fn in order:
                got[name] = fn(seed)
            plain_s.append(got["plain"][0])
            atlas_s.append(got["atlas"][0])
            same_calls &= got["plain"][1] == got["atlas"][1]

    result = {
        "program": "dspy.Predict('task -> answer')",
        "tasks": len(tasks),
        "reps": args.reps,
        "max_tokens": args.max_tokens,
        "torch_threads": args.threads,
        "plain_s_median": statistics.median(plain_s),
        "atlas_s_median": statistics.median(atlas_s),
        "ratio": statistics.median(atlas_s) / statistics.median(plain_s),
        "same_lm_calls": same_calls,
        "plain_s": plain_s,
        "atlas_s": atlas_s,
    }
    print(f"{'side':<28}{'median s':>10}")
    print(f"{'plain dspy.BaseLM':<28}{result['plain_s_median']:>10.2f}")
    print(f"{'AtlasLM + DSPyRunner':<28}{result['atlas_s_median']:>10.2f}")
    print(f"ratio {result['ratio']:.3f}  (same LM calls on both sides: {same_calls})")
    out = Path(__file__).parent / "results" / "dspy_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
