"""Level-1 task templates: one tool call on one server.

Importing this module registers them in :data:`~atlas_plugins.envs.taskgen.language.TEMPLATES`;
the package imports the levels in order (1, 2, 3).
"""

from __future__ import annotations

import random

from atlas_plugins.envs.taskgen.language import (
    CITIES,
    DATES,
    MESSAGES,
    NOTE_BODIES,
    NOTE_TITLES,
    TIMES,
    Call,
    Draft,
    World,
    _accounts,
    _contacts,
    _products,
    _title,
    num,
    state,
    template,
)


@template("math_multiply", 1, ("math",))
async def _math_multiply(rng: random.Random, w: World) -> Draft:
    a, b = rng.randint(3, 99), rng.randint(3, 99)
    prompt = rng.choice(
        [
            f"What is {a} multiplied by {b}? Use the math server.",
            f"Multiply {a} by {b}.",
            f"Compute {a} times {b} with the math tools.",
        ]
    )
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
    prompt = rng.choice(
        [f"What is the greatest common divisor of {a} and {b}?", f"Find the GCD of {a} and {b} with the math server."]
    )
    return Draft({"a": a, "b": b}, prompt, [Call("math", "gcd_lcm", {"numbers": [a, b]})], answer=num(_m.gcd(a, b)))


UNIT_PAIRS = [
    ("mi", "km", "miles", "kilometers"),
    ("km", "mi", "kilometers", "miles"),
    ("kg", "lb", "kilograms", "pounds"),
    ("lb", "kg", "pounds", "kilograms"),
    ("ft", "m", "feet", "meters"),
    ("L", "gal", "liters", "gallons"),
    ("C", "F", "degrees Celsius", "degrees Fahrenheit"),
    ("in", "cm", "inches", "centimeters"),
]


@template("units_convert", 1, ("units",))
async def _units_convert(rng: random.Random, w: World) -> Draft:
    fu, tu, fn, tn = rng.choice(UNIT_PAIRS)
    v = rng.randint(2, 60)
    args = {"value": v, "from_unit": fu, "to_unit": tu}
    res = await w.get("units", "convert", args)
    prompt = rng.choice(
        [
            f"Convert {v} {fn} to {tn}.",
            f"How many {tn} is {v} {fn}? Use the units server.",
            f"What is {v} {fn} in {tn}?",
        ]
    )
    return Draft({"v": v, "from": fu, "to": tu}, prompt, [Call("units", "convert", args)], answer=num(res["result"]))


@template("units_currency", 1, ("units",))
async def _units_currency(rng: random.Random, w: World) -> Draft:
    cur = rng.choice(["EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "INR", "MXN"])
    amt = rng.choice([10, 20, 25, 50, 75, 100, 150, 200, 250, 500])
    args = {"amount": amt, "from_currency": "USD", "to_currency": cur}
    res = await w.get("units", "convert_currency", args)
    prompt = rng.choice(
        [f"Convert {amt} USD to {cur}.", f"How much is {amt} US dollars in {cur}? Use the units server."]
    )
    return Draft({"amt": amt, "cur": cur}, prompt, [Call("units", "convert_currency", args)], answer=num(res["result"]))


@template("weather_current_temp", 1, ("weather",))
async def _weather_current(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    res = await w.get("weather", "get_current", {"city": city})
    prompt = rng.choice(
        [f"What is the current temperature in {city}?", f"How warm is it in {city} right now? Use the weather server."]
    )
    return Draft({"city": city}, prompt, [Call("weather", "get_current", {"city": city})], answer=num(res["temp_c"]))


@template("weather_forecast_high", 1, ("weather",))
async def _weather_forecast(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    res = await w.get("weather", "get_forecast", {"city": city, "days": 2})
    prompt = rng.choice(
        [
            f"What's the forecast high temperature for {city} tomorrow?",
            f"How hot will it get in {city} tomorrow? Use the weather forecast.",
        ]
    )
    return Draft(
        {"city": city},
        prompt,
        [Call("weather", "get_forecast", {"city": city, "days": 2}, key=("city",))],
        answer=num(res["days"][1]["high_c"]),
    )


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
    return Draft(
        {"city": city},
        prompt,
        [Call("weather", "add_favorite_city", {"city": city})],
        expected_state=[state("weather", "list_favorite_cities", {}, {"favorites": [{"city": city}]})],
    )


@template("timezones_current_time", 1, ("timezones",))
async def _tz_now(rng: random.Random, w: World) -> Draft:
    city = rng.choice([c for c in CITIES if c != "New York"])
    res = await w.get("timezones", "get_current_time", {"timezone": city})
    prompt = rng.choice([f"What time is it now in {city}?", f"Get the current local time in {city}."])
    return Draft(
        {"city": city},
        prompt,
        [Call("timezones", "get_current_time", {"timezone": city})],
        answer=res["local_time"][-5:],
    )


@template("timezones_convert_time", 1, ("timezones",))
async def _tz_convert(rng: random.Random, w: World) -> Draft:
    a, b = rng.sample(CITIES, 2)
    t = rng.choice(TIMES)
    args = {"time": f"2026-03-05 {t}", "from_timezone": a, "to_timezone": b}
    res = await w.get("timezones", "convert", args)
    prompt = rng.choice(
        [
            f"Convert {t} on 2026-03-05 in {a} to {b} time.",
            f"When it is {t} in {a} on 2026-03-05, what time is it in {b}?",
        ]
    )
    return Draft({"a": a, "b": b, "t": t}, prompt, [Call("timezones", "convert", args)], answer=res["to"]["time"][-5:])


@template("notes_create", 1, ("notes",))
async def _notes_create(rng: random.Random, w: World) -> Draft:
    title, body = rng.choice(NOTE_TITLES), rng.choice(NOTE_BODIES)
    prompt = rng.choice(
        [f"Create a note titled '{title}' with the text '{body}'.", f"Make a new note '{title}' that says '{body}'."]
    )
    return Draft(
        {"title": title, "body": body},
        prompt,
        [Call("notes", "create_note", {"title": title, "body": body})],
        expected_state=[state("notes", "search", {"query": body}, {"notes": [{"title": title, "snippet": body}]})],
    )


@template("tasks_create", 1, ("tasks",))
async def _tasks_create(rng: random.Random, w: World) -> Draft:
    title, due = _title(rng), rng.choice(DATES)
    prompt = rng.choice([f"Create a task '{title}' due {due}.", f"Add a to-do called '{title}' with due date {due}."])
    return Draft(
        {"title": title, "due": due},
        prompt,
        [Call("tasks", "create_task", {"title": title, "due": due})],
        expected_state=[state("tasks", "search", {"query": title}, {"tasks": [{"title": title, "due": due}]})],
    )


@template("calendar_create_event", 1, ("calendar",))
async def _cal_create(rng: random.Random, w: World) -> Draft:
    title, d, t = _title(rng), rng.choice(DATES), rng.choice(TIMES)
    prompt = rng.choice([f"Create a calendar event '{title}' on {d} at {t}.", f"Schedule '{title}' for {d} at {t}."])
    return Draft(
        {"title": title, "d": d, "t": t},
        prompt,
        [Call("calendar", "create_event", {"title": title, "date": d, "start_time": t})],
        expected_state=[
            state("calendar", "search", {"query": title}, {"events": [{"title": title, "date": d, "start": t}]})
        ],
    )


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
    prompt = rng.choice(
        [
            f"What is the cheapest flight price from {o} to {d} on {day}?",
            f"Search flights {o} to {d} on {day} and tell me the lowest price.",
        ]
    )
    return Draft({"o": o, "d": d, "day": day}, prompt, [Call("travel", "search_flights", args)], answer=num(cheapest))


@template("files_write", 1, ("files",))
async def _files_write(rng: random.Random, w: World) -> Draft:
    folder, name = (
        rng.choice(["notes", "reports", "drafts", "."]),
        rng.choice(["plan", "summary", "ideas", "log", "todo-2"]),
    )
    path = f"{name}.txt" if folder == "." else f"{folder}/{name}.txt"
    text = rng.choice(NOTE_BODIES + MESSAGES)
    prompt = rng.choice(
        [f"Write a file {path} containing '{text}'.", f"Create the file '{path}' with the content '{text}'."]
    )
    return Draft(
        {"path": path, "text": text},
        prompt,
        [Call("files", "write_file", {"path": path, "content": text})],
        expected_state=[state("files", "read_file", {"path": path}, {"content": text})],
    )
