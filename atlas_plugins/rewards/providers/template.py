"""The ``template`` provider: a deterministic four-category rubric from task metadata.

No language model is needed; used for the embedded tasks and for benchmarks with ground truth.
It reads:

* ``task.answer`` — the expected final answer; matched by ``metadata["answer_match"]``:
  ``"contains"`` (default; small models wrap answers in prose), ``"equals"`` or ``"regex"``;
* ``metadata["answer_contains"]`` — extra strings the answer must contain;
* ``task.expected_state`` — post-episode MCP calls whose results must match
  (``[{"server", "tool", "arguments", "expect"}]``), scored as ``state`` checks;
* ``metadata["success_check"]`` — ``"module:function"``, a benchmark's own objective checker
  ``fn(trajectory, **params) -> float | bool`` (params from ``metadata["success_check_params"]``),
  scored as a ``python`` check (e.g. BFCL's state/response checker for ``bfcl-multi-turn``);
* ``metadata["expected_tools"]`` — tools the agent should call: strings ``"math:add"`` or
  dicts ``{"tool": "math:add", "arguments": {"a": 1}, "min_count": 1}`` (``arguments`` is the
  required subset of the call's arguments).

It builds (weights in brackets):

* **TF** — the benchmark's own success check [10], answer correct [10], each expected end
  state [9], extra answer strings [8]; when the
  task has none of these, one natural-language criterion "fulfils the request" [10] (left to an
  LM judge);
* **TA** — each expected tool called [7]; without expected tools, one natural-language
  "uses appropriate tools" criterion [7];
* **TG** — expected tools returned results [6] (``calls_succeeded``), numbers in the answer
  appear in tool results [5] (``grounded_numbers``);
* **PA** — each expected tool called with the expected arguments [6].
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.errors import ConfigError
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.base import coerce_task
from atlas_plugins.rewards.rubric import Rubric
from atlas_plugins.types import Task

_PY = "atlas_plugins.rewards.checks:"


def _expected_tools(raw: object, task_id: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"task {task_id!r}: metadata.expected_tools must be a list, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"tool": item}
        if not isinstance(item, dict) or not isinstance(item.get("tool"), str) or not item["tool"]:
            raise ConfigError(
                f"task {task_id!r}: metadata.expected_tools[{i}] must be 'server:tool' or "
                f"{{'tool': 'server:tool', 'arguments': {{...}}}}, got {item!r}"
            )
        args = item.get("arguments") or {}
        if not isinstance(args, dict):
            raise ConfigError(f"task {task_id!r}: metadata.expected_tools[{i}].arguments must be a dict")
        out.append({"tool": item["tool"], "arguments": args, "min_count": int(item.get("min_count", 1))})
    return out


class TemplateProvider:
    name = "template"

    def rubric_for(self, task: Task | dict[str, Any] | str) -> Rubric:
        t = coerce_task(task)
        md = t.metadata
        tools = _expected_tools(md.get("expected_tools"), t.id)
        crit: list[dict[str, Any]] = []

        # -- TF ---------------------------------------------------------------------------
        success_check = md.get("success_check")
        if success_check is not None:
            if not isinstance(success_check, str) or ":" not in success_check:
                raise ConfigError(
                    f"task {t.id!r}: metadata.success_check must be 'module:function', got {success_check!r}"
                )
            params = md.get("success_check_params") or {}
            if not isinstance(params, dict):
                raise ConfigError(f"task {t.id!r}: metadata.success_check_params must be a dict")
            crit.append(
                dict(
                    id="benchmark_success",
                    name="Benchmark's own success check passes",
                    category="TF",
                    weight=10,
                    description=f"The benchmark's checker ({success_check}) accepts the episode",
                    check={"type": "python", "function": success_check, "params": params},
                )
            )
        if t.answer is not None:
            match = md.get("answer_match", "contains")
            if match == "contains":
                check = {"type": "answer_contains", "values": [str(t.answer)]}
            elif match == "equals":
                check = {"type": "answer_equals", "value": t.answer}
            elif match == "regex":
                check = {"type": "answer_regex", "pattern": str(t.answer), "flags": "i"}
            else:
                raise ConfigError(f"task {t.id!r}: metadata.answer_match must be contains|equals|regex, got {match!r}")
            crit.append(
                dict(
                    id="answer_correct",
                    name="Final answer is correct",
                    category="TF",
                    weight=10,
                    description=f"The final answer gives the correct result: {t.answer}",
                    check=check,
                )
            )
        for i, st in enumerate(t.expected_state or []):
            if not isinstance(st, dict) or not {"server", "tool", "expect"} <= set(st):
                raise ConfigError(f"task {t.id!r}: expected_state[{i}] needs server, tool, expect (and arguments)")
            crit.append(
                dict(
                    id=f"end_state_{i + 1}",
                    name=f"End state {i + 1} reached",
                    category="TF",
                    weight=9,
                    description=f"After the episode, {st['server']}:{st['tool']}({st.get('arguments', {})}) shows {st['expect']!r}",
                    check={
                        "type": "state",
                        "server": st["server"],
                        "tool": st["tool"],
                        "arguments": st.get("arguments", {}),
                        "expect": st["expect"],
                    },
                )
            )
        extra = md.get("answer_contains")
        if extra:
            vals = [str(v) for v in (extra if isinstance(extra, list) else [extra])]
            crit.append(
                dict(
                    id="answer_mentions",
                    name="Answer mentions the key facts",
                    category="TF",
                    weight=8,
                    description=f"The final answer mentions: {', '.join(vals)}",
                    check={"type": "answer_contains", "values": vals},
                )
            )
        if not any(c["category"] == "TF" for c in crit):
            crit.append(
                dict(
                    id="fulfils_request",
                    name="Fulfils the request",
                    category="TF",
                    weight=10,
                    description=f"The final answer completely and correctly does what was asked: {t.prompt}",
                )
            )

        # -- TA / TG / PA -----------------------------------------------------------------------
        if tools:
            for k, et in enumerate(tools, 1):
                n = et["min_count"]
                crit.append(
                    dict(
                        id=f"calls_{k}",
                        name=f"Calls {et['tool']}",
                        category="TA",
                        weight=7,
                        description=f"The agent calls the tool {et['tool']}"
                        + (f" at least {n} times" if n > 1 else ""),
                        check={"type": "tool_called", "tool": et["tool"], "min_count": n},
                    )
                )
            crit.append(
                dict(
                    id="tools_succeeded",
                    name="Needed tool results obtained",
                    category="TG",
                    weight=6,
                    description="Every needed tool call succeeded and returned a result",
                    check={
                        "type": "python",
                        "function": _PY + "calls_succeeded",
                        "params": {"tools": [et["tool"] for et in tools]},
                    },
                )
            )
            for k, et in enumerate(tools, 1):
                if et["arguments"]:
                    crit.append(
                        dict(
                            id=f"args_{k}",
                            name=f"Correct arguments for {et['tool']}",
                            category="PA",
                            weight=6,
                            description=f"The agent calls {et['tool']} with arguments {et['arguments']}",
                            check={"type": "tool_args_match", "tool": et["tool"], "arguments": et["arguments"]},
                        )
                    )
        else:
            crit.append(
                dict(
                    id="appropriate_tools",
                    name="Uses appropriate tools",
                    category="TA",
                    weight=7,
                    description="The agent picks tools that fit the request and avoids needless calls",
                )
            )
        crit.append(
            dict(
                id="answer_grounded",
                name="Answer grounded in tool results",
                category="TG",
                weight=5,
                description="Numbers and facts in the final answer come from tool results, not invention",
                check={"type": "python", "function": _PY + "grounded_numbers"},
            )
        )
        return Rubric.from_dict(
            {"criteria": crit, "task_id": t.id, "source": "template"}, source=f"template rubric for {t.id!r}"
        )


@hookimpl
def atlas_register_rubric_providers(register: Register) -> None:
    register("template", TemplateProvider)
