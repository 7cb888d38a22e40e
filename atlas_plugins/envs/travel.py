"""Travel server: deterministic flight and hotel inventory between the fixture cities, plus bookings."""

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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
    money,
    new_server,
    one_of,
    parse_date,
    rng_for,
    stable_hash,
)
from ._fixtures import AIRPORTS, CITIES, OWNER, city_key
from ._tz import to_local, to_utc

AIRLINES = {
    "NW": "Northwind Air",
    "SK": "Skyline Airways",
    "AT": "Atlas Airlines",
    "BF": "Bluefin Air",
    "OJ": "Orbit Jet",
}
CABINS = {"economy": 1.0, "premium": 1.7, "business": 3.2, "first": 5.0}
ROOM_TYPES = {"standard": 1.0, "deluxe": 1.4, "suite": 2.2}
HOTEL_NAMES = ["{city} Grand Hotel", "The Harbor Inn", "{city} Central Suites", "Hotel Meridian", "Parkside Lodge"]
LAST_BOOKABLE = TODAY + timedelta(days=330)
_FLIGHT_RE = re.compile(r"^([A-Z]{2})(\d{2,4})-([A-Z]{3})([A-Z]{3})-(\d{8})$")

AirportArg = Annotated[str, arg("Airport code (e.g. 'JFK', 'LHR') or city name (e.g. 'London').")]
BookingArg = Annotated[str, arg("Booking reference, e.g. 'BK-1001' (from list_bookings or a book_* result).")]


@dataclass
class TravelState:
    seed: int
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_booking: int = 1001


def _airport(value: str, what: str) -> str:
    v = str(value).strip()
    if v.upper() in AIRPORTS:
        return v.upper()
    city = city_key(v)
    if city:
        return CITIES[city]["airport"]
    raise EnvError(f"unknown {what} '{value}'; airports: {', '.join(AIRPORTS)}")


def _km(a: str, b: str) -> float:
    p, q = CITIES[AIRPORTS[a]], CITIES[AIRPORTS[b]]
    la1, la2 = math.radians(p["lat"]), math.radians(q["lat"])
    dl = math.radians(q["lon"] - p["lon"])
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(dl / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def _bookable(d: date, what: str) -> date:
    if d < TODAY:
        raise EnvError(f"{what} {d} is in the past; today is {TODAY}")
    if d > LAST_BOOKABLE:
        raise EnvError(f"{what} {d} is too far ahead; bookings open up to {LAST_BOOKABLE}")
    return d


def flights_for(seed: int, origin: str, dest: str, d: date) -> list[dict[str, Any]]:
    """Every flight on a route and day: a pure function of (seed, route, date)."""
    rng = rng_for("flights", seed, origin, dest, d.isoformat())
    km = _km(origin, dest)
    tz_o, tz_d = CITIES[AIRPORTS[origin]]["tz"], CITIES[AIRPORTS[dest]]["tz"]
    out: list[dict[str, Any]] = []
    for _ in range(rng.randint(3, 6)):
        code = rng.choice(list(AIRLINES))
        number = rng.randint(10, 999) if km > 2500 else rng.randint(1000, 4999)
        stops = 0 if km < 1500 or rng.random() < 0.55 else 1
        dep_local = datetime.combine(d, datetime.min.time()) + timedelta(minutes=rng.randrange(6 * 60, 23 * 60, 5))
        minutes = int(km / 830 * 60 + 35 + stops * rng.randint(80, 200))
        arr_local = to_local(to_utc(dep_local, tz_o) + timedelta(minutes=minutes), tz_d)
        fid = f"{code}{number}-{origin}{dest}-{d.strftime('%Y%m%d')}"
        if any(f["flight_id"] == fid for f in out):
            continue
        economy = money((60 + km * 0.075) * rng.uniform(0.75, 1.45) * (0.85 if stops else 1.0))
        out.append(
            {
                "flight_id": fid,
                "airline": AIRLINES[code],
                "flight_number": f"{code}{number}",
                "origin": origin,
                "destination": dest,
                "departure": dep_local.strftime("%Y-%m-%d %H:%M"),
                "arrival": arr_local.strftime("%Y-%m-%d %H:%M"),
                "duration_minutes": minutes,
                "stops": stops,
                "prices": {c: money(economy * m) for c, m in CABINS.items()},
                "seats_left": rng.randint(1, 9),
            }
        )
    out.sort(key=lambda f: (f["departure"], f["flight_id"]))
    return out


def find_flight(seed: int, flight_id: str) -> dict[str, Any]:
    m = _FLIGHT_RE.match(flight_id.strip().upper())
    if not m:
        raise EnvError(
            f"invalid flight id '{flight_id}'; flight ids look like 'NW123-JFKLHR-20260316' (from search_flights)"
        )
    _, _, o, dst, ymd = m.groups()
    if o not in AIRPORTS or dst not in AIRPORTS:
        raise EnvError(f"flight id '{flight_id}' names an unknown airport; airports: {', '.join(AIRPORTS)}")
    d = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    for f in flights_for(seed, o, dst, d):
        if f["flight_id"] == flight_id.strip().upper():
            return f
    raise EnvError(f"no flight '{flight_id}'; use search_flights({o}, {dst}, {d}) to see that day's flights")


def hotels_for(seed: int, city: str) -> list[dict[str, Any]]:
    rng = rng_for("hotels", seed, city)
    code = CITIES[city]["airport"]
    scale = {"US": 1.2, "GB": 1.25, "FR": 1.15, "SE": 1.1, "JP": 1.1, "SG": 1.2, "AE": 1.1}.get(
        CITIES[city]["country"], 0.8
    )
    out = []
    for n, name in enumerate(rng.sample(HOTEL_NAMES, 3), start=1):
        stars = rng.choice([3, 3, 4, 4, 5])
        out.append(
            {
                "hotel_id": f"H-{code}-{n}",
                "name": name.format(city=city),
                "city": city,
                "stars": stars,
                "rating": round(rng.uniform(7.0, 9.6), 1),
                "nightly_rate": money(stars * 38 * scale * rng.uniform(0.85, 1.3)),
                "amenities": sorted(
                    rng.sample(["wifi", "breakfast", "gym", "pool", "spa", "parking", "airport shuttle"], 3)
                ),
                "address": f"{rng.randint(1, 250)} {rng.choice(['King', 'Harbor', 'Station', 'Park', 'Market'])} Street, {city}",
            }
        )
    return out


def find_hotel(seed: int, hotel_id: str) -> dict[str, Any]:
    hid = hotel_id.strip().upper()
    m = re.match(r"^H-([A-Z]{3})-\d$", hid)
    if not m or m.group(1) not in AIRPORTS:
        raise EnvError(f"invalid hotel id '{hotel_id}'; hotel ids look like 'H-LHR-2' (from search_hotels)")
    for h in hotels_for(seed, AIRPORTS[m.group(1)]):
        if h["hotel_id"] == hid:
            return h
    raise EnvError(f"no hotel '{hotel_id}'; use search_hotels for {AIRPORTS[m.group(1)]}")


def initial_state(seed: int, episode: str = "default") -> TravelState:
    st = TravelState(seed=seed)
    out_day = TODAY + timedelta(days=14)
    f = flights_for(seed, "JFK", "LHR", out_day)[0]
    st.bookings["BK-1001"] = _flight_booking("BK-1001", f, "economy", OWNER["name"])
    h = hotels_for(seed, "London")[0]
    arrive = date.fromisoformat(f["arrival"][:10])
    st.bookings["BK-1002"] = _hotel_booking("BK-1002", h, arrive, 3, "standard", OWNER["name"], 1)
    st.next_booking = 1003
    return st


def _flight_booking(bid: str, f: dict[str, Any], cabin: str, passenger: str) -> dict[str, Any]:
    return {
        "booking_id": bid,
        "type": "flight",
        "status": "confirmed",
        "flight_id": f["flight_id"],
        "airline": f["airline"],
        "route": f"{f['origin']}-{f['destination']}",
        "departure": f["departure"],
        "arrival": f["arrival"],
        "cabin": cabin,
        "passenger": passenger,
        "seat": None,
        "price": f["prices"][cabin],
        "checked_in": False,
        "messages": [],
    }


def _hotel_booking(
    bid: str, h: dict[str, Any], check_in: date, nights: int, room: str, guest: str, guests: int
) -> dict[str, Any]:
    rate = money(h["nightly_rate"] * ROOM_TYPES[room])
    return {
        "booking_id": bid,
        "type": "hotel",
        "status": "confirmed",
        "hotel_id": h["hotel_id"],
        "hotel": h["name"],
        "city": h["city"],
        "check_in": check_in.isoformat(),
        "check_out": (check_in + timedelta(days=nights)).isoformat(),
        "nights": nights,
        "room_type": room,
        "guests": guests,
        "guest_name": guest,
        "nightly_rate": rate,
        "price": money(rate * nights),
        "messages": [],
    }


def build(seed: int = 0) -> EnvServer:
    srv = new_server("travel", "Flight and hotel booking between 18 world cities; manage, change and cancel bookings.")
    store: EpisodeStore[TravelState] = EpisodeStore(initial_state, seed)

    def new_id(st: TravelState) -> str:
        bid = f"BK-{st.next_booking}"
        st.next_booking += 1
        return bid

    @srv.tool()
    async def list_airports() -> dict:
        """List the airports served, with city, country and time zone."""
        return {
            "airports": [
                {"code": i["airport"], "city": c, "country": i["country"], "timezone": i["tz"]}
                for c, i in CITIES.items()
            ]
        }

    @srv.tool()
    async def search_flights(
        origin: AirportArg,
        destination: AirportArg,
        date: Annotated[str, arg("Departure date YYYY-MM-DD (local time at the origin).")],
        ctx: Context,
        cabin: Annotated[str, arg(f"Cabin class for the shown price: {', '.join(CABINS)}.")] = "economy",
        max_stops: Annotated[int, arg("0 for non-stop only, 1 to allow one stop.", ge=0, le=1)] = 1,
        sort_by: Annotated[str, arg("'departure', 'price' or 'duration'.")] = "departure",
    ) -> dict:
        """Search flights on a route and date; returns flight ids, times (local), duration, stops and price."""
        st = store.get(ctx)
        o, d_ = _airport(origin, "origin"), _airport(destination, "destination")
        if o == d_:
            raise EnvError("origin and destination are the same airport")
        day = _bookable(parse_date(date, "date"), "departure date")
        c = one_of(cabin, list(CABINS), "cabin")
        order = one_of(sort_by, ["departure", "price", "duration"], "sort_by")
        fs = [f for f in flights_for(st.seed, o, d_, day) if f["stops"] <= max_stops]
        key = {
            "departure": lambda f: f["departure"],
            "price": lambda f: f["prices"][c],
            "duration": lambda f: f["duration_minutes"],
        }[order]
        fs.sort(key=lambda f: (key(f), f["flight_id"]))
        rows = [
            {
                k: f[k]
                for k in ("flight_id", "airline", "departure", "arrival", "duration_minutes", "stops", "seats_left")
            }
            | {"price": f["prices"][c], "cabin": c}
            for f in fs
        ]
        return {"origin": o, "destination": d_, "date": day.isoformat(), "flights": rows}

    @srv.tool()
    async def search_hotels(
        city: Annotated[str, arg("City name or airport code, e.g. 'Paris'.")],
        check_in: Annotated[str, arg("Check-in date YYYY-MM-DD.")],
        ctx: Context,
        nights: Annotated[int, arg("Number of nights (1-30).", ge=1, le=30)] = 1,
        max_price_per_night: Annotated[
            float | None, arg("Only hotels whose standard room costs at most this (USD).", gt=0)
        ] = None,
        min_stars: Annotated[int, arg("Minimum star rating (1-5).", ge=1, le=5)] = 1,
    ) -> dict:
        """Find hotels in a city for given dates, cheapest first, with nightly rate and total price."""
        st = store.get(ctx)
        c = city_key(city)
        if c is None:
            raise EnvError(f"unknown city '{city}'; cities: {', '.join(CITIES)}")
        d = _bookable(parse_date(check_in, "check_in"), "check-in date")
        hs = [
            h
            for h in hotels_for(st.seed, c)
            if h["stars"] >= min_stars and (max_price_per_night is None or h["nightly_rate"] <= max_price_per_night)
        ]
        hs.sort(key=lambda h: (h["nightly_rate"], h["hotel_id"]))
        return {
            "city": c,
            "check_in": d.isoformat(),
            "check_out": (d + timedelta(days=nights)).isoformat(),
            "nights": nights,
            "hotels": [
                {k: h[k] for k in ("hotel_id", "name", "stars", "rating", "nightly_rate")}
                | {"total_price": money(h["nightly_rate"] * nights)}
                for h in hs
            ],
        }

    @srv.tool()
    async def get_details(
        item_id: Annotated[str, arg("A flight id (e.g. 'NW123-JFKLHR-20260316') or hotel id (e.g. 'H-LHR-2').")],
        ctx: Context,
    ) -> dict:
        """Full details of a flight (all cabin prices) or a hotel (amenities, address, room types)."""
        st = store.get(ctx)
        if item_id.strip().upper().startswith("H-"):
            h = find_hotel(st.seed, item_id)
            return h | {
                "room_types": {r: money(h["nightly_rate"] * m) for r, m in ROOM_TYPES.items()},
                "cancellation": "free until 2 days before check-in, then one night is charged",
            }
        return find_flight(st.seed, item_id) | {"baggage": "1 carry-on included; checked bag $35 in economy"}

    @srv.tool()
    async def book_flight(
        flight_id: Annotated[str, arg("Flight id from search_flights, e.g. 'NW123-JFKLHR-20260316'.")],
        ctx: Context,
        cabin: Annotated[str, arg(f"Cabin class: {', '.join(CABINS)}.")] = "economy",
        passenger_name: Annotated[
            str, arg("Traveller's full name as on the passport.", min_length=2, max_length=100)
        ] = OWNER["name"],
    ) -> dict:
        """Book a seat on a flight; returns the booking reference and price."""
        st = store.get(ctx)
        f = find_flight(st.seed, flight_id)
        _bookable(date.fromisoformat(f["departure"][:10]), "departure date")
        c = one_of(cabin, list(CABINS), "cabin")
        taken = sum(
            1 for b in st.bookings.values() if b.get("flight_id") == f["flight_id"] and b["status"] != "cancelled"
        )
        if taken >= f["seats_left"]:
            raise EnvError(f"{f['flight_id']} is sold out; pick another flight from search_flights")
        bid = new_id(st)
        st.bookings[bid] = _flight_booking(bid, f, c, passenger_name.strip())
        return {"booking": st.bookings[bid]}

    @srv.tool()
    async def book_hotel(
        hotel_id: Annotated[str, arg("Hotel id from search_hotels, e.g. 'H-CDG-1'.")],
        check_in: Annotated[str, arg("Check-in date YYYY-MM-DD.")],
        nights: Annotated[int, arg("Number of nights (1-30).", ge=1, le=30)],
        ctx: Context,
        room_type: Annotated[str, arg(f"Room type: {', '.join(ROOM_TYPES)}.")] = "standard",
        guests: Annotated[int, arg("Number of guests (1-4).", ge=1, le=4)] = 1,
        guest_name: Annotated[str, arg("Name the reservation is under.", min_length=2, max_length=100)] = OWNER["name"],
    ) -> dict:
        """Reserve a hotel room for some nights; returns the booking reference and total price."""
        st = store.get(ctx)
        h = find_hotel(st.seed, hotel_id)
        d = _bookable(parse_date(check_in, "check_in"), "check-in date")
        room = one_of(room_type, list(ROOM_TYPES), "room_type")
        if guests > 2 and room == "standard":
            raise EnvError("a standard room sleeps at most 2; choose 'deluxe' or 'suite' for 3-4 guests")
        bid = new_id(st)
        st.bookings[bid] = _hotel_booking(bid, h, d, nights, room, guest_name.strip(), guests)
        return {"booking": st.bookings[bid]}

    @srv.tool()
    async def list_bookings(
        ctx: Context,
        status: Annotated[str | None, arg("Only 'confirmed' or 'cancelled' bookings.")] = None,
        booking_type: Annotated[str | None, arg("Only 'flight' or 'hotel' bookings.")] = None,
    ) -> dict:
        """List your bookings with their type, status, dates and price."""
        st = store.get(ctx)
        s = one_of(status, ["confirmed", "cancelled"], "status") if status else None
        t = one_of(booking_type, ["flight", "hotel"], "booking_type") if booking_type else None
        rows = []
        for b in st.bookings.values():
            if (s and b["status"] != s) or (t and b["type"] != t):
                continue
            when = b["departure"] if b["type"] == "flight" else b["check_in"]
            what = f"{b['airline']} {b['route']}" if b["type"] == "flight" else f"{b['hotel']} ({b['city']})"
            rows.append(
                {
                    "booking_id": b["booking_id"],
                    "type": b["type"],
                    "status": b["status"],
                    "what": what,
                    "when": when,
                    "price": b["price"],
                }
            )
        return {"bookings": rows}

    @srv.tool()
    async def get_booking(booking_id: BookingArg, ctx: Context) -> dict:
        """Every detail of one booking, including seat, check-in status and messages."""
        return dict(lookup(store.get(ctx).bookings, booking_id, "booking reference"))

    @srv.tool()
    async def cancel_booking(booking_id: BookingArg, ctx: Context) -> dict:
        """Cancel a booking and report the refund under the fare or hotel rules."""
        b = lookup(store.get(ctx).bookings, booking_id, "booking reference")
        if b["status"] == "cancelled":
            raise EnvError(f"{b['booking_id']} is already cancelled")
        if b["type"] == "flight":
            if b["checked_in"]:
                raise EnvError(f"{b['booking_id']} is already checked in; contact the airline with send_message")
            days = (date.fromisoformat(b["departure"][:10]) - TODAY).days
            share = 1.0 if b["cabin"] in ("business", "first") else 0.8 if days > 7 else 0.5
            rule = (
                "full refund for business/first"
                if share == 1.0
                else f"{int(share * 100)}% refund ({days} days before departure)"
            )
        else:
            days = (date.fromisoformat(b["check_in"]) - TODAY).days
            share = 1.0 if days >= 2 else (b["nights"] - 1) / b["nights"]
            rule = "free cancellation" if days >= 2 else "one night charged (less than 2 days before check-in)"
        b["status"] = "cancelled"
        return {"booking_id": b["booking_id"], "status": "cancelled", "refund": money(b["price"] * share), "rule": rule}

    @srv.tool()
    async def change_flight(
        booking_id: BookingArg,
        new_flight_id: Annotated[
            str, arg("Flight id of the replacement flight on the same route (from search_flights).")
        ],
        ctx: Context,
    ) -> dict:
        """Move a flight booking to another flight on the same route; economy changes cost a $75 fee."""
        st = store.get(ctx)
        b = lookup(st.bookings, booking_id, "booking reference")
        if b["type"] != "flight" or b["status"] != "confirmed":
            raise EnvError(
                f"{b['booking_id']} is a {b['status']} {b['type']} booking; only confirmed flights can be changed"
            )
        f = find_flight(st.seed, new_flight_id)
        if f"{f['origin']}-{f['destination']}" != b["route"]:
            raise EnvError(
                f"new flight flies {f['origin']}-{f['destination']} but the booking is {b['route']}; book a new flight instead"
            )
        _bookable(date.fromisoformat(f["departure"][:10]), "departure date")
        fee = 75.0 if b["cabin"] == "economy" else 0.0
        diff = money(f["prices"][b["cabin"]] - b["price"])
        old = b["flight_id"]
        b.update(
            flight_id=f["flight_id"],
            airline=f["airline"],
            departure=f["departure"],
            arrival=f["arrival"],
            price=f["prices"][b["cabin"]],
            seat=None,
            checked_in=False,
        )
        return {
            "booking_id": b["booking_id"],
            "old_flight_id": old,
            "new_flight_id": f["flight_id"],
            "change_fee": fee,
            "fare_difference": diff,
            "amount_due": money(fee + max(diff, 0.0)),
        }

    @srv.tool()
    async def choose_seat(
        booking_id: BookingArg,
        seat: Annotated[str, arg("Seat like '14C': row 1-40 and letter A-F (rows 1-6 are business/first).")],
        ctx: Context,
    ) -> dict:
        """Pick a seat on a booked flight (some seats are already taken)."""
        st = store.get(ctx)
        b = lookup(st.bookings, booking_id, "booking reference")
        if b["type"] != "flight" or b["status"] != "confirmed":
            raise EnvError(f"{b['booking_id']} is not a confirmed flight booking")
        m = re.fullmatch(r"(\d{1,2})([A-Fa-f])", seat.strip())
        if not m or not 1 <= int(m.group(1)) <= 40:
            raise EnvError(f"invalid seat '{seat}'; use row 1-40 plus a letter A-F, e.g. '14C'")
        row, s = int(m.group(1)), f"{int(m.group(1))}{m.group(2).upper()}"
        premium = b["cabin"] in ("business", "first")
        if premium != (row <= 6):
            raise EnvError(f"row {row} is not in {b['cabin']}; {'rows 1-6' if premium else 'rows 7-40'} are")
        if stable_hash(st.seed, b["flight_id"], s) % 3 == 0:
            free = [
                f"{r}{c}"
                for r in (range(1, 7) if premium else range(7, 41))
                for c in "ACDF"
                if stable_hash(st.seed, b["flight_id"], f"{r}{c}") % 3
            ][:6]
            raise EnvError(f"seat {s} is taken; some free seats: {', '.join(free)}")
        b["seat"] = s
        return {"booking_id": b["booking_id"], "seat": s, "window": s[-1] in "AF", "aisle": s[-1] in "CD"}

    @srv.tool()
    async def check_in(booking_id: BookingArg, ctx: Context) -> dict:
        """Online check-in for a flight departing within the next 48 hours; returns a boarding pass."""
        st = store.get(ctx)
        b = lookup(st.bookings, booking_id, "booking reference")
        if b["type"] != "flight" or b["status"] != "confirmed":
            raise EnvError(f"{b['booking_id']} is not a confirmed flight booking")
        origin_tz = CITIES[AIRPORTS[b["route"][:3]]]["tz"]
        dep = to_utc(datetime.fromisoformat(b["departure"]), origin_tz)  # departure is local; NOW is UTC
        if not NOW_UTC - timedelta(hours=1) <= dep <= NOW_UTC + timedelta(hours=48):
            raise EnvError(
                f"online check-in opens 48 hours before departure ({b['departure']} local); now is {NOW_UTC:%Y-%m-%d %H:%M} UTC"
            )
        if b["seat"] is None:
            rng = rng_for("autoseat", st.seed, b["flight_id"])
            b["seat"] = (
                f"{rng.randint(1, 6) if b['cabin'] in ('business', 'first') else rng.randint(7, 40)}{rng.choice('ABCDEF')}"
            )
        b["checked_in"] = True
        return {
            "booking_id": b["booking_id"],
            "boarding_pass": {
                "passenger": b["passenger"],
                "flight": b["flight_id"].split("-")[0],
                "route": b["route"],
                "departure": b["departure"],
                "seat": b["seat"],
                "gate": f"{'ABC'[stable_hash(b['flight_id']) % 3]}{stable_hash(b['flight_id']) % 30 + 1}",
            },
        }

    @srv.tool()
    async def get_baggage_policy(
        airline: Annotated[
            str, arg(f"Airline name or 2-letter code: {', '.join(f'{k} ({v})' for k, v in AIRLINES.items())}.")
        ],
    ) -> dict:
        """Baggage allowance and fees of an airline."""
        key = next(
            (k for k, v in AIRLINES.items() if airline.strip().upper() == k or airline.strip().lower() == v.lower()),
            None,
        )
        if key is None:
            raise EnvError(
                f"unknown airline '{airline}'; airlines: {', '.join(f'{k} ({v})' for k, v in AIRLINES.items())}"
            )
        h = stable_hash("bag", key)
        return {
            "airline": AIRLINES[key],
            "carry_on_kg": 7 + h % 4,
            "checked_bag_kg": 23,
            "checked_bag_fee_economy": 30 + 5 * (h % 3),
            "free_checked_bags": {"economy": 0, "premium": 1, "business": 2, "first": 3},
        }

    @srv.tool()
    async def send_message(
        booking_id: BookingArg,
        message: Annotated[
            str,
            arg(
                "Request or question for the airline or hotel, e.g. 'vegetarian meal please'.",
                min_length=1,
                max_length=1000,
            ),
        ],
        ctx: Context,
    ) -> dict:
        """Send a message to the airline or hotel about a booking; it is recorded on the booking."""
        b = lookup(store.get(ctx).bookings, booking_id, "booking reference")
        who = b["airline"] if b["type"] == "flight" else b["hotel"]
        entry = {
            "n": len(b["messages"]) + 1,
            "to": who,
            "text": message,
            "reply": f"Thank you, {who} has noted your request on booking {b['booking_id']}.",
        }
        b["messages"].append(entry)
        return entry

    return srv


if __name__ == "__main__":
    main(build)
