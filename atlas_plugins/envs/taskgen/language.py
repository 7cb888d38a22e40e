"""The template language of the task generator: reference calls, drafts, the template registry,
the seeded world view templates read parameters from, and the word pools they draw on."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from atlas_plugins.envs.taskgen.verify import _Runner


@dataclass
class Call:
    """One reference tool call; ``key`` names the arguments that matter for ``expected_tools``
    (None: all of them)."""

    server: str
    tool: str
    arguments: dict[str, Any]
    key: tuple[str, ...] | None = None

    def ref(self) -> dict[str, Any]:
        return {"server": self.server, "tool": self.tool, "arguments": self.arguments}

    def expected(self) -> dict[str, Any]:
        keys = self.arguments if self.key is None else self.key
        return {"tool": f"{self.server}:{self.tool}", "arguments": {k: self.arguments[k] for k in keys}}


@dataclass
class Draft:
    """A candidate task produced by a template (before verification)."""

    params: dict[str, Any]
    prompt: str
    calls: list[Call]
    answer: str | None = None
    answer_contains: list[str] = field(default_factory=list)
    expected_state: list[dict[str, Any]] = field(default_factory=list)


TemplateFn = Callable[[random.Random, "World"], Awaitable[Draft | None]]


@dataclass(frozen=True)
class Template:
    name: str
    level: int
    servers: tuple[str, ...]
    fn: TemplateFn


TEMPLATES: dict[str, Template] = {}

#: Whole templates that only ever appear in the held-out split (one per level).
HELDOUT_TEMPLATES: frozenset[str] = frozenset({"timezones_convert_time", "maps_place_address", "weather_temp_kelvin"})


def template(name: str, level: int, servers: tuple[str, ...]) -> Callable[[TemplateFn], TemplateFn]:
    def deco(fn: TemplateFn) -> TemplateFn:
        if name in TEMPLATES:
            raise ValueError(f"duplicate template name {name!r}")
        TEMPLATES[name] = Template(name, level, servers, fn)
        return fn

    return deco


def num(x: Any) -> str:
    """A number spelled as the servers print it (their JSON), e.g. 444, 8.04672, 149.0."""
    return json.dumps(x)


def state(server: str, tool: str, arguments: dict[str, Any], expect: Any) -> dict[str, Any]:
    return {"server": server, "tool": tool, "arguments": arguments, "expect": expect}


class World:
    """Read-only view of the seeded world, obtained by calling the real servers' read tools in a
    dedicated probe episode (so templates pick parameters that exist, e.g. real contact names)."""

    def __init__(self, runner: _Runner) -> None:
        self._runner = runner
        self._cache: dict[str, Any] = {}

    async def get(self, server: str, tool: str, args: dict[str, Any] | None = None) -> Any:
        args = args or {}
        k = json.dumps([server, tool, args], sort_keys=True)
        if k not in self._cache:
            ok, value, text = await self._runner.call(server, tool, args, episode="taskgen-probe")
            if not ok:
                raise RuntimeError(f"world probe {server}:{tool}({args}) failed: {text}")
            self._cache[k] = value
        return self._cache[k]


CITIES = [
    "New York",
    "San Francisco",
    "Chicago",
    "Denver",
    "Toronto",
    "Mexico City",
    "London",
    "Paris",
    "Berlin",
    "Madrid",
    "Stockholm",
    "Dubai",
    "Mumbai",
    "Singapore",
    "Tokyo",
    "Sydney",
    "Sao Paulo",
    "Cape Town",
]
DATES = ["2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"]
TIMES = ["08:30", "09:00", "10:00", "11:30", "13:00", "14:00", "15:30", "16:00"]
WORDS_A = ["Project", "Budget", "Design", "Garden", "Quarterly", "Hiring", "Launch", "Vendor", "Offsite", "Training"]
WORDS_B = ["review", "sync", "kickoff", "check-in", "planning", "debrief", "walkthrough", "retro"]
NOTE_TITLES = [
    "Groceries",
    "Gift ideas",
    "Reading list",
    "Weekend plans",
    "Packing list",
    "Meeting prep",
    "Workout log",
    "Movie night",
    "Birthday party",
    "Home repairs",
]
NOTE_BODIES = [
    "milk, eggs",
    "call the plumber",
    "buy stamps",
    "pasta and tomatoes",
    "book tickets",
    "bring a charger",
    "30 min run",
    "ask about parking",
    "order a cake",
    "fix the door",
]
MESSAGES = [
    "Lunch at noon?",
    "Running 10 minutes late",
    "Call me when you can",
    "See you tomorrow",
    "Thanks for the help",
    "Can we move our meeting?",
    "The report is ready",
]


def _title(rng: random.Random) -> str:
    return f"{rng.choice(WORDS_A)} {rng.choice(WORDS_B)}"


async def _contacts(w: World) -> list[dict[str, Any]]:
    return (await w.get("contacts", "list_contacts", {"limit": 100}))["contacts"]


async def _products(w: World) -> list[dict[str, Any]]:
    return (await w.get("shop", "list_items", {"limit": 100}))["products"]


async def _accounts(w: World) -> list[dict[str, Any]]:
    return (await w.get("bank", "list_accounts"))["accounts"]
