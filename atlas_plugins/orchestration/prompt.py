"""The ``code_interpreter`` meta-tool as the agent loop presents it (the paper's ITL + PTC prompt).

:func:`code_interpreter_schema` is the tool's JSON schema (OpenAI function format, what chat
templates take as ``tools=[...]``); :func:`code_interpreter_prompt` is the system-prompt text
that explains the session and lists each server with its tool names (not their schemas: the
model loads those with ``get_tools_info``).
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.types import ToolCatalog

TOOL_NAME = "code_interpreter"

_DESCRIPTION = (
    "Run Python code in a persistent Jupyter-style session (state is kept across calls). "
    "Each MCP server is a Python object: m = MCPServer('name'); m.get_tools_info(['tool', ...]) "
    "shows signatures, output formats and an example; m.tool(arg=value) calls a tool and returns a "
    "Python value. The value of the last expression and anything printed are returned."
)


def code_interpreter_schema() -> dict[str, Any]:
    """The meta-tool's schema: ``{"type": "function", "function": {name, description, parameters}}``."""
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": _DESCRIPTION,
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "Python code of one cell."}},
                "required": ["code"],
                "additionalProperties": False,
            },
        },
    }


def code_interpreter_prompt(
    toolspace: ToolCatalog, servers: list[str] | None = None, *, max_tools_per_server: int = 60
) -> str:
    """System-prompt text: how to use ``code_interpreter`` and each server with its tool names."""
    # Catalogue-only servers are listed too: they are part of the tool space the model must search
    # (e.g. padding in `atlas bench`); a code call to one fails with a clear error in the sandbox.
    infos = [s for s in toolspace.servers if servers is None or s.name in servers]
    lines = [
        f"You can run Python with the tool `{TOOL_NAME}(code)`: Jupyter notebook style cells, state is "
        "maintained across the calls.",
        "Inside, every server is an object: `m = MCPServer('server name')`. Before calling tools, look them "
        "up: `m.get_tools_info(['tool_a', 'tool_b'])` returns their Python signatures, output formats and "
        "an example. Call tools with keyword arguments: `m.tool_a(arg=value)`; results are Python values "
        "(dicts, lists, numbers, strings) you can use in code. The value of the cell's last expression and "
        "anything you print are shown to you; keep outputs short.",
        "The following servers are available (name: tools):",
    ]
    for info in infos:
        names = [t.name for t in info.tools]
        shown = ", ".join(names[:max_tools_per_server]) + (
            f", … ({len(names)} tools)" if len(names) > max_tools_per_server else ""
        )
        summary = f" — {info.summary}" if info.summary else ""
        lines.append(f"- {info.name}{summary}\n  tools: {shown}")
    return "\n".join(lines)
