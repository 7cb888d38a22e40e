"""Math server: arithmetic, a safe expression evaluator, descriptive statistics and a named memory."""

import ast
import math as _m
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio

from ._base import Context, EnvError, EnvServer, EpisodeStore, arg, lookup, main, new_server

Numbers = Annotated[list[float], arg("A list of numbers, e.g. [3, 1.5, 8].", min_length=1, max_length=10000)]
Num = Annotated[float, arg("A number.")]

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": _m.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": _m.log,
    "log10": _m.log10,
    "log2": _m.log2,
    "exp": _m.exp,
    "sin": _m.sin,
    "cos": _m.cos,
    "tan": _m.tan,
    "floor": _m.floor,
    "ceil": _m.ceil,
    "factorial": _m.factorial,
}
_CONSTS = {"pi": _m.pi, "e": _m.e, "tau": _m.tau}
# Integer results are capped in size *before* they are computed: '((9**1000)**1000)**24' would
# otherwise keep a CPU busy for minutes. 4,096 bits is about 1,233 decimal digits.
MAX_INT_BITS = 4096


@dataclass
class MathState:
    memory: dict[str, float] = field(default_factory=dict)


def _num(x: float) -> float | int:
    """Integers come back as ints, floats rounded to 12 significant digits (stable JSON)."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 2**53):
        return int(x)
    return float(f"{x:.12g}")


def safe_eval(expr: str, names: dict[str, float]) -> float:
    """Evaluate an arithmetic expression without eval(): numbers, + - * / // % **, functions, names."""
    try:
        tree = ast.parse(expr.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise EnvError(f"cannot parse expression '{expr}': {exc.msg}; example: '2 * (3 + 4) ** 2'") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 1000:
                raise EnvError("exponent too large (limit 1000)")
            _check_size(node.op, left, right, expr)
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name):
            if node.id in _CONSTS:
                return _CONSTS[node.id]
            if node.id in names:
                return names[node.id]
            known = sorted(set(_CONSTS) | set(names))
            raise EnvError(
                f"unknown name '{node.id}' in expression; known names: {', '.join(known)} (store_value adds more)"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            fn = _FUNCS.get(node.func.id)
            if fn is None:
                raise EnvError(f"unknown function '{node.func.id}'; available: {', '.join(sorted(_FUNCS))}")
            args = [ev(a) for a in node.args]
            if fn is _m.factorial and (not args or args[0] > 170):
                raise EnvError("factorial argument must be an integer from 0 to 170")
            return fn(*[int(a) if fn is _m.factorial else a for a in args])
        raise EnvError(
            f"unsupported syntax in '{expr}': only numbers, + - * / // % ** ^, parentheses, "
            f"names and functions ({', '.join(sorted(_FUNCS))}) are allowed"
        )

    try:
        value = ev(tree)
    except RecursionError:
        raise EnvError(f"expression '{expr[:60]}' is nested too deeply") from None
    except ZeroDivisionError:
        raise EnvError(f"division by zero in '{expr}'") from None
    except (OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, EnvError):
            raise
        raise EnvError(f"cannot evaluate '{expr}': {exc}") from None
    if isinstance(value, complex):
        raise EnvError(f"'{expr}' has a complex result; only real results are supported")
    return value


def _check_size(op: ast.operator, left: float, right: float, expr: str) -> None:
    """Refuse an integer operation whose result would exceed :data:`MAX_INT_BITS`."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return  # floats overflow on their own, at once
    if isinstance(op, ast.Pow) and right > 0 and abs(left) > 1:
        bits = right * abs(left).bit_length()
    elif isinstance(op, ast.Mult):
        bits = left.bit_length() + right.bit_length()
    else:
        bits = max(left.bit_length(), right.bit_length()) + 1
    if bits > MAX_INT_BITS:
        raise EnvError(
            f"the result of '{expr[:60]}' would have over {MAX_INT_BITS} bits (about "
            f"{int(MAX_INT_BITS * 0.30103)} digits); use smaller numbers"
        )


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "math", "Calculator and statistics: arithmetic, expressions, descriptive stats, regression, memory."
    )
    store: EpisodeStore[MathState] = EpisodeStore(lambda s, e: MathState(), seed)

    @srv.tool()
    async def add(numbers: Numbers) -> dict:
        """Sum a list of numbers."""
        return {"result": _num(_m.fsum(numbers))}

    @srv.tool()
    async def subtract(
        a: Annotated[float, arg("Number to subtract from.")], b: Annotated[float, arg("Number to subtract.")]
    ) -> dict:
        """Compute a - b."""
        return {"result": _num(a - b)}

    @srv.tool()
    async def multiply(numbers: Numbers) -> dict:
        """Multiply a list of numbers together."""
        return {"result": _num(_m.prod(numbers))}

    @srv.tool()
    async def divide(
        a: Annotated[float, arg("Dividend (the number being divided).")],
        b: Annotated[float, arg("Divisor; must not be zero.")],
    ) -> dict:
        """Compute a / b, also returning the integer quotient and remainder."""
        if b == 0:
            raise EnvError("division by zero: b must not be 0")
        return {"result": _num(a / b), "quotient": _num(a // b), "remainder": _num(a % b)}

    @srv.tool()
    async def power(
        base: Num, exponent: Annotated[float, arg("Exponent (up to 1000 in magnitude).", ge=-1000, le=1000)]
    ) -> dict:
        """Raise base to exponent."""
        try:
            r = base**exponent
        except (OverflowError, ZeroDivisionError) as exc:
            raise EnvError(f"cannot compute {base} ** {exponent}: {exc}") from None
        if isinstance(r, complex):
            raise EnvError("negative base with a fractional exponent has no real result")
        return {"result": _num(r)}

    @srv.tool()
    async def round_number(
        x: Num,
        digits: Annotated[
            int, arg("Decimal places to keep (negative rounds to tens, hundreds...).", ge=-10, le=15)
        ] = 0,
    ) -> dict:
        """Round a number to a number of decimal places (half to even, like Python)."""
        return {"result": _num(round(x, digits))}

    @srv.tool()
    async def evaluate(
        expression: Annotated[
            str,
            arg(
                "Arithmetic expression, e.g. '(12.5 + 7) * 3 / sqrt(16)'. Names saved with store_value may be used.",
                min_length=1,
                max_length=500,
            ),
        ],
        ctx: Context,
    ) -> dict:
        """Evaluate an arithmetic expression safely (numbers, operators, math functions, stored names)."""
        memory = dict(store.get(ctx).memory)
        # Off the event loop: one server process may host every embedded server (the hub).
        value = await anyio.to_thread.run_sync(safe_eval, expression, memory)
        return {"expression": expression, "result": _num(value)}

    @srv.tool()
    async def describe(numbers: Numbers) -> dict:
        """Descriptive statistics: count, sum, mean, median, mode, min, max, range, sample standard deviation."""
        n = len(numbers)
        return {
            "count": n,
            "sum": _num(_m.fsum(numbers)),
            "mean": _num(statistics.fmean(numbers)),
            "median": _num(statistics.median(numbers)),
            "mode": _num(statistics.mode(numbers)),
            "min": _num(min(numbers)),
            "max": _num(max(numbers)),
            "range": _num(max(numbers) - min(numbers)),
            "stdev": _num(statistics.stdev(numbers)) if n > 1 else 0,
        }

    @srv.tool()
    async def stdev(
        numbers: Numbers,
        population: Annotated[bool, arg("True: population standard deviation; False: sample (n-1).")] = False,
    ) -> dict:
        """Standard deviation and variance of a list of numbers."""
        if not population and len(numbers) < 2:
            raise EnvError("sample standard deviation needs at least 2 numbers (or set population=true)")
        sd = statistics.pstdev(numbers) if population else statistics.stdev(numbers)
        return {"stdev": _num(sd), "variance": _num(sd * sd), "population": population}

    @srv.tool()
    async def percentile(
        numbers: Numbers,
        p: Annotated[float, arg("Percentile between 0 and 100, e.g. 90.", ge=0, le=100)],
    ) -> dict:
        """The p-th percentile using linear interpolation between closest ranks."""
        xs = sorted(numbers)
        k = (len(xs) - 1) * p / 100
        lo, hi = _m.floor(k), _m.ceil(k)
        return {"p": p, "result": _num(xs[lo] + (xs[hi] - xs[lo]) * (k - lo))}

    @srv.tool()
    async def correlation(
        x: Annotated[list[float], arg("First series.", min_length=2)],
        y: Annotated[list[float], arg("Second series, same length as x.", min_length=2)],
    ) -> dict:
        """Pearson correlation coefficient between two equally long series."""
        if len(x) != len(y):
            raise EnvError(f"x has {len(x)} values but y has {len(y)}; they must be the same length")
        try:
            r = statistics.correlation(x, y)
        except statistics.StatisticsError as exc:
            raise EnvError(f"correlation undefined: {exc}") from None
        return {"r": _num(r), "r_squared": _num(r * r), "n": len(x)}

    @srv.tool()
    async def linear_regression(
        x: Annotated[list[float], arg("Independent variable values.", min_length=2)],
        y: Annotated[list[float], arg("Dependent variable values, same length as x.", min_length=2)],
        predict_at: Annotated[float | None, arg("Optional x at which to predict y.")] = None,
    ) -> dict:
        """Ordinary least-squares line y = slope * x + intercept, optionally predicting y at an x."""
        if len(x) != len(y):
            raise EnvError(f"x has {len(x)} values but y has {len(y)}; they must be the same length")
        try:
            slope, intercept = statistics.linear_regression(x, y)
        except statistics.StatisticsError as exc:
            raise EnvError(f"regression undefined: {exc}") from None
        out: dict[str, Any] = {"slope": _num(slope), "intercept": _num(intercept)}
        if predict_at is not None:
            out["prediction"] = _num(slope * predict_at + intercept)
        return out

    @srv.tool()
    async def number_theory(n: Annotated[int, arg("A positive integer up to 10**12.", ge=1, le=10**12)]) -> dict:
        """Facts about an integer: prime or not, prime factorisation, number of divisors, parity."""
        factors, k, d = [], n, 2
        while d * d <= k:
            while k % d == 0:
                factors.append(d)
                k //= d
            d += 1 if d == 2 else 2
        if k > 1:
            factors.append(k)
        counts: dict[int, int] = {}
        for f in factors:
            counts[f] = counts.get(f, 0) + 1
        return {
            "n": n,
            "is_prime": n > 1 and factors == [n],
            "prime_factors": factors,
            "divisor_count": _m.prod(c + 1 for c in counts.values()),
            "even": n % 2 == 0,
        }

    @srv.tool()
    async def gcd_lcm(
        numbers: Annotated[list[int], arg("Two or more integers.", min_length=2, max_length=100)],
    ) -> dict:
        """Greatest common divisor and least common multiple of integers."""
        return {"gcd": _m.gcd(*numbers), "lcm": _m.lcm(*numbers)}

    @srv.tool()
    async def store_value(
        name: Annotated[
            str,
            arg(
                "Variable name (letters, digits, underscore; not starting with a digit).",
                pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$",
            ),
        ],
        value: Num,
        ctx: Context,
    ) -> dict:
        """Save a number under a name for later use in evaluate or recall_value."""
        if name in _CONSTS or name in _FUNCS:
            raise EnvError(f"'{name}' is a built-in name; choose another")
        st = store.get(ctx)
        st.memory[name] = value
        return {"stored": name, "value": _num(value), "memory_size": len(st.memory)}

    @srv.tool()
    async def recall_value(name: Annotated[str, arg("Name used with store_value.")], ctx: Context) -> dict:
        """Read back a number saved with store_value."""
        st = store.get(ctx)
        return {"name": name, "value": _num(lookup(st.memory, name, "memory name"))}

    @srv.tool()
    async def list_memory(ctx: Context) -> dict:
        """List every name saved with store_value and its value."""
        return {"memory": {k: _num(v) for k, v in store.get(ctx).memory.items()}}

    return srv


if __name__ == "__main__":
    main(build)
