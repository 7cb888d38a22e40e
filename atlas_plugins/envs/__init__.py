"""Embedded default MCP toolspace: deterministic, seeded simulated backends.

Each server lives in its own module (``atlas_plugins.envs.<name>``) exposing ``build(seed) ->
MCPServer`` and runs over stdio with ``python -m atlas_plugins.envs.<name>``;
``python -m atlas_plugins.envs.hub`` serves all of them from one process over streamable HTTP.

This module must stay cheap to import (the core registry imports it): no ``mcp`` here. The
``_meta`` keys live in :mod:`atlas_plugins.types` (pydantic, which the servers load anyway).

Per-episode state is keyed by the request ``_meta`` entry :data:`EPISODE_META_KEY`
(missing -> ``"default"``).  Optionally ``_meta["atlas/seed"]`` (:data:`SEED_META_KEY`) picks the
seed an episode's initial state is generated from (default: the server's seed, env
``ATLAS_ENV_SEED``, default 0).  Every server uses the fixed clock 2026-03-02 09:00 UTC.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from atlas_plugins.types import EPISODE_META_KEY, SEED_META_KEY

FIXED_TODAY = "2026-03-02"


@dataclass(frozen=True)
class EmbeddedServer:
    name: str
    module: str
    summary: str


def _srv(name: str, summary: str) -> EmbeddedServer:
    return EmbeddedServer(name=name, module=f"atlas_plugins.envs.{name}", summary=summary)


# Insertion order is the canonical catalogue order (prompts, indices and benchmarks use it).
EMBEDDED_SERVERS: dict[str, EmbeddedServer] = {
    s.name: s
    for s in (
        _srv("calendar", "Calendar: list, create, move and delete events, attendees, reminders, free slots."),
        _srv("email", "Email mailbox: read, search, send, reply, forward, drafts, folders and labels."),
        _srv("contacts", "Address book: look up, add, edit and group contacts; birthdays; text messages."),
        _srv("files", "Sandboxed workspace files: list, read, write, move, copy, search and grep."),
        _srv("weather", "Weather: current conditions, forecasts, hourly, alerts, air quality, sun times."),
        _srv("units", "Unit and currency conversion: length, mass, volume, temperature, speed, data, time."),
        _srv("math", "Math and statistics: arithmetic, expression evaluation, descriptive stats, regression."),
        _srv("shop", "Online shop: product catalogue, stock, cart, coupons, checkout, orders and returns."),
        _srv("travel", "Travel booking: search and book flights and hotels, manage and cancel bookings."),
        _srv("notes", "Notes app: create, edit, tag, pin, archive and search notes in notebooks."),
        _srv("bank", "Bank ledger: accounts, balances, transactions, transfers, bill pay, cards, spending."),
        _srv("timezones", "Time zones: current time, convert between zones, meeting planner, world clocks."),
        _srv("maps", "Maps and places: search places, details, opening hours, directions, distances."),
        _srv("tasks", "Task manager: projects, to-dos, due dates, priorities, assignees and comments."),
    )
}


def stdio_command(name: str) -> tuple[str, list[str]]:
    """Command line that runs embedded server ``name`` over stdio."""
    try:
        server = EMBEDDED_SERVERS[name]
    except KeyError:
        known = ", ".join(EMBEDDED_SERVERS)
        raise ValueError(f"unknown embedded server {name!r}; known: {known}") from None
    return sys.executable, ["-m", server.module]


def stdio_env() -> dict[str, str]:
    """The ATLAS_ENV_* variables to hand a spawned server.

    The MCP stdio client passes only a minimal, "safe" environment to the child, so the seed and
    workdir must be forwarded explicitly: ``StdioServerParameters(command, args, env=stdio_env())``.
    """
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("ATLAS_ENV_")}


def hub_command(names: list[str] | None = None, host: str = "127.0.0.1", port: int = 0) -> tuple[str, list[str]]:
    """Command line that serves ``names`` (default: all) over streamable HTTP from one process."""
    args = ["-m", "atlas_plugins.envs.hub", "--host", host, "--port", str(port)]
    if names:
        for n in names:
            stdio_command(n)  # validates the name
        args += ["--servers", ",".join(names)]
    return sys.executable, args


__all__ = [
    "EMBEDDED_SERVERS",
    "EPISODE_META_KEY",
    "FIXED_TODAY",
    "SEED_META_KEY",
    "EmbeddedServer",
    "hub_command",
    "stdio_command",
    "stdio_env",
]
