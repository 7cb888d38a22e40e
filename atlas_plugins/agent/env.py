"""One episode's tool surface, in one place: :class:`EpisodeEnv`.

Every runner that plays episodes against a toolspace goes through this object: the native
agent loop (:mod:`atlas_plugins.agent.loop`), the prebuilt LangGraph agent
(``atlas_langgraph.create_atlas_agent``) and the DSPy tools (``atlas_dspy.toolspace_tools``).
So they apply the same rules with the same words:

* the system text: the loading policy's, or under PTC the ``code_interpreter`` prompt;
* the tools the episode offers (meta-tools, ``code_interpreter``, MCP tools);
* :meth:`EpisodeEnv.act`, in this order: ``code_interpreter`` (missing, empty code, run);
  under PTC every other call is refused ("call tools from Python"); a loading-policy meta-call;
  a name that is not ``server:tool``; ``check_call`` refusing a schema that is not loaded; the
  MCP call. Observations are truncated at ``max_response_chars``;
* :class:`Observation`, typed: ``ok`` and ``error_type`` are facts, never guessed from text
  (a meta-call reports them through :class:`~atlas_plugins.context.base.MetaResult`), and the
  MCP calls a code cell made come along as ``inner_calls``;
* :meth:`EpisodeEnv.close` closes the code session.

Not covered: generation, parsing and token bookkeeping, which belong to each runner.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from atlas_plugins.context.base import MetaResult, meta_result_from_text
from atlas_plugins.types import TOOL_SEP, Task, ToolCallRecord, ToolResult
from atlas_plugins.wire.text import cut
from atlas_plugins.wire.toolcall import format_call

if TYPE_CHECKING:
    from atlas_plugins.context.base import EpisodeContext, LoadingPolicy
    from atlas_plugins.orchestration.base import CodeSession, Executor
    from atlas_plugins.toolspace import Toolspace

CODE_TOOL = "code_interpreter"


class Observation(BaseModel):
    """The outcome of one :meth:`EpisodeEnv.act`."""

    kind: Literal["meta", "code", "mcp", "refused"]
    text: str  # what the model sees (already truncated)
    ok: bool
    error_type: str | None = None
    error: str | None = None  # the raw error (a tool's, a cell's, or the refusal text)
    inner_calls: list[dict[str, Any]] = Field(default_factory=list)  # MCP calls a code cell made
    result: ToolResult | None = None  # the MCP call's result, for ``kind == "mcp"``

    def records(self, *, turn: int, name: str, arguments: dict[str, Any], limit: int) -> list[ToolCallRecord]:
        """The call as trajectory records: the call itself, then the MCP calls its cell made."""
        own = ToolCallRecord(
            turn=turn,
            name=name,
            arguments=arguments,
            ok=self.ok,
            result=self.text[:limit],
            error=None if self.ok else self.text,
            error_type=self.error_type,
        )
        return [own, *inner_call_records(self.inner_calls, turn=turn, limit=limit)]

    def artifact(self) -> dict[str, Any]:
        """A JSON-able summary (LangChain tool-message artifacts)."""
        if self.result is not None:
            return self.result.model_dump()
        out: dict[str, Any] = {"ok": self.ok, "error": self.error, "error_type": self.error_type}
        if self.kind == "code":
            out["inner_calls"] = self.inner_calls
        return out


def inner_call_records(inner: Sequence[dict[str, Any]], *, turn: int, limit: int) -> list[ToolCallRecord]:
    """Trajectory records of the MCP calls a code cell made (the host's own log of them). They
    are part of the execution trace, so rubrics see them as tool calls."""
    return [
        ToolCallRecord(
            turn=turn,
            name=f"{c.get('server')}{TOOL_SEP}{c.get('tool')}",
            arguments=c.get("arguments") or {},
            ok=bool(c.get("ok")),
            result=str(c.get("text") or "")[:limit],
            error=c.get("error"),
            error_type=c.get("error_type"),
        )
        for c in inner
    ]


class EnvTool(BaseModel):
    """A tool the episode offers: a meta-tool, ``code_interpreter`` or an MCP tool."""

    name: str  # meta-tool name, "code_interpreter" or qualified "server:tool"
    description: str
    parameters: dict[str, Any]
    kind: Literal["meta", "code", "mcp"]


class EpisodeEnv:
    """The tool surface of one episode.

    Args:
        toolspace: where MCP calls go (with ``episode=episode_id``).
        task: the task (its ``servers`` scope the episode); None for a task-free probe.
        loading: a loading policy object; None means no context control (every live tool is
            callable, nothing to load; the DSPy tools use this).
        executor: opens the ``code_interpreter`` session (PTC); None = no code tool.
        episode_id: the id the MCP servers keep this episode's state under.
        max_response_chars: observations are cut here (paper: 4,000).
        ptc_servers: servers the PTC prompt lists (default: the task's, else ``default_servers``, else all).
        default_servers: servers of a task that names none.
        call_format: how a call is written, quoted in errors for text-format models; None when
            the model calls tools through a chat API (LangGraph), where no format is taught.
    """

    def __init__(
        self,
        toolspace: Toolspace,
        task: Task | None,
        *,
        loading: LoadingPolicy | None,
        executor: Executor | None = None,
        episode_id: str,
        max_response_chars: int = 4000,
        ptc_servers: list[str] | None = None,
        default_servers: list[str] | None = None,
        call_format: str | None = None,
    ) -> None:
        self.toolspace, self.task, self.episode_id = toolspace, task, episode_id
        self.max_response_chars = max_response_chars
        self.call_format = call_format
        self.default_servers = default_servers
        servers = (task.servers if task is not None else None) or default_servers
        self.ctx: EpisodeContext | None = loading.start_episode(toolspace, task) if loading is not None else None
        self.session: CodeSession | None = None
        self._ptc_servers = ptc_servers or servers or None
        if executor is not None:
            # Catalogue-only servers (e.g. padding) are listed in the prompt but cannot run code
            # calls; the session gets the episode's runnable servers only.
            runnable = {s.name for s in toolspace.servers if not s.catalog_only}
            scoped = [s for s in servers if s in runnable] if servers else None
            self.session = executor.open_session(toolspace, episode=episode_id, servers=scoped)

    @property
    def ptc(self) -> bool:
        return self.session is not None

    @property
    def log(self) -> list[dict[str, Any]]:
        """The loading policy's load/evict events ([] without one)."""
        return list(getattr(self.ctx, "log", []) or [])

    # -- what the model is shown -----------------------------------------------------------
    def system_text(self) -> str:
        if not self.ptc:
            return self.ctx.system_prompt() if self.ctx is not None else ""
        # PTC (the paper's ITL+PTC): the only tool is code_interpreter; the prompt lists the
        # servers with their tool names and the model loads signatures with get_tools_info.
        from atlas_plugins.context.prompts import FORMAT_INSTRUCTIONS
        from atlas_plugins.orchestration.prompt import code_interpreter_prompt, code_interpreter_schema

        schema = code_interpreter_schema()
        return "\n\n".join(
            [
                FORMAT_INSTRUCTIONS,
                # Like ITL, a task that names its servers sees only those (the paper's setting).
                code_interpreter_prompt(self.toolspace, servers=self._ptc_servers),
                "Tool:\n" + json.dumps(schema.get("function", schema), separators=(",", ":")),
            ]
        )

    def tools(self, *, servers: list[str] | None = None) -> list[EnvTool]:
        """The tools to offer: meta-tools (not under PTC), ``code_interpreter`` (under PTC), and
        every live MCP tool of ``servers`` (default: all). Under PTC the MCP tools are listed for
        runners that bind every tool; calling them directly is refused."""
        out: list[EnvTool] = []
        if self.ptc:
            from atlas_plugins.orchestration.prompt import code_interpreter_schema

            fn = code_interpreter_schema()["function"]
            out.append(EnvTool(name=CODE_TOOL, description=fn["description"], parameters=fn["parameters"], kind="code"))
        elif self.ctx is not None:
            out += [
                EnvTool(name=m.name, description=m.description, parameters=m.input_schema, kind="meta")
                for m in self.ctx.meta_tools()
            ]
        for info in self.toolspace.servers:
            if info.catalog_only or (servers is not None and info.name not in servers):
                continue
            out += [
                EnvTool(
                    name=spec.qualified_name,
                    description=spec.description or spec.name,
                    parameters=dict(spec.input_schema or {"type": "object", "properties": {}}),
                    kind="mcp",
                )
                for spec in info.tools
            ]
        return out

    # -- acting -------------------------------------------------------------------------------
    def act(self, name: str, arguments: dict[str, Any]) -> Observation:
        """Run one call of the model (see the module docs for the order of the rules)."""
        if name == CODE_TOOL:
            return self._code(arguments)
        if self.ptc:  # PTC: every tool is reached through code
            example = ""
            if self.call_format is not None:
                example = ", e.g. " + format_call(
                    CODE_TOOL, {"code": "m = MCPServer('math')\nm.get_tools_info(['add'])"}
                )
            return self._refuse(f"Error: call tools from Python inside {CODE_TOOL}{example}", "unknown_tool")
        if self.ctx is not None:
            meta = self._meta(name, arguments)
            if meta is not None:
                return Observation(
                    kind="meta",
                    text=self._cut(meta.text),
                    ok=meta.ok,
                    error_type=meta.error_type,
                    error=None if meta.ok else meta.text,
                )
        if TOOL_SEP not in name:
            return self.unknown_tool(name)
        if self.ctx is not None:
            not_loaded = self.ctx.check_call(name)
            if not_loaded:
                return self._refuse(not_loaded, "not_loaded")
        result = self.toolspace.call_qualified(name, arguments, episode=self.episode_id)
        return Observation(
            kind="mcp",
            text=self._cut(result.observation()),
            ok=result.ok,
            error_type=result.error_type,
            error=result.error,
            result=result,
        )

    def unknown_tool(self, name: str) -> Observation:
        """The observation for a call of a name the episode has no tool for."""
        known = [m.name for m in self.ctx.meta_tools()] if self.ctx is not None and not self.ptc else []
        if self.ptc:
            known.append(CODE_TOOL)
        text = f"Error: unknown tool {name!r}. Tools are named server{TOOL_SEP}tool" + (
            f"; helper tools: {', '.join(known)}" if known else ""
        )
        text += f". Format: {self.call_format}" if self.call_format is not None else "."
        return self._refuse(text, "unknown_tool")

    def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            session.close()

    def __enter__(self) -> EpisodeEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------
    def _code(self, arguments: dict[str, Any]) -> Observation:
        if self.session is None:
            hint = "; call tools directly." if self.call_format is not None else "."
            return self._refuse(f"Error: {CODE_TOOL} is not available in this episode{hint}", "unknown_tool")
        code = arguments.get("code") if isinstance(arguments, dict) else None
        if not isinstance(code, str) or not code.strip():
            return self._refuse('Error: code_interpreter needs {"code": "<python source>"}', "invalid_arguments")
        cell = self.session.run(code)
        return Observation(
            kind="code",
            text=cell.observation(self.max_response_chars),
            ok=cell.ok,
            error_type=None if cell.ok else "code_error",
            error=cell.error,
            inner_calls=list(cell.tool_calls),
        )

    def _meta(self, name: str, arguments: dict[str, Any]) -> MetaResult | None:
        assert self.ctx is not None
        typed = getattr(self.ctx, "meta_call", None)
        if typed is not None:
            result: MetaResult | None = typed(name, arguments)
            return result
        text = self.ctx.handle_meta_call(name, arguments)  # a plugin context with strings only
        return None if text is None else meta_result_from_text(text)

    def _refuse(self, text: str, error_type: str) -> Observation:
        return Observation(kind="refused", text=text, ok=False, error_type=error_type, error=text)

    def _cut(self, text: str) -> str:
        return cut(text, self.max_response_chars)
