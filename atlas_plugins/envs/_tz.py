"""A small baked-in time-zone table with DST rules, so results never depend on the host's tzdata."""

from __future__ import annotations

from datetime import date, datetime, timedelta

# zone -> (standard UTC offset in minutes, DST rule, standard abbreviation, DST abbreviation, region)
ZONES: dict[str, tuple[int, str | None, str, str, str]] = {
    "UTC": (0, None, "UTC", "UTC", "Etc"),
    "Pacific/Honolulu": (-600, None, "HST", "HST", "Pacific"),
    "America/Anchorage": (-540, "us", "AKST", "AKDT", "America"),
    "America/Los_Angeles": (-480, "us", "PST", "PDT", "America"),
    "America/Vancouver": (-480, "us", "PST", "PDT", "America"),
    "America/Denver": (-420, "us", "MST", "MDT", "America"),
    "America/Phoenix": (-420, None, "MST", "MST", "America"),
    "America/Chicago": (-360, "us", "CST", "CDT", "America"),
    "America/Mexico_City": (-360, None, "CST", "CST", "America"),
    "America/New_York": (-300, "us", "EST", "EDT", "America"),
    "America/Toronto": (-300, "us", "EST", "EDT", "America"),
    "America/Sao_Paulo": (-180, None, "BRT", "BRT", "America"),
    "America/Argentina/Buenos_Aires": (-180, None, "ART", "ART", "America"),
    "Europe/London": (0, "eu", "GMT", "BST", "Europe"),
    "Europe/Dublin": (0, "eu", "GMT", "IST", "Europe"),
    "Europe/Lisbon": (0, "eu", "WET", "WEST", "Europe"),
    "Europe/Paris": (60, "eu", "CET", "CEST", "Europe"),
    "Europe/Berlin": (60, "eu", "CET", "CEST", "Europe"),
    "Europe/Madrid": (60, "eu", "CET", "CEST", "Europe"),
    "Europe/Rome": (60, "eu", "CET", "CEST", "Europe"),
    "Europe/Amsterdam": (60, "eu", "CET", "CEST", "Europe"),
    "Europe/Stockholm": (60, "eu", "CET", "CEST", "Europe"),
    "Europe/Athens": (120, "eu", "EET", "EEST", "Europe"),
    "Europe/Istanbul": (180, None, "TRT", "TRT", "Europe"),
    "Europe/Moscow": (180, None, "MSK", "MSK", "Europe"),
    "Africa/Lagos": (60, None, "WAT", "WAT", "Africa"),
    "Africa/Johannesburg": (120, None, "SAST", "SAST", "Africa"),
    "Africa/Nairobi": (180, None, "EAT", "EAT", "Africa"),
    "Asia/Dubai": (240, None, "GST", "GST", "Asia"),
    "Asia/Kolkata": (330, None, "IST", "IST", "Asia"),
    "Asia/Kathmandu": (345, None, "NPT", "NPT", "Asia"),
    "Asia/Bangkok": (420, None, "ICT", "ICT", "Asia"),
    "Asia/Singapore": (480, None, "SGT", "SGT", "Asia"),
    "Asia/Shanghai": (480, None, "CST", "CST", "Asia"),
    "Asia/Hong_Kong": (480, None, "HKT", "HKT", "Asia"),
    "Asia/Seoul": (540, None, "KST", "KST", "Asia"),
    "Asia/Tokyo": (540, None, "JST", "JST", "Asia"),
    "Australia/Perth": (480, None, "AWST", "AWST", "Australia"),
    "Australia/Brisbane": (600, None, "AEST", "AEST", "Australia"),
    "Australia/Sydney": (600, "au", "AEST", "AEDT", "Australia"),
    "Australia/Melbourne": (600, "au", "AEST", "AEDT", "Australia"),
    "Pacific/Auckland": (720, "nz", "NZST", "NZDT", "Pacific"),
}

# Common city names (beyond the zone's own) -> zone, for search.
CITY_ZONES: dict[str, str] = {
    "New York": "America/New_York",
    "Boston": "America/New_York",
    "Washington": "America/New_York",
    "Miami": "America/New_York",
    "Atlanta": "America/New_York",
    "Toronto": "America/Toronto",
    "Montreal": "America/Toronto",
    "Chicago": "America/Chicago",
    "Dallas": "America/Chicago",
    "Houston": "America/Chicago",
    "Denver": "America/Denver",
    "Phoenix": "America/Phoenix",
    "Los Angeles": "America/Los_Angeles",
    "San Francisco": "America/Los_Angeles",
    "Seattle": "America/Los_Angeles",
    "Vancouver": "America/Vancouver",
    "Anchorage": "America/Anchorage",
    "Honolulu": "Pacific/Honolulu",
    "Mexico City": "America/Mexico_City",
    "Sao Paulo": "America/Sao_Paulo",
    "Rio de Janeiro": "America/Sao_Paulo",
    "Buenos Aires": "America/Argentina/Buenos_Aires",
    "London": "Europe/London",
    "Dublin": "Europe/Dublin",
    "Lisbon": "Europe/Lisbon",
    "Paris": "Europe/Paris",
    "Berlin": "Europe/Berlin",
    "Munich": "Europe/Berlin",
    "Madrid": "Europe/Madrid",
    "Barcelona": "Europe/Madrid",
    "Rome": "Europe/Rome",
    "Milan": "Europe/Rome",
    "Amsterdam": "Europe/Amsterdam",
    "Stockholm": "Europe/Stockholm",
    "Athens": "Europe/Athens",
    "Istanbul": "Europe/Istanbul",
    "Moscow": "Europe/Moscow",
    "Lagos": "Africa/Lagos",
    "Johannesburg": "Africa/Johannesburg",
    "Cape Town": "Africa/Johannesburg",
    "Nairobi": "Africa/Nairobi",
    "Dubai": "Asia/Dubai",
    "Abu Dhabi": "Asia/Dubai",
    "Mumbai": "Asia/Kolkata",
    "Delhi": "Asia/Kolkata",
    "Bangalore": "Asia/Kolkata",
    "Kathmandu": "Asia/Kathmandu",
    "Bangkok": "Asia/Bangkok",
    "Singapore": "Asia/Singapore",
    "Shanghai": "Asia/Shanghai",
    "Beijing": "Asia/Shanghai",
    "Hong Kong": "Asia/Hong_Kong",
    "Seoul": "Asia/Seoul",
    "Tokyo": "Asia/Tokyo",
    "Osaka": "Asia/Tokyo",
    "Perth": "Australia/Perth",
    "Brisbane": "Australia/Brisbane",
    "Sydney": "Australia/Sydney",
    "Melbourne": "Australia/Melbourne",
    "Auckland": "Pacific/Auckland",
}


def _nth_sunday(year: int, month: int, n: int) -> date:
    d = date(year, month, 1)
    d += timedelta(days=(6 - d.weekday()) % 7)
    return d + timedelta(weeks=n - 1)


def _last_sunday(year: int, month: int) -> date:
    d = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return d - timedelta(days=(d.weekday() - 6) % 7)


def is_dst(zone: str, utc: datetime) -> bool:
    std, rule, *_ = ZONES[zone]
    y = utc.year
    if rule is None:
        return False
    if rule == "us":  # 2nd Sunday of March 02:00 local standard -> 1st Sunday of November 02:00 local daylight
        start = datetime.combine(_nth_sunday(y, 3, 2), datetime.min.time()) + timedelta(minutes=120 - std)
        end = datetime.combine(_nth_sunday(y, 11, 1), datetime.min.time()) + timedelta(minutes=120 - std - 60)
        return start <= utc < end
    if rule == "eu":  # last Sunday of March 01:00 UTC -> last Sunday of October 01:00 UTC
        start = datetime.combine(_last_sunday(y, 3), datetime.min.time()) + timedelta(hours=1)
        end = datetime.combine(_last_sunday(y, 10), datetime.min.time()) + timedelta(hours=1)
        return start <= utc < end
    if rule in ("au", "nz"):  # southern hemisphere: DST spans the new year
        on = _nth_sunday(y, 10, 1) if rule == "au" else _last_sunday(y, 9)
        start = datetime.combine(on, datetime.min.time()) + timedelta(minutes=120 - std)
        end = datetime.combine(_nth_sunday(y, 4, 1), datetime.min.time()) + timedelta(minutes=180 - std - 60)
        return utc >= start or utc < end
    raise ValueError(f"unknown DST rule {rule!r}")


def offset_minutes(zone: str, utc: datetime) -> int:
    return ZONES[zone][0] + (60 if is_dst(zone, utc) else 0)


def abbreviation(zone: str, utc: datetime) -> str:
    return ZONES[zone][3] if is_dst(zone, utc) else ZONES[zone][2]


def to_local(utc: datetime, zone: str) -> datetime:
    return utc + timedelta(minutes=offset_minutes(zone, utc))


def to_utc(local: datetime, zone: str) -> datetime:
    """Local wall time -> UTC. In the spring-forward gap the standard offset is used; in the
    autumn overlap the earlier (daylight) reading wins, as most calendars do."""
    std = ZONES[zone][0]
    for off in (std + 60, std):
        utc = local - timedelta(minutes=off)
        if offset_minutes(zone, utc) == off:
            return utc
    return local - timedelta(minutes=std)


def format_offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    m = abs(minutes)
    return f"UTC{sign}{m // 60:02d}:{m % 60:02d}"
