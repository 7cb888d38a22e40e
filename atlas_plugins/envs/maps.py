"""Maps server: a baked-in catalogue of places in the fixture cities, directions, distances, saved lists."""

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from ._base import (
    NOW_UTC,
    TODAY,
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    arg,
    lookup,
    main,
    new_server,
    one_of,
    parse_date,
    rng_for,
)
from ._fixtures import CITIES, city_key
from ._tz import to_local

CATEGORIES = ["landmark", "museum", "park", "restaurant", "cafe", "supermarket", "pharmacy", "gym", "library", "bar"]
LANDMARKS: dict[str, list[tuple[str, str]]] = {
    "New York": [("Central Park", "park"), ("Metropolitan Museum of Art", "museum"), ("Times Square", "landmark")],
    "San Francisco": [("Golden Gate Park", "park"), ("SFMOMA", "museum"), ("Ferry Building", "landmark")],
    "London": [("Hyde Park", "park"), ("British Museum", "museum"), ("Tower Bridge", "landmark")],
    "Paris": [("Jardin du Luxembourg", "park"), ("Louvre Museum", "museum"), ("Eiffel Tower", "landmark")],
    "Berlin": [("Tiergarten", "park"), ("Pergamon Museum", "museum"), ("Brandenburg Gate", "landmark")],
    "Tokyo": [("Ueno Park", "park"), ("Tokyo National Museum", "museum"), ("Senso-ji Temple", "landmark")],
    "Sydney": [("Royal Botanic Garden", "park"), ("Australian Museum", "museum"), ("Sydney Opera House", "landmark")],
}
BUSINESS_NAMES = {
    "restaurant": ["Osteria Rossa", "The Copper Pot", "Saffron House", "Blue Door Bistro", "Noodle Bar"],
    "cafe": ["Cafe Lumiere", "Bean There", "Morning Ritual Coffee", "The Daily Grind"],
    "supermarket": ["FreshMart", "Green Grocer", "Corner Market"],
    "pharmacy": ["CityCare Pharmacy", "Wellness Chemist"],
    "gym": ["IronCore Fitness", "Studio Flow"],
    "library": ["Public Library - Central Branch"],
    "bar": ["The Night Owl", "Hops & Barley"],
}
STREETS = [
    "Main Street",
    "Oak Avenue",
    "Market Street",
    "River Road",
    "King Street",
    "Park Lane",
    "Station Road",
    "High Street",
]
SPEED_KMH = {"walking": 4.8, "cycling": 15.0, "driving": 28.0, "transit": 20.0}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

PlaceArg = Annotated[str, arg("Place id, e.g. 'pl12' (from search or nearby).")]


def _catalogue() -> dict[str, dict[str, Any]]:
    """Seed-independent place list: the same ids exist in every world (ratings vary by seed)."""
    places: dict[str, dict[str, Any]] = {}
    n = 0
    for city, info in CITIES.items():
        rng = rng_for("places", city)
        items = list(
            LANDMARKS.get(
                city,
                [
                    (f"{city} Central Park", "park"),
                    (f"{city} City Museum", "museum"),
                    (f"Old Town Square {city}", "landmark"),
                ],
            )
        )
        for cat in ("restaurant", "restaurant", "cafe", "supermarket", "pharmacy", "gym", "library", "bar"):
            items.append((rng.choice(BUSINESS_NAMES[cat]), cat))
        seen: set[str] = set()
        for name, cat in items:
            if name in seen:
                continue
            seen.add(name)
            n += 1
            lat = info["lat"] + rng.uniform(-0.035, 0.035)
            lon = info["lon"] + rng.uniform(-0.045, 0.045)
            if cat in ("park", "landmark"):
                hours = ("06:00", "22:00") if cat == "park" else ("00:00", "23:59")
            else:
                hours = {
                    "museum": ("10:00", "18:00"),
                    "restaurant": ("11:30", "22:30"),
                    "cafe": ("07:00", "18:00"),
                    "supermarket": ("07:00", "22:00"),
                    "pharmacy": ("08:00", "20:00"),
                    "gym": ("05:30", "23:00"),
                    "library": ("09:00", "20:00"),
                    "bar": ("16:00", "23:59"),
                }[cat]
            closed = {"museum": ["Monday"], "library": ["Sunday"]}.get(cat, [])
            places[f"pl{n}"] = {
                "id": f"pl{n}",
                "name": name,
                "category": cat,
                "city": city,
                "address": f"{rng.randint(1, 400)} {rng.choice(STREETS)}, {city}",
                "lat": round(lat, 5),
                "lon": round(lon, 5),
                "hours": hours,
                "closed_on": closed,
                "phone": f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                "price_level": "$" * rng.randint(1, 4) if cat in ("restaurant", "cafe", "bar") else None,
            }
    return places


PLACES = _catalogue()


def km_between(a: dict[str, Any], b: dict[str, Any]) -> float:
    la1, la2 = math.radians(a["lat"]), math.radians(b["lat"])
    dl = math.radians(b["lon"] - a["lon"])
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(dl / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def _bearing(a: dict[str, Any], b: dict[str, Any]) -> str:
    ang = math.degrees(math.atan2(b["lon"] - a["lon"], b["lat"] - a["lat"])) % 360
    return ["north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest"][
        int((ang + 22.5) // 45) % 8
    ]


@dataclass
class MapsState:
    seed: int
    saved: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {"Favorites": []})
    reviews: dict[str, dict[str, Any]] = field(default_factory=dict)


def build(seed: int = 0) -> EnvServer:
    srv = new_server("maps", "Maps: search places in 18 cities, details and opening hours, directions, saved lists.")
    store: EpisodeStore[MapsState] = EpisodeStore(lambda s, e: MapsState(seed=s), seed)

    def place(place_id: str) -> dict[str, Any]:
        return lookup(PLACES, place_id.strip().lower(), "place id", "find ids with search or nearby")

    def rating(st: MapsState, p: dict[str, Any]) -> float:
        base = round(rng_for("rating", st.seed, p["id"]).uniform(3.5, 4.9), 1)
        mine = st.reviews.get(p["id"])
        return round((base * 50 + mine["stars"]) / 51, 2) if mine else base

    def card(st: MapsState, p: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": p["id"],
            "name": p["name"],
            "category": p["category"],
            "city": p["city"],
            "rating": rating(st, p),
        } | (extra or {})

    def open_on(p: dict[str, Any], day_name: str) -> bool:
        return day_name not in p["closed_on"]

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Name or kind of place, e.g. 'museum', 'coffee', 'Louvre'. Empty matches all.")],
        ctx: Context,
        city: Annotated[str | None, arg("Restrict to a city, e.g. 'Paris'.")] = None,
        category: Annotated[str | None, arg(f"Restrict to a category: {', '.join(CATEGORIES)}.")] = None,
        limit: Annotated[int, arg("Maximum results.", ge=1, le=50)] = 10,
    ) -> dict:
        """Search places by name or kind, optionally within one city or category; best rated first."""
        st = store.get(ctx)
        c = None
        if city:
            c = city_key(city)
            if c is None:
                raise EnvError(f"unknown city '{city}'; cities: {', '.join(CITIES)}")
        cat = one_of(category, CATEGORIES, "category") if category else None
        synonyms = {
            "coffee": "cafe",
            "food": "restaurant",
            "grocery": "supermarket",
            "drugstore": "pharmacy",
            "pub": "bar",
        }
        words = [synonyms.get(w, w) for w in query.lower().split()]
        hits = [
            p
            for p in PLACES.values()
            if (c is None or p["city"] == c)
            and (cat is None or p["category"] == cat)
            and all(w in f"{p['name']} {p['category']} {p['address']}".lower() for w in words)
        ]
        hits.sort(key=lambda p: (-rating(st, p), p["id"]))
        return {"query": query, "total": len(hits), "places": [card(st, p) for p in hits[:limit]]}

    @srv.tool()
    async def get_details(place_id: PlaceArg, ctx: Context) -> dict:
        """Everything about a place: address, coordinates, phone, hours, price level, rating, your review."""
        st = store.get(ctx)
        p = place(place_id)
        out = {k: v for k, v in p.items() if k != "hours"} | {
            "opens": p["hours"][0],
            "closes": p["hours"][1],
            "rating": rating(st, p),
        }
        if p["id"] in st.reviews:
            out["your_review"] = st.reviews[p["id"]]
        return out

    @srv.tool()
    async def nearby(
        place_id: PlaceArg,
        ctx: Context,
        radius_km: Annotated[float, arg("Search radius in kilometres.", gt=0, le=50)] = 2.0,
        category: Annotated[str | None, arg("Only this category, e.g. 'cafe'.")] = None,
    ) -> dict:
        """Places within a radius of another place, nearest first, with distances."""
        st = store.get(ctx)
        p = place(place_id)
        cat = one_of(category, CATEGORIES, "category") if category else None
        rows = sorted(
            (
                (km_between(p, q), q)
                for q in PLACES.values()
                if q["id"] != p["id"] and q["city"] == p["city"] and (cat is None or q["category"] == cat)
            ),
            key=lambda t: (t[0], t[1]["id"]),
        )
        return {
            "center": p["id"],
            "radius_km": radius_km,
            "places": [card(st, q, {"distance_km": round(d, 2)}) for d, q in rows if d <= radius_km],
        }

    @srv.tool()
    async def geocode(address: Annotated[str, arg("A place name, street address or city name.", min_length=2)]) -> dict:
        """Turn a place name, address or city into coordinates."""
        q = address.strip().lower()
        for p in PLACES.values():
            if q in (p["name"].lower(), p["address"].lower()) or q == f"{p['name']}, {p['city']}".lower():
                return {
                    "query": address,
                    "lat": p["lat"],
                    "lon": p["lon"],
                    "match": "place",
                    "place_id": p["id"],
                    "city": p["city"],
                }
        c = city_key(address)
        if c:
            return {"query": address, "lat": CITIES[c]["lat"], "lon": CITIES[c]["lon"], "match": "city", "city": c}
        partial = [p for p in PLACES.values() if q in p["name"].lower() or q in p["address"].lower()]
        if partial:
            p = partial[0]
            return {
                "query": address,
                "lat": p["lat"],
                "lon": p["lon"],
                "match": "partial",
                "place_id": p["id"],
                "city": p["city"],
            }
        raise EnvError(f"could not geocode '{address}'; try a place name from search or one of: {', '.join(CITIES)}")

    @srv.tool()
    async def reverse_geocode(
        lat: Annotated[float, arg("Latitude in degrees (-90 to 90).", ge=-90, le=90)],
        lon: Annotated[float, arg("Longitude in degrees (-180 to 180).", ge=-180, le=180)],
    ) -> dict:
        """Nearest known place and city to a coordinate."""
        pt = {"lat": lat, "lon": lon}
        best = min(PLACES.values(), key=lambda p: (km_between(pt, p), p["id"]))
        city = min(CITIES, key=lambda c: km_between(pt, CITIES[c]))
        return {
            "lat": lat,
            "lon": lon,
            "nearest_place": {
                "id": best["id"],
                "name": best["name"],
                "address": best["address"],
                "distance_km": round(km_between(pt, best), 2),
            },
            "city": city,
            "city_distance_km": round(km_between(pt, CITIES[city]), 1),
        }

    @srv.tool()
    async def get_directions(
        origin: PlaceArg,
        destination: PlaceArg,
        ctx: Context,
        mode: Annotated[str, arg(f"Travel mode: {', '.join(SPEED_KMH)}.")] = "walking",
    ) -> dict:
        """Route between two places in the same city: distance, duration and turn-by-turn steps."""
        a, b = place(origin), place(destination)
        m = one_of(mode, list(SPEED_KMH), "mode")
        if a["city"] != b["city"]:
            raise EnvError(
                f"{a['id']} is in {a['city']} and {b['id']} in {b['city']}; directions work within one city "
                "(use the travel server for flights)"
            )
        if a["id"] == b["id"]:
            raise EnvError("origin and destination are the same place")
        km = km_between(a, b) * 1.3  # streets are not straight lines
        minutes = km / SPEED_KMH[m] * 60 + (8 if m == "transit" else 0)
        rng = rng_for("route", a["id"], b["id"], m)
        streets = rng.sample(STREETS, 3)
        legs = [0.3, 0.5, 0.2]
        steps = [
            f"Head {_bearing(a, b)} on {streets[0]} for {km * legs[0]:.1f} km",
            f"{'Board the metro' if m == 'transit' else rng.choice(['Turn left', 'Turn right'])} onto {streets[1]} for {km * legs[1]:.1f} km",
            f"{rng.choice(['Turn left', 'Turn right', 'Continue'])} onto {streets[2]}; {b['name']} is after {km * legs[2]:.1f} km",
        ]
        return {
            "origin": a["name"],
            "destination": b["name"],
            "mode": m,
            "distance_km": round(km, 2),
            "duration_minutes": round(minutes),
            "steps": steps,
        }

    @srv.tool()
    async def distance_between(place_a: PlaceArg, place_b: PlaceArg) -> dict:
        """Straight-line distance between two places (any cities) in km and miles."""
        a, b = place(place_a), place(place_b)
        km = km_between(a, b)
        return {"from": a["name"], "to": b["name"], "km": round(km, 2), "miles": round(km / 1.609344, 2)}

    @srv.tool()
    async def list_categories() -> dict:
        """List place categories and how many places each has."""
        return {
            "categories": [{"name": c, "places": sum(p["category"] == c for p in PLACES.values())} for c in CATEGORIES]
        }

    @srv.tool()
    async def get_opening_hours(
        place_id: PlaceArg,
        date: Annotated[str, arg("Day to check, YYYY-MM-DD or 'today'/'tomorrow'.")] = "today",
    ) -> dict:
        """Opening hours of a place on a date, and whether it is open right now (local time)."""
        p = place(place_id)
        d = parse_date(date)
        day = DAYS[d.weekday()]
        local_now = to_local(NOW_UTC, CITIES[p["city"]]["tz"])
        is_open_day = open_on(p, day)
        now_open = (
            open_on(p, DAYS[local_now.weekday()]) and p["hours"][0] <= local_now.strftime("%H:%M") < p["hours"][1]
        )
        return {
            "place_id": p["id"],
            "name": p["name"],
            "date": d.isoformat(),
            "weekday": day,
            "open": is_open_day,
            "hours": f"{p['hours'][0]}-{p['hours'][1]}" if is_open_day else "closed",
            "local_time_now": local_now.strftime("%Y-%m-%d %H:%M"),
            "open_now": now_open,
        }

    @srv.tool()
    async def save_place(
        place_id: PlaceArg,
        ctx: Context,
        list_name: Annotated[
            str,
            arg(
                "Saved list to add it to (created if new), e.g. 'Favorites', 'Paris trip'.", min_length=1, max_length=40
            ),
        ] = "Favorites",
        note: Annotated[str, arg("Optional personal note.")] = "",
    ) -> dict:
        """Save a place to one of your lists."""
        st = store.get(ctx)
        p = place(place_id)
        key = next((k for k in st.saved if k.lower() == list_name.strip().lower()), list_name.strip())
        lst = st.saved.setdefault(key, [])
        if any(x["place_id"] == p["id"] for x in lst):
            raise EnvError(f"{p['id']} ({p['name']}) is already in '{key}'")
        lst.append({"place_id": p["id"], "name": p["name"], "note": note})
        return {"list": key, "places": lst}

    @srv.tool()
    async def list_saved_places(
        ctx: Context,
        list_name: Annotated[str | None, arg("Only this list; default all lists.")] = None,
    ) -> dict:
        """Show your saved lists and the places in them."""
        st = store.get(ctx)
        if list_name is None:
            return {"lists": st.saved}
        key = next((k for k in st.saved if k.lower() == list_name.strip().lower()), None)
        if key is None:
            raise EnvError(f"no saved list '{list_name}'; lists: {', '.join(st.saved)}")
        return {"lists": {key: st.saved[key]}}

    @srv.tool()
    async def remove_saved_place(
        place_id: PlaceArg,
        ctx: Context,
        list_name: Annotated[str, arg("List to remove it from.")] = "Favorites",
    ) -> dict:
        """Remove a place from a saved list."""
        st = store.get(ctx)
        key = next((k for k in st.saved if k.lower() == list_name.strip().lower()), None)
        if key is None:
            raise EnvError(f"no saved list '{list_name}'; lists: {', '.join(st.saved)}")
        lst = st.saved[key]
        for i, x in enumerate(lst):
            if x["place_id"] == place_id.strip().lower():
                del lst[i]
                return {"list": key, "places": lst}
        raise EnvError(f"{place_id} is not in '{key}'; it holds: {', '.join(x['place_id'] for x in lst) or 'nothing'}")

    @srv.tool()
    async def rate_place(
        place_id: PlaceArg,
        stars: Annotated[int, arg("Your rating from 1 to 5.", ge=1, le=5)],
        ctx: Context,
        review: Annotated[str, arg("Optional review text.", max_length=1000)] = "",
    ) -> dict:
        """Rate and review a place (replaces your earlier review of it)."""
        st = store.get(ctx)
        p = place(place_id)
        st.reviews[p["id"]] = {"stars": stars, "review": review, "date": TODAY.isoformat()}
        return {"place_id": p["id"], "your_review": st.reviews[p["id"]], "rating": rating(st, p)}

    return srv


if __name__ == "__main__":
    main(build)
