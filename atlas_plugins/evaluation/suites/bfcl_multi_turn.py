"""Suite ``bfcl-multi-turn``: BFCL v4 multi-turn (800 tasks) over MCP, scored by BFCL's checker.

Needs the ``bfcl-eval`` wheel installed *without* its dependencies
(``pip install --no-deps bfcl-eval``): only its data files, its API classes and
``bfcl_eval.eval_checker.multi_turn_eval`` are used, and those import nothing beyond the standard
library and ``mpmath`` (for ``MathAPI``). The servers are in
:mod:`atlas_plugins.evaluation.suites.bfcl_server`.

Tasks (:func:`load_tasks`)
    ``id`` is BFCL's id; ``prompt`` the first user turn; ``metadata["followups"]`` the later user
    turns, delivered one by one after the agent answers; ``servers`` the involved classes'
    servers. ``metadata`` also carries ``suite``, ``bfcl_category``, ``turns``,
    ``expected_tools`` / ``reference_solution`` (from the ground truth, for the ``template`` and
    ``llm`` rubric providers) and, for ``multi_turn_miss_func``, ``held_back_tools``.

miss_func
    BFCL removes the "missed" functions from the model's function list until a turn that has no
    user message, then adds them back with the user message "I have updated some more functions you
    can choose from. What about now?". An MCP server lists one fixed tool set for all episodes, so
    here the servers always list every function; ``metadata["held_back_tools"]`` maps the turn
    index at which BFCL releases them to their qualified names (a loading policy may hide them until
    then), and the release turn's followup is BFCL's own text. Scoring is BFCL's, unchanged: in BFCL
    a model can also emit a call to a function it was not shown, and the checker executes it.

Objective success (:func:`check`)
    The trajectory's BFCL tool calls (``server:tool`` names of :data:`BFCL_SERVERS`; meta-tools and
    other servers are ignored) are split into user turns by ``trajectory.metadata["user_turn_at"]``
    (the ``turns`` count at which each user message was delivered, ``[0, ...]``: a call with
    ``turn == r`` belongs to user turn ``i`` when ``user_turn_at[i] < r <= user_turn_at[i+1]``),
    rendered in BFCL's decoded form ``func(arg=value, ...)`` and passed to BFCL's own
    ``multi_turn_checker``, which re-executes them and the ground truth on fresh instances and
    compares the state after each turn and the responses. As in BFCL's runner, a trajectory that did
    not reach every user turn fails (``multi_turn:force_terminated``).
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from atlas_plugins.evaluation.suites.bfcl_server import (
    BFCL_SERVERS,
    MULTI_TURN_CATEGORIES,
    SERVER_OF_CLASS,
    find_entry,
    load_entries,
    normalise_category,
    signature_names,
    tool_names,
)
from atlas_plugins.types import Task, Trajectory, qualify, split_qualified

SUITE = "bfcl-multi-turn"

#: BFCL's user message for a miss_func release turn (bfcl_eval.constants.default_prompts).
ADDITIONAL_FUNCTION_PROMPT = "I have updated some more functions you can choose from. What about now?"

__all__ = [
    "ADDITIONAL_FUNCTION_PROMPT",
    "BFCL_SERVERS",
    "MULTI_TURN_CATEGORIES",
    "SUITE",
    "calls_by_turn",
    "check",
    "check_score",
    "ground_truth",
    "ground_truth_calls",
    "load_tasks",
    "parse_call",
    "to_call_string",
]


# --------------------------------------------------------------------------- calls


def _tool_owner(names: Iterable[str]) -> dict[str, str]:
    """Function name -> server, over the given servers (BFCL names are unique across classes)."""
    return {tool: server for server in names for tool in tool_names(server)}


def parse_call(call: str, servers: Sequence[str] | None = None) -> tuple[str, str, dict[str, Any]]:
    """A BFCL ground-truth call string -> ``(server, tool, arguments)``.

    Positional arguments (``sort('final_report.pdf')``) are named from the method's signature.
    ``servers`` limits the lookup (default: every BFCL server). Raises ``ValueError`` naming the
    call when it is not a plain call of a known function with literal arguments.
    """
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not a call expression: {call!r} ({exc.msg})") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {call!r}")
    tool = node.func.id
    owner = _tool_owner(servers or list(BFCL_SERVERS)).get(tool)
    if owner is None:
        raise ValueError(f"{call!r}: no BFCL server has a function {tool!r}")
    try:
        args: dict[str, Any] = {}
        if node.args:
            names = signature_names(BFCL_SERVERS[owner].class_name, tool)
            if len(node.args) > len(names):
                raise ValueError(f"{call!r}: {len(node.args)} positional arguments for {len(names)} parameters")
            args.update({names[i]: ast.literal_eval(a) for i, a in enumerate(node.args)})
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(f"{call!r}: **kwargs are not supported")
            args[kw.arg] = ast.literal_eval(kw.value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{call!r}: arguments must be literals ({exc})") from None
    # Tuples travel as JSON arrays over MCP.
    return owner, tool, json.loads(json.dumps(args))


def _is_json_value(v: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(_is_json_value(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_json_value(x, depth + 1) for k, x in v.items())
    return False


def to_call_string(tool: str, arguments: dict[str, Any]) -> str:
    """``("cd", {"folder": "a"}) -> "cd(folder='a')"`` — BFCL's decoded call format.

    BFCL's checker ``eval``s these strings, so only identifiers and JSON values are accepted
    (``ValueError`` otherwise): ``repr`` of a JSON value is an inert Python literal.
    """
    if not tool.isidentifier() or keyword.iskeyword(tool):
        raise ValueError(f"tool name {tool!r} is not a Python identifier")
    parts = []
    for k, v in arguments.items():
        if not isinstance(k, str) or not k.isidentifier() or keyword.iskeyword(k):
            raise ValueError(f"{tool}: argument name {k!r} is not a Python identifier")
        if not _is_json_value(v):
            raise ValueError(f"{tool}: argument {k!r} is not a JSON value ({type(v).__name__})")
        parts.append(f"{k}={v!r}")
    return f"{tool}({', '.join(parts)})"


def ground_truth(task_id: str) -> list[list[str]]:
    """BFCL's ground truth for a task: per user turn, the list of call strings."""
    entry = _entry(task_id)
    return [list(turn) for turn in entry["ground_truth"]]


def ground_truth_calls(task: Task | str) -> list[list[tuple[str, dict[str, Any]]]]:
    """Per user turn, the ground truth as ``(qualified name, arguments)`` pairs (MCP calls)."""
    entry = _entry(task if isinstance(task, str) else task.id)
    servers = [SERVER_OF_CLASS[c] for c in entry["involved_classes"]]
    out = []
    for turn in entry["ground_truth"]:
        calls = []
        for call in turn:
            server, tool, args = parse_call(call, servers)
            calls.append((qualify(server, tool), args))
        out.append(calls)
    return out


def _entry(task_id: str) -> dict[str, Any]:
    entry = find_entry(task_id)
    if entry is None:
        raise KeyError(f"{task_id!r} is not a BFCL multi-turn task id (expected e.g. 'multi_turn_base_0')")
    return entry


# --------------------------------------------------------------------------- tasks


def _turn_text(turn: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in turn if m.get("role") == "user")


def _common_arguments(arg_dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The arguments every call of a tool shares (same value), for the ``template`` PA criterion."""
    first, *rest = arg_dicts
    return {k: v for k, v in first.items() if all(k in d and d[k] == v for d in rest)}


def _task_from_entry(entry: dict[str, Any], category: str) -> Task:
    questions = entry["question"]
    servers = [SERVER_OF_CLASS[c] for c in entry["involved_classes"]]
    held_back: dict[str, list[str]] = {}
    for turn, names in (entry.get("missed_function") or {}).items():
        owner = _tool_owner(servers)
        held_back[str(turn)] = [qualify(owner[n], n) for n in names if n in owner]
    followups = [
        _turn_text(q) if q else ADDITIONAL_FUNCTION_PROMPT  # empty turn = miss_func release turn
        for q in questions[1:]
    ]
    gt_calls = ground_truth_calls(entry["id"])
    solution: list[dict[str, Any]] = [
        {"turn": i, "server": split_qualified(name)[0], "tool": split_qualified(name)[1], "arguments": args}
        for i, turn in enumerate(gt_calls)
        for name, args in turn
    ]
    by_tool: dict[str, list[dict[str, Any]]] = {}
    for step in solution:
        by_tool.setdefault(qualify(step["server"], step["tool"]), []).append(step["arguments"])
    expected_tools = []
    for name, arg_dicts in by_tool.items():
        item: dict[str, Any] = {"tool": name}
        if len(arg_dicts) > 1:
            item["min_count"] = len(arg_dicts)
        common = _common_arguments(arg_dicts)
        if common:
            item["arguments"] = common
        expected_tools.append(item)
    metadata: dict[str, Any] = {
        "suite": SUITE,
        "bfcl_category": category,
        "bfcl_id": entry["id"],
        "turns": len(questions),
        "followups": followups,
        "involved_classes": list(entry["involved_classes"]),
        "expected_tools": expected_tools,
        "reference_solution": solution,
        # TF of the template rubric = BFCL's own checker (objective success).
        "success_check": "atlas_plugins.evaluation.suites.bfcl_multi_turn:check_score",
    }
    if held_back:
        metadata["held_back_tools"] = held_back
    if entry.get("excluded_function"):
        # Listed by BFCL's data but not used by BFCL v4's own pipeline; kept for reference.
        metadata["bfcl_excluded_function"] = list(entry["excluded_function"])
    return Task(id=entry["id"], prompt=_turn_text(questions[0]), servers=servers, metadata=metadata)


def load_tasks(categories: Iterable[str] = MULTI_TURN_CATEGORIES, limit: int | None = None) -> list[Task]:
    """The suite's tasks: at most ``limit`` in all (None: all 200 of each category), taken
    round-robin over the categories (BFCL's order within each), so a small limit still covers
    every category.

    ``categories`` takes full names (``"multi_turn_base"``) or short ones (``"base"``,
    ``"miss_func"``, ``"miss_param"``, ``"long_context"``).
    """
    if isinstance(categories, str):
        categories = [categories]
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    per_category = [(normalise_category(raw), load_entries(normalise_category(raw))) for raw in categories]
    tasks: list[Task] = []
    depth = max((len(entries) for _, entries in per_category), default=0)
    for i in range(depth):
        for category, entries in per_category:
            if limit is not None and len(tasks) >= limit:
                return tasks
            if i < len(entries):
                tasks.append(_task_from_entry(entries[i], category))
    return tasks


# --------------------------------------------------------------------------- checking


def calls_by_turn(task: Task | str, trajectory: Trajectory) -> tuple[list[list[str]], list[dict[str, Any]], int]:
    """The trajectory's BFCL calls per user turn as call strings.

    Returns ``(turns, skipped, turns_reached)``: ``skipped`` lists calls that cannot be rendered
    safely (left out, as BFCL leaves out undecodable output); ``turns_reached`` is how many user
    turns were delivered (``len(user_turn_at)``; 1 when the trajectory has no ``user_turn_at``).
    """
    task_id = task if isinstance(task, str) else task.id
    n_turns = len(_entry(task_id)["ground_truth"])
    starts = trajectory.metadata.get("user_turn_at")
    if starts is None:
        starts = [0]
    if not isinstance(starts, list) or not all(isinstance(x, int) for x in starts):
        raise ValueError(f"trajectory.metadata['user_turn_at'] must be a list of ints, got {starts!r}")
    owner = _tool_owner(BFCL_SERVERS)
    turns: list[list[str]] = [[] for _ in range(n_turns)]
    skipped: list[dict[str, Any]] = []
    for rec in trajectory.tool_calls:
        try:
            server, tool = split_qualified(rec.name)
        except ValueError:
            continue  # a meta-tool (fetch_tools, code_interpreter, …)
        if server not in BFCL_SERVERS:
            continue
        if owner.get(tool) != server:
            skipped.append({"call": rec.name, "reason": f"{server} has no function {tool!r}"})
            continue
        # User turn i owns model turns (starts[i], starts[i+1]].
        i = sum(1 for s in starts[1:] if rec.turn > s)
        if i >= n_turns:
            skipped.append({"call": rec.name, "reason": f"turn {i} is beyond the task's {n_turns} user turns"})
            continue
        try:
            turns[i].append(to_call_string(tool, rec.arguments))
        except ValueError as exc:
            skipped.append({"call": rec.name, "reason": str(exc)})
    return turns, skipped, len(starts)


def _jsonable(value: Any, limit: int = 4000) -> Any:
    text = json.dumps(value, default=repr, ensure_ascii=False)
    if len(text) > limit:
        return text[:limit] + f"…[truncated {len(text) - limit} characters]"
    return json.loads(text)


def check(task: Task, trajectory: Trajectory) -> dict[str, Any]:
    """Objective success by BFCL's ``multi_turn_checker``: ``{"success": bool, "details": {...}}``.

    ``details`` has ``turn_calls`` (the decoded calls per turn), ``skipped_calls``,
    ``turns_reached`` and, on failure, BFCL's ``error_type`` / ``error_message`` (plus the state
    differences, truncated).
    """
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

    entry = _entry(task.id)
    turns, skipped, reached = calls_by_turn(task, trajectory)
    n_turns = len(entry["ground_truth"])
    details: dict[str, Any] = {"turn_calls": turns, "skipped_calls": skipped, "turns_reached": reached}
    if reached < n_turns:
        details.update(
            error_type="multi_turn:force_terminated",
            error_message=f"the trajectory reached {reached} of the task's {n_turns} user turns",
        )
        return {"success": False, "details": details}

    # BFCL caches instances in multi_turn_utils' module globals under names built from the model
    # name and the task id: a unique model name per check keeps checks independent, and the
    # entries are deleted afterwards so memory stays flat.
    model_name = f"atlas_{uuid.uuid4().hex}"
    decoded = [[calls] if calls else [] for calls in turns]
    test_entry = {k: entry[k] for k in ("id", "initial_config", "involved_classes")}
    try:
        result = multi_turn_checker(
            decoded, entry["ground_truth"], test_entry, entry["id"].rsplit("_", 1)[0], model_name
        )
    finally:
        prefix = re.sub(r"[-./:]", "_", model_name)
        g = vars(multi_turn_utils)
        for key in [k for k in g if k.startswith(prefix)]:
            del g[key]
    if not result.get("valid"):
        details["error_type"] = result.get("error_type")
        details["error_message"] = result.get("error_message")
        extra = result.get("details") or {}
        for key in ("differences", "missing_items"):
            if key in extra:
                details[key] = _jsonable(extra[key])
    return {"success": bool(result.get("valid")), "details": details}


def toolspace() -> Any:
    """The suite's tool space: every BFCL class as an MCP server, in one process (not started)."""
    from atlas_plugins.evaluation.suites.bfcl_server import bfcl_toolspace

    return bfcl_toolspace()


def check_score(trajectory: Trajectory, **_: Any) -> float:
    """:func:`check` as a rubric ``python`` check (``func(trajectory, **params)``): 1.0 or 0.0."""
    task = Task(id=trajectory.task_id, prompt="")
    return 1.0 if check(task, trajectory)["success"] else 0.0
