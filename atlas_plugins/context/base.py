"""Interfaces of the context-control extension points (loading policies, retrievers).

The agent loop only talks to these; built-ins live one per module next to this file.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from atlas_plugins.types import TaskLike, ToolCatalog, ToolSpec


class MetaTool(BaseModel):
    """A tool the policy adds for loading context (``fetch_tools``, ``search_tools``, ...)."""

    name: str
    description: str
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def as_tool_schema(self) -> dict[str, Any]:
        """OpenAI/Hermes function-tool shape, for chat templates that take ``tools=``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }


class MetaResult(BaseModel):
    """The outcome of one meta-call, typed: callers read ``ok`` instead of sniffing the text."""

    text: str  # what the model sees
    ok: bool = True
    error_type: str | None = None  # "meta_error" when not ok, unless a policy says more
    loaded: list[str] = Field(default_factory=list)  # qualified names this call loaded
    evicted: list[str] = Field(default_factory=list)  # qualified names it unloaded for the budget


def meta_result_from_text(text: str) -> MetaResult:
    """A :class:`MetaResult` for a context that only implements ``handle_meta_call`` (a plain
    string). The one place that infers success from the text: an ``Error`` prefix means not ok."""
    ok = not text.lstrip().lower().startswith("error")
    return MetaResult(text=text, ok=ok, error_type=None if ok else "meta_error")


class RetrievalHit(BaseModel):
    server: str
    tool: str
    score: float


@runtime_checkable
class ToolRetriever(Protocol):
    """Indexes tool specs once; answers queries with ranked ``(server, tool, score)`` hits."""

    def index(self, tools: list[ToolSpec], server_summaries: dict[str, str] | None = None) -> None: ...

    def search(self, query: str, k: int = 5) -> list[RetrievalHit]: ...


@runtime_checkable
class EpisodeContext(Protocol):
    """The context state of one episode under one loading policy.

    The agent loop uses it like this::

        ctx = policy.start_episode(toolspace, task)
        system = ctx.system_prompt()            # server index / schemas the model sees now
        tools = ctx.meta_tools()                # meta-tools to offer (may be empty for eager)
        obs = ctx.handle_meta_call(name, args)  # None when `name` is not one of its meta-tools
        err = ctx.check_call("server:tool")     # None if callable now, else how to load it
        ctx.loaded_tools()                      # ToolSpecs whose schemas the model has seen
        ctx.log                                 # load/evict events, for the trajectory

    A context may also implement ``meta_call(name, arguments) -> MetaResult | None``, the typed
    form of ``handle_meta_call``; the built-ins do (:class:`~atlas_plugins.context.policies.EpisodeBase`).
    Callers use :func:`meta_result_from_text` for contexts that only return strings.
    """

    log: list[dict[str, Any]]

    def system_prompt(self) -> str: ...

    def meta_tools(self) -> list[MetaTool]: ...

    def handle_meta_call(self, name: str, arguments: dict[str, Any]) -> str | None: ...

    def check_call(self, qualified_name: str) -> str | None: ...

    def loaded_tools(self) -> list[ToolSpec]: ...


@runtime_checkable
class LoadingPolicy(Protocol):
    """Decides what the model sees up front and what each meta-call materialises."""

    name: str

    def start_episode(self, toolspace: ToolCatalog, task: TaskLike = None) -> EpisodeContext: ...
