"""Units server: physical unit conversion, currency conversion at seeded rates, conversion history."""

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from ._base import (
    TODAY,
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    arg,
    did_you_mean,
    lookup,
    main,
    new_server,
    rng_for,
)

# category -> unit -> factor to the category's base unit (temperature is handled separately)
UNITS: dict[str, dict[str, float]] = {
    "length": {
        "mm": 0.001,
        "cm": 0.01,
        "m": 1.0,
        "km": 1000.0,
        "in": 0.0254,
        "ft": 0.3048,
        "yd": 0.9144,
        "mi": 1609.344,
        "nmi": 1852.0,
    },
    "mass": {"mg": 1e-6, "g": 0.001, "kg": 1.0, "t": 1000.0, "oz": 0.028349523125, "lb": 0.45359237, "st": 6.35029318},
    "volume": {
        "ml": 0.001,
        "l": 1.0,
        "m3": 1000.0,
        "tsp": 0.00492892159375,
        "tbsp": 0.01478676478125,
        "cup": 0.2365882365,
        "fl_oz": 0.0295735295625,
        "pt": 0.473176473,
        "qt": 0.946352946,
        "gal": 3.785411784,
    },
    "temperature": {"C": 1.0, "F": 1.0, "K": 1.0},
    "speed": {"m/s": 1.0, "km/h": 1 / 3.6, "mph": 0.44704, "knot": 1852 / 3600, "ft/s": 0.3048},
    "area": {
        "cm2": 1e-4,
        "m2": 1.0,
        "km2": 1e6,
        "ha": 1e4,
        "acre": 4046.8564224,
        "ft2": 0.09290304,
        "mi2": 2589988.110336,
    },
    "data": {
        "bit": 0.125,
        "B": 1.0,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
        "TB": 1e12,
        "KiB": 1024.0,
        "MiB": 1024.0**2,
        "GiB": 1024.0**3,
    },
    "time": {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0, "week": 604800.0, "year": 31557600.0},
    "energy": {"J": 1.0, "kJ": 1000.0, "cal": 4.184, "kcal": 4184.0, "Wh": 3600.0, "kWh": 3.6e6},
    "pressure": {"Pa": 1.0, "kPa": 1000.0, "bar": 1e5, "psi": 6894.757293168, "atm": 101325.0},
}
BASE = {
    "length": "m",
    "mass": "kg",
    "volume": "l",
    "temperature": "C",
    "speed": "m/s",
    "area": "m2",
    "data": "B",
    "time": "s",
    "energy": "J",
    "pressure": "Pa",
}
ALIASES = {
    "millimeter": "mm",
    "millimeters": "mm",
    "centimeter": "cm",
    "centimeters": "cm",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "kilometer": "km",
    "kilometers": "km",
    "kilometres": "km",
    "inch": "in",
    "inches": "in",
    "foot": "ft",
    "feet": "ft",
    "yard": "yd",
    "yards": "yd",
    "mile": "mi",
    "miles": "mi",
    "nautical mile": "nmi",
    "gram": "g",
    "grams": "g",
    "kilogram": "kg",
    "kilograms": "kg",
    "kilo": "kg",
    "kilos": "kg",
    "tonne": "t",
    "ton": "t",
    "ounce": "oz",
    "ounces": "oz",
    "pound": "lb",
    "pounds": "lb",
    "lbs": "lb",
    "stone": "st",
    "milliliter": "ml",
    "millilitre": "ml",
    "liter": "l",
    "litre": "l",
    "liters": "l",
    "litres": "l",
    "teaspoon": "tsp",
    "tablespoon": "tbsp",
    "cups": "cup",
    "fluid ounce": "fl_oz",
    "floz": "fl_oz",
    "pint": "pt",
    "quart": "qt",
    "gallon": "gal",
    "gallons": "gal",
    "celsius": "C",
    "°c": "C",
    "fahrenheit": "F",
    "°f": "F",
    "kelvin": "K",
    "kph": "km/h",
    "kmh": "km/h",
    "mps": "m/s",
    "knots": "knot",
    "kt": "knot",
    "fps": "ft/s",
    "sq m": "m2",
    "m²": "m2",
    "km²": "km2",
    "hectare": "ha",
    "hectares": "ha",
    "acres": "acre",
    "sq ft": "ft2",
    "ft²": "ft2",
    "byte": "B",
    "bytes": "B",
    "bits": "bit",
    "kilobyte": "KB",
    "megabyte": "MB",
    "gigabyte": "GB",
    "terabyte": "TB",
    "second": "s",
    "seconds": "s",
    "sec": "s",
    "minute": "min",
    "minutes": "min",
    "hour": "h",
    "hours": "h",
    "hr": "h",
    "days": "day",
    "weeks": "week",
    "years": "year",
    "yr": "year",
    "joule": "J",
    "calorie": "cal",
    "calories": "cal",
    "kilocalorie": "kcal",
    "watt hour": "Wh",
    "kilowatt hour": "kWh",
}
# Units per 1 USD on the simulated today (fixture), jittered ±1.5% by seed.
USD_RATES = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 149.5,
    "CAD": 1.36,
    "AUD": 1.53,
    "CHF": 0.88,
    "CNY": 7.19,
    "INR": 83.1,
    "MXN": 17.1,
    "BRL": 4.97,
    "SEK": 10.4,
    "SGD": 1.34,
    "AED": 3.6725,
    "ZAR": 18.9,
}

UnitArg = Annotated[str, arg("Unit symbol or name, e.g. 'km', 'mi', 'lb', 'C', 'gal', 'MB' (see list_units).")]
CurrencyArg = Annotated[str, arg("ISO currency code, e.g. 'USD', 'EUR', 'JPY'.")]


@dataclass
class UnitsState:
    rates: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def initial_state(seed: int, episode: str = "default") -> UnitsState:
    rng = rng_for("fx", seed)
    return UnitsState(
        rates={c: (r if c == "USD" else round(r * rng.uniform(0.985, 1.015), 4)) for c, r in USD_RATES.items()}
    )


def resolve_unit(name: str) -> tuple[str, str]:
    """-> (category, canonical unit symbol)."""
    raw = str(name).strip()
    for cand in (raw, ALIASES.get(raw.lower(), ""), raw.lower(), raw.upper()):
        for cat, units in UNITS.items():
            if cand in units:
                return cat, cand
    for cat, units in UNITS.items():  # case-insensitive symbol ('kb', 'kwh')
        for u in units:
            if u.lower() == raw.lower():
                return cat, u
    every = [u for units in UNITS.values() for u in units]
    raise EnvError(f"unknown unit '{name}'{did_you_mean(raw, every + list(ALIASES))}; see list_units for valid units")


def _temp(value: float, f: str, t: str) -> float:
    c = value if f == "C" else (value - 32) * 5 / 9 if f == "F" else value - 273.15
    return c if t == "C" else c * 9 / 5 + 32 if t == "F" else c + 273.15


def convert_value(value: float, from_unit: str, to_unit: str) -> tuple[float, str, str, str]:
    cf, f = resolve_unit(from_unit)
    ct, t = resolve_unit(to_unit)
    if cf != ct:
        raise EnvError(f"cannot convert {f} ({cf}) to {t} ({ct}); both units must measure the same thing")
    if cf == "temperature":
        if f == "K" and value < 0 or f == "C" and value < -273.15 or f == "F" and value < -459.67:
            raise EnvError(f"{value} {f} is below absolute zero")
        return _temp(value, f, t), f, t, cf
    return value * UNITS[cf][f] / UNITS[cf][t], f, t, cf


def _round(x: float) -> float:
    return float(f"{x:.6g}") if x != 0 else 0.0


def build(seed: int = 0) -> EnvServer:
    srv = new_server("units", "Converts physical units (10 categories) and currencies; keeps a history of conversions.")
    store: EpisodeStore[UnitsState] = EpisodeStore(initial_state, seed)

    def record(ctx: Context, entry: dict[str, Any]) -> dict[str, Any]:
        st = store.get(ctx)
        st.history.append({"n": len(st.history) + 1, **entry})
        return entry

    @srv.tool()
    async def convert(
        value: Annotated[float, arg("The number to convert.")],
        from_unit: UnitArg,
        to_unit: UnitArg,
        ctx: Context,
    ) -> dict:
        """Convert a value between units of the same category (length, mass, volume, temperature, speed, ...)."""
        out, f, t, cat = convert_value(value, from_unit, to_unit)
        return record(
            ctx,
            {
                "value": value,
                "from_unit": f,
                "to_unit": t,
                "category": cat,
                "result": _round(out),
                "text": f"{value:g} {f} = {_round(out):g} {t}",
            },
        )

    @srv.tool()
    async def convert_many(
        values: Annotated[list[float], arg("Numbers to convert (up to 100).", min_length=1, max_length=100)],
        from_unit: UnitArg,
        to_unit: UnitArg,
        ctx: Context,
    ) -> dict:
        """Convert a list of values from one unit to another in one call."""
        results = [_round(convert_value(v, from_unit, to_unit)[0]) for v in values]
        _, f, t, cat = convert_value(values[0], from_unit, to_unit)
        return record(ctx, {"values": values, "from_unit": f, "to_unit": t, "category": cat, "results": results})

    @srv.tool()
    async def list_categories() -> dict:
        """List the unit categories and each category's base unit."""
        return {"categories": [{"name": c, "base_unit": BASE[c], "units": len(u)} for c, u in UNITS.items()]}

    @srv.tool()
    async def list_units(category: Annotated[str, arg(f"Category: {', '.join(UNITS)}.")]) -> dict:
        """List the unit symbols available in one category."""
        units = lookup(UNITS, category.strip().lower(), "category")
        cat = next(c for c in UNITS if UNITS[c] is units)
        return {"category": cat, "base_unit": BASE[cat], "units": list(units)}

    @srv.tool()
    async def get_details(unit: UnitArg) -> dict:
        """Describe a unit: its category, its size in the base unit and the names it is known by."""
        cat, u = resolve_unit(unit)
        names = sorted(a for a, v in ALIASES.items() if v == u)
        info: dict[str, Any] = {"unit": u, "category": cat, "base_unit": BASE[cat], "aliases": names}
        if cat != "temperature":
            info["in_base_units"] = UNITS[cat][u]
        return info

    @srv.tool()
    async def compare_quantities(
        a: Annotated[float, arg("First amount.")],
        a_unit: UnitArg,
        b: Annotated[float, arg("Second amount.")],
        b_unit: UnitArg,
    ) -> dict:
        """Say which of two quantities is larger (e.g. 5 km vs 3 mi) and by how much."""
        conv_b, bu, _, cat = convert_value(b, b_unit, a_unit)
        _, au, _, _ = convert_value(a, a_unit, a_unit)
        diff = a - conv_b
        bigger = "equal" if abs(diff) < 1e-12 else "a" if diff > 0 else "b"
        return {
            "category": cat,
            "a": f"{a:g} {au}",
            "b": f"{b:g} {bu}",
            "b_in_a_unit": _round(conv_b),
            "larger": bigger,
            "difference_in_a_unit": _round(abs(diff)),
        }

    @srv.tool()
    async def parse_quantity(
        text: Annotated[str, arg("A written quantity such as '5 ft 11 in', '2h 30min', '1.5 kg'.", min_length=1)],
    ) -> dict:
        """Parse a written quantity (several parts allowed) into one number in the base unit of its category."""
        parts = re.findall(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z°²/_ ]+?)(?=\s*-?\d|\s*$)", text.strip())
        if not parts:
            raise EnvError(f"could not read a quantity from '{text}'; write it like '5 ft 11 in' or '1.5 kg'")
        total, cat0 = 0.0, None
        for num, unit in parts:
            out, _, _, cat = convert_value(float(num), unit.strip(), BASE[resolve_unit(unit.strip())[0]])
            if cat0 and cat != cat0:
                raise EnvError(f"'{text}' mixes {cat0} and {cat}")
            cat0, total = cat, total + out
        return {"text": text, "category": cat0, "value": _round(total), "unit": BASE[cat0 or "length"]}

    @srv.tool()
    async def format_duration(seconds: Annotated[float, arg("A duration in seconds.", ge=0)]) -> dict:
        """Write a number of seconds as days/hours/minutes/seconds, e.g. 3725 -> '1h 2m 5s'."""
        s = int(round(seconds))
        d, rem = divmod(s, 86400)
        h, rem = divmod(rem, 3600)
        m, sec = divmod(rem, 60)
        parts = [f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (sec, "s")) if v] or ["0s"]
        return {"seconds": seconds, "text": " ".join(parts), "days": d, "hours": h, "minutes": m, "secs": sec}

    @srv.tool()
    async def list_currencies(ctx: Context) -> dict:
        """List supported currencies with today's rate in units per 1 USD."""
        st = store.get(ctx)
        return {"date": TODAY.isoformat(), "base": "USD", "rates": dict(st.rates)}

    @srv.tool()
    async def convert_currency(
        amount: Annotated[float, arg("Amount of money to convert.", ge=0)],
        from_currency: CurrencyArg,
        to_currency: CurrencyArg,
        ctx: Context,
    ) -> dict:
        """Convert money between currencies at today's mid-market rate (no fees)."""
        st = store.get(ctx)
        f = from_currency.strip().upper()
        t = to_currency.strip().upper()
        rf, rt = lookup(st.rates, f, "currency"), lookup(st.rates, t, "currency")
        out = round(amount / rf * rt, 2)
        return record(
            ctx, {"amount": amount, "from_currency": f, "to_currency": t, "rate": round(rt / rf, 6), "result": out}
        )

    @srv.tool()
    async def set_exchange_rate(
        currency: CurrencyArg,
        units_per_usd: Annotated[float, arg("New rate: how many units of the currency one US dollar buys.", gt=0)],
        ctx: Context,
    ) -> dict:
        """Override the rate of a currency for this session (new codes are added)."""
        st = store.get(ctx)
        code = currency.strip().upper()
        if code == "USD":
            raise EnvError("USD is the base currency; its rate is always 1")
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise EnvError(f"invalid currency code '{currency}'; use three letters such as 'EUR'")
        old = st.rates.get(code)
        st.rates[code] = units_per_usd
        return {"currency": code, "old_rate": old, "new_rate": units_per_usd}

    @srv.tool()
    async def get_conversion_history(
        ctx: Context,
        limit: Annotated[int, arg("How many of the most recent conversions to return.", ge=1, le=200)] = 20,
    ) -> dict:
        """Show the conversions made in this session, most recent last."""
        st = store.get(ctx)
        return {"total": len(st.history), "history": st.history[-limit:]}

    return srv


if __name__ == "__main__":
    main(build)
