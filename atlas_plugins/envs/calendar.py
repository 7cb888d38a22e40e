"""Calendar server: events on named calendars around the fixed today (Mon 2026-03-02)."""

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from ._base import (
    NOW,
    TODAY,
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    Ids,
    arg,
    check_email,
    lookup,
    main,
    new_server,
    one_of,
    parse_date,
    parse_time,
    rng_for,
)
from ._fixtures import OWNER, people

COLORS = ["blue", "green", "red", "purple", "orange", "teal", "gray"]

EventId = Annotated[str, arg("Event id as returned by list_events or search, e.g. 'e3'.")]
DateArg = Annotated[str, arg("Date as YYYY-MM-DD, or 'today'/'tomorrow' (today is 2026-03-02).")]


@dataclass
class CalendarState:
    calendars: dict[str, dict[str, Any]]
    events: dict[str, dict[str, Any]]
    ids: Ids = field(default_factory=Ids)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _event(eid: str, title: str, cal: str, day: date, start: str, dur: int, **kw: Any) -> dict[str, Any]:
    s = _minutes(start)
    return {
        "id": eid,
        "title": title,
        "calendar": cal,
        "date": day.isoformat(),
        "start": start,
        "end": _hhmm(min(s + dur, 24 * 60 - 1)),
        "duration_minutes": dur,
        "location": kw.get("location", ""),
        "attendees": list(kw.get("attendees", [])),
        "description": kw.get("description", ""),
        "reminders_minutes": list(kw.get("reminders", [10])),
        "organizer": OWNER["email"],
        "status": "confirmed",
    }


def initial_state(seed: int, episode: str = "default") -> CalendarState:
    """Seeded starting calendar (also used by task generators to know what exists)."""
    rng = rng_for("calendar", seed)
    ppl = people(seed)
    work = [p for p in ppl if "work" in p["groups"] or "clients" in p["groups"]] or ppl
    st = CalendarState(
        calendars={
            "work": {"name": "work", "color": "blue", "description": "Meetings and deadlines"},
            "personal": {"name": "personal", "color": "green", "description": "Appointments and errands"},
            "family": {"name": "family", "color": "orange", "description": "Shared family calendar"},
        },
        events={},
    )

    def add(title: str, cal: str, day: date, start: str, dur: int, **kw: Any) -> None:
        eid = st.ids.new("e")
        st.events[eid] = _event(eid, title, cal, day, start, dur, **kw)

    team = [p["email"] for p in rng.sample(work, min(4, len(work)))]
    add("Design review", "work", TODAY - timedelta(days=4), "15:00", 60, attendees=team[:2], location="Room Aurora")
    for offset in (0, 2, 4):
        add("Team standup", "work", TODAY + timedelta(days=offset), "09:30", 15, attendees=team, location="Zoom")
    one = rng.choice(work)
    add(
        f"1:1 with {one['first_name']}",
        "work",
        TODAY + timedelta(days=1),
        rng.choice(["11:00", "14:00", "15:30"]),
        30,
        attendees=[one["email"]],
        description="Weekly check-in",
    )
    add(
        "Quarterly planning",
        "work",
        TODAY + timedelta(days=2),
        "10:00",
        120,
        attendees=team[1:],
        location="Room Borealis",
        description="Q2 roadmap and staffing",
    )
    friend = rng.choice(ppl)
    add(
        f"Lunch with {friend['name']}",
        "personal",
        TODAY + timedelta(days=3),
        "12:30",
        60,
        attendees=[friend["email"]],
        location=rng.choice(["Cafe Lumiere", "Osteria Rossa", "Green Bowl"]),
    )
    add(
        "Dentist appointment",
        "personal",
        TODAY + timedelta(days=4),
        rng.choice(["08:00", "16:00", "17:15"]),
        45,
        location="Smile Dental, 12 Oak St",
        reminders=[60, 1440],
    )
    add("Yoga class", "personal", TODAY + timedelta(days=5), "08:00", 60, location="Studio Flow")
    fam = rng.choice(ppl)
    add(
        f"{fam['first_name']}'s birthday dinner",
        "family",
        TODAY + timedelta(days=6),
        "19:00",
        150,
        attendees=[fam["email"]],
        location="Home",
    )
    add(
        f"Project review: {rng.choice(['Atlas', 'Beacon', 'Comet', 'Delta'])}",
        "work",
        TODAY + timedelta(days=8),
        "13:00",
        90,
        attendees=team[:3],
        location="Room Aurora",
    )
    add("Submit expense report", "work", TODAY + timedelta(days=11), "17:00", 15, description="Deadline")
    return st


def _sorted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (e["date"], e["start"], e["id"]))


def _summary(e: dict[str, Any]) -> dict[str, Any]:
    return {k: e[k] for k in ("id", "title", "calendar", "date", "start", "end", "location")}


def _conflicts(st: CalendarState, day: str, start: int, end: int, skip: str | None = None) -> list[str]:
    return [
        e["id"]
        for e in _sorted(list(st.events.values()))
        if e["id"] != skip and e["date"] == day and _minutes(e["start"]) < end and start < _minutes(e["end"])
    ]


def build(seed: int = 0) -> EnvServer:
    srv = new_server("calendar", "Personal and work calendar. Today is Monday 2026-03-02; times are local HH:MM.")
    store: EpisodeStore[CalendarState] = EpisodeStore(initial_state, seed)

    @srv.tool()
    async def get_current_date() -> dict:
        """Return the calendar's current date, weekday and time (the simulated 'now')."""
        return {"date": TODAY.isoformat(), "weekday": TODAY.strftime("%A"), "time": NOW.strftime("%H:%M")}

    @srv.tool()
    async def list_calendars(ctx: Context) -> dict:
        """List the user's calendars with their colour and how many events each holds."""
        st = store.get(ctx)
        return {
            "calendars": [
                {**c, "event_count": sum(1 for e in st.events.values() if e["calendar"] == name)}
                for name, c in st.calendars.items()
            ]
        }

    @srv.tool()
    async def create_calendar(
        name: Annotated[
            str,
            arg(
                "Name of the new calendar, e.g. 'gym'. Lowercase letters, digits, '-' or '_'.",
                min_length=1,
                max_length=40,
            ),
        ],
        ctx: Context,
        color: Annotated[str, arg(f"Display colour, one of: {', '.join(COLORS)}.")] = "gray",
        description: Annotated[str, arg("Optional free-text description.")] = "",
    ) -> dict:
        """Create a new named calendar that events can be added to."""
        st = store.get(ctx)
        key = name.strip().lower()
        if not key.replace("-", "").replace("_", "").isalnum():
            raise EnvError(f"invalid calendar name '{name}'; use letters, digits, '-' or '_'")
        if key in st.calendars:
            raise EnvError(f"calendar '{key}' already exists; existing calendars: {', '.join(st.calendars)}")
        st.calendars[key] = {"name": key, "color": one_of(color, COLORS, "color"), "description": description}
        return {"created": st.calendars[key]}

    @srv.tool()
    async def list_events(
        ctx: Context,
        date_from: Annotated[str | None, arg("First day to include (YYYY-MM-DD). Default: today.")] = None,
        date_to: Annotated[
            str | None, arg("Last day to include (YYYY-MM-DD). Default: 7 days after date_from.")
        ] = None,
        calendar: Annotated[
            str | None, arg("Only events on this calendar (e.g. 'work'). Default: all calendars.")
        ] = None,
        attendee: Annotated[str | None, arg("Only events with this attendee email.")] = None,
    ) -> dict:
        """List events in a date range (inclusive), sorted by date and start time."""
        st = store.get(ctx)
        d0 = parse_date(date_from, "date_from") if date_from else TODAY
        d1 = parse_date(date_to, "date_to") if date_to else d0 + timedelta(days=7)
        if d1 < d0:
            raise EnvError(f"date_to {d1} is before date_from {d0}")
        if calendar:
            lookup(st.calendars, calendar.lower(), "calendar")
        evs = [
            _summary(e) | {"attendees": e["attendees"]}
            for e in _sorted(list(st.events.values()))
            if d0.isoformat() <= e["date"] <= d1.isoformat()
            and (not calendar or e["calendar"] == calendar.lower())
            and (not attendee or attendee.lower() in e["attendees"])
        ]
        return {"date_from": d0.isoformat(), "date_to": d1.isoformat(), "count": len(evs), "events": evs}

    @srv.tool()
    async def get_details(event_id: EventId, ctx: Context) -> dict:
        """Get every field of one event: time, location, attendees, description, reminders."""
        return dict(lookup(store.get(ctx).events, event_id, "event id"))

    @srv.tool()
    async def create_event(
        title: Annotated[str, arg("Short event title.", min_length=1, max_length=120)],
        date: DateArg,
        start_time: Annotated[str, arg("Start time, 24-hour HH:MM (e.g. '14:30').")],
        ctx: Context,
        duration_minutes: Annotated[int, arg("Length in minutes (5 to 720).", ge=5, le=720)] = 60,
        calendar: Annotated[
            str, arg("Calendar to put it on: 'work', 'personal', 'family' or one you created.")
        ] = "work",
        location: Annotated[str, arg("Where it happens (room, address or 'Zoom').")] = "",
        attendees: Annotated[list[str] | None, arg("Email addresses of people to invite.")] = None,
        description: Annotated[str, arg("Agenda or notes.")] = "",
    ) -> dict:
        """Create a calendar event; reports overlapping events as conflicts (it is still created)."""
        st = store.get(ctx)
        day = parse_date(date)
        t = parse_time(start_time, "start_time")
        cal = lookup(st.calendars, calendar.lower(), "calendar")["name"]
        start = t.hour * 60 + t.minute
        if start + duration_minutes > 24 * 60:
            raise EnvError(
                f"event would run past midnight ({start_time} + {duration_minutes} min); shorten it or start earlier"
            )
        emails = [check_email(a, "attendee email") for a in (attendees or [])]
        eid = st.ids.new("e")
        ev = _event(
            eid,
            title.strip(),
            cal,
            day,
            t.strftime("%H:%M"),
            duration_minutes,
            location=location,
            attendees=emails,
            description=description,
        )
        conflicts = _conflicts(st, ev["date"], start, start + duration_minutes)
        st.events[eid] = ev
        return {"created": ev, "conflicts": conflicts}

    @srv.tool()
    async def update_event(
        event_id: EventId,
        ctx: Context,
        title: Annotated[str | None, arg("New title (omit to keep).")] = None,
        date: Annotated[str | None, arg("New date YYYY-MM-DD (omit to keep).")] = None,
        start_time: Annotated[str | None, arg("New start time HH:MM (omit to keep).")] = None,
        duration_minutes: Annotated[int | None, arg("New length in minutes (omit to keep).", ge=5, le=720)] = None,
        location: Annotated[str | None, arg("New location (omit to keep).")] = None,
        description: Annotated[str | None, arg("New description (omit to keep).")] = None,
        calendar: Annotated[str | None, arg("Move to another calendar (omit to keep).")] = None,
    ) -> dict:
        """Change fields of an existing event (reschedule, rename, move); unspecified fields are kept."""
        st = store.get(ctx)
        ev = lookup(st.events, event_id, "event id")
        new = dict(ev)
        if title is not None:
            new["title"] = title.strip() or ev["title"]
        if date is not None:
            new["date"] = parse_date(date).isoformat()
        if start_time is not None:
            new["start"] = parse_time(start_time, "start_time").strftime("%H:%M")
        if duration_minutes is not None:
            new["duration_minutes"] = duration_minutes
        if location is not None:
            new["location"] = location
        if description is not None:
            new["description"] = description
        if calendar is not None:
            new["calendar"] = lookup(st.calendars, calendar.lower(), "calendar")["name"]
        s = _minutes(new["start"])
        if s + new["duration_minutes"] > 24 * 60:
            raise EnvError("event would run past midnight; shorten it or start earlier")
        new["end"] = _hhmm(s + new["duration_minutes"])
        st.events[ev["id"]] = new
        changed = sorted(k for k in new if new[k] != ev[k])
        return {
            "updated": new,
            "changed_fields": changed,
            "conflicts": _conflicts(st, new["date"], s, s + new["duration_minutes"], skip=ev["id"]),
        }

    @srv.tool()
    async def delete_event(event_id: EventId, ctx: Context) -> dict:
        """Delete (cancel) an event permanently."""
        st = store.get(ctx)
        ev = lookup(st.events, event_id, "event id")
        del st.events[ev["id"]]
        return {"deleted": ev["id"], "title": ev["title"], "date": ev["date"]}

    @srv.tool()
    async def search(
        query: Annotated[
            str, arg("Words to look for in event titles, descriptions, locations and attendee emails.", min_length=1)
        ],
        ctx: Context,
        limit: Annotated[int, arg("Maximum number of events to return.", ge=1, le=100)] = 20,
    ) -> dict:
        """Search all events (past and future) by keyword; every word must match."""
        st = store.get(ctx)
        words = query.lower().split()
        hits = [
            _summary(e)
            for e in _sorted(list(st.events.values()))
            if all(w in " ".join([e["title"], e["description"], e["location"], *e["attendees"]]).lower() for w in words)
        ]
        return {"query": query, "count": len(hits[:limit]), "events": hits[:limit]}

    @srv.tool()
    async def find_free_slots(
        date: DateArg,
        ctx: Context,
        duration_minutes: Annotated[int, arg("Needed length of the slot in minutes.", ge=5, le=720)] = 30,
        day_start: Annotated[str, arg("Earliest acceptable time HH:MM.")] = "09:00",
        day_end: Annotated[str, arg("Latest acceptable end time HH:MM.")] = "17:00",
    ) -> dict:
        """Find free time windows on a day that are at least duration_minutes long (all calendars count as busy)."""
        st = store.get(ctx)
        day = parse_date(date).isoformat()
        a, b = parse_time(day_start, "day_start"), parse_time(day_end, "day_end")
        lo, hi = a.hour * 60 + a.minute, b.hour * 60 + b.minute
        if hi <= lo:
            raise EnvError(f"day_end {day_end} must be after day_start {day_start}")
        busy = sorted((_minutes(e["start"]), _minutes(e["end"])) for e in st.events.values() if e["date"] == day)
        free, cur = [], lo
        for s, e in busy:
            if s > cur:
                free.append((cur, min(s, hi)))
            cur = max(cur, e)
        if cur < hi:
            free.append((cur, hi))
        slots = [{"start": _hhmm(s), "end": _hhmm(e), "minutes": e - s} for s, e in free if e - s >= duration_minutes]
        return {"date": day, "duration_minutes": duration_minutes, "free_slots": slots}

    @srv.tool()
    async def add_attendee(
        event_id: EventId,
        email: Annotated[str, arg("Email address of the person to invite.")],
        ctx: Context,
    ) -> dict:
        """Invite one more person to an event."""
        ev = lookup(store.get(ctx).events, event_id, "event id")
        addr = check_email(email)
        if addr in ev["attendees"]:
            raise EnvError(f"{addr} is already invited to {ev['id']}; attendees: {', '.join(ev['attendees'])}")
        ev["attendees"].append(addr)
        return {"event_id": ev["id"], "attendees": ev["attendees"]}

    @srv.tool()
    async def remove_attendee(
        event_id: EventId,
        email: Annotated[str, arg("Email address of the attendee to remove.")],
        ctx: Context,
    ) -> dict:
        """Remove a person from an event's attendee list."""
        ev = lookup(store.get(ctx).events, event_id, "event id")
        addr = email.strip().lower()
        if addr not in ev["attendees"]:
            raise EnvError(
                f"'{email}' is not an attendee of {ev['id']}; attendees: {', '.join(ev['attendees']) or 'none'}"
            )
        ev["attendees"].remove(addr)
        return {"event_id": ev["id"], "attendees": ev["attendees"]}

    @srv.tool()
    async def set_reminder(
        event_id: EventId,
        minutes_before: Annotated[int, arg("Remind this many minutes before the start (0 to 10080).", ge=0, le=10080)],
        ctx: Context,
        replace: Annotated[bool, arg("True replaces all existing reminders; False adds one.")] = False,
    ) -> dict:
        """Add (or replace) a reminder on an event."""
        ev = lookup(store.get(ctx).events, event_id, "event id")
        rem = [] if replace else [m for m in ev["reminders_minutes"] if m != minutes_before]
        ev["reminders_minutes"] = sorted(rem + [minutes_before])
        return {"event_id": ev["id"], "reminders_minutes": ev["reminders_minutes"]}

    @srv.tool()
    async def get_agenda(date: DateArg, ctx: Context) -> dict:
        """A readable one-day agenda: each event as 'HH:MM-HH:MM title @ location', plus busy minutes."""
        st = store.get(ctx)
        day = parse_date(date)
        evs = [e for e in _sorted(list(st.events.values())) if e["date"] == day.isoformat()]
        lines = [
            f"{e['start']}-{e['end']} {e['title']}" + (f" @ {e['location']}" if e["location"] else "") for e in evs
        ]
        return {
            "date": day.isoformat(),
            "weekday": day.strftime("%A"),
            "agenda": lines,
            "event_ids": [e["id"] for e in evs],
            "busy_minutes": sum(e["duration_minutes"] for e in evs),
        }

    return srv


if __name__ == "__main__":
    main(build)
