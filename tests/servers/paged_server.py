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
import time
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

parser = argparse.ArgumentParser()
parser.add_argument("--page-size", type=int, default=4)
parser.add_argument("--fillers", type=int, default=9)
opts = parser.parse_args()


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


TOOLS = [
    types.Tool(name="echo", description="Echo text back.", input_schema=_schema({"text": {"type": "string", "description": "text"}}, ["text"])),
    types.Tool(name="crash", description="Exit the server process.", input_schema=_schema({"code": {"type": "integer", "description": "exit code"}}, [])),
    types.Tool(name="hang", description="Sleep for a while.", input_schema=_schema({"seconds": {"type": "number", "description": "how long"}}, ["seconds"])),
    types.Tool(name="big", description="Return a long text.", input_schema=_schema({"chars": {"type": "integer", "description": "length"}}, ["chars"])),
] + [
    types.Tool(name=f"filler_{i}", description=f"Filler tool number {i}.", input_schema=_schema({}, []))
    for i in range(opts.fillers)
]


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    start = int(params.cursor) if params and params.cursor else 0
    end = start + opts.page_size
    return types.ListToolsResult(tools=TOOLS[start:end], next_cursor=str(end) if end < len(TOOLS) else None)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    if params.name == "echo":
        text = json.dumps({"echo": args.get("text"), "pid": os.getpid()})
    elif params.name == "crash":
        print("paged_server: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(int(args.get("code", 3)))
    elif params.name == "hang":
        await anyio.sleep(float(args["seconds"]))
        text = "woke up"
    elif params.name == "big":
        text = "x" * int(args["chars"])
    else:
        text = f"{params.name} ok"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


server = Server("paged", instructions="Test server that paginates and misbehaves on demand.", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
