"""atlas_plugins.mcp_compat: the package works on mcp 1.x and 2.x, and only that module knows which.

`make test` runs these on the newest mcp (2.x), `make test-mcp1` on the oldest supported (1.x),
in a venv that also has langchain-mcp-adapters (which needs mcp<2).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from atlas_plugins import mcp_compat
from atlas_plugins.envs import EPISODE_META_KEY, stdio_command
from atlas_plugins.mcp_compat import connect, server_tools

REPO = Path(__file__).resolve().parents[1]
#: Modules that name the SDK's version-specific parts; everything else goes through mcp_compat.
VERSIONED = ("mcp.server.mcpserver", "mcp.server.fastmcp", "mcp.client", "mcp.shared", "mcp_types", "httpx2", "mcp.server.lowlevel")


def test_version_flag_matches_the_installed_sdk() -> None:
    installed = importlib.metadata.version("mcp")
    assert mcp_compat.MCP_VERSION == installed
    assert mcp_compat.MCP2 == (int(installed.split(".")[0]) >= 2)
    lo, hi = "1.24", "3"
    major_minor = tuple(int(p) for p in installed.split(".")[:2])
    assert (1, 24) <= major_minor < (3, 0), f"mcp {installed} is outside the supported range >={lo},<{hi}"
    expected = "MCPServer" if mcp_compat.MCP2 else "FastMCP"
    assert mcp_compat.MCPServer.__name__ == expected


def test_only_mcp_compat_imports_the_version_specific_sdk() -> None:
    offenders = []
    for root in ("atlas_plugins", "adapters", "tests", "benchmarks", "examples"):
        for path in (REPO / root).rglob("*.py"):
            if path.name == "mcp_compat.py" and path.parent.name == "atlas_plugins":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                bad = [n for n in names if n == "mcp" or n.startswith(VERSIONED)]
                if bad:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {bad[0]}")
    assert not offenders, "import these through atlas_plugins.mcp_compat instead:\n" + "\n".join(offenders)


def test_field_reads_both_spellings() -> None:
    class V1:
        isError = True  # noqa: N815 - 1.x spelling
        structuredContent = {"a": 1}  # noqa: N815

    class V2:
        is_error = False
        structured_content = None

    assert mcp_compat.field(V1(), "is_error") is True and mcp_compat.field(V1(), "structured_content") == {"a": 1}
    assert mcp_compat.field(V2(), "is_error") is False and mcp_compat.field(V2(), "structured_content") is None
    assert mcp_compat.field(V2(), "next_cursor", "none") == "none"


def test_constructors_round_trip() -> None:
    result = mcp_compat.tool_result([mcp_compat.text_content("x")], structured={"a": 1}, is_error=True)
    assert mcp_compat.call_result(result) == mcp_compat.CallResult(content=result.content, structured_content={"a": 1}, is_error=True)
    tool = mcp_compat.make_tool("t", "a tool", {"type": "object", "properties": {}})
    assert mcp_compat.tool_def(tool) == mcp_compat.ToolDef("t", "a tool", {"type": "object", "properties": {}}, None)


def _math() -> Any:
    from atlas_plugins.envs import math

    return math.build(0)


def test_embedded_server_in_memory_structured_results_errors_and_episodes() -> None:
    async def main() -> None:
        server = _math()
        tools = {t.name: t for t in await server_tools(server)}
        assert "add" in tools and tools["add"].input_schema["properties"]
        async with connect(server) as session:
            assert {t.name for t in await session.list_tools()} == set(tools)
            ok = await session.call_tool("add", {"numbers": [2, 3]})
            assert not ok.is_error and json.loads(ok.content[0].text) == ok.structured_content == {"result": 5}
            # A ValueError of the simulated backend reaches the caller with its text, on both majors.
            bad = await session.call_tool("evaluate", {"expression": "2 +"})
            assert bad.is_error and "cannot parse expression" in bad.content[0].text
            await session.call_tool("store_value", {"name": "x", "value": 7}, meta={EPISODE_META_KEY: "ep1"})
            got = await session.call_tool("recall_value", {"name": "x"}, meta={EPISODE_META_KEY: "ep1"})
            other = await session.call_tool("recall_value", {"name": "x"}, meta={EPISODE_META_KEY: "ep2"})
            assert got.structured_content == {"name": "x", "value": 7}
            assert other.is_error and "unknown memory name 'x'" in other.content[0].text

    anyio.run(main)


def test_stdio_subprocess_session() -> None:
    async def main() -> None:
        cmd, args = stdio_command("units")
        async with connect(mcp_compat.StdioServerParameters(command=cmd, args=args, cwd=str(REPO))) as session:
            assert session.instructions
            assert len(await session.list_tools()) >= 10

    anyio.run(main)


def test_langchain_mcp_adapters_loads_and_calls_an_embedded_server() -> None:
    """What a LangGraph user does: MultiServerMCPClient over stdio (needs mcp<2, so `make test-mcp1`)."""
    adapters = pytest.importorskip("langchain_mcp_adapters.client", reason="langchain-mcp-adapters is not installed")

    async def main() -> None:
        cmd, args = stdio_command("math")
        client = adapters.MultiServerMCPClient({"math": {"command": cmd, "args": args, "transport": "stdio"}})
        tools = {t.name: t for t in await client.get_tools()}
        assert "add" in tools
        out = await tools["add"].ainvoke({"numbers": [2, 40]})
        text = out if isinstance(out, str) else json.dumps(out, default=str)
        assert "42" in text

    anyio.run(main)


def test_toolspace_over_the_installed_sdk() -> None:
    import atlas_plugins as atlas

    with atlas.Toolspace.default(servers=["math"], transport="stdio") as ts:
        r = ts.call("math", "add", {"numbers": [1, 2]})
        assert r.ok and r.content == {"result": 3}, r
        bad = ts.call("math", "evaluate", {"expression": "2 +"})
        assert not bad.ok and bad.error_type == "tool_error" and "cannot parse expression" in bad.error
    assert sys.modules["mcp"]  # loaded through mcp_compat
