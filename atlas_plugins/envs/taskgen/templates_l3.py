"""Level-3 task templates: chains across two or three servers.

Importing this module registers them in :data:`~atlas_plugins.envs.taskgen.language.TEMPLATES`;
the package imports the levels in order (1, 2, 3).
"""

from __future__ import annotations

import random

from atlas_plugins.envs.taskgen.language import (
    CITIES,
    DATES,
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
from atlas_plugins.envs.taskgen.templates_l2 import _open_tasks


@template("meeting_invite", 3, ("contacts", "calendar", "email"))
async def _meeting_invite(rng: random.Random, w: World) -> Draft:
    c = rng.choice(await _contacts(w))
    title, d, t = _title(rng), rng.choice(DATES), rng.choice(TIMES)
    prompt = rng.choice(
        [
            f"Look up {c['name']}'s email, create a calendar event '{title}' on {d} at {t} with them as attendee, "
            f"and email them with subject '{title}' and body 'Invite sent'.",
            f"Schedule '{title}' on {d} at {t} inviting {c['name']} (find their email in contacts), then send them an "
            f"email with subject '{title}' and body 'Invite sent'.",
        ]
    )
    return Draft(
        {"c": c["id"], "title": title, "d": d, "t": t},
        prompt,
        [
            Call("contacts", "search", {"query": c["name"]}),
            Call("calendar", "create_event", {"title": title, "date": d, "start_time": t, "attendees": [c["email"]]}),
            Call(
                "email",
                "send_message",
                {"to": [c["email"]], "subject": title, "body": "Invite sent"},
                key=("to", "subject"),
            ),
        ],
        expected_state=[
            state("calendar", "search", {"query": title}, {"events": [{"title": title, "date": d, "start": t}]}),
            state(
                "calendar",
                "list_events",
                {"date_from": d, "date_to": d, "attendee": c["email"]},
                {"events": [{"title": title}]},
            ),
            state(
                "email",
                "list_messages",
                {"folder": "sent", "limit": 50},
                {"messages": [{"to": [c["email"]], "subject": title}]},
            ),
        ],
    )


@template("shop_price_transfer", 3, ("shop", "bank"))
async def _shop_bank(rng: random.Random, w: World) -> Draft:
    p = rng.choice(await _products(w))
    accs = {a["type"]: a for a in await _accounts(w)}
    sav, chk = accs["savings"], accs["checking"]
    prompt = rng.choice(
        [
            f"Look up the price of the {p['name']} in the shop and transfer exactly that amount from my "
            f"{sav['name']} account to my {chk['name']} account.",
            f"I want to buy the {p['name']}. Find its price in the shop, then move that much money from "
            f"savings ({sav['name']}) to checking ({chk['name']}).",
        ]
    )
    return Draft(
        {"sku": p["sku"]},
        prompt,
        [
            Call("shop", "search", {"query": p["name"]}),
            Call("bank", "list_accounts", {}),
            Call(
                "bank",
                "transfer",
                {"from_account": sav["id"], "to_account": chk["id"], "amount": p["price"]},
                key=("from_account", "to_account", "amount"),
            ),
        ],
        expected_state=[
            state("bank", "get_balance", {"account_id": chk["id"]}, {"balance": round(chk["balance"] + p["price"], 2)})
        ],
    )


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
    prompt = rng.choice(
        [
            f"Find the cheapest flight from {o['code']} to {d['code']} on {day} and tell me its price and the "
            f"forecast high temperature in {d['city']} that day.",
            f"I fly {o['city']} to {d['city']} on {day}. What's the lowest fare, and how warm (high) will it be in {d['city']}?",
        ]
    )
    return Draft(
        {"o": o["code"], "d": d["code"], "day": day},
        prompt,
        [
            Call("travel", "search_flights", args, key=("origin", "destination", "date")),
            Call("weather", "get_forecast", {"city": d["city"], "days": 7}, key=("city",)),
        ],
        answer=num(min(f["price"] for f in flights)),
        answer_contains=[num(high)],
    )


@template("hotel_booking_note", 3, ("travel", "notes"))
async def _hotel_note(rng: random.Random, w: World) -> Draft | None:
    city, day, nights = rng.choice(CITIES), rng.choice(DATES), rng.randint(1, 4)
    hotels = (await w.get("travel", "search_hotels", {"city": city, "check_in": day, "nights": nights}))["hotels"]
    if not hotels:
        return None
    h = hotels[0]  # cheapest first
    title = f"Trip to {city}"
    prompt = rng.choice(
        [
            f"Book the cheapest hotel in {city} from {day} for {nights} nights, then create a note titled "
            f"'{title}' containing the hotel's name.",
            f"Find hotels in {city} checking in {day} for {nights} nights, book the cheapest one, and save "
            f"a note '{title}' with the hotel name.",
        ]
    )
    return Draft(
        {"city": city, "day": day, "nights": nights},
        prompt,
        [
            Call("travel", "search_hotels", {"city": city, "check_in": day, "nights": nights}),
            Call("travel", "book_hotel", {"hotel_id": h["hotel_id"], "check_in": day, "nights": nights}),
            Call("notes", "create_note", {"title": title, "body": h["name"]}, key=("title",)),
        ],
        expected_state=[
            state(
                "travel",
                "list_bookings",
                {"booking_type": "hotel"},
                {"bookings": [{"what": f"{h['name']} ({city})", "when": day, "status": "confirmed"}]},
            ),
            state("notes", "search", {"query": title}, {"notes": [{"title": title}]}),
            state("notes", "search", {"query": h["name"]}, {"notes": [{"title": title}]}),
        ],
    )


@template("assign_task_to_contact", 3, ("contacts", "tasks"))
async def _assign(rng: random.Random, w: World) -> Draft | None:
    members = {m["email"] for m in (await w.get("tasks", "list_members"))["members"]}
    cands = [c for c in await _contacts(w) if c["email"] in members]
    if not cands:
        return None
    c = rng.choice(cands)
    t = rng.choice([t for t in await _open_tasks(w) if t["assignee"] != c["email"]])
    prompt = rng.choice(
        [
            f"Assign the task '{t['title']}' to {c['name']}.",
            f"Find {c['name']}'s email in contacts and make them the assignee of the task '{t['title']}'.",
        ]
    )
    return Draft(
        {"c": c["id"], "t": t["id"]},
        prompt,
        [
            Call("contacts", "search", {"query": c["name"]}),
            Call("tasks", "search", {"query": t["title"]}),
            Call("tasks", "assign_task", {"task_id": t["id"], "assignee": c["email"]}),
        ],
        expected_state=[state("tasks", "get_details", {"task_id": t["id"]}, {"assignee": c["email"]})],
    )


@template("weather_temp_kelvin", 3, ("weather", "units"))
async def _weather_kelvin(rng: random.Random, w: World) -> Draft:
    city = rng.choice(CITIES)
    temp = (await w.get("weather", "get_current", {"city": city}))["temp_c"]
    args = {"value": temp, "from_unit": "C", "to_unit": "K"}
    res = await w.get("units", "convert", args)
    prompt = rng.choice(
        [
            f"Get the current temperature in {city} and convert it to Kelvin with the units server.",
            f"What is the temperature in {city} right now, in kelvin?",
        ]
    )
    return Draft(
        {"city": city},
        prompt,
        [Call("weather", "get_current", {"city": city}), Call("units", "convert", args)],
        answer=num(res["result"]),
    )


@template("spending_in_currency", 3, ("bank", "units"))
async def _spending_fx(rng: random.Random, w: World) -> Draft:
    summary = await w.get("bank", "get_spending_summary")
    cat = rng.choice(summary["by_category"])
    cur = rng.choice(["EUR", "GBP", "CAD", "JPY"])
    args = {"amount": cat["spent"], "from_currency": "USD", "to_currency": cur}
    res = await w.get("units", "convert_currency", args)
    prompt = rng.choice(
        [
            f"How much did I spend on {cat['category']} last month? Give the amount in {cur}.",
            f"Check my {cat['category']} spending for {summary['month']} and convert it from USD to {cur}.",
        ]
    )
    return Draft(
        {"cat": cat["category"], "cur": cur},
        prompt,
        [Call("bank", "get_spending_summary", {}), Call("units", "convert_currency", args)],
        answer=num(res["result"]),
    )


@template("timezone_call_schedule", 3, ("timezones", "calendar"))
async def _tz_cal(rng: random.Random, w: World) -> Draft:
    city = rng.choice(["London", "Paris", "Berlin", "Tokyo", "Sydney", "Dubai", "Singapore", "San Francisco"])
    d, t = rng.choice(DATES), rng.choice(["08:00", "09:00", "15:00", "16:00", "17:00", "18:00"])
    args = {"time": f"{d} {t}", "from_timezone": city, "to_timezone": "America/New_York"}
    res = await w.get("timezones", "convert", args)
    local_d, local_t = res["to"]["time"].split(" ")
    title = f"Call with {city} office"
    prompt = rng.choice(
        [
            f"Schedule '{title}' in my calendar for {t} {city} time on {d}. My calendar is in New York time, "
            f"so convert it first.",
            f"Convert {t} on {d} in {city} to New York time and create a calendar event '{title}' at that time.",
        ]
    )
    return Draft(
        {"city": city, "d": d, "t": t},
        prompt,
        [
            Call("timezones", "convert", args),
            Call("calendar", "create_event", {"title": title, "date": local_d, "start_time": local_t}),
        ],
        expected_state=[
            state(
                "calendar",
                "search",
                {"query": title},
                {"events": [{"title": title, "date": local_d, "start": local_t}]},
            )
        ],
    )
