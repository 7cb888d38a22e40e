"""Fixture data baked into code, shared by several servers so a seed gives one coherent world.

The same seed yields the same people in contacts, email and calendar, and the same cities in
weather, travel, maps and time zones (the user can e.g. mail the attendees of a meeting).
No imports of mcp here: the task generator can read fixtures cheaply.
"""

from __future__ import annotations

import hashlib
import random
from datetime import date
from typing import Any


def rng_for(*parts: object) -> random.Random:
    """A private RNG for one purpose; str seeding hashes with SHA-512, so it is stable across runs."""
    return random.Random(":".join(str(p) for p in parts))


def stable_hash(*parts: object) -> int:
    """A process-independent hash (``hash()`` of str is salted per process)."""
    return int.from_bytes(hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()[:8], "big")


OWNER = {"name": "Alex Morgan", "email": "alex.morgan@example.com", "phone": "+1-555-0100"}

FIRST_NAMES = [
    "Priya",
    "Jonas",
    "Maria",
    "Kenji",
    "Fatima",
    "Liam",
    "Chloe",
    "Mateo",
    "Amara",
    "Noah",
    "Sofia",
    "Ethan",
    "Yuki",
    "Omar",
    "Grace",
    "Lucas",
    "Hannah",
    "Diego",
    "Aisha",
    "Felix",
    "Elena",
    "Samuel",
    "Ingrid",
    "Ravi",
]
LAST_NAMES = [
    "Patel",
    "Schmidt",
    "Garcia",
    "Tanaka",
    "Haddad",
    "O'Brien",
    "Dubois",
    "Rossi",
    "Okafor",
    "Kim",
    "Novak",
    "Larsen",
    "Silva",
    "Chen",
    "Weber",
    "Nguyen",
    "Cohen",
    "Fischer",
    "Moreau",
    "Ivanova",
    "Brooks",
    "Khan",
    "Jensen",
    "Alvarez",
]
COMPANIES = [
    ("Northwind Traders", "northwind.com"),
    ("Acme Robotics", "acme-robotics.io"),
    ("Bluefin Analytics", "bluefin.ai"),
    ("Cedar Health", "cedarhealth.org"),
    ("Helios Energy", "helios-energy.com"),
    ("Quill & Co", "quill.co"),
    ("Orbit Logistics", "orbitlog.net"),
    ("Juniper Labs", "juniperlabs.dev"),
]
JOB_TITLES = [
    "Product Manager",
    "Software Engineer",
    "Account Executive",
    "Data Scientist",
    "Designer",
    "Finance Lead",
    "Recruiter",
    "Operations Manager",
    "CTO",
    "Marketing Director",
]
GROUPS = ["work", "family", "friends", "clients"]

# City fixtures: name -> country, coordinates, IANA zone, main airport, currency, March climate.
# climate = (avg high C, avg low C, rain probability, typical condition)
CITIES: dict[str, dict[str, Any]] = {
    "New York": {
        "country": "US",
        "lat": 40.7128,
        "lon": -74.0060,
        "tz": "America/New_York",
        "airport": "JFK",
        "currency": "USD",
        "climate": (10, 1, 0.35, "partly cloudy"),
    },
    "San Francisco": {
        "country": "US",
        "lat": 37.7749,
        "lon": -122.4194,
        "tz": "America/Los_Angeles",
        "airport": "SFO",
        "currency": "USD",
        "climate": (17, 9, 0.3, "fog"),
    },
    "Chicago": {
        "country": "US",
        "lat": 41.8781,
        "lon": -87.6298,
        "tz": "America/Chicago",
        "airport": "ORD",
        "currency": "USD",
        "climate": (8, -1, 0.35, "cloudy"),
    },
    "Denver": {
        "country": "US",
        "lat": 39.7392,
        "lon": -104.9903,
        "tz": "America/Denver",
        "airport": "DEN",
        "currency": "USD",
        "climate": (12, -2, 0.2, "sunny"),
    },
    "Toronto": {
        "country": "CA",
        "lat": 43.6532,
        "lon": -79.3832,
        "tz": "America/Toronto",
        "airport": "YYZ",
        "currency": "CAD",
        "climate": (5, -4, 0.35, "snow showers"),
    },
    "Mexico City": {
        "country": "MX",
        "lat": 19.4326,
        "lon": -99.1332,
        "tz": "America/Mexico_City",
        "airport": "MEX",
        "currency": "MXN",
        "climate": (26, 10, 0.1, "sunny"),
    },
    "London": {
        "country": "GB",
        "lat": 51.5074,
        "lon": -0.1278,
        "tz": "Europe/London",
        "airport": "LHR",
        "currency": "GBP",
        "climate": (11, 4, 0.45, "light rain"),
    },
    "Paris": {
        "country": "FR",
        "lat": 48.8566,
        "lon": 2.3522,
        "tz": "Europe/Paris",
        "airport": "CDG",
        "currency": "EUR",
        "climate": (12, 4, 0.4, "cloudy"),
    },
    "Berlin": {
        "country": "DE",
        "lat": 52.5200,
        "lon": 13.4050,
        "tz": "Europe/Berlin",
        "airport": "BER",
        "currency": "EUR",
        "climate": (9, 1, 0.35, "overcast"),
    },
    "Madrid": {
        "country": "ES",
        "lat": 40.4168,
        "lon": -3.7038,
        "tz": "Europe/Madrid",
        "airport": "MAD",
        "currency": "EUR",
        "climate": (16, 5, 0.25, "sunny"),
    },
    "Stockholm": {
        "country": "SE",
        "lat": 59.3293,
        "lon": 18.0686,
        "tz": "Europe/Stockholm",
        "airport": "ARN",
        "currency": "SEK",
        "climate": (3, -3, 0.3, "snow showers"),
    },
    "Dubai": {
        "country": "AE",
        "lat": 25.2048,
        "lon": 55.2708,
        "tz": "Asia/Dubai",
        "airport": "DXB",
        "currency": "AED",
        "climate": (29, 19, 0.05, "sunny"),
    },
    "Mumbai": {
        "country": "IN",
        "lat": 19.0760,
        "lon": 72.8777,
        "tz": "Asia/Kolkata",
        "airport": "BOM",
        "currency": "INR",
        "climate": (32, 22, 0.02, "hazy"),
    },
    "Singapore": {
        "country": "SG",
        "lat": 1.3521,
        "lon": 103.8198,
        "tz": "Asia/Singapore",
        "airport": "SIN",
        "currency": "SGD",
        "climate": (32, 25, 0.55, "thunderstorms"),
    },
    "Tokyo": {
        "country": "JP",
        "lat": 35.6762,
        "lon": 139.6503,
        "tz": "Asia/Tokyo",
        "airport": "HND",
        "currency": "JPY",
        "climate": (14, 5, 0.35, "partly cloudy"),
    },
    "Sydney": {
        "country": "AU",
        "lat": -33.8688,
        "lon": 151.2093,
        "tz": "Australia/Sydney",
        "airport": "SYD",
        "currency": "AUD",
        "climate": (25, 18, 0.4, "showers"),
    },
    "Sao Paulo": {
        "country": "BR",
        "lat": -23.5505,
        "lon": -46.6333,
        "tz": "America/Sao_Paulo",
        "airport": "GRU",
        "currency": "BRL",
        "climate": (28, 19, 0.55, "thunderstorms"),
    },
    "Cape Town": {
        "country": "ZA",
        "lat": -33.9249,
        "lon": 18.4241,
        "tz": "Africa/Johannesburg",
        "airport": "CPT",
        "currency": "ZAR",
        "climate": (26, 15, 0.1, "sunny"),
    },
}

AIRPORTS: dict[str, str] = {info["airport"]: city for city, info in CITIES.items()}
CITY_ALIASES = {
    "nyc": "New York",
    "new york city": "New York",
    "sf": "San Francisco",
    "cdmx": "Mexico City",
    "são paulo": "Sao Paulo",
    "bombay": "Mumbai",
    "capetown": "Cape Town",
}


def city_key(name: str) -> str | None:
    """Canonical city name for a case/spacing-insensitive query or an airport code."""
    q = " ".join(str(name).replace("_", " ").split()).lower()
    for city in CITIES:
        if city.lower() == q:
            return city
    if q in CITY_ALIASES:
        return CITY_ALIASES[q]
    code = q.upper()
    if code in AIRPORTS:
        return AIRPORTS[code]
    return None


def people(seed: int) -> list[dict[str, Any]]:
    """Twelve contacts c1..c12 for a seed: names, emails, phones, companies, birthdays, groups."""
    rng = rng_for("people", seed)
    firsts = rng.sample(FIRST_NAMES, 12)
    lasts = rng.sample(LAST_NAMES, 12)
    cities = list(CITIES)
    out: list[dict[str, Any]] = []
    for i, (first, last) in enumerate(zip(firsts, lasts, strict=True), start=1):
        company, domain = rng.choice(COMPANIES)
        local = f"{first}.{last}".lower().replace("'", "")
        bday = date(rng.randint(1965, 2001), rng.randint(1, 12), rng.randint(1, 28))
        groups = sorted(rng.sample(GROUPS, rng.choice([1, 1, 2])))
        out.append(
            {
                "id": f"c{i}",
                "first_name": first,
                "last_name": last,
                "name": f"{first} {last}",
                "email": f"{local}@{domain}",
                "phone": f"+1-555-{rng.randint(200, 989):03d}{rng.randint(0, 9)}",
                "company": company,
                "title": rng.choice(JOB_TITLES),
                "city": rng.choice(cities),
                "birthday": bday.isoformat(),
                "groups": groups,
                "notes": "",
            }
        )
    # One birthday falls in the coming two weeks so "upcoming birthdays" tasks are non-trivial.
    who = out[rng.randrange(12)]
    who["birthday"] = date(int(who["birthday"][:4]), 3, 2 + rng.randint(3, 12)).isoformat()
    return out
