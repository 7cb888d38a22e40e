"""Toolspace tools as ``dspy.Tool`` objects (for ``dspy.ReAct`` or any tool-using DSPy module).

Each MCP tool ``server:tool`` becomes a ``dspy.Tool`` named ``server__tool`` (a valid Python
identifier, which DSPy's signatures need), with its arguments taken from the tool's MCP input
schema. Calling it calls the toolspace **in the current episode**: the episode id comes from a
context variable that :class:`atlas_dspy.runner.DSPyRunner` sets around each run of the program
(:func:`episode`), so concurrent episodes keep their own server state. Every call is also
logged to the episode (qualified ``server:tool`` name, arguments, outcome), which is where the
runner's trajectories take their tool calls from.

Argument checking is left to the toolspace (not to ``dspy.Tool``'s JSON-schema check), so a
call with wrong arguments still reaches the log as a failed call and the model reads the
toolspace's explanatory error ("'numbers' is a required argument … Signature: add(...)").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import dspy
from dspy.adapters.types.tool import convert_input_schema_to_tool_args

from atlas_plugins.agent.env import EpisodeEnv
from atlas_plugins.types import ToolCallRecord


class EpisodeState:
    """One episode as the tools see it: its id and the tool calls made in it."""

    def __init__(self, episode_id: str, max_response_chars: int = 4000) -> None:
        self.id = episode_id
        self.max_response_chars = max_response_chars
        self.tool_calls: list[ToolCallRecord] = []
        self.tool_errors = 0
        self.parse_failures = 0  # DSPy adapter parse errors (counted by the runner's callback)
        #: The program's own tool names -> ``server:tool`` (set by the runner; None: as named).
        self.qualify: Callable[[str], str] | None = None
        self._lock = threading.Lock()
        self._env: EpisodeEnv | None = None

    def env_for(self, toolspace: Any) -> EpisodeEnv:
        """This episode's :class:`~atlas_plugins.agent.env.EpisodeEnv` (no loading policy: a
        DSPy program is given its tools; no code tool), made on first use."""
        with self._lock:
            if self._env is None:
                self._env = EpisodeEnv(
                    toolspace, None, loading=None, episode_id=self.id, max_response_chars=self.max_response_chars
                )
            return self._env

    def log(self, record: ToolCallRecord) -> None:
        with self._lock:
            self.tool_calls.append(record)
            if not record.ok:
                self.tool_errors += 1

    def count_parse_failure(self) -> None:
        with self._lock:
            self.parse_failures += 1


_EPISODE: ContextVar[EpisodeState | None] = ContextVar("atlas_dspy_episode", default=None)


@contextmanager
def episode(episode_id: str, max_response_chars: int = 4000) -> Iterator[EpisodeState]:
    """Run the enclosed code as episode ``episode_id``: toolspace tools call the servers with it."""
    state = EpisodeState(episode_id, max_response_chars)
    token = _EPISODE.set(state)
    try:
        yield state
    finally:
        _EPISODE.reset(token)


#: ``dspy.settings`` key under which the runner also puts the episode (see ``atlas_dspy.lm``:
#: DSPy's worker threads copy its settings, not other context variables).
SETTINGS_EPISODE = "atlas_episode"


def current_episode() -> EpisodeState | None:
    found = _EPISODE.get()
    return found if found is not None else dspy.settings.get(SETTINGS_EPISODE)


def tool_name(server: str, tool: str) -> str:
    """``("math", "gcd_lcm") -> "math__gcd_lcm"``: a valid identifier, reversible via the tool."""
    name = re.sub(r"\W", "_", f"{server}__{tool}")
    return name if not name[0].isdigit() else f"t_{name}"


class ToolspaceTool(dspy.Tool):
    """A ``dspy.Tool`` that calls one toolspace tool; ``qualified_name`` is ``server:tool``."""

    qualified_name: str = ""

    def _validate_and_parse_args(self, **kwargs: Any) -> dict[str, Any]:
        # The toolspace validates against the MCP schema itself, with errors written for small
        # models; checking here would turn bad calls into exceptions the episode log never sees.
        return kwargs


def _make_call(toolspace: Any, server: str, tool: str, turn_of: Any) -> Any:
    qualified = f"{server}:{tool}"

    def call(**kwargs: Any) -> str:
        state = current_episode()
        if state is None:  # outside an episode (e.g. a user trying the program): a plain call
            return toolspace.call(server, tool, kwargs).observation()
        obs = state.env_for(toolspace).act(qualified, kwargs)
        state.log(
            ToolCallRecord(
                turn=turn_of(),
                name=qualified,
                arguments=kwargs,
                ok=obs.ok,
                result=obs.text[: state.max_response_chars],
                error=obs.error,
                error_type=obs.error_type,
            )
        )
        return obs.text

    call.__name__ = tool_name(server, tool)
    return call


def _turn() -> int:
    """The index of the latest model call of the current episode (the call that chose this tool)."""
    from atlas_dspy.lm import current_recording

    rec = current_recording()
    return max(0, len(rec.calls) - 1) if rec is not None else 0


def toolspace_tools(
    toolspace: Any, servers: Iterable[str] | None = None, *, tools: Iterable[str] | None = None
) -> list[dspy.Tool]:
    """``dspy.Tool``s for every tool of ``servers`` (default: all live servers of ``toolspace``).

    ``tools`` narrows the set to the named tools (qualified ``server:tool`` names): every tool
    schema costs prompt tokens on every DSPy call, which a small model on a CPU pays dearly for.

    Raises ``KeyError`` naming an unknown server (with the toolspace's "did you mean"),
    ``ValueError`` for a catalogue-only server (schemas, nothing to call) or an unknown tool.
    """
    infos = (
        [toolspace.server(s) for s in servers]
        if servers is not None
        else [s for s in toolspace.servers if not s.catalog_only]
    )
    wanted = None if tools is None else list(tools)
    if wanted is not None:
        known = {spec.qualified_name for info in infos for spec in info.tools}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise ValueError(
                f"unknown tool(s) {', '.join(map(repr, unknown))} on servers {[i.name for i in infos]}; "
                "name tools as 'server:tool'"
            )
    out: list[dspy.Tool] = []
    for info in infos:
        if info.catalog_only:
            raise ValueError(
                f"server {info.name!r} is catalogue-only (schemas, no live server): it has no tools to call"
            )
        for spec in info.tools:
            if wanted is not None and spec.qualified_name not in wanted:
                continue
            args, arg_types, arg_desc = convert_input_schema_to_tool_args(spec.input_schema or {})
            # pydantic's generated titles repeat the argument names: prompt tokens for nothing.
            args = {k: {kk: vv for kk, vv in v.items() if kk != "title"} for k, v in args.items()}
            t = ToolspaceTool(
                func=_make_call(toolspace, spec.server, spec.name, _turn),
                name=tool_name(spec.server, spec.name),
                desc=spec.description or f"{spec.name} on the {spec.server} server",
                args=args,
                arg_types=arg_types,
                arg_desc=arg_desc,
            )
            t.qualified_name = spec.qualified_name
            out.append(t)
    return out
