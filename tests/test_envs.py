"""The embedded MCP toolspace (atlas_plugins.envs): real servers, no mocks.

In-process checks use ``connect(server)`` (the full MCP request path, without a subprocess);
stdio and hub checks spawn real processes.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from atlas_plugins.envs import EMBEDDED_SERVERS, EPISODE_META_KEY, SEED_META_KEY, stdio_command
from atlas_plugins.mcp_compat import StdioServerParameters, connect, server_tools

REPO = Path(__file__).resolve().parents[1]


def _build(name: str, seed: int = 0) -> Any:
    return importlib.import_module(EMBEDDED_SERVERS[name].module).build(seed)


def _meta(episode: str, seed: int | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {EPISODE_META_KEY: episode}
    if seed is not None:
        m[SEED_META_KEY] = seed
    return m


def _json(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def _error(result: Any) -> str:
    assert result.is_error, f"expected an error, got {result.content[0].text[:300]}"
    return result.content[0].text


def _stdio(name: str, env: dict[str, str] | None = None) -> Any:
    cmd, args = stdio_command(name)
    return connect(StdioServerParameters(command=cmd, args=args, cwd=str(REPO), env=env or {}))


# --------------------------------------------------------------------------- registry


def test_registry_module_does_not_import_mcp() -> None:
    # Load envs/__init__.py alone (not the atlas_plugins package, whose imports belong to others).
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('envs_probe', {str(REPO / 'atlas_plugins/envs/__init__.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['envs_probe'] = mod; spec.loader.exec_module(mod)\n"
        "assert len(mod.EMBEDDED_SERVERS) >= 12\n"
        "print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_registry_contract() -> None:
    assert len(EMBEDDED_SERVERS) >= 12
    for name, spec in EMBEDDED_SERVERS.items():
        assert spec.name == name and spec.module == f"atlas_plugins.envs.{name}"
        assert spec.summary and "\n" not in spec.summary
        assert stdio_command(name) == (sys.executable, ["-m", spec.module])
    with pytest.raises(ValueError, match="known"):
        stdio_command("nope")


# --------------------------------------------------------------------------- catalogue


def test_catalogue_size_descriptions_and_build_time() -> None:
    async def main() -> tuple[dict[str, int], dict[str, float]]:
        counts, times = {}, {}
        for name in EMBEDDED_SERVERS:
            importlib.import_module(EMBEDDED_SERVERS[name].module)
            t = time.process_time()
            srv = _build(name)
            times[name] = time.process_time() - t
            tools = await server_tools(srv)
            counts[name] = len(tools)
            assert len({t.name for t in tools}) == len(tools)
            for tool in tools:
                assert tool.description and tool.description.strip(), f"{name}:{tool.name} has no description"
                for arg, schema in tool.input_schema.get("properties", {}).items():
                    assert schema.get("description"), f"{name}:{tool.name}({arg}) has no description"
        return counts, times

    counts, times = anyio.run(main)
    assert len(counts) >= 12
    assert sum(counts.values()) >= 150, counts
    assert all(c >= 10 for c in counts.values()), counts
    # Budget is <50 ms a server; allow slack for loaded CI machines.
    assert sum(times.values()) / len(times) < 0.15, times


def test_names_overlap_across_servers() -> None:
    async def main() -> dict[str, list[str]]:
        owners: dict[str, list[str]] = {}
        for name in EMBEDDED_SERVERS:
            for tool in await server_tools(_build(name)):
                owners.setdefault(tool.name, []).append(name)
        return owners

    owners = anyio.run(main)
    for shared in ("search", "get_details", "list_items", "send_message", "convert"):
        assert len(owners.get(shared, [])) >= 2, (shared, owners.get(shared))


# --------------------------------------------------------------------------- every server, in process

# (tool, arguments, expected): expected None = success; a string = error whose text contains it.
SCRIPTS: dict[str, list[tuple[str, dict[str, Any], str | None]]] = {
    "calendar": [
        ("get_current_date", {}, None),
        ("list_calendars", {}, None),
        ("create_calendar", {"name": "gym", "color": "red"}, None),
        ("create_calendar", {"name": "gym"}, "already exists"),
        ("create_event", {"title": "Swim", "date": "2026-03-03", "start_time": "07:00", "calendar": "gym"}, None),
        ("create_event", {"title": "x", "date": "2026-13-01", "start_time": "07:00"}, "YYYY-MM-DD"),
        ("create_event", {"title": "x", "date": "today", "start_time": "25:00"}, "HH:MM"),
        ("create_event", {"title": "x", "date": "today", "start_time": "10:00", "calendar": "wrk"}, "did you mean 'work'"),
        ("list_events", {"calendar": "gym"}, None),
        ("update_event", {"event_id": "e1", "start_time": "16:00"}, None),
        ("add_attendee", {"event_id": "e1", "email": "sam@example.com"}, None),
        ("add_attendee", {"event_id": "e1", "email": "not-an-email"}, "name@example.com"),
        ("remove_attendee", {"event_id": "e1", "email": "sam@example.com"}, None),
        ("set_reminder", {"event_id": "e1", "minutes_before": 30}, None),
        ("find_free_slots", {"date": "2026-03-04", "duration_minutes": 60}, None),
        ("get_agenda", {"date": "2026-03-04"}, None),
        ("search", {"query": "standup"}, None),
        ("get_details", {"event_id": "e999"}, "unknown event id 'e999'"),
        ("delete_event", {"event_id": "e2"}, None),
    ],
    "email": [
        ("list_folders", {}, None),
        ("list_messages", {"unread_only": True}, None),
        ("list_messages", {"folder": "spam"}, "valid values"),
        ("get_details", {"message_id": "m5"}, None),
        ("search", {"query": "invoice"}, None),
        ("send_message", {"to": ["sam@example.com"], "subject": "Hi", "body": "Hello"}, None),
        ("send_message", {"to": ["sam"], "subject": "Hi", "body": "Hello"}, "name@example.com"),
        ("reply", {"message_id": "m5", "body": "Thanks!", "reply_all": True}, None),
        ("forward", {"message_id": "m5", "to": ["sam@example.com"], "note": "FYI"}, None),
        ("mark_read", {"message_id": "m6", "read": False}, None),
        ("move_message", {"message_id": "m6", "folder": "archive"}, None),
        ("create_draft", {"to": ["sam@example.com"], "subject": "Draft", "body": "..."}, None),
        ("send_draft", {"draft_id": "m15"}, None),
        ("send_draft", {"draft_id": "m1"}, "not a draft"),
        ("add_label", {"message_id": "m7", "label": "todo"}, None),
        ("list_labels", {}, None),
        ("delete_message", {"message_id": "m7"}, None),
        ("delete_message", {"message_id": "m7"}, None),
        ("get_details", {"message_id": "m7"}, "unknown message id"),
    ],
    "contacts": [
        ("list_contacts", {}, None),
        ("list_contacts", {"group": "nope"}, "groups:"),
        ("get_details", {"contact_id": "c3"}, None),
        ("get_details", {"contact_id": "c99"}, "c1..c12"),
        ("search", {"query": "a"}, None),
        ("add_contact", {"name": "Jane Doe", "email": "jane@doe.org", "phone": "+1-555-0199", "groups": ["gym"]}, None),
        ("add_contact", {"name": "Jane Again", "email": "jane@doe.org"}, "already exists"),
        ("find_by_email", {"email": "JANE@doe.org"}, None),
        ("update_contact", {"contact_id": "c13", "city": "Paris"}, None),
        ("update_contact", {"contact_id": "c13", "phone": "call me"}, "invalid phone"),
        ("list_groups", {}, None),
        ("add_to_group", {"contact_id": "c13", "group": "friends"}, None),
        ("remove_from_group", {"contact_id": "c13", "group": "gym"}, None),
        ("upcoming_birthdays", {"days": 30}, None),
        ("send_message", {"contact_id": "c13", "text": "hi"}, None),
        ("list_sent_messages", {"contact_id": "c13"}, None),
        ("delete_contact", {"contact_id": "c13"}, None),
    ],
    "files": [
        ("list_items", {}, None),
        ("list_items", {"path": "data", "recursive": True}, None),
        ("read_file", {"path": "notes/todo.txt"}, None),
        ("read_file", {"path": "missing.txt"}, "no such file"),
        ("write_file", {"path": "out/report.md", "content": "# Report\nok\n"}, None),
        ("write_file", {"path": "out/report.md", "content": "x", "overwrite": False}, "already exists"),
        ("append_file", {"path": "out/report.md", "content": "more\n"}, None),
        ("replace_in_file", {"path": "out/report.md", "old": "ok", "new": "fine"}, None),
        ("copy", {"source": "out", "destination": "backup"}, None),
        ("move", {"source": "backup/report.md", "destination": "archive.md"}, None),
        ("make_directory", {"path": "a/b/c"}, None),
        ("get_details", {"path": "archive.md"}, None),
        ("search", {"pattern": "*.md"}, None),
        ("grep", {"text": "ERROR", "case_sensitive": True}, None),
        ("tree", {"max_depth": 2}, None),
        ("delete", {"path": "a"}, "not empty"),
        ("delete", {"path": "a", "recursive": True}, None),
        ("read_file", {"path": "../../etc/passwd"}, "'..'"),
        ("read_file", {"path": "/etc/passwd"}, "absolute"),
        ("delete", {"path": "."}, "workspace root"),
    ],
    "weather": [
        ("get_current", {"city": "Paris"}, None),
        ("get_current", {"city": "Atlantis"}, "supported"),
        ("get_forecast", {"city": "JFK", "days": 5, "units": "imperial"}, None),
        ("get_hourly", {"city": "Tokyo", "date": "tomorrow"}, None),
        ("get_hourly", {"city": "Tokyo", "date": "2027-01-01"}, "historical"),
        ("list_cities", {}, None),
        ("search", {"query": "US"}, None),
        ("get_alerts", {"city": "Singapore"}, None),
        ("get_air_quality", {"city": "Mumbai"}, None),
        ("get_sun_times", {"city": "Sydney"}, None),
        ("compare_cities", {"cities": ["Paris", "Berlin", "Madrid"]}, None),
        ("get_historical_average", {"city": "London", "month": 7}, None),
        ("convert", {"value": 20, "from_unit": "C", "to_unit": "F"}, None),
        ("convert", {"value": 20, "from_unit": "C", "to_unit": "mph"}, "temperatures"),
        ("add_favorite_city", {"city": "nyc"}, None),
        ("list_favorite_cities", {}, None),
        ("remove_favorite_city", {"city": "New York"}, None),
        ("remove_favorite_city", {"city": "New York"}, "not a favourite"),
    ],
    "units": [
        ("convert", {"value": 5, "from_unit": "km", "to_unit": "miles"}, None),
        ("convert", {"value": 1, "from_unit": "kg", "to_unit": "m"}, "same thing"),
        ("convert", {"value": -500, "from_unit": "C", "to_unit": "F"}, "absolute zero"),
        ("convert_many", {"values": [1, 2, 3], "from_unit": "gal", "to_unit": "l"}, None),
        ("list_categories", {}, None),
        ("list_units", {"category": "mass"}, None),
        ("get_details", {"unit": "lbs"}, None),
        ("compare_quantities", {"a": 5, "a_unit": "km", "b": 3, "b_unit": "mi"}, None),
        ("parse_quantity", {"text": "5 ft 11 in"}, None),
        ("format_duration", {"seconds": 3725}, None),
        ("list_currencies", {}, None),
        ("convert_currency", {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}, None),
        ("convert_currency", {"amount": 100, "from_currency": "USD", "to_currency": "XYZ"}, "unknown currency"),
        ("set_exchange_rate", {"currency": "EUR", "units_per_usd": 0.5}, None),
        ("get_conversion_history", {}, None),
    ],
    "math": [
        ("add", {"numbers": [1, 2, 3.5]}, None),
        ("subtract", {"a": 10, "b": 4}, None),
        ("multiply", {"numbers": [2, 3, 4]}, None),
        ("divide", {"a": 7, "b": 2}, None),
        ("divide", {"a": 1, "b": 0}, "division by zero"),
        ("power", {"base": 2, "exponent": 10}, None),
        ("round_number", {"x": 3.14159, "digits": 2}, None),
        ("evaluate", {"expression": "(12.5 + 7) * 3 / sqrt(16)"}, None),
        ("evaluate", {"expression": "__import__('os').system('true')"}, "only numbers"),
        ("evaluate", {"expression": "nosuch(2)"}, "unknown function"),
        ("describe", {"numbers": [1, 2, 2, 3, 10]}, None),
        ("stdev", {"numbers": [1, 2, 3, 4]}, None),
        ("percentile", {"numbers": [1, 2, 3, 4], "p": 90}, None),
        ("correlation", {"x": [1, 2, 3], "y": [2, 4, 7]}, None),
        ("correlation", {"x": [1, 2, 3], "y": [2, 4]}, "same length"),
        ("linear_regression", {"x": [1, 2, 3], "y": [2, 4, 6], "predict_at": 10}, None),
        ("number_theory", {"n": 97}, None),
        ("gcd_lcm", {"numbers": [12, 18]}, None),
        ("store_value", {"name": "rate", "value": 0.07}, None),
        ("evaluate", {"expression": "1000 * (1 + rate) ^ 2"}, None),
        ("recall_value", {"name": "rate"}, None),
        ("recall_value", {"name": "nope"}, "unknown memory name"),
        ("list_memory", {}, None),
    ],
    "shop": [
        ("list_categories", {}, None),
        ("list_items", {"category": "kitchen", "sort_by": "price"}, None),
        ("search", {"query": "headphones"}, None),
        ("get_details", {"sku": "SKU-1002"}, None),
        ("restock_item", {"sku": "SKU-1002", "quantity": 10}, None),
        ("check_stock", {"sku": "SKU-1002"}, None),
        ("add_to_cart", {"sku": "SKU-1002", "quantity": 2}, None),
        ("add_to_cart", {"sku": "SKU-1002", "quantity": 99}, "in stock"),
        ("add_to_cart", {"sku": "SKU-9999"}, "unknown sku"),
        ("apply_coupon", {"code": "SPRING20"}, "expired"),
        ("apply_coupon", {"code": "SAVE10"}, None),
        ("view_cart", {"shipping_method": "express"}, None),
        ("remove_from_cart", {"sku": "SKU-1002", "quantity": 1}, None),
        ("checkout", {"shipping_address": "1 Main St, Springfield"}, None),
        ("checkout", {"shipping_address": "1 Main St, Springfield"}, "cart is empty"),
        ("list_orders", {}, None),
        ("get_order", {"order_id": "ORD-1003"}, None),
        ("track_shipment", {"order_id": "ORD-1002"}, None),
        ("cancel_order", {"order_id": "ORD-1003"}, None),
        ("cancel_order", {"order_id": "ORD-1001"}, "only 'processing'"),
        ("return_item", {"order_id": "ORD-1002", "sku": "SKU-1001"}, "only delivered"),
    ],
    "travel": [
        ("list_airports", {}, None),
        ("search_flights", {"origin": "New York", "destination": "LHR", "date": "2026-03-03"}, None),
        ("search_flights", {"origin": "JFK", "destination": "JFK", "date": "2026-03-03"}, "same airport"),
        ("search_flights", {"origin": "JFK", "destination": "LHR", "date": "2025-01-01"}, "in the past"),
        ("search_hotels", {"city": "Paris", "check_in": "2026-03-10", "nights": 2}, None),
        ("get_details", {"item_id": "H-CDG-1"}, None),
        ("book_hotel", {"hotel_id": "H-CDG-1", "check_in": "2026-03-10", "nights": 2}, None),
        ("book_flight", {"flight_id": "XX1-AAABBB-2026"}, "invalid flight id"),
        ("change_flight", {"booking_id": "BK-1001", "new_flight_id": "NW100-JFKCDG-20260316"}, "no flight"),
        ("list_bookings", {}, None),
        ("get_booking", {"booking_id": "BK-1001"}, None),
        ("choose_seat", {"booking_id": "BK-1001", "seat": "99Z"}, "invalid seat"),
        ("check_in", {"booking_id": "BK-1001"}, "48 hours"),
        ("get_baggage_policy", {"airline": "NW"}, None),
        ("send_message", {"booking_id": "BK-1003", "message": "Late arrival, around 23:00"}, None),
        ("cancel_booking", {"booking_id": "BK-1003"}, None),
        ("cancel_booking", {"booking_id": "BK-1003"}, "already cancelled"),
    ],
    "notes": [
        ("list_items", {}, None),
        ("create_note", {"title": "Ideas", "body": "one", "notebook": "Scratch", "tags": ["Idea"]}, None),
        ("get_details", {"note_id": "n7"}, None),
        ("update_note", {"note_id": "n7", "title": "Big ideas"}, None),
        ("update_note", {"note_id": "n7"}, "nothing to change"),
        ("append_to_note", {"note_id": "n7", "text": "two"}, None),
        ("search", {"query": "big ideas"}, None),
        ("add_tag", {"note_id": "n7", "tag": "urgent"}, None),
        ("remove_tag", {"note_id": "n7", "tag": "nope"}, "no tag"),
        ("list_tags", {}, None),
        ("list_notebooks", {}, None),
        ("move_to_notebook", {"note_id": "n7", "notebook": "Work"}, None),
        ("pin_note", {"note_id": "n7"}, None),
        ("archive_note", {"note_id": "n1"}, None),
        ("delete_note", {"note_id": "n2"}, None),
        ("get_details", {"note_id": "n2"}, "unknown note id"),
    ],
    "bank": [
        ("list_accounts", {}, None),
        ("get_balance", {"account_id": "ACC-1001"}, None),
        ("get_details", {"account_id": "acc-1003"}, None),
        ("list_transactions", {"account_id": "ACC-1001", "date_from": "2026-02-01", "date_to": "2026-02-28"}, None),
        ("search", {"query": "payroll"}, None),
        ("transfer", {"from_account": "ACC-1002", "to_account": "ACC-1001", "amount": 250}, None),
        ("transfer", {"from_account": "ACC-1001", "to_account": "ACC-1002", "amount": 999999}, "insufficient funds"),
        ("list_payees", {}, None),
        ("add_payee", {"name": "Gym Co", "account_number": "GYM-42"}, None),
        ("pay_bill", {"payee_id": "P5", "amount": 45}, None),
        ("pay_bill", {"payee_id": "P1", "amount": 80, "date": "2026-03-15"}, None),
        ("pay_bill", {"payee_id": "P9", "amount": 80}, "P1..P5"),
        ("list_scheduled_payments", {}, None),
        ("cancel_scheduled_payment", {"payment_id": "S1"}, None),
        ("get_spending_summary", {"month": "2026-02"}, None),
        ("convert", {"amount": 100, "from_currency": "USD", "to_currency": "JPY"}, None),
        ("list_cards", {}, None),
        ("freeze_card", {"card_id": "CARD-1"}, None),
    ],
    "timezones": [
        ("get_current_time", {"timezone": "Tokyo"}, None),
        ("get_current_time", {"timezone": "Mars/Base"}, "unknown time zone"),
        ("convert", {"time": "2026-03-09 09:00", "from_timezone": "New York", "to_timezone": "Europe/London"}, None),
        ("list_timezones", {"region": "Europe"}, None),
        ("search", {"query": "berlin"}, None),
        ("get_details", {"timezone": "Australia/Sydney"}, None),
        ("time_difference", {"timezone_a": "London", "timezone_b": "New York", "date": "2026-03-20"}, None),
        ("find_meeting_time", {"timezones": ["New York", "London"], "date": "2026-03-03"}, None),
        ("is_business_hours", {"timezone": "Europe/Paris"}, None),
        ("add_duration", {"start": "2026-03-07 12:00", "hours": 24, "timezone": "New York"}, None),
        ("add_world_clock", {"timezone": "Asia/Tokyo", "label": "Tokyo office"}, None),
        ("list_world_clocks", {}, None),
        ("remove_world_clock", {"label": "Tokyo office"}, None),
        ("remove_world_clock", {"label": "Tokyo office"}, "no clock"),
    ],
    "maps": [
        ("search", {"query": "museum", "city": "Paris"}, None),
        ("get_details", {"place_id": "pl1"}, None),
        ("get_details", {"place_id": "pl9999"}, "unknown place id"),
        ("nearby", {"place_id": "pl1", "radius_km": 10}, None),
        ("geocode", {"address": "Eiffel Tower"}, None),
        ("reverse_geocode", {"lat": 48.85, "lon": 2.35}, None),
        ("get_directions", {"origin": "pl1", "destination": "pl3", "mode": "walking"}, None),
        ("get_directions", {"origin": "pl1", "destination": "pl30"}, "within one city"),
        ("distance_between", {"place_a": "pl1", "place_b": "pl30"}, None),
        ("list_categories", {}, None),
        ("get_opening_hours", {"place_id": "pl2"}, None),
        ("save_place", {"place_id": "pl3", "list_name": "NYC"}, None),
        ("list_saved_places", {}, None),
        ("remove_saved_place", {"place_id": "pl3", "list_name": "NYC"}, None),
        ("rate_place", {"place_id": "pl3", "stars": 5, "review": "Busy"}, None),
    ],
    "tasks": [
        ("list_items", {}, None),
        ("list_overdue", {}, None),
        ("create_task", {"title": "Buy paint", "project": "Home", "due": "tomorrow", "priority": "high"}, None),
        ("create_task", {"title": "x", "project": "nope"}, "unknown project"),
        ("create_task", {"title": "x", "priority": "asap"}, "valid values"),
        ("get_details", {"task_id": "t11"}, None),
        ("update_task", {"task_id": "t11", "status": "in_progress"}, None),
        ("assign_task", {"task_id": "t11", "assignee": "nobody"}, "team members"),
        ("add_comment", {"task_id": "t11", "text": "bought primer"}, None),
        ("search", {"query": "primer"}, None),
        ("complete_task", {"task_id": "t11"}, None),
        ("complete_task", {"task_id": "t11"}, "already done"),
        ("list_projects", {}, None),
        ("create_project", {"name": "Kitchen renovation"}, None),
        ("list_members", {}, None),
        ("delete_task", {"task_id": "t1"}, None),
    ],
}


async def _run_script(name: str, seed: int, episode: str) -> list[str]:
    """Run a server's script in process; returns the raw text of every result (for determinism)."""
    texts = []
    async with connect(_build(name, seed)) as client:
        for tool, args, expected in SCRIPTS[name]:
            r = await client.call_tool(tool, args, meta=_meta(episode))
            text = r.content[0].text if r.content else ""
            if expected is None:
                assert not r.is_error, f"{name}:{tool}({args}) failed: {text}"
                assert isinstance(json.loads(text), dict)
            else:
                assert r.is_error, f"{name}:{tool}({args}) should fail with {expected!r}, got {text[:200]}"
                assert expected in text, f"{name}:{tool}: {expected!r} not in {text!r}"
            texts.append(text)
    return texts


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_tool_in_process(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("atlas_plugins.envs._base._workdir", tmp_path)  # files: a fresh root per test
    async def main() -> None:
        called = {tool for tool, _, _ in SCRIPTS[name]}
        listed = {t.name for t in await server_tools(_build(name))}
        assert listed <= called, f"untested tools on {name}: {sorted(listed - called)}"
        first = await _run_script(name, 0, "run-a")
        second = await _run_script(name, 0, "run-a")  # a fresh server, same seed + call sequence
        assert first == second

    anyio.run(main)


def test_travel_book_change_and_check_in() -> None:
    async def main() -> None:
        async with connect(_build("travel")) as c:
            m = _meta("trip")
            flights = _json(await c.call_tool("search_flights", {"origin": "SFO", "destination": "Denver", "date": "tomorrow"}, meta=m))["flights"]
            assert len(flights) >= 2
            booking = _json(await c.call_tool("book_flight", {"flight_id": flights[0]["flight_id"]}, meta=m))["booking"]
            changed = _json(await c.call_tool("change_flight", {"booking_id": booking["booking_id"],
                                                                "new_flight_id": flights[1]["flight_id"]}, meta=m))
            assert changed["new_flight_id"] == flights[1]["flight_id"] and changed["change_fee"] == 75.0
            boarding = _json(await c.call_tool("check_in", {"booking_id": booking["booking_id"]}, meta=m))["boarding_pass"]
            assert boarding["seat"]
            after = _json(await c.call_tool("get_booking", {"booking_id": booking["booking_id"]}, meta=m))
            assert after["checked_in"] and after["flight_id"] == flights[1]["flight_id"]
            assert "checked in" in _error(await c.call_tool("cancel_booking", {"booking_id": booking["booking_id"]}, meta=m))

    anyio.run(main)


def test_seed_changes_world_but_not_shape() -> None:
    async def main() -> None:
        outs = []
        for seed in (0, 1):
            async with connect(_build("contacts", seed)) as c:
                outs.append(_json(await c.call_tool("list_contacts", {}))["contacts"])
        assert [len(o) for o in outs] == [12, 12]
        assert outs[0] != outs[1]
        # A per-episode seed in _meta overrides the server seed for that episode only.
        async with connect(_build("contacts", 0)) as c:
            via_meta = _json(await c.call_tool("list_contacts", {}, meta=_meta("e-seeded", seed=1)))["contacts"]
            default = _json(await c.call_tool("list_contacts", {}, meta=_meta("e-plain")))["contacts"]
        assert via_meta == outs[1] and default == outs[0]

    anyio.run(main)


def test_files_symlink_escape_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("atlas_plugins.envs._base._workdir", tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")

    async def main() -> None:
        async with connect(_build("files")) as c:
            _json(await c.call_tool("list_items", {}, meta=_meta("ep-sym")))  # creates the episode root
            root = tmp_path / "ep-sym"
            (root / "link").symlink_to(outside, target_is_directory=True)
            (root / "filelink.txt").symlink_to(outside / "secret.txt")
            for path in ("link/secret.txt", "filelink.txt"):
                msg = _error(await c.call_tool("read_file", {"path": path}, meta=_meta("ep-sym")))
                assert "outside the workspace" in msg
            msg = _error(await c.call_tool("write_file", {"path": "link/new.txt", "content": "x"}, meta=_meta("ep-sym")))
            assert "outside the workspace" in msg
            grep = _json(await c.call_tool("grep", {"text": "secret"}, meta=_meta("ep-sym")))
            assert all("top secret" not in m["text"] for m in grep["matches"])
        assert not (outside / "new.txt").exists()

    anyio.run(main)


# --------------------------------------------------------------------------- stdio processes


def test_three_stdio_servers(tmp_path: Path) -> None:
    env = {"ATLAS_ENV_WORKDIR": str(tmp_path / "work"), "ATLAS_ENV_SEED": "0"}
    expected = {}

    async def counts() -> None:
        for name in ("calendar", "files", "shop"):
            expected[name] = len(await server_tools(_build(name)))

    anyio.run(counts)

    async def calendar() -> None:
        async with _stdio("calendar", env) as c:
            assert len((await c.list_tools())) == expected["calendar"]
            # write, then read it back in the same episode
            created = _json(await c.call_tool(
                "create_event", {"title": "Dentist follow-up", "date": "2026-03-05", "start_time": "15:00",
                                 "duration_minutes": 30, "calendar": "personal"}, meta=_meta("ep1")))["created"]
            listed = _json(await c.call_tool("list_events", {"date_from": "2026-03-05", "date_to": "2026-03-05"},
                                             meta=_meta("ep1")))["events"]
            assert created["id"] in [e["id"] for e in listed]
            # another episode does not see it
            other = _json(await c.call_tool("list_events", {"date_from": "2026-03-05", "date_to": "2026-03-05"},
                                            meta=_meta("ep2")))["events"]
            assert created["id"] not in [e["id"] for e in other]
            assert all(e["title"] != "Dentist follow-up" for e in other)
            # invalid argument -> is_error with a helpful message
            msg = _error(await c.call_tool("get_details", {"event_id": "e99"}, meta=_meta("ep1")))
            assert "unknown event id 'e99'" in msg and "e1.." in msg
            msg = _error(await c.call_tool("create_event", {"title": "x", "date": "next week", "start_time": "10:00"}))
            assert "YYYY-MM-DD" in msg
            # the subprocess agrees with an in-process server with the same seed (determinism)
            stdio_view = _json(await c.call_tool("list_events", {}, meta=_meta("fresh")))
        async with connect(_build("calendar", 0)) as local:
            assert _json(await local.call_tool("list_events", {}, meta=_meta("fresh"))) == stdio_view

    async def files() -> None:
        async with _stdio("files", env) as c:
            assert len((await c.list_tools())) == expected["files"]
            _json(await c.call_tool("write_file", {"path": "reports/summary.txt", "content": "Q1 up 12%\n"}, meta=_meta("ep1")))
            read = _json(await c.call_tool("read_file", {"path": "reports/summary.txt"}, meta=_meta("ep1")))
            assert read["content"] == "Q1 up 12%"
            assert (tmp_path / "work" / "ep1" / "reports" / "summary.txt").read_text() == "Q1 up 12%\n"
            _error(await c.call_tool("read_file", {"path": "reports/summary.txt"}, meta=_meta("ep2")))
            for bad, why in (("../ep2/README.md", "'..'"), ("/etc/passwd", "absolute"), ("..", "'..'")):
                assert why in _error(await c.call_tool("read_file", {"path": bad}, meta=_meta("ep1")))

    async def shop() -> None:
        async with _stdio("shop", env) as c:
            assert len((await c.list_tools())) == expected["shop"]
            item = next(p for p in _json(await c.call_tool("list_items", {"in_stock_only": True}, meta=_meta("ep1")))["products"])
            _json(await c.call_tool("add_to_cart", {"sku": item["sku"]}, meta=_meta("ep1")))
            order = _json(await c.call_tool("checkout", {"shipping_address": "12 Oak St, Springfield"}, meta=_meta("ep1")))["order"]
            stock = _json(await c.call_tool("check_stock", {"sku": item["sku"]}, meta=_meta("ep1")))
            assert stock["in_stock"] == item["stock"] - 1
            orders = _json(await c.call_tool("list_orders", {}, meta=_meta("ep1")))["orders"]
            assert order["order_id"] in [o["order_id"] for o in orders]
            assert order["order_id"] not in [o["order_id"] for o in _json(await c.call_tool("list_orders", {}, meta=_meta("ep2")))["orders"]]

    async def main() -> None:
        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                for fn in (calendar, files, shop):
                    tg.start_soon(fn)

    anyio.run(main)


# --------------------------------------------------------------------------- hub


def test_hub_serves_all_servers_over_http() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "atlas_plugins.envs.hub", "--port", "0"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        assert set(info) == {"url", "servers"}
        assert info["servers"] == list(EMBEDDED_SERVERS)
        assert info["url"].startswith("http://127.0.0.1:")

        async def main() -> None:
            async with connect(f"{info['url']}/notes/mcp") as notes, connect(f"{info['url']}/units/mcp") as units:
                assert len((await notes.list_tools())) >= 10
                created = _json(await notes.call_tool("create_note", {"title": "Hub note", "body": "over http"},
                                                      meta=_meta("h1")))["created"]
                found = _json(await notes.call_tool("search", {"query": "hub note"}, meta=_meta("h1")))
                assert [n["id"] for n in found["notes"]] == [created["id"]]
                assert _json(await notes.call_tool("search", {"query": "hub note"}, meta=_meta("h2")))["total"] == 0
                conv = _json(await units.call_tool("convert", {"value": 10, "from_unit": "km", "to_unit": "mi"}))
                assert conv["result"] == pytest.approx(6.21371, rel=1e-5)
                assert "unknown unit" in _error(await units.call_tool("convert", {"value": 1, "from_unit": "zz", "to_unit": "m"}))

        anyio.run(main)
        proc.stdin.close()  # closing stdin stops the hub
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
