"""Seeded, verified task generator for the embedded toolspace (the learning loop's training data).

``generate_tasks(seed)`` samples tasks from templates at three difficulty levels:

* **1** — one tool call on one server; short, literal prompts a 135M model can follow
  ("What is 37 multiplied by 12? Use the math server.");
* **2** — two calls, usually look-up-then-act on one server ("Find the note 'Banana bread'
  and tag it 'dessert'.");
* **3** — chains across two or three servers (contacts -> calendar -> email, shop -> bank,
  travel -> weather).

Read tasks are checked with ``task.answer`` (``metadata["answer_match"] = "contains"``); write
tasks with ``task.expected_state`` (a post-episode read call whose result must contain a subset).
Every task carries ``metadata["expected_tools"]``, ``metadata["reference_solution"]`` (the exact
calls that solve it), ``metadata["template"]``, ``metadata["hint_server"]`` (list of servers)
and ``metadata["env_seed"]`` (the world seed the servers must run with: ``Toolspace.default(seed=...)``).

**Solvability filter** (as in the paper): each candidate is run against the real servers
in-process (``build(env_seed)`` behind an in-memory MCP ``Client``, the full request path) in a
fresh episode of its own. A task is kept only when every reference call succeeds, the answer
appears in the call results, and each expected end state does *not* hold before the calls but
holds after them (judged with the same subset matcher the ``rules`` judge uses). Failures are
dropped and counted (:attr:`GenerationReport.dropped`); no unverified task is emitted.

**Split.** Train / held-out is a fixed function of (template, parameters), independent of the
seed's sampling order and of the paraphrase chosen: tasks of the templates in
:data:`HELDOUT_TEMPLATES` (one per level, never in train) are always held out; every other task
is held out when ``stable_hash(template, parameters) % 100 < 15``. Quotas per split and level
(45% / 35% / 20%) are filled in sampling order, so the held-out set measures both new parameter
combinations of seen templates and generalisation to unseen templates.

Same seed (and ``env_seed``) -> byte-identical JSONL. The default set ships as
``atlas_plugins/envs/data/tasks_seed0.jsonl``; :func:`load_default_tasks` reads it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from atlas_plugins.envs import EMBEDDED_SERVERS, EPISODE_META_KEY
from atlas_plugins.envs._fixtures import stable_hash
from atlas_plugins.types import Task

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TASKS_PATH = DATA_DIR / "tasks_seed0.jsonl"

#: Share of each split per difficulty level.
LEVEL_SHARES: dict[int, float] = {1: 0.45, 2: 0.35, 3: 0.20}
#: Share (percent) of the tasks of seen templates that go to held-out by parameter hash.
HELDOUT_HASH_PERCENT = 15

# --------------------------------------------------------------------------- templates


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

    def __init__(self, runner: "_Runner") -> None:
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


CITIES = ["New York", "San Francisco", "Chicago", "Denver", "Toronto", "Mexico City", "London", "Paris", "Berlin",
          "Madrid", "Stockholm", "Dubai", "Mumbai", "Singapore", "Tokyo", "Sydney", "Sao Paulo", "Cape Town"]
DATES = ["2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"]
TIMES = ["08:30", "09:00", "10:00", "11:30", "13:00", "14:00", "15:30", "16:00"]
WORDS_A = ["Project", "Budget", "Design", "Garden", "Quarterly", "Hiring", "Launch", "Vendor", "Offsite", "Training"]
WORDS_B = ["review", "sync", "kickoff", "check-in", "planning", "debrief", "walkthrough", "retro"]
NOTE_TITLES = ["Groceries", "Gift ideas", "Reading list", "Weekend plans", "Packing list", "Meeting prep", "Workout log",
               "Movie night", "Birthday party", "Home repairs"]
NOTE_BODIES = ["milk, eggs", "call the plumber", "buy stamps", "pasta and tomatoes", "book tickets", "bring a charger",
               "30 min run", "ask about parking", "order a cake", "fix the door"]
MESSAGES = ["Lunch at noon?", "Running 10 minutes late", "Call me when you can", "See you tomorrow", "Thanks for the help",
            "Can we move our meeting?", "The report is ready"]


def _title(rng: random.Random) -> str:
    return f"{rng.choice(WORDS_A)} {rng.choice(WORDS_B)}"


async def _contacts(w: World) -> list[dict[str, Any]]:
    return (await w.get("contacts", "list_contacts", {"limit": 100}))["contacts"]


async def _products(w: World) -> list[dict[str, Any]]:
    return (await w.get("shop", "list_items", {"limit": 100}))["products"]


async def _accounts(w: World) -> list[dict[str, Any]]:
    return (await w.get("bank", "list_accounts"))["accounts"]


# ---- level 1 -------------------------------------------------------------------------------


@template("math_multiply", 1, ("math",))
async def _math_multiply(rng: random.Random, w: World) -> Draft:
    a, b = rng.randint(3, 99), rng.randint(3, 99)
    prompt = rng.choice([f"What is {a} multiplied by {b}? Use the math server.", f"Multiply {a} by {b}.",
                         f"Compute {a} times {b} with the math tools."])
    return Draft({"a": a, "b": b}, prompt, [Call("math", "multiply", {"numbers": [a, b]})], answer=num(a * b))


@template("math_add", 1, ("math",))
async def _math_add(rng: random.Random, w: World) -> Draft:
    xs = [rng.randint(10, 999) for _ in range(3)]
    s = ", ".join(map(str, xs[:-1])) + f" and {xs[-1]}"
    prompt = rng.choice([f"Add {s}. Use the math server.", f"What is the sum of {s}?", f"Sum the numbers {s}."])
    return Draft({"xs": xs}, prompt, [Call("math", "add", {"numbers": xs})], answer=num(sum(xs)))


@template("math_subtract", 1, ("math",))
async def _math_subtract(rng: random.Random, w: World) -> Draft:
    a, b = rng.randint(100, 999), rng.randint(1, 99)
    prompt = rng.choice([f"What is {a} minus {b}? Use the math server.", f"Subtract {b} from {a}."])
    return Draft({"a": a, "b": b}, prompt, [Call("math", "subtract", {"a": a, "b": b})], answer=num(a - b))


@template("math_power", 1, ("math",))
async def _math_power(rng: random.Random, w: World) -> Draft:
    b, e = rng.randint(2, 12), rng.randint(2, 5)
    prompt = rng.choice([f"What is {b} to the power of {e}? Use the math server.", f"Raise {b} to the power {e}."])
    return Draft({"b": b, "e": e}, prompt, [Call("math", "power", {"base": b, "exponent": e})], answer=num(b**e))


@template("math_gcd", 1, ("math",))
async def _math_gcd(rng: random.Random, w: World) -> Draft:
    import math as _m

    g = rng.randint(2, 12)
    a, b = g * rng.randint(2, 15), g * rng.randint(2, 15)
    prompt = rng.choice([f"What is the greatest common divisor of {a} and {b}?",
                         f"Find the GCD of {a} and {b} with the math server."])
    return Draft({"a": a, "b": b}, prompt, [Call("math", "gcd_lcm", {"numbers": [a, b]})], answer=num(_m.gcd(a, b)))


UNIT_PAIRS = [("mi", "km", "miles", "kilometers"), ("km", "mi", "kilometers", "miles"), ("kg", "lb", "kilograms", "pounds"),
              ("lb", "kg", "pounds", "kilograms"), ("ft", "m", "feet", "meters"), ("L", "gal", "liters", "gallons"),
              ("C", "F", "degrees Celsius", "degrees Fahrenheit"), ("in", "cm", "inches", "centimeters")]


@template("units_convert", 1, ("units",))
async def _units_convert(rng: random.Random, w: World) -> Draft:
    fu, tu, fn, tn = rng.choice(UNIT_PAIRS)
    v = rng.randint(2, 60)
    args = {"value": v, "from_unit": fu, "to_unit": tu}
    res = await w.get("units", "convert", args)
    prompt = rng.choice([f"Convert {v} {fn} to {tn}.", f"How many {tn} is {v} {fn}? Use the units server.",
                         f"What is {v} {fn} in {tn}?"])
    return Draft({"v": v, "from": fu, "to": tu}, prompt, [Call("units", "convert", args)], answer=num(res["result"]))


@template("units_currency", 1, ("units",))
async def _units_currency(rng: random.Random, w: World) -> Draft:
    cur = rng.choice(["EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "INR", "MXN"])
    amt = rng.choice([10, 20, 25, 50, 75, 100, 150, 200, 250, 500])
    args = {"amount": amt, "from_currency": "USD", "to_currency": cur}
    res = await w.get("units", "convert_currency", args)
    prompt = rng.choice([f"Convert {amt} USD to {cur}.", f"How much is {amt} US dollars in {cur}? Use the units server."])
    return Draft({"amt": amt, "cur": cur}, prompt, [Call("units", "convert_currency", args)], answer=num(res["result"]))


@template("weather_current_temp", 1, ("weather",))
async def _weather_current(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    res = await w.get("weather", "get_current", {"city": city})
    prompt = rng.choice([f"What is the current temperature in {city}?", f"How warm is it in {city} right now? Use the weather server."])
    return Draft({"city": city}, prompt, [Call("weather", "get_current", {"city": city})], answer=num(res["temp_c"]))


@template("weather_forecast_high", 1, ("weather",))
async def _weather_forecast(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    res = await w.get("weather", "get_forecast", {"city": city, "days": 2})
    prompt = rng.choice([f"What's the forecast high temperature for {city} tomorrow?",
                         f"How hot will it get in {city} tomorrow? Use the weather forecast."])
    return Draft({"city": city}, prompt, [Call("weather", "get_forecast", {"city": city, "days": 2}, key=("city",))],
                 answer=num(res["days"][1]["high_c"]))


@template("weather_sunset", 1, ("weather",))
async def _weather_sunset(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    res = await w.get("weather", "get_sun_times", {"city": city})
    prompt = rng.choice([f"What time is sunset in {city} today?", f"When does the sun set in {city} today?"])
    return Draft({"city": city}, prompt, [Call("weather", "get_sun_times", {"city": city})], answer=res["sunset"])


@template("weather_air_quality", 1, ("weather",))
async def _weather_aqi(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    res = await w.get("weather", "get_air_quality", {"city": city})
    prompt = rng.choice([f"What is the air quality index in {city} today?", f"Get the AQI for {city}."])
    return Draft({"city": city}, prompt, [Call("weather", "get_air_quality", {"city": city})], answer=num(res["aqi"]))


@template("weather_add_favorite", 1, ("weather",))
async def _weather_fav(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    prompt = rng.choice([f"Add {city} to my favourite cities.", f"Save {city} as a favorite city in the weather app."])
    return Draft({"city": city}, prompt, [Call("weather", "add_favorite_city", {"city": city})],
                 expected_state=[state("weather", "list_favorite_cities", {}, {"favorites": [{"city": city}]})])


@template("timezones_current_time", 1, ("timezones",))
async def _tz_now(rng: random.Random, w: World) -> Draft:
    city = rng.choice([c for c in CITIES if c != "New York"])
    res = await w.get("timezones", "get_current_time", {"timezone": city})
    prompt = rng.choice([f"What time is it now in {city}?", f"Get the current local time in {city}."])
    return Draft({"city": city}, prompt, [Call("timezones", "get_current_time", {"timezone": city})],
                 answer=res["local_time"][-5:])


@template("timezones_convert_time", 1, ("timezones",))
async def _tz_convert(rng: random.Random, w: World) -> Draft:
    a, b = rng.sample(CITIES, 2)
    t = rng.choice(TIMES)
    args = {"time": f"2026-03-05 {t}", "from_timezone": a, "to_timezone": b}
    res = await w.get("timezones", "convert", args)
    prompt = rng.choice([f"Convert {t} on 2026-03-05 in {a} to {b} time.", f"When it is {t} in {a} on 2026-03-05, what time is it in {b}?"])
    return Draft({"a": a, "b": b, "t": t}, prompt, [Call("timezones", "convert", args)], answer=res["to"]["time"][-5:])


@template("notes_create", 1, ("notes",))
async def _notes_create(rng: random.Random, w: World) -> Draft:
    title, body = rng.choice(NOTE_TITLES), rng.choice(NOTE_BODIES)
    prompt = rng.choice([f"Create a note titled '{title}' with the text '{body}'.",
                         f"Make a new note '{title}' that says '{body}'."])
    return Draft({"title": title, "body": body}, prompt, [Call("notes", "create_note", {"title": title, "body": body})],
                 expected_state=[state("notes", "search", {"query": body}, {"notes": [{"title": title, "snippet": body}]})])


@template("tasks_create", 1, ("tasks",))
async def _tasks_create(rng: random.Random, w: World) -> Draft:
    title, due = _title(rng), rng.choice(DATES)
    prompt = rng.choice([f"Create a task '{title}' due {due}.", f"Add a to-do called '{title}' with due date {due}."])
    return Draft({"title": title, "due": due}, prompt, [Call("tasks", "create_task", {"title": title, "due": due})],
                 expected_state=[state("tasks", "search", {"query": title}, {"tasks": [{"title": title, "due": due}]})])


@template("calendar_create_event", 1, ("calendar",))
async def _cal_create(rng: random.Random, w: World) -> Draft:
    title, d, t = _title(rng), rng.choice(DATES), rng.choice(TIMES)
    prompt = rng.choice([f"Create a calendar event '{title}' on {d} at {t}.", f"Schedule '{title}' for {d} at {t}."])
    return Draft({"title": title, "d": d, "t": t}, prompt,
                 [Call("calendar", "create_event", {"title": title, "date": d, "start_time": t})],
                 expected_state=[state("calendar", "search", {"query": title}, {"events": [{"title": title, "date": d, "start": t}]})])


@template("contacts_email_lookup", 1, ("contacts",))
async def _contact_email(rng: random.Random, w: World) -> Draft:
    c = rng.choice(await _contacts(w))
    prompt = rng.choice([f"What is {c['name']}'s email address?", f"Look up the email of {c['name']} in my contacts."])
    return Draft({"c": c["id"]}, prompt, [Call("contacts", "search", {"query": c["name"]})], answer=c["email"])


@template("shop_price", 1, ("shop",))
async def _shop_price(rng: random.Random, w: World) -> Draft:
    p = rng.choice(await _products(w))
    prompt = rng.choice([f"How much does the {p['name']} cost in the shop?", f"What is the price of the {p['name']}?"])
    return Draft({"sku": p["sku"]}, prompt, [Call("shop", "search", {"query": p["name"]})], answer=num(p["price"]))


@template("bank_balance", 1, ("bank",))
async def _bank_balance(rng: random.Random, w: World) -> Draft:
    a = rng.choice(await _accounts(w))
    prompt = rng.choice([f"What is the balance of my {a['name']} account?", f"How much money is in my {a['name']}?"])
    return Draft({"acc": a["id"]}, prompt, [Call("bank", "list_accounts", {})], answer=num(a["balance"]))


@template("travel_cheapest_flight", 1, ("travel",))
async def _travel_cheapest(rng: random.Random, w: World) -> Draft | None:
    airports = [a["code"] for a in (await w.get("travel", "list_airports"))["airports"]]
    o, d = rng.sample(airports, 2)
    day = rng.choice(DATES)
    args = {"origin": o, "destination": d, "date": day}
    flights = (await w.get("travel", "search_flights", args))["flights"]
    if not flights:
        return None
    cheapest = min(f["price"] for f in flights)
    prompt = rng.choice([f"What is the cheapest flight price from {o} to {d} on {day}?",
                         f"Search flights {o} to {d} on {day} and tell me the lowest price."])
    return Draft({"o": o, "d": d, "day": day}, prompt, [Call("travel", "search_flights", args)], answer=num(cheapest))


@template("files_write", 1, ("files",))
async def _files_write(rng: random.Random, w: World) -> Draft:
    folder, name = rng.choice(["notes", "reports", "drafts", "."]), rng.choice(["plan", "summary", "ideas", "log", "todo-2"])
    path = f"{name}.txt" if folder == "." else f"{folder}/{name}.txt"
    text = rng.choice(NOTE_BODIES + MESSAGES)
    prompt = rng.choice([f"Write a file {path} containing '{text}'.", f"Create the file '{path}' with the content '{text}'."])
    return Draft({"path": path, "text": text}, prompt, [Call("files", "write_file", {"path": path, "content": text})],
                 expected_state=[state("files", "read_file", {"path": path}, {"content": text})])


# ---- level 2 -------------------------------------------------------------------------------


@template("files_line_count", 2, ("files",))
async def _files_lines(rng: random.Random, w: World) -> Draft:
    files = [i for i in (await w.get("files", "list_items", {"recursive": True}))["items"] if i["type"] == "file"]
    f = rng.choice(files)
    det = await w.get("files", "get_details", {"path": f["path"]})
    prompt = rng.choice([f"Find the file named '{f['name']}' and tell me how many lines it has.",
                         f"How many lines are in the file {f['name']}? Search for it first."])
    return Draft({"path": f["path"]}, prompt,
                 [Call("files", "search", {"pattern": f["name"]}), Call("files", "get_details", {"path": f["path"]})],
                 answer=num(det["lines"]))




@template("contacts_text_message", 2, ("contacts",))
async def _contact_sms(rng: random.Random, w: World) -> Draft:
    c, msg = rng.choice(await _contacts(w)), rng.choice(MESSAGES)
    prompt = rng.choice([f"Find {c['name']} in my contacts and text them '{msg}'.", f"Send {c['name']} a text message saying '{msg}'."])
    return Draft({"c": c["id"], "msg": msg}, prompt,
                 [Call("contacts", "search", {"query": c["name"]}),
                  Call("contacts", "send_message", {"contact_id": c["id"], "text": msg})],
                 expected_state=[state("contacts", "list_sent_messages", {}, {"messages": [{"contact_id": c["id"], "text": msg}]})])


@template("contacts_then_email", 2, ("contacts", "email"))
async def _contact_email_send(rng: random.Random, w: World) -> Draft:
    c, msg = rng.choice(await _contacts(w)), rng.choice(MESSAGES)
    subject = rng.choice(["Quick question", "Hello", "Update", "Tomorrow"])
    prompt = rng.choice([f"Find {c['name']}'s email address and send them an email with subject '{subject}' saying '{msg}'.",
                         f"Email {c['name']} (look up the address in contacts): subject '{subject}', body '{msg}'."])
    return Draft({"c": c["id"], "msg": msg, "subject": subject}, prompt,
                 [Call("contacts", "search", {"query": c["name"]}),
                  Call("email", "send_message", {"to": [c["email"]], "subject": subject, "body": msg})],
                 expected_state=[state("email", "list_messages", {"folder": "sent", "limit": 50},
                                       {"messages": [{"to": [c["email"]], "subject": subject}]})])


async def _notes(w: World) -> list[dict[str, Any]]:
    return (await w.get("notes", "list_items"))["notes"]


@template("notes_add_tag", 2, ("notes",))
async def _notes_tag(rng: random.Random, w: World) -> Draft | None:
    n = rng.choice(await _notes(w))
    tag = rng.choice(["urgent", "later", "dessert", "work", "review", "favorite", "archive-me"])
    if tag in n["tags"]:
        return None
    prompt = rng.choice([f"Tag my note '{n['title']}' with '{tag}'.", f"Find the note '{n['title']}' and add the tag '{tag}'."])
    return Draft({"n": n["id"], "tag": tag}, prompt,
                 [Call("notes", "search", {"query": n["title"]}), Call("notes", "add_tag", {"note_id": n["id"], "tag": tag})],
                 expected_state=[state("notes", "get_details", {"note_id": n["id"]}, {"tags": [tag]})])


@template("notes_append", 2, ("notes",))
async def _notes_append(rng: random.Random, w: World) -> Draft:
    n, text = rng.choice(await _notes(w)), rng.choice(NOTE_BODIES)
    prompt = rng.choice([f"Add the line '{text}' to my note '{n['title']}'.", f"Append '{text}' to the note titled '{n['title']}'."])
    return Draft({"n": n["id"], "text": text}, prompt,
                 [Call("notes", "search", {"query": n["title"]}), Call("notes", "append_to_note", {"note_id": n["id"], "text": text})],
                 expected_state=[state("notes", "get_details", {"note_id": n["id"]}, text)])


async def _open_tasks(w: World) -> list[dict[str, Any]]:
    return (await w.get("tasks", "list_items"))["tasks"]


@template("tasks_complete", 2, ("tasks",))
async def _tasks_complete(rng: random.Random, w: World) -> Draft:
    t = rng.choice(await _open_tasks(w))
    prompt = rng.choice([f"Mark the task '{t['title']}' as done.", f"Find my task '{t['title']}' and complete it."])
    return Draft({"t": t["id"]}, prompt,
                 [Call("tasks", "search", {"query": t["title"]}), Call("tasks", "complete_task", {"task_id": t["id"]})],
                 expected_state=[state("tasks", "get_details", {"task_id": t["id"]}, {"status": "done"})])


@template("tasks_set_priority", 2, ("tasks",))
async def _tasks_priority(rng: random.Random, w: World) -> Draft | None:
    t, prio = rng.choice(await _open_tasks(w)), rng.choice(["low", "normal", "high", "urgent"])
    if t["priority"] == prio:
        return None
    prompt = rng.choice([f"Set the priority of the task '{t['title']}' to {prio}.", f"Change task '{t['title']}' to {prio} priority."])
    return Draft({"t": t["id"], "prio": prio}, prompt,
                 [Call("tasks", "search", {"query": t["title"]}), Call("tasks", "update_task", {"task_id": t["id"], "priority": prio})],
                 expected_state=[state("tasks", "get_details", {"task_id": t["id"]}, {"priority": prio})])


@template("shop_add_to_cart", 2, ("shop",))
async def _shop_cart(rng: random.Random, w: World) -> Draft:
    # Out-of-stock picks are left in on purpose: the solvability filter drops them.
    p, q = rng.choice(await _products(w)), rng.randint(1, 3)
    prompt = rng.choice([f"Add {q} of the {p['name']} to my cart.", f"Find the {p['name']} in the shop and put {q} in the cart."])
    return Draft({"sku": p["sku"], "q": q}, prompt,
                 [Call("shop", "search", {"query": p["name"]}), Call("shop", "add_to_cart", {"sku": p["sku"], "quantity": q})],
                 expected_state=[state("shop", "view_cart", {}, {"items": [{"sku": p["sku"], "quantity": q}]})])


@template("shop_product_brand", 2, ("shop",))
async def _shop_brand(rng: random.Random, w: World) -> Draft:
    p = rng.choice(await _products(w))
    det = await w.get("shop", "get_details", {"sku": p["sku"]})
    prompt = rng.choice([f"Which brand makes the {p['name']} sold in the shop?", f"Look up the {p['name']} and tell me its brand."])
    return Draft({"sku": p["sku"]}, prompt,
                 [Call("shop", "search", {"query": p["name"]}), Call("shop", "get_details", {"sku": p["sku"]})],
                 answer=det["brand"])


@template("bank_transfer", 2, ("bank",))
async def _bank_transfer(rng: random.Random, w: World) -> Draft:
    accs = [a for a in await _accounts(w) if a["type"] in ("checking", "savings")]
    src, dst = rng.sample(accs, 2)
    amt = rng.choice([25, 50, 100, 150, 200, 300, 500])
    prompt = rng.choice([f"Transfer ${amt} from my {src['name']} account to my {dst['name']} account.",
                         f"Move {amt} dollars from {src['name']} to {dst['name']}."])
    return Draft({"src": src["id"], "dst": dst["id"], "amt": amt}, prompt,
                 [Call("bank", "list_accounts", {}),
                  Call("bank", "transfer", {"from_account": src["id"], "to_account": dst["id"], "amount": amt})],
                 expected_state=[state("bank", "get_balance", {"account_id": dst["id"]}, {"balance": round(dst["balance"] + amt, 2)})])


@template("bank_pay_bill", 2, ("bank",))
async def _bank_pay(rng: random.Random, w: World) -> Draft:
    payee = rng.choice((await w.get("bank", "list_payees"))["payees"])
    checking = next(a for a in await _accounts(w) if a["type"] == "checking")
    amt = rng.choice([45, 60, 80, 120, 95, 150])
    prompt = rng.choice([f"Pay ${amt} to {payee['name']}.", f"Pay my {payee['name']} bill of {amt} dollars."])
    return Draft({"payee": payee["id"], "amt": amt}, prompt,
                 [Call("bank", "list_payees", {}), Call("bank", "pay_bill", {"payee_id": payee["id"], "amount": amt}, key=("payee_id", "amount"))],
                 expected_state=[state("bank", "get_balance", {"account_id": checking["id"]},
                                       {"balance": round(checking["balance"] - amt, 2)})])


@template("calendar_reschedule", 2, ("calendar",))
async def _cal_move(rng: random.Random, w: World) -> Draft | None:
    events = (await w.get("calendar", "list_events", {"date_from": "2026-03-02", "date_to": "2026-03-31"}))["events"]
    titles = {}
    for e in events:  # only events whose title is unique, so "the event 'X'" names one event
        titles.setdefault(e["title"], []).append(e)
    ev = rng.choice([v[0] for v in titles.values() if len(v) == 1])
    d, t = rng.choice(DATES), rng.choice(TIMES)
    if (d, t) == (ev["date"], ev["start"]):
        return None
    prompt = rng.choice([f"Move my event '{ev['title']}' to {d} at {t}.", f"Reschedule '{ev['title']}' to {d}, starting {t}."])
    return Draft({"e": ev["id"], "d": d, "t": t}, prompt,
                 [Call("calendar", "search", {"query": ev["title"]}),
                  Call("calendar", "update_event", {"event_id": ev["id"], "date": d, "start_time": t})],
                 expected_state=[state("calendar", "get_details", {"event_id": ev["id"]}, {"date": d, "start": t})])


@template("maps_place_address", 2, ("maps",))
async def _maps_address(rng: random.Random, w: World) -> Draft | None:
    city = rng.choice(CITIES)
    cat = rng.choice(["cafe", "museum", "park", "library", "gym", "bar"])
    places = (await w.get("maps", "search", {"query": cat, "city": city}))["places"]
    if not places:
        return None
    p = places[0]
    det = await w.get("maps", "get_details", {"place_id": p["id"]})
    prompt = rng.choice([f"What is the address of {p['name']} in {city}?", f"Find {p['name']} in {city} on the map and give me its address."])
    return Draft({"p": p["id"]}, prompt,
                 [Call("maps", "search", {"query": p["name"], "city": city}, key=("query",)),
                  Call("maps", "get_details", {"place_id": p["id"]})], answer=det["address"])


@template("email_reply", 2, ("email",))
async def _email_reply(rng: random.Random, w: World) -> Draft:
    msgs = (await w.get("email", "list_messages", {"limit": 50}))["messages"]
    m, body = rng.choice(msgs), rng.choice(MESSAGES)
    subj = m["subject"] if m["subject"].lower().startswith("re:") else f"Re: {m['subject']}"
    prompt = rng.choice([f"Reply to the email '{m['subject']}' saying '{body}'.", f"Find the message with subject '{m['subject']}' and reply '{body}'."])
    return Draft({"m": m["id"], "body": body}, prompt,
                 [Call("email", "search", {"query": m["subject"]}, key=()), Call("email", "reply", {"message_id": m["id"], "body": body})],
                 expected_state=[state("email", "list_messages", {"folder": "sent", "limit": 50},
                                       {"messages": [{"subject": subj, "to": [m["from"]]}]})])


# ---- level 3 -------------------------------------------------------------------------------


@template("meeting_invite", 3, ("contacts", "calendar", "email"))
async def _meeting_invite(rng: random.Random, w: World) -> Draft:
    c = rng.choice(await _contacts(w))
    title, d, t = _title(rng), rng.choice(DATES), rng.choice(TIMES)
    prompt = rng.choice([
        f"Look up {c['name']}'s email, create a calendar event '{title}' on {d} at {t} with them as attendee, "
        f"and email them with subject '{title}' and body 'Invite sent'.",
        f"Schedule '{title}' on {d} at {t} inviting {c['name']} (find their email in contacts), then send them an "
        f"email with subject '{title}' and body 'Invite sent'."])
    return Draft({"c": c["id"], "title": title, "d": d, "t": t}, prompt,
                 [Call("contacts", "search", {"query": c["name"]}),
                  Call("calendar", "create_event", {"title": title, "date": d, "start_time": t, "attendees": [c["email"]]}),
                  Call("email", "send_message", {"to": [c["email"]], "subject": title, "body": "Invite sent"}, key=("to", "subject"))],
                 expected_state=[state("calendar", "search", {"query": title}, {"events": [{"title": title, "date": d, "start": t}]}),
                                 state("calendar", "list_events", {"date_from": d, "date_to": d, "attendee": c["email"]},
                                       {"events": [{"title": title}]}),
                                 state("email", "list_messages", {"folder": "sent", "limit": 50},
                                       {"messages": [{"to": [c["email"]], "subject": title}]})])


@template("shop_price_transfer", 3, ("shop", "bank"))
async def _shop_bank(rng: random.Random, w: World) -> Draft:
    p = rng.choice(await _products(w))
    accs = {a["type"]: a for a in await _accounts(w)}
    sav, chk = accs["savings"], accs["checking"]
    prompt = rng.choice([f"Look up the price of the {p['name']} in the shop and transfer exactly that amount from my "
                         f"{sav['name']} account to my {chk['name']} account.",
                         f"I want to buy the {p['name']}. Find its price in the shop, then move that much money from "
                         f"savings ({sav['name']}) to checking ({chk['name']})."])
    return Draft({"sku": p["sku"]}, prompt,
                 [Call("shop", "search", {"query": p["name"]}), Call("bank", "list_accounts", {}),
                  Call("bank", "transfer", {"from_account": sav["id"], "to_account": chk["id"], "amount": p["price"]},
                       key=("from_account", "to_account", "amount"))],
                 expected_state=[state("bank", "get_balance", {"account_id": chk["id"]}, {"balance": round(chk["balance"] + p["price"], 2)})])


@template("flight_and_weather", 3, ("travel", "weather"))
async def _flight_weather(rng: random.Random, w: World) -> Draft | None:
    airports = (await w.get("travel", "list_airports"))["airports"]
    o, d = rng.sample(airports, 2)
    day = rng.choice(DATES[:4])
    args = {"origin": o["code"], "destination": d["code"], "date": day}
    flights = (await w.get("travel", "search_flights", args))["flights"]
    if not flights:
        return None
    fc = (await w.get("weather", "get_forecast", {"city": d["city"], "days": 7}))["days"]
    high = next(x["high_c"] for x in fc if x["date"] == day)
    prompt = rng.choice([f"Find the cheapest flight from {o['code']} to {d['code']} on {day} and tell me its price and the "
                         f"forecast high temperature in {d['city']} that day.",
                         f"I fly {o['city']} to {d['city']} on {day}. What's the lowest fare, and how warm (high) will it be in {d['city']}?"])
    return Draft({"o": o["code"], "d": d["code"], "day": day}, prompt,
                 [Call("travel", "search_flights", args, key=("origin", "destination", "date")),
                  Call("weather", "get_forecast", {"city": d["city"], "days": 7}, key=("city",))],
                 answer=num(min(f["price"] for f in flights)), answer_contains=[num(high)])


@template("hotel_booking_note", 3, ("travel", "notes"))
async def _hotel_note(rng: random.Random, w: World) -> Draft | None:
    city, day, nights = rng.choice(CITIES), rng.choice(DATES), rng.randint(1, 4)
    hotels = (await w.get("travel", "search_hotels", {"city": city, "check_in": day, "nights": nights}))["hotels"]
    if not hotels:
        return None
    h = hotels[0]  # cheapest first
    title = f"Trip to {city}"
    prompt = rng.choice([f"Book the cheapest hotel in {city} from {day} for {nights} nights, then create a note titled "
                         f"'{title}' containing the hotel's name.",
                         f"Find hotels in {city} checking in {day} for {nights} nights, book the cheapest one, and save "
                         f"a note '{title}' with the hotel name."])
    return Draft({"city": city, "day": day, "nights": nights}, prompt,
                 [Call("travel", "search_hotels", {"city": city, "check_in": day, "nights": nights}),
                  Call("travel", "book_hotel", {"hotel_id": h["hotel_id"], "check_in": day, "nights": nights}),
                  Call("notes", "create_note", {"title": title, "body": h["name"]}, key=("title",))],
                 expected_state=[state("travel", "list_bookings", {"booking_type": "hotel"},
                                       {"bookings": [{"what": f"{h['name']} ({city})", "when": day, "status": "confirmed"}]}),
                                 state("notes", "search", {"query": title}, {"notes": [{"title": title}]}),
                                 state("notes", "search", {"query": h["name"]}, {"notes": [{"title": title}]})])


@template("assign_task_to_contact", 3, ("contacts", "tasks"))
async def _assign(rng: random.Random, w: World) -> Draft | None:
    members = {m["email"] for m in (await w.get("tasks", "list_members"))["members"]}
    cands = [c for c in await _contacts(w) if c["email"] in members]
    if not cands:
        return None
    c = rng.choice(cands)
    t = rng.choice([t for t in await _open_tasks(w) if t["assignee"] != c["email"]])
    prompt = rng.choice([f"Assign the task '{t['title']}' to {c['name']}.",
                         f"Find {c['name']}'s email in contacts and make them the assignee of the task '{t['title']}'."])
    return Draft({"c": c["id"], "t": t["id"]}, prompt,
                 [Call("contacts", "search", {"query": c["name"]}), Call("tasks", "search", {"query": t["title"]}),
                  Call("tasks", "assign_task", {"task_id": t["id"], "assignee": c["email"]})],
                 expected_state=[state("tasks", "get_details", {"task_id": t["id"]}, {"assignee": c["email"]})])


@template("weather_temp_kelvin", 3, ("weather", "units"))
async def _weather_kelvin(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    temp = (await w.get("weather", "get_current", {"city": city}))["temp_c"]
    args = {"value": temp, "from_unit": "C", "to_unit": "K"}
    res = await w.get("units", "convert", args)
    prompt = rng.choice([f"Get the current temperature in {city} and convert it to Kelvin with the units server.",
                         f"What is the temperature in {city} right now, in kelvin?"])
    return Draft({"city": city}, prompt,
                 [Call("weather", "get_current", {"city": city}), Call("units", "convert", args)], answer=num(res["result"]))


@template("spending_in_currency", 3, ("bank", "units"))
async def _spending_fx(rng: random.Random, w: World) -> Draft:
    summary = await w.get("bank", "get_spending_summary")
    cat = rng.choice(summary["by_category"])
    cur = rng.choice(["EUR", "GBP", "CAD", "JPY"])
    args = {"amount": cat["spent"], "from_currency": "USD", "to_currency": cur}
    res = await w.get("units", "convert_currency", args)
    prompt = rng.choice([f"How much did I spend on {cat['category']} last month? Give the amount in {cur}.",
                         f"Check my {cat['category']} spending for {summary['month']} and convert it from USD to {cur}."])
    return Draft({"cat": cat["category"], "cur": cur}, prompt,
                 [Call("bank", "get_spending_summary", {}), Call("units", "convert_currency", args)], answer=num(res["result"]))


@template("timezone_call_schedule", 3, ("timezones", "calendar"))
async def _tz_cal(rng: random.Random, w: World) -> Draft:
    city = rng.choice(["London", "Paris", "Berlin", "Tokyo", "Sydney", "Dubai", "Singapore", "San Francisco"])
    d, t = rng.choice(DATES), rng.choice(["08:00", "09:00", "15:00", "16:00", "17:00", "18:00"])
    args = {"time": f"{d} {t}", "from_timezone": city, "to_timezone": "America/New_York"}
    res = await w.get("timezones", "convert", args)
    local_d, local_t = res["to"]["time"].split(" ")
    title = f"Call with {city} office"
    prompt = rng.choice([f"Schedule '{title}' in my calendar for {t} {city} time on {d}. My calendar is in New York time, "
                         f"so convert it first.",
                         f"Convert {t} on {d} in {city} to New York time and create a calendar event '{title}' at that time."])
    return Draft({"city": city, "d": d, "t": t}, prompt,
                 [Call("timezones", "convert", args),
                  Call("calendar", "create_event", {"title": title, "date": local_d, "start_time": local_t})],
                 expected_state=[state("calendar", "search", {"query": title},
                                       {"events": [{"title": title, "date": local_d, "start": local_t}]})])


# --------------------------------------------------------------------------- running servers


def _norm(s: str) -> str:
    return " ".join(str(s).strip().casefold().split())


class _Runner:
    """All embedded servers in process, each behind an in-memory MCP ``Client``."""

    def __init__(self, env_seed: int) -> None:
        self.env_seed = env_seed
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}

    async def __aenter__(self) -> "_Runner":
        from atlas_plugins.mcp_compat import connect

        for name, spec in EMBEDDED_SERVERS.items():
            server = importlib.import_module(spec.module).build(self.env_seed)
            self._clients[name] = await self._stack.enter_async_context(connect(server))
        return self

    async def __aexit__(self, *exc: Any) -> None:
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
    from atlas_plugins.rewards.checks import subset_fraction

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


# --------------------------------------------------------------------------- generation


class GenerationReport(BaseModel):
    """What :func:`agenerate` produced: the tasks plus accounting."""

    tasks: list[Task] = Field(default_factory=list)
    #: candidates whose reference solution failed verification (never emitted)
    dropped: int = 0
    drop_reasons: dict[str, int] = Field(default_factory=dict)
    #: candidates skipped before verification (duplicate parameters, or their split/level quota was full)
    skipped: int = 0
    seed: int = 0
    env_seed: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for t in self.tasks:
            out.setdefault(str(t.split), {}).setdefault(str(t.difficulty), 0)
            out[str(t.split)][str(t.difficulty)] += 1
        return out


def split_of(template_name: str, params: dict[str, Any]) -> str:
    """The fixed split of a (template, parameters) pair (see the module docstring)."""
    if template_name in HELDOUT_TEMPLATES:
        return "heldout"
    return "heldout" if stable_hash(template_name, _canon(params)) % 100 < HELDOUT_HASH_PERCENT else "train"


def _canon(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _quotas(n: int) -> dict[int, int]:
    q1, q2 = round(n * LEVEL_SHARES[1]), round(n * LEVEL_SHARES[2])
    return {1: q1, 2: q2, 3: max(0, n - q1 - q2)}


def _task(t: Template, d: Draft, split: str, env_seed: int) -> Task:
    tid = f"{t.name}-{stable_hash(t.name, _canon(d.params)):016x}"[: len(t.name) + 11]
    servers = list(dict.fromkeys(c.server for c in d.calls))
    md: dict[str, Any] = {
        "template": t.name,
        "params": d.params,
        "hint_server": servers,
        "expected_tools": [c.expected() for c in d.calls],
        "reference_solution": [c.ref() for c in d.calls],
        "env_seed": env_seed,
        "kind": "read" if d.answer is not None else "write",
    }
    if d.answer is not None:
        md["answer_match"] = "contains"
    if d.answer_contains:
        md["answer_contains"] = list(d.answer_contains)
    return Task(id=tid, prompt=d.prompt, servers=servers, metadata=md, answer=d.answer,
                expected_state=d.expected_state or None, split=split, difficulty=t.level)  # type: ignore[arg-type]


async def agenerate(seed: int = 0, n_train: int = 240, n_heldout: int = 60, *, env_seed: int = 0,
                    max_attempts_per_task: int = 60) -> GenerationReport:
    """Generate and verify tasks (async; see :func:`generate_tasks`)."""
    if n_train < 0 or n_heldout < 0:
        raise ValueError(f"n_train and n_heldout must be >= 0, got {n_train}, {n_heldout}")
    rng = random.Random(f"atlas-taskgen:{seed}")
    report = GenerationReport(seed=seed, env_seed=env_seed)
    seen: set[tuple[str, str]] = set()
    async with _Runner(env_seed) as runner:
        world = World(runner)
        for level in (1, 2, 3):
            need = {"train": _quotas(n_train)[level], "heldout": _quotas(n_heldout)[level]}
            temps = sorted((t for t in TEMPLATES.values() if t.level == level), key=lambda t: t.name)
            rng.shuffle(temps)
            budget = max_attempts_per_task * (need["train"] + need["heldout"])
            i = 0
            while (need["train"] or need["heldout"]) and i < budget:
                t = temps[i % len(temps)]
                i += 1
                draft = await t.fn(rng, world)
                if draft is None:
                    report.skipped += 1
                    continue
                key = (t.name, _canon(draft.params))
                split = split_of(t.name, draft.params)
                if key in seen or need[split] == 0:
                    report.skipped += 1
                    continue
                seen.add(key)
                task = _task(t, draft, split, env_seed)
                reason = await verify_draft(runner, draft, episode=f"taskgen-{env_seed}-{task.id}")
                if reason is not None:
                    report.dropped += 1
                    kind = f"{t.name}: {reason.split(': ')[0]}"
                    report.drop_reasons[kind] = report.drop_reasons.get(kind, 0) + 1
                    continue
                report.tasks.append(task)
                need[split] -= 1
            if need["train"] or need["heldout"]:
                raise RuntimeError(
                    f"could not fill level {level}: still need {need} after {budget} candidates "
                    f"(templates too few or too narrow for n_train={n_train}, n_heldout={n_heldout})")
    order = {"train": 0, "heldout": 1}
    report.tasks.sort(key=lambda x: (order[str(x.split)], x.difficulty))  # stable: keeps sampling order
    return report


def generate(seed: int = 0, n_train: int = 240, n_heldout: int = 60, *, env_seed: int = 0) -> GenerationReport:
    """Synchronous :func:`agenerate` (do not call from inside a running event loop)."""
    return asyncio.run(agenerate(seed, n_train, n_heldout, env_seed=env_seed))


def generate_tasks(seed: int = 0, n_train: int = 240, n_heldout: int = 60, *, env_seed: int = 0) -> list[Task]:
    """``n_train`` + ``n_heldout`` verified tasks; deterministic in (seed, env_seed).

    ``seed`` drives sampling and paraphrases; ``env_seed`` is the world the servers are built
    with (run agents with ``Toolspace.default(seed=env_seed)``; the default toolspace uses 0).
    """
    return generate(seed, n_train, n_heldout, env_seed=env_seed).tasks


# --------------------------------------------------------------------------- JSONL


def dumps_jsonl(tasks: list[Task]) -> str:
    return "".join(json.dumps(t.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n" for t in tasks)


def write_jsonl(tasks: list[Task], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps_jsonl(tasks), encoding="utf-8")
    return p


def load_tasks(path: str | Path, split: str | None = None) -> list[Task]:
    """Tasks from a JSONL file (one ``Task.model_dump()`` per line), optionally one split."""
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train', 'heldout' or None, got {split!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"task file not found: {p}")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = Task.model_validate_json(line)
        except ValueError as exc:
            raise ValueError(f"{p}:{n}: not a valid task: {exc}") from None
        if split is None or task.split == split:
            out.append(task)
    return out


def load_default_tasks(split: str | None = None) -> list[Task]:
    """The shipped default set (seed 0, env_seed 0): 240 train + 60 held-out tasks."""
    return load_tasks(DEFAULT_TASKS_PATH, split)


__all__ = [
    "DEFAULT_TASKS_PATH",
    "HELDOUT_TEMPLATES",
    "TEMPLATES",
    "GenerationReport",
    "agenerate",
    "dumps_jsonl",
    "generate",
    "generate_tasks",
    "load_default_tasks",
    "load_tasks",
    "split_of",
    "state_holds",
    "verify_draft",
    "write_jsonl",
]
