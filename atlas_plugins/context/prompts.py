"""Prompt text shared by every loading policy (and reusable by the agent loop).

The call format is the paper's: the model thinks in ``<think>…</think>``, calls one tool per
``<tool_call>{"name": "server:tool", "arguments": {...}}</tool_call>`` block and ends with
``<answer>…</answer>``. Keeping the templates in one module means the agent loop's parser and
the policies' instructions cannot drift apart.

Schemas are rendered as compact JSON (no indentation, no spaces after separators): what a
token count measures is then what a real prompt would carry, not pretty-printing.
"""

from __future__ import annotations

from collections.abc import Iterable

from atlas_plugins.context.base import MetaTool
from atlas_plugins.types import ServerInfo, ToolSpec
from atlas_plugins.wire.text import one_line
from atlas_plugins.wire.toolcall import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    EXPECTED_FORMAT,
    THINK_CLOSE,
    THINK_OPEN,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    compact_json,
    format_call_compact,
)

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "DEFAULT_USER_MESSAGE",
    "FORMAT_INSTRUCTIONS",
    "THINK_CLOSE",
    "THINK_OPEN",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "compact_json",
    "one_line",
    "render_meta_tool",
    "render_server_index",
    "render_tool_list",
    "render_tool_schema",
    "system_text",
    "tool_call_example",
]

#: The instructions on how to act; every policy's system text starts with it.
FORMAT_INSTRUCTIONS = (
    "You are an assistant that solves the user's task with tools.\n"
    "Think briefly inside <think>...</think>. To call a tool, write exactly one block\n"
    f"{EXPECTED_FORMAT}\n"
    "and stop; the result comes back in the next message. Tools are always named "
    "server:tool; helper tools listed without a server are called by their bare name. "
    "When the task is done, give the final result inside <answer>...</answer>."
)

DEFAULT_USER_MESSAGE = "Task: {task}"


#: One call in the exact format the model must produce (compact JSON).
tool_call_example = format_call_compact


def render_tool_schema(spec: ToolSpec) -> str:
    """A tool's full schema as one compact JSON line, qualified ``server:tool`` name."""
    return compact_json({"name": spec.qualified_name, "description": spec.description, "parameters": spec.input_schema})


def render_meta_tool(tool: MetaTool) -> str:
    return compact_json({"name": tool.name, "description": tool.description, "parameters": tool.input_schema})


def render_server_index(
    servers: Iterable[ServerInfo], *, summaries: bool, summary_chars: int, counts: bool = True
) -> str:
    """One line per server: ``- name (N tools): summary``, ``- name (N tools)`` or ``- name``."""
    lines = []
    for s in servers:
        line = f"- {s.name} ({len(s.tools)} tools)" if counts else f"- {s.name}"
        if summaries:
            summary = one_line(s.summary, summary_chars)
            if summary:
                line += f": {summary}"
        lines.append(line)
    return "\n".join(lines)


def render_tool_list(tools: Iterable[ToolSpec], *, description_chars: int) -> str:
    """One line per tool: ``- server:tool: one-line description`` (what ITL's fetch_tools shows)."""
    lines = []
    for t in tools:
        desc = one_line(t.description, description_chars)
        lines.append(f"- {t.qualified_name}" + (f": {desc}" if desc else ""))
    return "\n".join(lines)


def system_text(*, intro: str, sections: list[tuple[str, str]], meta_tools: list[MetaTool]) -> str:
    """Assemble a system message: format instructions, policy intro, titled sections, meta-tools."""
    parts = [FORMAT_INSTRUCTIONS, intro.strip()]
    for title, body in sections:
        parts.append(f"{title}\n{body}" if body else title)
    if meta_tools:
        parts.append("Helper tools:\n" + "\n".join(render_meta_tool(m) for m in meta_tools))
    return "\n\n".join(p for p in parts if p)
