"""The rubric model: a fixed, per-task list of weighted criteria.

A rubric is what the ATLAS paper calls R(x) = {(criterion, description, weight)}: built once per
task (offline), never changed during training, and scored criterion by criterion by a judge.

Each :class:`Criterion` has a ``category`` (the paper's four are ``TF`` task fulfillment,
``TA`` tool appropriateness, ``TG`` tool grounding, ``PA`` parameter accuracy; any other
string is a custom category), an integer ``weight`` 1–10 and a ``kind``:

* ``judge`` — natural language, scored by a (language-model) judge;
* ``check`` — programmatic, scored exactly by the ``rules`` judge from ``check``:

  ========================  ============================================================
  ``type``                  parameters
  ========================  ============================================================
  ``tool_called``           ``tool`` (``server:tool`` or bare tool name), ``min_count`` (1),
                            ``ok_only`` (count only successful calls)
  ``tool_args_match``       ``tool``, ``arguments`` (expected subset of the call's arguments)
  ``answer_contains``       ``values`` (list of strings; ``value`` accepted), ``case_sensitive``
  ``answer_equals``         ``value``
  ``answer_regex``          ``pattern``, ``flags`` (e.g. ``"i"``)
  ``state``                 ``server``, ``tool``, ``arguments``, ``expect`` (subset or value):
                            an MCP call made after the episode in the episode's state
                            (``trajectory.metadata["episode_id"]``)
  ``python``                ``function`` (``"pkg.mod:func"``), ``params``; the callable is
                            ``func(trajectory, **params) -> float | bool``
  ========================  ============================================================

Rubrics load from YAML/JSON files or dicts; errors name the bad field
(``criteria[3].weight: must be 1..10, got 12``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from atlas_plugins.errors import ConfigError
from atlas_plugins.types import Trajectory

#: The paper's four categories, in its order.
CATEGORIES: tuple[str, ...] = ("TF", "TA", "TG", "PA")
#: A category score at or above this counts as fully met (scores are floats: 1.0 may be 0.9999…).
FULL_SCORE = 0.999


def is_success(traj: Trajectory) -> bool:
    """Task success: every task-fulfilment (TF) criterion fully met."""
    tf = traj.reward_by_category.get("TF")
    return tf is not None and tf >= FULL_SCORE


CATEGORY_NAMES: dict[str, str] = {
    "TF": "Task Fulfillment",
    "TA": "Tool Appropriateness",
    "TG": "Tool Grounding",
    "PA": "Parameter Accuracy",
}


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCalledCheck(_Check):
    type: Literal["tool_called"] = "tool_called"
    tool: str = Field(min_length=1)
    min_count: int = Field(1, ge=1)
    ok_only: bool = False


class ToolArgsMatchCheck(_Check):
    type: Literal["tool_args_match"] = "tool_args_match"
    tool: str = Field(min_length=1)
    arguments: dict[str, Any]


class AnswerContainsCheck(_Check):
    type: Literal["answer_contains"] = "answer_contains"
    values: list[str] = Field(min_length=1)
    case_sensitive: bool = False

    @model_validator(mode="before")
    @classmethod
    def _single_value(cls, data: Any) -> Any:
        # ``value: "42"`` is the natural spelling for one string; accept it.
        if isinstance(data, dict) and "value" in data and "values" not in data:
            data = dict(data)
            data["values"] = [str(data.pop("value"))]
        return data


class AnswerEqualsCheck(_Check):
    type: Literal["answer_equals"] = "answer_equals"
    value: Any


class AnswerRegexCheck(_Check):
    type: Literal["answer_regex"] = "answer_regex"
    pattern: str
    flags: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {v!r}: {exc}") from None
        return v

    @field_validator("flags")
    @classmethod
    def _known_flags(cls, v: str) -> str:
        bad = set(v) - set("imsx")
        if bad:
            raise ValueError(f"unknown regex flag(s) {''.join(sorted(bad))!r}; use any of 'imsx'")
        return v


class StateCheck(_Check):
    type: Literal["state"] = "state"
    server: str = Field(min_length=1)
    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    expect: Any


class PythonCheck(_Check):
    type: Literal["python"] = "python"
    function: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("function")
    @classmethod
    def _spec(cls, v: str) -> str:
        mod, sep, attr = v.partition(":")
        if not sep or not mod or not attr:
            raise ValueError(f"expected 'package.module:function', got {v!r}")
        return v


Check = Annotated[
    ToolCalledCheck
    | ToolArgsMatchCheck
    | AnswerContainsCheck
    | AnswerEqualsCheck
    | AnswerRegexCheck
    | StateCheck
    | PythonCheck,
    Field(discriminator="type"),
]
CHECK_TYPES: tuple[str, ...] = (
    "tool_called",
    "tool_args_match",
    "answer_contains",
    "answer_equals",
    "answer_regex",
    "state",
    "python",
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "criterion"


class Criterion(BaseModel):
    """One weighted criterion of a rubric."""

    model_config = ConfigDict(extra="forbid")

    #: Stable key for scores (``scores[criterion.id]``); derived from ``name`` when omitted.
    id: str = ""
    name: str = Field(min_length=1)
    description: str = ""
    category: str = "TF"
    weight: int = 5
    kind: Literal["judge", "check"] = "judge"
    check: Check | None = None

    @model_validator(mode="before")
    @classmethod
    def _paper_keys(cls, data: Any) -> Any:
        # Accept the paper's key names ({criteria_name, criteria_description, weight}).
        if isinstance(data, dict):
            # Arrow/`datasets` unify struct columns by filling absent keys with None; a None
            # means "not given" here, so drop them rather than fail on them.
            data = {k: v for k, v in data.items() if v is not None}
            if isinstance(data.get("check"), dict):
                data["check"] = {k: v for k, v in data["check"].items() if v is not None}
            if "criteria_name" in data and "name" not in data:
                data["name"] = data.pop("criteria_name")
            if "criteria_description" in data and "description" not in data:
                data["description"] = data.pop("criteria_description")
            if data.get("check") is not None and "kind" not in data:
                data["kind"] = "check"
        return data

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise ValueError(f"must be an integer 1..10, got {v!r}")
        if not 1 <= int(v) <= 10:
            raise ValueError(f"must be 1..10, got {int(v)}")
        return int(v)

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must be a non-empty string (TF, TA, TG, PA or a custom name)")
        return v.upper() if v.upper() in CATEGORIES else v

    @model_validator(mode="after")
    def _kind_matches_check(self) -> Criterion:
        if self.kind == "check" and self.check is None:
            raise ValueError("kind 'check' needs a 'check' block, e.g. {type: answer_contains, values: [...]}")
        if self.kind == "judge" and self.check is not None:
            raise ValueError("a 'check' block needs kind 'check' (or leave kind out)")
        return self


class Rubric(BaseModel):
    """A fixed set of criteria for one task."""

    model_config = ConfigDict(extra="forbid")

    criteria: list[Criterion] = Field(min_length=1)
    task_id: str | None = None
    #: Which provider built it (``static``, ``template``, ``llm``, a plugin's name).
    source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ids(self) -> Rubric:
        seen: set[str] = set()
        for i, c in enumerate(self.criteria):
            if not c.id:
                base = _slug(c.name)
                cid, n = base, 2
                while cid in seen:
                    cid, n = f"{base}_{n}", n + 1
                c.id = cid
            elif c.id in seen:
                raise ValueError(f"criteria[{i}].id: duplicate id {c.id!r}")
            seen.add(c.id)
        return self

    # -- views -----------------------------------------------------------------------------
    def by_id(self) -> dict[str, Criterion]:
        return {c.id: c for c in self.criteria}

    def categories(self) -> list[str]:
        """Categories present, paper categories first in paper order."""
        present = {c.category for c in self.criteria}
        return [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))

    def judge_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.kind == "judge"]

    def check_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.kind == "check"]

    def content_hash(self) -> str:
        """Hash of the criteria (not of ``source``/``metadata``): equal rubrics hash equal."""
        payload = json.dumps([c.model_dump(mode="json") for c in self.criteria], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object, *, source: str = "rubric") -> Rubric:
        """Validate a dict (``{"criteria": [...]}``) or a bare list of criteria.

        Raises :class:`~atlas_plugins.errors.ConfigError` naming each bad field.
        """
        if isinstance(data, Rubric):
            return data
        if isinstance(data, list):
            data = {"criteria": data}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: expected a mapping with 'criteria' (or a list of criteria), got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: invalid rubric\n" + format_validation_error(exc)) from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "rubric") -> Rubric:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Rubric:
        """Load a rubric from a ``.yaml``/``.yml``/``.json`` file."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"rubric file {str(p)!r} does not exist")
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{p}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(p))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    prev: object = None
    for part in loc:
        # Discriminated unions add the tag to the path (check.tool_called.tool); drop it.
        if prev == "check" and part in CHECK_TYPES:
            prev = part
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
        prev = part
    return out or "(root)"


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``criteria[3].weight: must be 1..10, got 12``."""
    lines = []
    for err in exc.errors():
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown field (got {err.get('input')!r})"
        elif err["type"] == "union_tag_invalid":
            msg = (
                f"unknown check type {err.get('input', {}).get('type')!r}; known: {', '.join(CHECK_TYPES)}"
                if isinstance(err.get("input"), dict)
                else msg
            )
        elif err["type"] == "union_tag_not_found":
            msg = f"a check needs a 'type' (one of {', '.join(CHECK_TYPES)})"
        lines.append(f"  {_loc(tuple(err['loc']))}: {msg}")
    return "\n".join(lines)


__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "CHECK_TYPES",
    "AnswerContainsCheck",
    "AnswerEqualsCheck",
    "AnswerRegexCheck",
    "Check",
    "Criterion",
    "PythonCheck",
    "Rubric",
    "StateCheck",
    "ToolArgsMatchCheck",
    "ToolCalledCheck",
    "format_validation_error",
]
