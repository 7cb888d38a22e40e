"""Every difference between the mcp SDK 1.x and 2.x that atlas-plugins meets, in one place.

atlas-plugins runs on ``mcp>=1.24,<3`` (1.x is what ``langchain-mcp-adapters`` 0.3 needs). The
two majors differ in:

* **client** — 2.x has ``mcp.Client`` (its own transports, ``client.instructions``); 1.x has
  ``ClientSession`` over a transport's streams, and ``initialize()`` returns the instructions.
  :func:`connect` opens either and hands back a :class:`Session` with one API;
* **model fields** — 2.x models have snake_case attributes (``is_error``, ``input_schema``,
  ``structured_content``, ``next_cursor``, ``mime_type``), 1.x camelCase ones. Both accept the
  camelCase keyword arguments, so the constructors here use those; :func:`field` reads either.
  :class:`Session` returns :class:`CallResult` and :class:`ToolDef`, which look the same on both;
* **HTTP** — 2.x uses ``httpx2``, 1.x ``httpx``;
* **protocol errors** — ``MCPError.code`` (2.x) vs ``McpError.error.code`` (1.x);
* **servers** — 2.x ``mcp.server.mcpserver.MCPServer``, 1.x ``mcp.server.fastmcp.FastMCP``: the
  names :data:`MCPServer`, :data:`Context`, :data:`ToolError` and :data:`UnexpectedToolError`
  resolve (lazily, so a client never imports server code) to the installed major's.
  ``call_tool`` takes the request context in 2.x and returns a ``CallToolResult``; in 1.x it
  takes none and returns content blocks (and structured content): :func:`base_call_tool` and
  :func:`request_context` bridge that. :func:`http_app` and :func:`low_level_server` cover
  ``streamable_http_app`` and the low-level ``Server`` API.

Nothing else in the package imports ``mcp.server.mcpserver``, ``mcp.server.fastmcp``,
``mcp_types`` or ``httpx2`` directly.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from mcp import StdioServerParameters

# Also, resolved on first use: MCPServer, Context, ToolError, UnexpectedToolError.
__all__ = [
    "MCP2",
    "MCP_VERSION",
    "CallResult",
    "CallToolResult",
    "Session",
    "StdioServerParameters",
    "TextContent",
    "ToolDef",
    "base_call_tool",
    "call_result",
    "connect",
    "field",
    "http_app",
    "implementation",
    "is_connection_error",
    "low_level_server",
    "make_tool",
    "request_context",
    "run_stdio",
    "server_tools",
    "text_content",
    "tool_def",
    "tool_result",
    "types",
]


def _version() -> str:
    try:
        return importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:  # a vendored copy: tell by its layout
        return "2" if importlib.util.find_spec("mcp.server.mcpserver") else "1"


def _sdk(module: str) -> Any:
    """An SDK module typed ``Any``: mypy runs against one installed major, so the other major's
    API (and the camelCase keywords both accept) must not be checked against it."""
    return importlib.import_module(module)


#: ``mcp.types`` (the models: ``Tool``, ``CallToolResult``, ``TextContent``, ...).
types: Any = _sdk("mcp.types")

MCP_VERSION: str = _version()
MCP2: bool = int(MCP_VERSION.split(".")[0]) >= 2
CONNECTION_CLOSED = -32000  # JSON-RPC error code of a closed transport (both majors)


# --------------------------------------------------------------------------- model fields


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.<name>`` by its snake_case (2.x) name, falling back to the camelCase (1.x) one."""
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        value = getattr(obj, _camel(name), default)
    return value


_MISSING = object()


@dataclass
class ToolDef:
    """One tool as ``tools/list`` gives it, the same on both majors."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] = dataclass_field(default_factory=dict)
    output_schema: dict[str, Any] | None = None


@dataclass
class CallResult:
    """A ``tools/call`` result, the same on both majors; ``content`` holds the SDK's blocks."""

    content: list[Any]
    structured_content: Any = None
    is_error: bool = False


def tool_def(tool: Any) -> ToolDef:
    return ToolDef(
        name=tool.name,
        description=tool.description,
        input_schema=field(tool, "input_schema") or {},
        output_schema=field(tool, "output_schema"),
    )


def call_result(result: Any) -> CallResult:
    return CallResult(
        content=list(result.content or []),
        structured_content=field(result, "structured_content"),
        is_error=bool(field(result, "is_error", False)),
    )


TextContent = types.TextContent
CallToolResult = types.CallToolResult


def text_content(text: str) -> Any:
    return types.TextContent(type="text", text=text)


def tool_result(content: list[Any], *, structured: Any = None, is_error: bool = False) -> Any:
    """A ``CallToolResult`` (camelCase keywords: 2.x accepts them as aliases)."""
    return types.CallToolResult(content=content, structuredContent=structured, isError=is_error)


def make_tool(name: str, description: str, input_schema: dict[str, Any], **extra: Any) -> Any:
    return types.Tool(name=name, description=description, inputSchema=input_schema, **extra)


def implementation(name: str, version: str) -> Any:
    return types.Implementation(name=name, version=version)


# --------------------------------------------------------------------------- client


class Session:
    """An open MCP client session: ``list_tools``, ``call_tool`` and the server's instructions."""

    def __init__(self, inner: Any, instructions: str | None) -> None:
        self.inner = inner  # mcp.Client (2.x) or mcp.ClientSession (1.x)
        self.instructions = instructions

    async def list_tools_page(self, cursor: str | None = None) -> tuple[list[ToolDef], str | None]:
        if MCP2:
            page = await self.inner.list_tools(cursor=cursor)
        else:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self.inner.list_tools(params=params)
        return [tool_def(t) for t in page.tools], field(page, "next_cursor")

    async def list_tools(self, *, max_pages: int = 1000) -> list[ToolDef]:
        """Every tool, following ``next_cursor`` (at most ``max_pages`` pages)."""
        tools: list[ToolDef] = []
        cursor: str | None = None
        for _ in range(max_pages):
            page, cursor = await self.list_tools_page(cursor)
            tools.extend(page)
            if not cursor:
                break
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *, meta: dict[str, Any] | None = None
    ) -> CallResult:
        return call_result(await self.inner.call_tool(name, arguments or {}, meta=meta))


@asynccontextmanager
async def connect(
    target: Any,
    *,
    client_info: Any = None,
    errlog: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    read_timeout: float = 300.0,
    max_message_bytes: int | None = None,
) -> AsyncIterator[Session]:
    """Open a session with ``target``: :class:`StdioServerParameters` (a subprocess over stdio),
    a URL (streamable HTTP, with ``headers``; ``max_message_bytes`` bounds each response message,
    :mod:`atlas_plugins.http_limits`), or a server object built in this process
    (``MCPServer``/``FastMCP`` or a low-level ``Server``; in memory, no subprocess)."""
    async with AsyncExitStack() as stack:
        if MCP2:
            from mcp import Client

            transport: Any = target
            if isinstance(target, StdioServerParameters) and errlog is not None:
                from mcp.client.stdio import stdio_client

                transport = stdio_client(target, errlog=errlog)
            elif isinstance(target, str):
                import httpx2
                from mcp.client.streamable_http import streamable_http_client

                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        timeout=httpx2.Timeout(timeout, read=read_timeout),
                        **_http_limits(httpx2, headers, max_message_bytes),
                    )
                )
                transport = streamable_http_client(
                    target, http_client=http, **_sse_limit(streamable_http_client, max_message_bytes)
                )
            client = await stack.enter_async_context(Client(transport, client_info=client_info, cache=None))
            yield Session(client, client.instructions)
            return

        if isinstance(target, StdioServerParameters):
            v1_stdio = _sdk("mcp.client.stdio").stdio_client
            read, write = await stack.enter_async_context(v1_stdio(target, errlog=errlog or sys.stderr))
        elif isinstance(target, str):
            httpx = _sdk("httpx")
            http1 = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=httpx.Timeout(timeout, read=read_timeout),
                    follow_redirects=True,
                    **_http_limits(httpx, headers, max_message_bytes),
                )
            )
            v1_http = _sdk("mcp.client.streamable_http").streamable_http_client
            read, write, _ = await stack.enter_async_context(v1_http(target, http_client=http1))
        else:
            memory = _sdk("mcp.shared.memory")
            session = await stack.enter_async_context(
                memory.create_connected_server_and_client_session(target, client_info=client_info)
            )
            yield Session(session, getattr(target, "instructions", None))
            return
        session = await stack.enter_async_context(_sdk("mcp").ClientSession(read, write, client_info=client_info))
        init = await session.initialize()
        yield Session(session, init.instructions)


def _http_limits(httpx: Any, headers: dict[str, str] | None, limit: int | None) -> dict[str, Any]:
    """``AsyncClient`` keyword arguments: the caller's headers, and with a ``limit`` the response hook
    that bounds each message (and only the encodings it can decode in bounded pieces)."""
    if limit is None:
        return {"headers": headers or {}}
    from atlas_plugins.http_limits import ACCEPT_ENCODING, response_limit

    # Only encodings the hook can inflate in bounded pieces: a configured Accept-Encoding (any
    # spelling) is replaced, not sent beside ours.
    own = {k: v for k, v in (headers or {}).items() if k.lower() != "accept-encoding"}
    return {
        "headers": {**own, "Accept-Encoding": ACCEPT_ENCODING},
        "event_hooks": {"response": [response_limit(httpx, limit)]},
    }


def _sse_limit(factory: Any, limit: int | None) -> dict[str, Any]:
    """mcp 2.x caps an SSE event itself (1 MiB by default): make that cap the configured limit."""
    import inspect

    if limit is None or "max_sse_event_size" not in inspect.signature(factory).parameters:
        return {}
    return {"max_sse_event_size": limit}


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the server or its connection went away (not a tool's own error)."""
    import anyio

    if isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
        return True
    if MCP2:
        import httpx2
        from mcp.shared.exceptions import MCPError

        code = getattr(exc, "code", None) if isinstance(exc, MCPError) else None
        transport_error: type[BaseException] = httpx2.TransportError
    else:
        mcp_error = _sdk("mcp.shared.exceptions").McpError
        code = getattr(getattr(exc, "error", None), "code", None) if isinstance(exc, mcp_error) else None
        transport_error = _sdk("httpx").TransportError
    return code == CONNECTION_CLOSED or isinstance(exc, transport_error)


# --------------------------------------------------------------------------- servers


class _NeverRaised(Exception):
    """mcp 1.x wraps every exception of a tool in ``ToolError`` (text kept): no crash type."""


def _server_names() -> dict[str, Any]:
    if MCP2:
        from mcp.server.mcpserver import Context, MCPServer
        from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError

        return {
            "MCPServer": MCPServer,
            "Context": Context,
            "ToolError": ToolError,
            "UnexpectedToolError": UnexpectedToolError,
        }
    fastmcp = _sdk("mcp.server.fastmcp")
    tool_error = _sdk("mcp.server.fastmcp.exceptions").ToolError
    return {
        "MCPServer": fastmcp.FastMCP,
        "Context": fastmcp.Context,
        "ToolError": tool_error,
        "UnexpectedToolError": _NeverRaised,
    }


def __getattr__(name: str) -> Any:  # MCPServer, Context, ToolError, UnexpectedToolError: lazily
    if name in ("MCPServer", "Context", "ToolError", "UnexpectedToolError"):
        value = _server_names()[name]
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def base_call_tool(parent: Any, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
    """``super().call_tool(...)`` of an ``MCPServer``/``FastMCP`` subclass, as a ``CallToolResult``.

    Pass ``super()`` as ``parent``. 1.x's ``call_tool`` takes no context (it reads its own)
    and returns content blocks, optionally with structured content, which become a result here.
    """
    if MCP2:
        return await parent.call_tool(name, arguments, context)
    raw = await parent.call_tool(name, arguments)
    if isinstance(raw, types.CallToolResult):
        return raw
    if isinstance(raw, tuple) and len(raw) == 2:
        blocks, structured = raw
        return tool_result(list(blocks), structured=structured)
    if isinstance(raw, dict):
        import json

        return tool_result([text_content(json.dumps(raw, indent=2))], structured=raw)
    return tool_result(list(raw))


def request_context(server: Any, context: Any = None) -> Any:
    """The ``Context`` of the request being served (1.x's ``call_tool`` is given none)."""
    if context is not None or MCP2:
        return context
    try:
        return server.get_context()
    except (LookupError, ValueError, AttributeError):
        return None


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def http_app(server: Any, *, path: str = "/mcp", host: str = "127.0.0.1") -> Any:
    """The server's streamable-HTTP Starlette app at ``path``; start ``server.session_manager.run()``
    yourself when the app is mounted inside another one."""
    if MCP2:
        return server.streamable_http_app(streamable_http_path=path, host=host)
    server.settings.streamable_http_path = path
    if host not in _LOCAL_HOSTS:  # 1.x decided DNS-rebinding protection at construction, for 127.0.0.1
        server.settings.host = host
        server.settings.transport_security = None
    return server.streamable_http_app()


async def server_tools(server: Any) -> list[ToolDef]:
    """The tools an ``MCPServer``/``FastMCP`` built in this process lists (no client needed)."""
    return [tool_def(t) for t in await server.list_tools()]


ListTools = Callable[[str | None], Awaitable[tuple[list[Any], str | None]]]
CallTool = Callable[[str, dict[str, Any]], Awaitable[Any]]


def low_level_server(name: str, *, instructions: str | None, list_tools: ListTools, call_tool: CallTool) -> Any:
    """A low-level ``Server``: ``list_tools(cursor) -> (tools, next_cursor)`` pages ``tools/list``
    and ``call_tool(name, arguments) -> CallToolResult`` answers ``tools/call`` (no validation)."""
    Server = _sdk("mcp.server.lowlevel").Server

    if MCP2:

        async def on_list_tools(ctx: Any, params: Any) -> Any:
            tools, next_cursor = await list_tools(params.cursor if params else None)
            return types.ListToolsResult(tools=tools, nextCursor=next_cursor)

        async def on_call_tool(ctx: Any, params: Any) -> Any:
            return await call_tool(params.name, params.arguments or {})

        return Server(name, instructions=instructions, on_list_tools=on_list_tools, on_call_tool=on_call_tool)

    server = Server(name, instructions=instructions)

    async def list_handler(req: Any) -> Any:
        params = req.params if req is not None else None  # 1.x passes None to fill its tool cache
        tools, next_cursor = await list_tools(params.cursor if params else None)
        return types.ListToolsResult(tools=tools, nextCursor=next_cursor)

    list_handler.__annotations__ = {"req": types.ListToolsRequest}  # 1.x passes the request by this type

    async def call_handler(tool: str, arguments: dict[str, Any]) -> Any:
        return await call_tool(tool, arguments)

    server.list_tools()(list_handler)
    server.call_tool(validate_input=False)(call_handler)
    return server


async def run_stdio(server: Any) -> None:
    """Serve a low-level ``Server`` over stdio until the client disconnects."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
