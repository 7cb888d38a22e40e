"""Time-zone server: current time at the simulated now, conversions, DST facts, meeting planner, clocks."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from ._base import (
    NOW_UTC,
    TODAY,
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    arg,
    did_you_mean,
    main,
    new_server,
    parse_date,
    parse_datetime,
    parse_time,
)
from ._tz import CITY_ZONES, ZONES, abbreviation, format_offset, is_dst, offset_minutes, to_local, to_utc

ZoneArg = Annotated[str, arg("IANA zone (e.g. 'Europe/Paris'), a city (e.g. 'Tokyo') or an abbreviation (e.g. 'EST').")]
_ABBREV: dict[str, str] = {}
for _z, (_o, _r, _std, _dst, _reg) in ZONES.items():
    _ABBREV.setdefault(_std, _z)
    _ABBREV.setdefault(_dst, _z)
_ABBREV |= {"GMT": "Europe/London", "CST": "America/Chicago", "IST": "Asia/Kolkata", "Z": "UTC"}


@dataclass
class ClockState:
    clocks: list[dict[str, str]] = field(default_factory=lambda: [{"label": "Home", "timezone": "America/New_York"}])


def resolve_zone(value: str) -> str:
    v = str(value).strip()
    for z in ZONES:
        if z.lower() == v.lower() or z.split("/")[-1].replace("_", " ").lower() == v.replace("_", " ").lower():
            return z
    for city, z in CITY_ZONES.items():
        if city.lower() == v.lower():
            return z
    if v.upper() in _ABBREV:
        return _ABBREV[v.upper()]
    raise EnvError(
        f"unknown time zone '{value}'{did_you_mean(v, list(ZONES) + list(CITY_ZONES))}; "
        "use an IANA name like 'America/New_York', a city, or see list_timezones"
    )


def _local_info(zone: str, utc: datetime) -> dict[str, Any]:
    local = to_local(utc, zone)
    return {
        "timezone": zone,
        "local_time": local.strftime("%Y-%m-%d %H:%M"),
        "weekday": local.strftime("%A"),
        "utc_offset": format_offset(offset_minutes(zone, utc)),
        "abbreviation": abbreviation(zone, utc),
        "dst": is_dst(zone, utc),
    }


def _parse_when(value: str, what: str) -> datetime:
    """'HH:MM' means that time on the simulated today; otherwise a full date-time."""
    v = value.strip()
    if len(v) <= 8 and ":" in v and "-" not in v:
        t = parse_time(v, what)
        return datetime.combine(TODAY, t)
    return parse_datetime(v, what)


def _transitions(zone: str, year: int) -> list[dict[str, str]]:
    out, t = [], datetime(year, 1, 1)
    prev = is_dst(zone, t)
    while t.year == year:  # hourly scan is plenty fast for one year and exact for these rules
        t += timedelta(hours=1)
        cur = is_dst(zone, t)
        if cur != prev:
            out.append(
                {
                    "utc": t.strftime("%Y-%m-%d %H:%M"),
                    "local_after": to_local(t, zone).strftime("%Y-%m-%d %H:%M"),
                    "change": "DST starts (clocks forward 1h)" if cur else "DST ends (clocks back 1h)",
                }
            )
            prev = cur
    return out


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "timezones",
        f"World clock and time-zone math. Now is {NOW_UTC:%Y-%m-%d %H:%M} UTC (09:00 in New York); DST rules are built in.",
    )
    store: EpisodeStore[ClockState] = EpisodeStore(lambda s, e: ClockState(), seed)

    @srv.tool()
    async def get_current_time(timezone: ZoneArg = "UTC") -> dict:
        """Current local date and time in a time zone, with UTC offset and whether DST is in effect."""
        return _local_info(resolve_zone(timezone), NOW_UTC)

    @srv.tool()
    async def convert(
        time: Annotated[str, arg("Time to convert: 'YYYY-MM-DD HH:MM', or 'HH:MM' for today.")],
        from_timezone: ZoneArg,
        to_timezone: ZoneArg,
    ) -> dict:
        """Convert a wall-clock time from one time zone to another (DST aware)."""
        src, dst = resolve_zone(from_timezone), resolve_zone(to_timezone)
        local = _parse_when(time, "time")
        utc = to_utc(local, src)
        out = to_local(utc, dst)
        day_shift = (out.date() - local.date()).days
        return {
            "from": {"timezone": src, "time": local.strftime("%Y-%m-%d %H:%M"), "abbreviation": abbreviation(src, utc)},
            "to": {"timezone": dst, "time": out.strftime("%Y-%m-%d %H:%M"), "abbreviation": abbreviation(dst, utc)},
            "utc": utc.strftime("%Y-%m-%d %H:%M"),
            "day_shift": day_shift,
        }

    @srv.tool()
    async def list_timezones(
        region: Annotated[
            str | None, arg("Only zones in this region: America, Europe, Asia, Africa, Australia, Pacific, Etc.")
        ] = None,
    ) -> dict:
        """List supported time zones with their current UTC offset."""
        regions = sorted({r[4] for r in ZONES.values()})
        if region and region.strip().capitalize() not in regions:
            raise EnvError(f"unknown region '{region}'; regions: {', '.join(regions)}")
        return {
            "timezones": [
                {"timezone": z, "utc_offset": format_offset(offset_minutes(z, NOW_UTC)), "region": r[4]}
                for z, r in ZONES.items()
                if not region or r[4] == region.strip().capitalize()
            ]
        }

    @srv.tool()
    async def search(
        query: Annotated[
            str, arg("City, zone fragment or abbreviation, e.g. 'berlin', 'Kolkata', 'PST'.", min_length=2)
        ],
    ) -> dict:
        """Find time zones by city name, part of a zone name or abbreviation."""
        q = query.strip().lower()
        hits: dict[str, str] = {}
        for city, z in CITY_ZONES.items():
            if q in city.lower():
                hits.setdefault(z, f"city {city}")
        for z in ZONES:
            if q in z.lower():
                hits.setdefault(z, "zone name")
        if query.strip().upper() in _ABBREV:
            hits.setdefault(_ABBREV[query.strip().upper()], "abbreviation")
        return {
            "query": query,
            "results": [
                {"timezone": z, "matched": why, "utc_offset_now": format_offset(offset_minutes(z, NOW_UTC))}
                for z, why in hits.items()
            ],
        }

    @srv.tool()
    async def get_details(
        timezone: ZoneArg,
        date: Annotated[str, arg("Date to describe, YYYY-MM-DD (default today).")] = "today",
    ) -> dict:
        """Offset, abbreviation and DST state of a zone on a date, plus that year's DST transitions."""
        z = resolve_zone(timezone)
        noon = to_utc(datetime.combine(parse_date(date), datetime.min.time()) + timedelta(hours=12), z)
        std, rule, *_ = ZONES[z]
        return {
            "timezone": z,
            "date": parse_date(date).isoformat(),
            "utc_offset": format_offset(offset_minutes(z, noon)),
            "standard_offset": format_offset(std),
            "abbreviation": abbreviation(z, noon),
            "dst": is_dst(z, noon),
            "observes_dst": rule is not None,
            "transitions": _transitions(z, noon.year) if rule else [],
        }

    @srv.tool()
    async def time_difference(
        timezone_a: ZoneArg,
        timezone_b: ZoneArg,
        date: Annotated[str, arg("Date on which to compare (DST can change the answer), default today.")] = "today",
    ) -> dict:
        """How many hours timezone_b is ahead of timezone_a on a date (negative = behind)."""
        a, b = resolve_zone(timezone_a), resolve_zone(timezone_b)
        noon = datetime.combine(parse_date(date), datetime.min.time()) + timedelta(hours=12)
        diff = offset_minutes(b, noon) - offset_minutes(a, noon)
        return {
            "timezone_a": a,
            "timezone_b": b,
            "date": parse_date(date).isoformat(),
            "hours": diff / 60,
            "text": f"{b} is {abs(diff) / 60:g} h {'ahead of' if diff >= 0 else 'behind'} {a}",
        }

    @srv.tool()
    async def find_meeting_time(
        timezones: Annotated[
            list[str], arg("Two to six zones or cities of the participants.", min_length=2, max_length=6)
        ],
        date: Annotated[str, arg("Meeting date YYYY-MM-DD (interpreted in the first zone).")],
        duration_minutes: Annotated[int, arg("Meeting length in minutes.", ge=15, le=480)] = 60,
        work_start: Annotated[str, arg("Start of everyone's working day, HH:MM local.")] = "09:00",
        work_end: Annotated[str, arg("End of everyone's working day, HH:MM local.")] = "17:00",
    ) -> dict:
        """Find start times (30-minute steps) when all participants are within local working hours."""
        zones = [resolve_zone(z) for z in timezones]
        ws, we = parse_time(work_start, "work_start"), parse_time(work_end, "work_end")
        if (we.hour, we.minute) <= (ws.hour, ws.minute):
            raise EnvError("work_end must be after work_start")
        day = parse_date(date)
        start_utc = to_utc(datetime.combine(day, datetime.min.time()), zones[0])
        slots = []
        for step in range(0, 48):
            t0 = start_utc + timedelta(minutes=30 * step)
            t1 = t0 + timedelta(minutes=duration_minutes)
            ok = True
            for z in zones:
                l0, l1 = to_local(t0, z), to_local(t1, z)
                lo = datetime.combine(l0.date(), ws)
                hi = datetime.combine(l0.date(), we)
                if not (lo <= l0 and l1 <= hi and l0.weekday() < 5):
                    ok = False
                    break
            if ok:
                slots.append(
                    {
                        "utc": t0.strftime("%Y-%m-%d %H:%M"),
                        "local": {z: to_local(t0, z).strftime("%Y-%m-%d %H:%M") for z in zones},
                    }
                )
        return {
            "date": day.isoformat(),
            "duration_minutes": duration_minutes,
            "timezones": zones,
            "slots": slots,
            "note": "" if slots else "no common working-hours window; widen work_start/work_end or pick another day",
        }

    @srv.tool()
    async def is_business_hours(
        timezone: ZoneArg,
        time: Annotated[str | None, arg("UTC date-time 'YYYY-MM-DD HH:MM' to check; default now.")] = None,
    ) -> dict:
        """Whether it is Monday-Friday 09:00-17:00 local time in a zone at a given UTC moment."""
        z = resolve_zone(timezone)
        utc = parse_datetime(time, "time") if time and time.strip().lower() != "now" else NOW_UTC
        local = to_local(utc, z)
        open_ = local.weekday() < 5 and 9 <= local.hour < 17
        return {
            "timezone": z,
            "local_time": local.strftime("%Y-%m-%d %H:%M"),
            "weekday": local.strftime("%A"),
            "business_hours": open_,
        }

    @srv.tool()
    async def add_duration(
        start: Annotated[str, arg("Start date-time 'YYYY-MM-DD HH:MM' (local wall time).")],
        days: Annotated[int, arg("Days to add (negative subtracts).", ge=-3650, le=3650)] = 0,
        hours: Annotated[int, arg("Hours to add (negative subtracts).", ge=-87600, le=87600)] = 0,
        minutes: Annotated[int, arg("Minutes to add (negative subtracts).", ge=-525600, le=525600)] = 0,
        timezone: Annotated[
            str | None, arg("If given, hours/minutes are added in real elapsed time across DST changes in this zone.")
        ] = None,
    ) -> dict:
        """Add (or subtract) days, hours and minutes to a date-time; returns the result and its weekday."""
        t = parse_datetime(start, "start")
        if timezone:
            z = resolve_zone(timezone)
            utc = to_utc(t + timedelta(days=days), z) + timedelta(hours=hours, minutes=minutes)
            out = to_local(utc, z)
        else:
            out = t + timedelta(days=days, hours=hours, minutes=minutes)
        return {
            "start": t.strftime("%Y-%m-%d %H:%M"),
            "result": out.strftime("%Y-%m-%d %H:%M"),
            "weekday": out.strftime("%A"),
        }

    @srv.tool()
    async def add_world_clock(
        timezone: ZoneArg,
        ctx: Context,
        label: Annotated[
            str | None, arg("Display label, e.g. 'Tokyo office' (default: the zone's city).", max_length=40)
        ] = None,
    ) -> dict:
        """Add a clock to the world-clock board."""
        st = store.get(ctx)
        z = resolve_zone(timezone)
        lab = (label or z.split("/")[-1].replace("_", " ")).strip()
        if any(c["label"].lower() == lab.lower() for c in st.clocks):
            raise EnvError(
                f"a clock labelled '{lab}' already exists; labels: {', '.join(c['label'] for c in st.clocks)}"
            )
        st.clocks.append({"label": lab, "timezone": z})
        return {"clocks": st.clocks}

    @srv.tool()
    async def remove_world_clock(
        label: Annotated[str, arg("Label of the clock to remove (see list_world_clocks).")], ctx: Context
    ) -> dict:
        """Remove a clock from the world-clock board."""
        st = store.get(ctx)
        for i, c in enumerate(st.clocks):
            if c["label"].lower() == label.strip().lower():
                del st.clocks[i]
                return {"removed": c, "clocks": st.clocks}
        raise EnvError(f"no clock labelled '{label}'; labels: {', '.join(c['label'] for c in st.clocks) or 'none'}")

    @srv.tool()
    async def list_world_clocks(ctx: Context) -> dict:
        """Show every clock on the world-clock board with its current local time."""
        return {"clocks": [{"label": c["label"]} | _local_info(c["timezone"], NOW_UTC) for c in store.get(ctx).clocks]}

    return srv


if __name__ == "__main__":
    main(build)
