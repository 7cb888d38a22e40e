"""Level-2 task templates: two calls, usually look-up-then-act on one server.

Importing this module registers them in :data:`~atlas_plugins.envs.taskgen.language.TEMPLATES`;
the package imports the levels in order (1, 2, 3).
"""

from __future__ import annotations

import random
from typing import Any

from atlas_plugins.envs.taskgen.language import (
    CITIES,
    DATES,
    MESSAGES,
    NOTE_BODIES,
    TIMES,
    Call,
    Draft,
    World,
    _accounts,
    _contacts,
    _products,
    num,
    state,
    template,
)


@template("files_line_count", 2, ("files",))
async def _files_lines(rng: random.Random, w: World) -> Draft:
    files = [i for i in (await w.get("files", "list_items", {"recursive": True}))["items"] if i["type"] == "file"]
    f = rng.choice(files)
    det = await w.get("files", "get_details", {"path": f["path"]})
    prompt = rng.choice(
        [
            f"Find the file named '{f['name']}' and tell me how many lines it has.",
            f"How many lines are in the file {f['name']}? Search for it first.",
        ]
    )
    return Draft(
        {"path": f["path"]},
        prompt,
        [Call("files", "search", {"pattern": f["name"]}), Call("files", "get_details", {"path": f["path"]})],
        answer=num(det["lines"]),
    )


@template("contacts_text_message", 2, ("contacts",))
async def _contact_sms(rng: random.Random, w: World) -> Draft:
    c, msg = rng.choice(await _contacts(w)), rng.choice(MESSAGES)
    prompt = rng.choice(
        [f"Find {c['name']} in my contacts and text them '{msg}'.", f"Send {c['name']} a text message saying '{msg}'."]
    )
    return Draft(
        {"c": c["id"], "msg": msg},
        prompt,
        [
            Call("contacts", "search", {"query": c["name"]}),
            Call("contacts", "send_message", {"contact_id": c["id"], "text": msg}),
        ],
        expected_state=[
            state("contacts", "list_sent_messages", {}, {"messages": [{"contact_id": c["id"], "text": msg}]})
        ],
    )


@template("contacts_then_email", 2, ("contacts", "email"))
async def _contact_email_send(rng: random.Random, w: World) -> Draft:
    c, msg = rng.choice(await _contacts(w)), rng.choice(MESSAGES)
    subject = rng.choice(["Quick question", "Hello", "Update", "Tomorrow"])
    prompt = rng.choice(
        [
            f"Find {c['name']}'s email address and send them an email with subject '{subject}' saying '{msg}'.",
            f"Email {c['name']} (look up the address in contacts): subject '{subject}', body '{msg}'.",
        ]
    )
    return Draft(
        {"c": c["id"], "msg": msg, "subject": subject},
        prompt,
        [
            Call("contacts", "search", {"query": c["name"]}),
            Call("email", "send_message", {"to": [c["email"]], "subject": subject, "body": msg}),
        ],
        expected_state=[
            state(
                "email",
                "list_messages",
                {"folder": "sent", "limit": 50},
                {"messages": [{"to": [c["email"]], "subject": subject}]},
            )
        ],
    )


async def _notes(w: World) -> list[dict[str, Any]]:
    return (await w.get("notes", "list_items"))["notes"]


@template("notes_add_tag", 2, ("notes",))
async def _notes_tag(rng: random.Random, w: World) -> Draft | None:
    n = rng.choice(await _notes(w))
    tag = rng.choice(["urgent", "later", "dessert", "work", "review", "favorite", "archive-me"])
    if tag in n["tags"]:
        return None
    prompt = rng.choice(
        [f"Tag my note '{n['title']}' with '{tag}'.", f"Find the note '{n['title']}' and add the tag '{tag}'."]
    )
    return Draft(
        {"n": n["id"], "tag": tag},
        prompt,
        [Call("notes", "search", {"query": n["title"]}), Call("notes", "add_tag", {"note_id": n["id"], "tag": tag})],
        expected_state=[state("notes", "get_details", {"note_id": n["id"]}, {"tags": [tag]})],
    )


@template("notes_append", 2, ("notes",))
async def _notes_append(rng: random.Random, w: World) -> Draft:
    n, text = rng.choice(await _notes(w)), rng.choice(NOTE_BODIES)
    prompt = rng.choice(
        [f"Add the line '{text}' to my note '{n['title']}'.", f"Append '{text}' to the note titled '{n['title']}'."]
    )
    return Draft(
        {"n": n["id"], "text": text},
        prompt,
        [
            Call("notes", "search", {"query": n["title"]}),
            Call("notes", "append_to_note", {"note_id": n["id"], "text": text}),
        ],
        expected_state=[state("notes", "get_details", {"note_id": n["id"]}, text)],
    )


async def _open_tasks(w: World) -> list[dict[str, Any]]:
    return (await w.get("tasks", "list_items"))["tasks"]


@template("tasks_complete", 2, ("tasks",))
async def _tasks_complete(rng: random.Random, w: World) -> Draft:
    t = rng.choice(await _open_tasks(w))
    prompt = rng.choice([f"Mark the task '{t['title']}' as done.", f"Find my task '{t['title']}' and complete it."])
    return Draft(
        {"t": t["id"]},
        prompt,
        [Call("tasks", "search", {"query": t["title"]}), Call("tasks", "complete_task", {"task_id": t["id"]})],
        expected_state=[state("tasks", "get_details", {"task_id": t["id"]}, {"status": "done"})],
    )


@template("tasks_set_priority", 2, ("tasks",))
async def _tasks_priority(rng: random.Random, w: World) -> Draft | None:
    t, prio = rng.choice(await _open_tasks(w)), rng.choice(["low", "normal", "high", "urgent"])
    if t["priority"] == prio:
        return None
    prompt = rng.choice(
        [f"Set the priority of the task '{t['title']}' to {prio}.", f"Change task '{t['title']}' to {prio} priority."]
    )
    return Draft(
        {"t": t["id"], "prio": prio},
        prompt,
        [
            Call("tasks", "search", {"query": t["title"]}),
            Call("tasks", "update_task", {"task_id": t["id"], "priority": prio}),
        ],
        expected_state=[state("tasks", "get_details", {"task_id": t["id"]}, {"priority": prio})],
    )


@template("shop_add_to_cart", 2, ("shop",))
async def _shop_cart(rng: random.Random, w: World) -> Draft:
    # Out-of-stock picks are left in on purpose: the solvability filter drops them.
    p, q = rng.choice(await _products(w)), rng.randint(1, 3)
    prompt = rng.choice(
        [f"Add {q} of the {p['name']} to my cart.", f"Find the {p['name']} in the shop and put {q} in the cart."]
    )
    return Draft(
        {"sku": p["sku"], "q": q},
        prompt,
        [Call("shop", "search", {"query": p["name"]}), Call("shop", "add_to_cart", {"sku": p["sku"], "quantity": q})],
        expected_state=[state("shop", "view_cart", {}, {"items": [{"sku": p["sku"], "quantity": q}]})],
    )


@template("shop_product_brand", 2, ("shop",))
async def _shop_brand(rng: random.Random, w: World) -> Draft:
    p = rng.choice(await _products(w))
    det = await w.get("shop", "get_details", {"sku": p["sku"]})
    prompt = rng.choice(
        [f"Which brand makes the {p['name']} sold in the shop?", f"Look up the {p['name']} and tell me its brand."]
    )
    return Draft(
        {"sku": p["sku"]},
        prompt,
        [Call("shop", "search", {"query": p["name"]}), Call("shop", "get_details", {"sku": p["sku"]})],
        answer=det["brand"],
    )


@template("bank_transfer", 2, ("bank",))
async def _bank_transfer(rng: random.Random, w: World) -> Draft:
    accs = [a for a in await _accounts(w) if a["type"] in ("checking", "savings")]
    src, dst = rng.sample(accs, 2)
    amt = rng.choice([25, 50, 100, 150, 200, 300, 500])
    prompt = rng.choice(
        [
            f"Transfer ${amt} from my {src['name']} account to my {dst['name']} account.",
            f"Move {amt} dollars from {src['name']} to {dst['name']}.",
        ]
    )
    return Draft(
        {"src": src["id"], "dst": dst["id"], "amt": amt},
        prompt,
        [
            Call("bank", "list_accounts", {}),
            Call("bank", "transfer", {"from_account": src["id"], "to_account": dst["id"], "amount": amt}),
        ],
        expected_state=[
            state("bank", "get_balance", {"account_id": dst["id"]}, {"balance": round(dst["balance"] + amt, 2)})
        ],
    )


@template("bank_pay_bill", 2, ("bank",))
async def _bank_pay(rng: random.Random, w: World) -> Draft:
    payee = rng.choice((await w.get("bank", "list_payees"))["payees"])
    checking = next(a for a in await _accounts(w) if a["type"] == "checking")
    amt = rng.choice([45, 60, 80, 120, 95, 150])
    prompt = rng.choice([f"Pay ${amt} to {payee['name']}.", f"Pay my {payee['name']} bill of {amt} dollars."])
    return Draft(
        {"payee": payee["id"], "amt": amt},
        prompt,
        [
            Call("bank", "list_payees", {}),
            Call("bank", "pay_bill", {"payee_id": payee["id"], "amount": amt}, key=("payee_id", "amount")),
        ],
        expected_state=[
            state(
                "bank", "get_balance", {"account_id": checking["id"]}, {"balance": round(checking["balance"] - amt, 2)}
            )
        ],
    )


@template("calendar_reschedule", 2, ("calendar",))
async def _cal_move(rng: random.Random, w: World) -> Draft | None:
    events = (await w.get("calendar", "list_events", {"date_from": "2026-03-02", "date_to": "2026-03-31"}))["events"]
    titles: dict[str, list[dict[str, Any]]] = {}
    for e in events:  # only events whose title is unique, so "the event 'X'" names one event
        titles.setdefault(e["title"], []).append(e)
    ev = rng.choice([v[0] for v in titles.values() if len(v) == 1])
    d, t = rng.choice(DATES), rng.choice(TIMES)
    if (d, t) == (ev["date"], ev["start"]):
        return None
    prompt = rng.choice(
        [f"Move my event '{ev['title']}' to {d} at {t}.", f"Reschedule '{ev['title']}' to {d}, starting {t}."]
    )
    return Draft(
        {"e": ev["id"], "d": d, "t": t},
        prompt,
        [
            Call("calendar", "search", {"query": ev["title"]}),
            Call("calendar", "update_event", {"event_id": ev["id"], "date": d, "start_time": t}),
        ],
        expected_state=[state("calendar", "get_details", {"event_id": ev["id"]}, {"date": d, "start": t})],
    )


@template("maps_place_address", 2, ("maps",))
async def _maps_address(rng: random.Random, w: World) -> Draft | None:
    city = rng.choice(CITIES)
    cat = rng.choice(["cafe", "museum", "park", "library", "gym", "bar"])
    places = (await w.get("maps", "search", {"query": cat, "city": city}))["places"]
    if not places:
        return None
    p = places[0]
    det = await w.get("maps", "get_details", {"place_id": p["id"]})
    prompt = rng.choice(
        [
            f"What is the address of {p['name']} in {city}?",
            f"Find {p['name']} in {city} on the map and give me its address.",
        ]
    )
    return Draft(
        {"p": p["id"]},
        prompt,
        [
            Call("maps", "search", {"query": p["name"], "city": city}, key=("query",)),
            Call("maps", "get_details", {"place_id": p["id"]}),
        ],
        answer=det["address"],
    )


@template("email_reply", 2, ("email",))
async def _email_reply(rng: random.Random, w: World) -> Draft:
    msgs = (await w.get("email", "list_messages", {"limit": 50}))["messages"]
    m, body = rng.choice(msgs), rng.choice(MESSAGES)
    subj = m["subject"] if m["subject"].lower().startswith("re:") else f"Re: {m['subject']}"
    prompt = rng.choice(
        [
            f"Reply to the email '{m['subject']}' saying '{body}'.",
            f"Find the message with subject '{m['subject']}' and reply '{body}'.",
        ]
    )
    return Draft(
        {"m": m["id"], "body": body},
        prompt,
        [
            Call("email", "search", {"query": m["subject"]}, key=()),
            Call("email", "reply", {"message_id": m["id"], "body": body}),
        ],
        expected_state=[
            state(
                "email",
                "list_messages",
                {"folder": "sent", "limit": 50},
                {"messages": [{"subject": subj, "to": [m["from"]]}]},
            )
        ],
    )
