"""Data types that cross component boundaries.

Everything here is a pydantic model so it validates on the way in, serialises to JSON
for logs, and documents itself. Nothing here imports torch, transformers or mcp.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

#: Separator between server and tool in a qualified tool name (``"math:add"``).
TOOL_SEP = ":"

#: Request ``_meta`` key carrying the episode id; embedded servers keep one state per episode.
EPISODE_META_KEY = "atlas/episode"
#: Request ``_meta`` key picking the seed an episode's initial server state is generated from.
SEED_META_KEY = "atlas/seed"


def qualify(server: str, tool: str) -> str:
    """``("math", "add") -> "math:add"``."""
    return f"{server}{TOOL_SEP}{tool}"


def split_qualified(name: str) -> tuple[str, str]:
    """``"math:add" -> ("math", "add")``. Raises ``ValueError`` when there is no separator."""
    server, sep, tool = name.partition(TOOL_SEP)
    if not sep or not server or not tool:
        raise ValueError(f"expected a tool name of the form 'server{TOOL_SEP}tool', got {name!r}")
    return server, tool


class ToolSpec(BaseModel):
    """One tool of one server, as ``tools/list`` described it."""

    model_config = ConfigDict(frozen=True)

    server: str
    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None

    @property
    def qualified_name(self) -> str:
        return qualify(self.server, self.name)


class ServerInfo(BaseModel):
    """A server as loading policies see it: name, one-line summary, its tools."""

    name: str
    summary: str = ""
    transport: Literal["stdio", "http", "catalog"] = "stdio"
    tools: list[ToolSpec] = Field(default_factory=list)

    @property
    def catalog_only(self) -> bool:
        return self.transport == "catalog"


class ToolCatalog(Protocol):
    """What context control and code execution read from a toolspace: its servers, each with
    its tool specs. A :class:`~atlas_plugins.toolspace.Toolspace` is one; so is any object with
    a ``servers`` list (a catalogue snapshot, a test double)."""

    @property
    def servers(self) -> list[ServerInfo]: ...


class TokenizerLike(Protocol):
    """The part of a Hugging Face tokenizer that atlas uses. Any ``transformers`` tokenizer
    satisfies it. Results are left open (``Any``): their shape differs across transformers
    versions (a ``BatchEncoding``, a dict or a list), and callers normalise them."""

    @property
    def eos_token(self) -> str | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    def __call__(self, text: str, *args: Any, **kwargs: Any) -> Any: ...

    def apply_chat_template(self, conversation: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]: ...

    def decode(self, token_ids: list[int], *args: Any, **kwargs: Any) -> Any: ...


class ToolResult(BaseModel):
    """The outcome of one tool call. Errors are values: the agent reads them as observations."""

    ok: bool
    server: str
    tool: str
    #: The result as a Python value: structured content, else JSON-decoded text, else the text.
    content: Any = None
    #: The text the model sees (already truncated to the toolspace's response limit).
    text: str = ""
    error: str | None = None
    #: ``unknown_server``, ``unknown_tool``, ``invalid_arguments``, ``timeout``, ``server_exited``,
    #: ``catalog_only``, ``vetoed``, ``tool_error`` (the server said isError) or ``transport``.
    error_type: str | None = None
    truncated: bool = False
    elapsed_ms: float = 0.0

    def observation(self) -> str:
        """What the model is shown for this call."""
        return self.text if self.ok else f"Error: {self.error}"


class Task(BaseModel):
    """One task an agent attempts. ``metadata`` feeds template rubrics; ``rubric`` is optional."""

    model_config = ConfigDict(extra="allow")

    id: str
    prompt: str
    servers: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    rubric: dict[str, Any] | None = None
    #: Ground-truth answer when there is one (used by check criteria and template rubrics).
    answer: str | None = None
    #: Post-episode MCP calls whose results must match, e.g.
    #: ``[{"server": "notes", "tool": "get_note", "arguments": {...}, "expect": {...}}]``.
    expected_state: list[dict[str, Any]] | None = None
    split: Literal["train", "heldout"] | None = None
    difficulty: int = 1


#: A task as loading policies and rubric providers accept it: a :class:`Task`, its dict form,
#: a bare prompt, or ``None`` (no task: the whole toolspace is in scope).
TaskLike = Task | dict[str, Any] | str | None


class ToolCallRecord(BaseModel):
    """A tool call the agent made during an episode (meta-tools included)."""

    turn: int
    name: str  # qualified ``server:tool``, or a meta-tool name such as ``fetch_tools``
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool = True
    result: str = ""  # truncated observation text
    error: str | None = None
    error_type: str | None = None


class Segment(BaseModel):
    """A contiguous, self-consistent token sequence: a prompt and everything after it.

    ``completion_ids`` holds model tokens (``env_mask`` 1, with their ``logprobs``) and
    environment tokens (``env_mask`` 0, logprob 0.0); ``calls`` counts the model calls in it.
    Readable like the dict it used to be (``seg["prompt_ids"]``).
    """

    model_config = ConfigDict(extra="allow")

    prompt_ids: list[int]
    completion_ids: list[int] = Field(default_factory=list)
    env_mask: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    calls: int = 0

    @property
    def model_tokens(self) -> int:
        return sum(self.env_mask)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


class Trajectory(BaseModel):
    """A whole episode, token-faithful where the runner records tokens.

    ``prompt_ids`` is the first prompt. ``completion_ids`` concatenates everything after it:
    sampled model tokens (``env_mask`` 1) and environment tokens such as tool results and
    injected schemas (``env_mask`` 0, masked out of the loss). ``logprobs`` has one entry per
    completion token (0.0 for environment tokens). When a later prompt is not a prefix
    extension of the earlier context, ``prefix_breaks`` counts it and ``segments`` holds one
    :class:`Segment` per contiguous piece (see the training docs for how the trainer uses them;
    :meth:`token_rows` is how trainers read them).
    """

    model_config = ConfigDict(extra="allow")

    task_id: str
    task: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    final_answer: str | None = None
    # token-faithful record
    prompt_ids: list[int] = Field(default_factory=list)
    completion_ids: list[int] = Field(default_factory=list)
    env_mask: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    prefix_breaks: int = 0
    segments: list[Segment] = Field(default_factory=list)
    # context accounting
    loaded_tools_log: list[dict[str, Any]] = Field(default_factory=list)
    initial_context_tokens: int = 0
    context_tokens: int = 0  # largest prompt the model saw in the episode
    turns: int = 0
    tool_errors: int = 0
    parse_failures: int = 0
    # scoring (filled by judges/aggregators)
    scores: dict[str, float] = Field(default_factory=dict)
    reward: float | None = None
    reward_by_category: dict[str, float] = Field(default_factory=dict)
    judge_failures: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def token_rows(self) -> list[Segment]:
        """The self-consistent token sequences of the episode: every segment when a later
        prompt broke the prefix (``prefix_breaks`` with ``segments``), else one row holding the
        whole episode (the top-level ids). The trainer draws one of them per step; the warm
        start clones them all."""
        if self.prefix_breaks and self.segments:
            return list(self.segments)
        return [
            Segment(
                prompt_ids=self.prompt_ids,
                completion_ids=self.completion_ids,
                env_mask=self.env_mask,
                logprobs=self.logprobs,
                calls=self.turns,
            )
        ]
