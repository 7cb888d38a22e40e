"""Interfaces of the executor extension point (``code_interpreter``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, model_validator

from atlas_plugins.values import printable
from atlas_plugins.wire.text import cut

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace


class CellResult(BaseModel):
    """The outcome of one ``code_interpreter`` cell. ``observation()`` is what the model sees.

    Trust: ``ok``, ``value``, ``stdout`` and ``error`` are what the sandbox reported (capped on
    the host). Model code runs in the reporting process and can forge them, so a reward must
    not treat them as facts. ``tool_calls`` (the MCP calls the host made for the cell, with the
    host's own results), ``restarted`` and ``elapsed_ms`` are the host's facts.
    """

    ok: bool
    value: str | None = None  # repr of the cell's last expression (None when it has none)
    stdout: str = ""
    error: str | None = None
    elapsed_ms: float = 0.0
    restarted: bool = False  # the interpreter died and the session was restarted (state lost)
    tool_calls: list[dict[str, Any]] = []  # MCP calls the cell made through the bridge

    @model_validator(mode="after")
    def _error_means_not_ok(self) -> CellResult:
        if self.error is not None:
            self.ok = False  # a (possibly forged) ok=True next to an error is not ok
        return self

    def observation(self, limit: int = 4000) -> str:
        """What the model sees: output, value and error, control characters escaped (a cell's
        output is untrusted and may hold terminal escapes), cut at ``limit`` characters."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.value is not None:
            parts.append(self.value)
        if self.error:
            parts.append(f"Error: {self.error}")
        text = printable("\n".join(parts)) if parts else "(no output)"
        return cut(text, limit)


@runtime_checkable
class CodeSession(Protocol):
    """A persistent interpreter: variables survive between :meth:`run` calls."""

    def run(self, code: str) -> CellResult: ...

    def close(self) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """Opens sandboxed sessions in which each toolspace server is an ``MCPServer`` object."""

    name: str

    def open_session(
        self, toolspace: Toolspace, *, episode: str | None = None, servers: list[str] | None = None
    ) -> CodeSession: ...
