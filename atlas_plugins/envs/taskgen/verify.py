"""The solvability filter: every embedded server in process behind an in-memory MCP ``Client``
(:class:`_Runner`), and :func:`verify_draft`, which replays a draft's reference solution in a fresh
episode and checks its answer and end state with the ``rules`` judge's matcher."""

from __future__ import annotations

import importlib
import json
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from atlas_plugins.envs import EMBEDDED_SERVERS, EPISODE_META_KEY
from atlas_plugins.envs.taskgen.language import Draft

if TYPE_CHECKING:
    from atlas_plugins.mcp_compat import Session


def _norm(s: str) -> str:
    return " ".join(str(s).strip().casefold().split())


class _Runner:
    """All embedded servers in process, each behind an in-memory MCP ``Client``."""

    def __init__(self, env_seed: int) -> None:
        self.env_seed = env_seed
        self._stack = AsyncExitStack()
        self._clients: dict[str, Session] = {}

    async def __aenter__(self) -> _Runner:
        from atlas_plugins.mcp_compat import connect

        for name, spec in EMBEDDED_SERVERS.items():
            server = importlib.import_module(spec.module).build(self.env_seed)
            self._clients[name] = await self._stack.enter_async_context(connect(server))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def call(self, server: str, tool: str, args: dict[str, Any], *, episode: str) -> tuple[bool, Any, str]:
        """``(ok, value, text)``: value is the JSON-decoded text when it parses (as the Toolspace does)."""
        r = await self._clients[server].call_tool(tool, args, meta={EPISODE_META_KEY: episode})
        text = "\n".join(getattr(b, "text", "") for b in r.content or [])
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        return (not r.is_error), value, text


def state_holds(expect: Any, value: Any, text: str) -> bool:
    """The ``rules`` judge's ``state`` semantics: every expected top-level key matches (subset),
    or, for a string expectation, the string occurs in the result text."""
    from atlas_plugins.matching import subset_fraction

    if subset_fraction(expect, value) >= 1.0:
        return True
    return isinstance(expect, str) and not isinstance(value, str) and _norm(expect) in _norm(text)


async def verify_draft(runner: _Runner, draft: Draft, episode: str) -> str | None:
    """Run the reference solution in a fresh episode; ``None`` when it verifies, else the reason."""
    for i, st in enumerate(draft.expected_state):
        ok, value, text = await runner.call(st["server"], st["tool"], st["arguments"], episode=episode)
        if ok and state_holds(st["expect"], value, text):
            return f"expected_state[{i}] already holds before the solution runs"
    texts = []
    for c in draft.calls:
        ok, _, text = await runner.call(c.server, c.tool, c.arguments, episode=episode)
        if not ok:
            return f"reference call {c.server}:{c.tool} failed: {text[:200]}"
        texts.append(text)
    seen = _norm(" ".join(texts))
    for want in ([draft.answer] if draft.answer is not None else []) + list(draft.answer_contains):
        if _norm(want) not in seen:
            return f"answer {want!r} does not appear in the reference results"
    for i, st in enumerate(draft.expected_state):
        ok, value, text = await runner.call(st["server"], st["tool"], st["arguments"], episode=episode)
        if not ok:
            return f"expected_state[{i}] read call failed: {text[:200]}"
        if not state_holds(st["expect"], value, text):
            return f"expected_state[{i}] does not hold after the solution: {text[:200]}"
    return None
