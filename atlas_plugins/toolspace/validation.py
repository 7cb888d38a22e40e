"""Argument validation against a tool's JSON input schema, with messages for small models.

A small model that gets "validation failed" learns nothing; one that gets
"missing required argument 'city'; signature: get_forecast(city: str (required), days: int
(optional, default=3))" can fix its next call.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

import jsonschema

from atlas_plugins.types import ToolSpec

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

_JSON_TO_PY = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}


def _type_name(schema: dict[str, Any]) -> str:
    if not isinstance(schema, dict):
        return "Any"
    t = schema.get("type")
    if isinstance(t, list):
        return " | ".join(_JSON_TO_PY.get(x, str(x)) for x in t)
    if t == "array" and isinstance(schema.get("items"), dict):
        return f"list[{_type_name(schema['items'])}]"
    if t:
        return _JSON_TO_PY.get(t, str(t))
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            names = [_type_name(s) for s in schema[key]]
            return " | ".join(dict.fromkeys(names))
    if isinstance(schema.get("enum"), list):
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"][:8]) + "]"
    return "Any"


def python_signature(spec: ToolSpec, *, with_descriptions: bool = False) -> str:
    """``get_forecast(city: str (required), days: int (optional, default=3))``."""
    schema = spec.input_schema if isinstance(spec.input_schema, dict) else {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}  # a server's schema is untrusted
    required = schema.get("required")
    required = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    parts = []
    for name, sub in props.items():
        sub = sub if isinstance(sub, dict) else {}
        bits = ["required" if name in required else "optional"]
        if "default" in sub:
            bits.append(f"default={sub['default']!r}")
        if isinstance(sub.get("enum"), list):
            bits.append("one of " + "/".join(repr(v) for v in sub["enum"][:8]))
        for k, label in (("minimum", "min"), ("maximum", "max")):
            if k in sub:
                bits.append(f"{label}={sub[k]}")
        text = f"{name}: {_type_name(sub)} ({', '.join(bits)})"
        if with_descriptions and sub.get("description"):
            text += f" — {sub['description']}"
        parts.append(text)
    return f"{spec.name}({', '.join(parts)})"


def _no_pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> None:
    """``pattern`` is left to the server: Python's backtracking ``re`` on a server's regex and the
    model's string can take exponential time (measured: ``^(\\w+\\s?)*$`` on a 38-character
    argument, 4.8 s, doubling per character), on the toolspace's event loop, before any timeout."""
    return None


class _TooCostly(Exception):
    """A schema whose check took more steps than one call's budget."""


_STEPS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("atlas_schema_steps")
_STEP_BUDGET = 5_000  # keyword applications per check: real tool schemas need tens
# Keywords that apply further subschemas to the same instance: a chain of them (allOf of two
# $refs to the next level, and so on) fans out exponentially with no regex at all (measured:
# 0.64 s at 14 levels, doubling per level).
_FAN_OUT = ("$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "dependentSchemas")


def _counted(keyword_check: Any) -> Any:
    def check(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        steps = _STEPS.get()
        steps[0] += 1
        if steps[0] > _STEP_BUDGET:
            raise _TooCostly()
        yield from keyword_check(validator, value, instance, schema) or ()

    return check


def _has_key(schema: Any, key: str, depth: int = 0) -> bool:
    if depth > 64:
        return True  # deeper than any real tool schema: treat as suspect
    if isinstance(schema, dict):
        return key in schema or any(_has_key(v, key, depth + 1) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_key(v, key, depth + 1) for v in schema)
    return False


_SHOWN_EXTRAS = 10  # unexpected argument names listed (and spell-checked) in one message


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"…({len(text) - limit} more characters)"


class ArgumentValidator:
    """Validates call arguments against one tool's input schema (compiled once).

    The schema comes from an MCP server, so it is untrusted: a schema that cannot be compiled or
    checked (a broken ``$ref``, nesting past the recursion limit), or whose check runs past a step
    budget (``$ref``/``allOf`` chains that fan out), disables client-side checks for that tool and
    the server judges its own arguments. Regular expressions (``pattern``, ``patternProperties``)
    are never run on the host (see :func:`_no_pattern`); nor is a schema that names another
    dialect below its root (``$schema`` there would pick the stock validator class again)."""

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec
        self._validator: Validator | None = None
        schema = spec.input_schema
        if (
            isinstance(schema, dict)
            and not _has_key(schema, "patternProperties")
            and not any(_has_key(v, "$schema") for k, v in schema.items() if k != "$schema")
        ):
            try:
                base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
                base.check_schema(schema)
                checks = {k: _counted(base.VALIDATORS[k]) for k in _FAN_OUT if k in base.VALIDATORS}
                cls = jsonschema.validators.extend(base, {**checks, "pattern": _no_pattern})
                self._validator = cls(schema)
            except Exception:  # noqa: BLE001 - a broken third-party schema: let the server judge
                self._validator = None

    def check(self, arguments: dict[str, Any]) -> str | None:
        """``None`` when valid, else one message naming every problem and the signature."""
        if self._validator is None:
            return None
        token = _STEPS.set([0])
        try:
            errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        except Exception:  # noqa: BLE001 - an unresolvable $ref met only now, or _TooCostly: the server judges
            self._validator = None
            return None
        finally:
            _STEPS.reset(token)
        if not errors:
            return None
        props = (self.spec.input_schema or {}).get("properties") or {}
        problems = []
        for err in errors[:5]:
            # Arguments come from model or sandbox code: a message quotes them only in part (a
            # cell's 800,000 made-up keys cost the host seconds of difflib and a 40 MB message).
            where = _cut(".".join(str(p) for p in err.path))
            if err.validator == "required":
                problems.append(_cut(err.message.replace("is a required property", "is a required argument (missing)")))
            elif err.validator == "additionalProperties":
                every = [a for a in arguments if a not in props]
                extra = [_cut(a, 60) for a in every[:_SHOWN_EXTRAS]]
                hint = ""
                if extra and props:
                    import difflib

                    guesses = {a: difflib.get_close_matches(a, list(props), n=1, cutoff=0.5) for a in extra}
                    hint = "; ".join(f"{a!r} -> did you mean {g[0]!r}?" for a, g in guesses.items() if g)
                more = f" and {len(every) - len(extra)} more" if len(every) > len(extra) else ""
                problems.append(
                    f"unexpected argument(s) {', '.join(map(repr, extra))}{more}" + (f" ({hint})" if hint else "")
                )
            else:
                problems.append(f"argument {where!r}: {_cut(err.message)}" if where else _cut(err.message))
        return (
            f"invalid arguments for {self.spec.qualified_name}: "
            + "; ".join(problems)
            + f". Signature: {python_signature(self.spec)}"
        )
