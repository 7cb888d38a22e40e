"""A test MCP server (low-level API) that paginates tools/list and can crash or hang on demand.

Tools: ``echo(text)``, ``crash(code)`` (writes to stderr, then exits the process),
``hang(seconds)``, ``big(chars)`` and ``filler_0 .. filler_N`` (to force several pages).
Run: ``python tests/servers/paged_server.py [--page-size N] [--fillers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's atlas_plugins, however installed
from atlas_plugins.mcp_compat import low_level_server, make_tool, run_stdio, text_content, tool_result  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--page-size", type=int, default=4)
parser.add_argument("--fillers", type=int, default=9)
opts = parser.parse_args()


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


TOOLS = [
    make_tool("echo", "Echo text back.", _schema({"text": {"type": "string", "description": "text"}}, ["text"])),
    make_tool("crash", "Exit the server process.", _schema({"code": {"type": "integer", "description": "exit code"}}, [])),
    make_tool("hang", "Sleep for a while.", _schema({"seconds": {"type": "number", "description": "how long"}}, ["seconds"])),
    make_tool("big", "Return a long text.", _schema({"chars": {"type": "integer", "description": "length"}}, ["chars"])),
] + [make_tool(f"filler_{i}", f"Filler tool number {i}.", _schema({}, [])) for i in range(opts.fillers)]


async def list_tools(cursor: str | None) -> tuple[list[Any], str | None]:
    start = int(cursor) if cursor else 0
    end = start + opts.page_size
    return TOOLS[start:end], (str(end) if end < len(TOOLS) else None)


async def call_tool(name: str, args: dict[str, Any]) -> Any:
    if name == "echo":
        text = json.dumps({"echo": args.get("text"), "pid": os.getpid()})
    elif name == "crash":
        print("paged_server: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(int(args.get("code", 3)))
    elif name == "hang":
        await anyio.sleep(float(args["seconds"]))
        text = "woke up"
    elif name == "big":
        text = "x" * int(args["chars"])
    else:
        text = f"{name} ok"
    return tool_result([text_content(text)])


server = low_level_server(
    "paged", instructions="Test server that paginates and misbehaves on demand.", list_tools=list_tools, call_tool=call_tool
)


if __name__ == "__main__":
    anyio.run(run_stdio, server)
