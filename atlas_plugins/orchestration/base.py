"""Interfaces of the executor extension point (``code_interpreter``)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel


class CellResult(BaseModel):
    """The outcome of one ``code_interpreter`` cell. ``observation()`` is what the model sees."""

    ok: bool
    value: str | None = None  # repr of the cell's last expression (None when it has none)
    stdout: str = ""
    error: str | None = None
    elapsed_ms: float = 0.0
    restarted: bool = False  # the interpreter died and the session was restarted (state lost)
    tool_calls: list[dict[str, Any]] = []  # MCP calls the cell made through the bridge

    def observation(self, limit: int = 4000) -> str:
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.value is not None:
            parts.append(self.value)
        if self.error:
            parts.append(f"Error: {self.error}")
        text = "\n".join(parts) if parts else "(no output)"
        if len(text) > limit:
            text = text[:limit] + f"\n…[truncated {len(text) - limit} characters]"
        return text


@runtime_checkable
class CodeSession(Protocol):
    """A persistent interpreter: variables survive between :meth:`run` calls."""

    def run(self, code: str) -> CellResult: ...

    def close(self) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """Opens sandboxed sessions in which each toolspace server is an ``MCPServer`` object."""

    name: str

    def open_session(self, toolspace: Any, *, episode: str | None = None, servers: list[str] | None = None) -> CodeSession: ...
