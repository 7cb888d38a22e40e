"""Weather server: deterministic conditions from baked-in March climate fixtures plus a seeded jitter."""

import math
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
    main,
    new_server,
    one_of,
    parse_date,
    rng_for,
)
from ._fixtures import CITIES, city_key
from ._tz import to_local

CONDITIONS = [
    "sunny",
    "partly cloudy",
    "cloudy",
    "overcast",
    "fog",
    "hazy",
    "light rain",
    "showers",
    "rain",
    "thunderstorms",
    "snow showers",
]
WET = {"light rain", "showers", "rain", "thunderstorms", "snow showers"}
UNIT_SYSTEMS = ["metric", "imperial"]
FIRST_DAY, LAST_DAY = TODAY - timedelta(days=7), TODAY + timedelta(days=13)

CityArg = Annotated[str, arg("City name (e.g. 'Paris', 'New York') or its airport code (e.g. 'CDG').")]
UnitsArg = Annotated[str, arg("'metric' (Celsius, km/h, mm) or 'imperial' (Fahrenheit, mph, inches).")]


@dataclass
class WeatherState:
    seed: int  # the episode's seed drives the jitter, so an episode seed gives a different world
    favorites: list[str] = field(default_factory=list)


def _city(name: str) -> str:
    key = city_key(name)
    if key is None:
        raise EnvError(f"unknown city '{name}'; supported: {', '.join(CITIES)}")
    return key


def _day(seed: int, city: str, d: date) -> dict[str, Any]:
    """Daily weather for a city: a pure function of (seed, city, date)."""
    if not FIRST_DAY <= d <= LAST_DAY:
        raise EnvError(
            f"no data for {d}; daily weather covers {FIRST_DAY} to {LAST_DAY} (use get_historical_average otherwise)"
        )
    hi0, lo0, rain_p, typical = CITIES[city]["climate"]
    rng = rng_for("weather", seed, city, d.isoformat())
    hi = hi0 + rng.uniform(-4, 4) + (d - TODAY).days * 0.15
    lo = min(lo0 + rng.uniform(-3, 3), hi - 3)
    wet = rng.random() < rain_p
    if wet:
        cond = (
            "snow showers"
            if hi < 4
            else rng.choice(["light rain", "showers", "rain"] + (["thunderstorms"] if hi > 20 else []))
        )
        if typical in WET and rng.random() < 0.5:
            cond = typical
    else:
        cond = (
            typical if typical not in WET and rng.random() < 0.5 else rng.choice(["sunny", "partly cloudy", "cloudy"])
        )
    return {
        "date": d.isoformat(),
        "high_c": round(hi, 1),
        "low_c": round(lo, 1),
        "condition": cond,
        "precip_chance": round(min(0.95, rain_p + 0.45) if wet else max(0.0, rain_p - 0.2), 2),
        "precip_mm": round(rng.uniform(1, 18) if wet else 0.0, 1),
        "humidity": rng.randint(45 if not wet else 70, 95 if wet else 75),
        "wind_kph": round(rng.uniform(5, 45 if wet else 25), 1),
        "uv_index": max(0, round((hi - 5) / 4 - (3 if wet else 0))),
    }


def _temp_at(day: dict[str, Any], hour: int) -> float:
    # Coldest ~05:00, warmest ~15:00: a shifted cosine between low and high.
    frac = (
        (1 - math.cos(math.pi * ((hour - 5) % 24) / 10)) / 2
        if (hour - 5) % 24 <= 10
        else (1 + math.cos(math.pi * ((hour - 15) % 24) / 14)) / 2
    )
    return round(day["low_c"] + (day["high_c"] - day["low_c"]) * frac, 1)


def _units(reading: dict[str, Any], system: str) -> dict[str, Any]:
    if system == "metric":
        return reading
    out = {}
    for k, v in reading.items():
        if k.endswith("_c"):
            out[k[:-2] + "_f"] = round(v * 9 / 5 + 32, 1)
        elif k.endswith("_kph"):
            out[k[:-4] + "_mph"] = round(v / 1.609344, 1)
        elif k.endswith("_mm"):
            out[k[:-3] + "_in"] = round(v / 25.4, 2)
        else:
            out[k] = v
    return out


def sun_times(lat: float, lon: float, d: date) -> tuple[datetime, datetime]:
    """Approximate sunrise/sunset in UTC (NOAA general solar position formulas)."""
    g = 2 * math.pi / 365 * (d.timetuple().tm_yday - 1)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    la = math.radians(lat)
    cos_ha = math.cos(math.radians(90.833)) / (math.cos(la) * math.cos(decl)) - math.tan(la) * math.tan(decl)
    ha = math.degrees(math.acos(max(-1.0, min(1.0, cos_ha))))
    midnight = datetime.combine(d, datetime.min.time())
    return (
        midnight + timedelta(minutes=720 - 4 * (lon + ha) - eqtime),
        midnight + timedelta(minutes=720 - 4 * (lon - ha) - eqtime),
    )


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "weather", "Weather for 18 world cities: current, daily and hourly forecasts, alerts, air quality."
    )
    store: EpisodeStore[WeatherState] = EpisodeStore(lambda s, e: WeatherState(seed=s), seed)

    def current(seed: int, city: str, system: str) -> dict[str, Any]:
        local = to_local(NOW_UTC, CITIES[city]["tz"])
        day = _day(seed, city, local.date())
        rng = rng_for("weather-now", seed, city)
        temp = _temp_at(day, local.hour)
        reading = {
            "temp_c": temp,
            "feels_like_c": round(temp - day["wind_kph"] / 10, 1),
            "condition": day["condition"],
            "humidity": day["humidity"],
            "wind_kph": round(day["wind_kph"] * rng.uniform(0.7, 1.1), 1),
            "pressure_hpa": rng.randint(998, 1030),
        }
        return {"city": city, "local_time": local.strftime("%Y-%m-%d %H:%M"), **_units(reading, system)}

    @srv.tool()
    async def get_current(city: CityArg, ctx: Context, units: UnitsArg = "metric") -> dict:
        """Current conditions in a city: temperature, feels-like, condition, humidity, wind, pressure."""
        return current(store.get(ctx).seed, _city(city), one_of(units, UNIT_SYSTEMS, "units"))

    @srv.tool()
    async def get_forecast(
        city: CityArg,
        ctx: Context,
        days: Annotated[int, arg("Number of days starting today (1 to 14).", ge=1, le=14)] = 3,
        units: UnitsArg = "metric",
    ) -> dict:
        """Daily forecast: high/low temperature, condition, chance and amount of precipitation, wind, UV."""
        c, system, seed = _city(city), one_of(units, UNIT_SYSTEMS, "units"), store.get(ctx).seed
        return {"city": c, "days": [_units(_day(seed, c, TODAY + timedelta(days=i)), system) for i in range(days)]}

    @srv.tool()
    async def get_hourly(
        city: CityArg,
        ctx: Context,
        date: Annotated[str, arg("Day to show, YYYY-MM-DD or 'today'/'tomorrow'.")] = "today",
        units: UnitsArg = "metric",
    ) -> dict:
        """Three-hourly temperatures and conditions for one day (local time)."""
        c, system, seed = _city(city), one_of(units, UNIT_SYSTEMS, "units"), store.get(ctx).seed
        day = _day(seed, c, parse_date(date))
        rng = rng_for("weather-hourly", seed, c, day["date"])
        hours = []
        for h in range(0, 24, 3):
            cond = day["condition"] if rng.random() < 0.7 else rng.choice(["partly cloudy", "cloudy", day["condition"]])
            hours.append(
                _units(
                    {
                        "time": f"{h:02d}:00",
                        "temp_c": _temp_at(day, h),
                        "condition": cond,
                        "precip_chance": round(min(1.0, day["precip_chance"] * rng.uniform(0.6, 1.3)), 2),
                    },
                    system,
                )
            )
        return {"city": c, "date": day["date"], "hours": hours}

    @srv.tool()
    async def list_cities() -> dict:
        """List every supported city with country, airport code and coordinates."""
        return {
            "cities": [
                {"city": n, "country": i["country"], "airport": i["airport"], "lat": i["lat"], "lon": i["lon"]}
                for n, i in CITIES.items()
            ]
        }

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Part of a city name, a 2-letter country code or an airport code.", min_length=1)],
    ) -> dict:
        """Find supported cities matching a name fragment, country code or airport code."""
        q = query.strip().lower()
        hits = [
            n for n, i in CITIES.items() if q in n.lower() or q == i["country"].lower() or q == i["airport"].lower()
        ]
        return {"query": query, "cities": hits}

    @srv.tool()
    async def get_alerts(city: CityArg, ctx: Context) -> dict:
        """Active and upcoming (next 3 days) weather alerts for a city."""
        c, seed = _city(city), store.get(ctx).seed
        alerts = []
        for i in range(3):
            d = _day(seed, c, TODAY + timedelta(days=i))
            if d["condition"] == "thunderstorms":
                alerts.append({"date": d["date"], "type": "thunderstorm watch", "severity": "moderate"})
            if d["condition"] == "snow showers" and d["precip_mm"] > 8:
                alerts.append({"date": d["date"], "type": "winter weather advisory", "severity": "moderate"})
            if d["wind_kph"] > 38:
                alerts.append({"date": d["date"], "type": "wind advisory", "severity": "minor"})
            if d["high_c"] >= 34:
                alerts.append({"date": d["date"], "type": "heat advisory", "severity": "moderate"})
            if d["precip_mm"] > 15:
                alerts.append({"date": d["date"], "type": "flood watch", "severity": "minor"})
        return {"city": c, "alerts": alerts}

    @srv.tool()
    async def get_air_quality(city: CityArg, ctx: Context) -> dict:
        """Today's air quality index (US AQI) with the dominant pollutant and a health category."""
        c, seed = _city(city), store.get(ctx).seed
        rng = rng_for("aqi", seed, c)
        base = {"Mumbai": 140, "Mexico City": 95, "Dubai": 85, "Tokyo": 45}.get(c, 35)
        aqi = max(5, int(base + rng.uniform(-25, 30)))
        cats = [
            (50, "good"),
            (100, "moderate"),
            (150, "unhealthy for sensitive groups"),
            (200, "unhealthy"),
            (10**6, "very unhealthy"),
        ]
        return {
            "city": c,
            "date": TODAY.isoformat(),
            "aqi": aqi,
            "category": next(n for lim, n in cats if aqi <= lim),
            "dominant_pollutant": rng.choice(["pm2.5", "pm10", "o3", "no2"]),
        }

    @srv.tool()
    async def get_sun_times(
        city: CityArg,
        date: Annotated[str, arg("Day, YYYY-MM-DD or 'today'/'tomorrow'.")] = "today",
    ) -> dict:
        """Local sunrise, sunset and day length for a city on a date."""
        c = _city(city)
        d = parse_date(date)
        info = CITIES[c]
        rise, sset = sun_times(info["lat"], info["lon"], d)
        fmt = lambda t: to_local(t, info["tz"]).strftime("%H:%M")  # noqa: E731
        mins = round((sset - rise).total_seconds() / 60)
        return {
            "city": c,
            "date": d.isoformat(),
            "sunrise": fmt(rise),
            "sunset": fmt(sset),
            "day_length": f"{mins // 60}h {mins % 60:02d}m",
        }

    @srv.tool()
    async def compare_cities(
        cities: Annotated[list[str], arg("Two to eight city names to compare.", min_length=2, max_length=8)],
        ctx: Context,
        date: Annotated[str, arg("Day to compare, YYYY-MM-DD or 'today'/'tomorrow'.")] = "today",
    ) -> dict:
        """Compare the daily weather of several cities on one date; names the warmest and the wettest."""
        d, seed = parse_date(date), store.get(ctx).seed
        rows = [_day(seed, _city(c), d) | {"city": _city(c)} for c in cities]
        return {
            "date": d.isoformat(),
            "cities": rows,
            "warmest": max(rows, key=lambda r: r["high_c"])["city"],
            "wettest": max(rows, key=lambda r: r["precip_mm"])["city"],
        }

    @srv.tool()
    async def get_historical_average(
        city: CityArg,
        month: Annotated[int, arg("Month number 1-12.", ge=1, le=12)],
    ) -> dict:
        """Long-term average high/low temperature and rainy-day share for a city in a month."""
        c = _city(city)
        hi, lo, rain_p, _ = CITIES[c]["climate"]
        south = CITIES[c]["lat"] < 0
        # Tropics barely change; southern cities here are coastal, so milder than northern inland ones.
        amp = 0 if abs(CITIES[c]["lat"]) < 15 else 5 if south else 9 if abs(CITIES[c]["lat"]) < 35 else 11
        # Seasonal shift relative to March; peak summer in July (north) or January (south).
        shift = amp * (math.sin(math.pi * (month - 4) / 6) - math.sin(math.pi * (3 - 4) / 6)) * (-1 if south else 1)
        return {
            "city": c,
            "month": month,
            "avg_high_c": round(hi + shift, 1),
            "avg_low_c": round(lo + shift, 1),
            "rainy_days_share": rain_p,
        }

    @srv.tool()
    async def convert(
        value: Annotated[float, arg("Number to convert.")],
        from_unit: Annotated[str, arg("Unit of value: C, F, K, kph, mph, m/s, knots, mm, in, hPa, inHg.")],
        to_unit: Annotated[str, arg("Target unit from the same family as from_unit.")],
    ) -> dict:
        """Convert weather quantities: temperature (C/F/K), wind speed (kph/mph/m/s/knots), rain (mm/in), pressure."""
        temps = {"c", "f", "k"}
        f, t = from_unit.strip().lower(), to_unit.strip().lower()
        if f in temps or t in temps:
            if not (f in temps and t in temps):
                raise EnvError(f"cannot convert {from_unit} to {to_unit}; temperatures convert among C, F, K")
            c = value if f == "c" else (value - 32) * 5 / 9 if f == "f" else value - 273.15
            out = c if t == "c" else c * 9 / 5 + 32 if t == "f" else c + 273.15
            return {"value": value, "from_unit": from_unit, "to_unit": to_unit, "result": round(out, 2)}
        families = [
            {"kph": 1.0, "mph": 1.609344, "m/s": 3.6, "knots": 1.852},
            {"mm": 1.0, "in": 25.4},
            {"hpa": 1.0, "inhg": 33.8639},
        ]
        for fam in families:
            if f in fam and t in fam:
                return {
                    "value": value,
                    "from_unit": from_unit,
                    "to_unit": to_unit,
                    "result": round(value * fam[f] / fam[t], 3),
                }
        known = "C, F, K, kph, mph, m/s, knots, mm, in, hPa, inHg"
        raise EnvError(f"cannot convert '{from_unit}' to '{to_unit}'; supported units (within one family): {known}")

    @srv.tool()
    async def add_favorite_city(city: CityArg, ctx: Context) -> dict:
        """Save a city to the favourites list (shown by list_favorite_cities)."""
        st = store.get(ctx)
        c = _city(city)
        if c in st.favorites:
            raise EnvError(f"{c} is already a favourite; favourites: {', '.join(st.favorites)}")
        st.favorites.append(c)
        return {"favorites": st.favorites}

    @srv.tool()
    async def remove_favorite_city(city: CityArg, ctx: Context) -> dict:
        """Remove a city from the favourites list."""
        st = store.get(ctx)
        c = _city(city)
        if c not in st.favorites:
            raise EnvError(f"{c} is not a favourite; favourites: {', '.join(st.favorites) or 'none'}")
        st.favorites.remove(c)
        return {"favorites": st.favorites}

    @srv.tool()
    async def list_favorite_cities(ctx: Context, units: UnitsArg = "metric") -> dict:
        """List favourite cities with their current conditions."""
        system = one_of(units, UNIT_SYSTEMS, "units")
        st = store.get(ctx)
        return {"favorites": [current(st.seed, c, system) for c in st.favorites]}

    return srv


if __name__ == "__main__":
    main(build)
