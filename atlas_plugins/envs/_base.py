"""Shared plumbing for the embedded servers: episode state, seeds, validation, sandbox paths.

Tools are written as ``async def`` on purpose: the SDK runs sync tools in worker threads, while an
async tool body with no ``await`` runs atomically on the event loop, which keeps concurrent
calls (the HTTP hub serves many sessions) from interleaving inside one state update.
"""

import atexit
import difflib
import gc
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Generic, TypeVar

from pydantic import Field

from atlas_plugins.mcp_compat import (
    Context,
    MCPServer,
    TextContent,
    ToolError,
    UnexpectedToolError,
    base_call_tool,
    field,
    text_content,
    tool_result,
)

from . import EPISODE_META_KEY, SEED_META_KEY
from ._fixtures import rng_for, stable_hash

__all__ = [
    "HOME_TZ",
    "NOW",
    "NOW_UTC",
    "TODAY",
    "Context",
    "EnvError",
    "EnvServer",
    "EpisodeStore",
    "arg",
    "env_seed",
    "episode_of",
    "lookup",
    "main",
    "one_of",
    "parse_date",
    "parse_datetime",
    "parse_time",
    "rng_for",
    "stable_hash",
]

# Fixed simulated clock: results must not depend on the wall clock.
# The user lives in New York: NOW is their wall clock; NOW_UTC the same instant in UTC.
HOME_TZ = "America/New_York"
TODAY = date(2026, 3, 2)  # a Monday
NOW = datetime(2026, 3, 2, 9, 0)
NOW_UTC = datetime(2026, 3, 2, 14, 0)
DEFAULT_EPISODE = "default"

S = TypeVar("S")


class EnvError(ToolError, ValueError):
    """An input error the caller can fix; its message reaches the model (``is_error`` result)."""


def arg(description: str, **constraints: Any) -> Any:
    """``Annotated[T, arg("...")]``: a described (and optionally constrained) tool argument."""
    return Field(description=description, **constraints)


class EnvServer(MCPServer):  # mcp 2.x MCPServer or 1.x FastMCP
    """MCPServer whose tools may raise plain ``ValueError``/``LookupError`` as input errors.

    The SDK (2.x) hides the text of unexpected exceptions; our simulated backends raise
    ``ValueError`` for bad input on purpose, so its message is passed on to the caller
    (1.x passes every exception's text on already).
    """

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            result = await base_call_tool(super(), name, arguments, context)
        except UnexpectedToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, (ValueError, LookupError)) and not isinstance(cause, ToolError):
                raise ToolError(f"Error executing tool {name}: {cause}") from cause
            raise
        return _compact(result)


def _compact(result: Any) -> Any:
    """Re-emit a dict result as one-line JSON plus structured content.

    The SDK pretty-prints with indent=2, which roughly doubles the tokens a small model reads
    (and tool outputs are truncated at 4,000 characters in training).
    """
    content = getattr(result, "content", None)
    if field(result, "is_error", True) or not isinstance(content, list) or len(content) != 1:
        return result
    block = content[0]
    if not isinstance(block, TextContent) or not block.text.startswith("{"):
        return result
    try:
        obj = json.loads(block.text)
    except ValueError:
        return result
    return tool_result([text_content(json.dumps(obj, ensure_ascii=False))], structured=obj)


def new_server(name: str, instructions: str) -> EnvServer:
    # WARNING keeps per-call INFO lines (every rejected argument) off stderr.
    return EnvServer(name, instructions=instructions, log_level="WARNING")


def env_seed() -> int:
    raw = os.environ.get("ATLAS_ENV_SEED", "0").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"ATLAS_ENV_SEED must be an integer, got {raw!r}") from None


# --------------------------------------------------------------------------- episodes


def _meta_of(ctx: Context | None) -> Mapping[str, Any]:
    if ctx is None:
        return {}
    try:
        meta = ctx.request_context.meta
    except (ValueError, AttributeError):  # called in-process outside a request
        return {}
    if meta is None:
        return {}
    if isinstance(meta, Mapping):
        return meta
    dump = getattr(meta, "model_dump", None)
    return dump(by_alias=True) if callable(dump) else {}


def episode_of(ctx: Context | None) -> str:
    value = _meta_of(ctx).get(EPISODE_META_KEY)
    return DEFAULT_EPISODE if value in (None, "") else str(value)


def episode_seed(ctx: Context | None, default: int) -> int:
    value = _meta_of(ctx).get(SEED_META_KEY)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EnvError(f"_meta[{SEED_META_KEY!r}] must be an integer seed, got {value!r}") from None


class EpisodeStore(Generic[S]):
    """Per-episode state, created lazily from ``factory(seed, episode)``; least recently used dropped."""

    def __init__(self, factory: Callable[[int, str], S], seed: int, capacity: int = 4096) -> None:
        self.factory = factory
        self.seed = seed
        self.capacity = capacity
        self._states: OrderedDict[str, S] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ctx: Context | None) -> S:
        key = episode_of(ctx)
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
                return state
        state = self.factory(episode_seed(ctx, self.seed), key)
        with self._lock:
            state = self._states.setdefault(key, state)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)
        return state

    def drop(self, episode: str) -> bool:
        """Forget an episode's state (the next call starts from the seeded initial state)."""
        with self._lock:
            return self._states.pop(episode, None) is not None

    def episodes(self) -> list[str]:
        with self._lock:
            return list(self._states)


class Ids:
    """Sequential ids per prefix ('e11', 'msg-7'): deterministic for a given call sequence."""

    def __init__(self, **start: int) -> None:
        self._next = dict(start)

    def new(self, prefix: str) -> str:
        n = self._next.get(prefix, 1)
        self._next[prefix] = n + 1
        return f"{prefix}{n}"


# --------------------------------------------------------------------------- validation

_ID_RE = re.compile(r"^(.*?)(\d+)$")


def describe_keys(keys: Iterable[str], limit: int = 15) -> str:
    """'c1..c12' for a contiguous numbered run, else a short list."""
    keys = [str(k) for k in keys]
    if not keys:
        return "none exist yet"
    parsed = [_ID_RE.match(k) for k in keys]
    if len(keys) > 2 and all(parsed):
        prefixes = {m.group(1) for m in parsed if m}
        nums = sorted(int(m.group(2)) for m in parsed if m)
        if len(prefixes) == 1 and nums == list(range(nums[0], nums[0] + len(nums))):
            p = prefixes.pop()
            return f"{p}{nums[0]}..{p}{nums[-1]}"
    if len(keys) <= limit:
        return ", ".join(keys)
    return ", ".join(keys[:limit]) + f", ... ({len(keys)} in all)"


def did_you_mean(value: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def lookup(table: Mapping[str, S], key: str, what: str, hint: str = "") -> S:
    """table[key] or an EnvError naming the valid keys: "unknown contact id 'c99'; known ids: c1..c12"."""
    if key in table:
        return table[key]
    k = str(key).strip()
    if k in table:
        return table[k]
    for cand in table:  # forgive case ('E3' for 'e3', 'jfk' for 'JFK')
        if cand.lower() == k.lower():
            return table[cand]
    extra = f"; {hint}" if hint else ""
    raise EnvError(f"unknown {what} '{key}'{did_you_mean(k, table)}; known: {describe_keys(table)}{extra}")


def one_of(value: str, allowed: Iterable[str], what: str) -> str:
    """Case-insensitive choice from ``allowed``; returns the canonical spelling."""
    allowed = list(allowed)
    v = str(value).strip().lower()
    for a in allowed:
        if a.lower() == v:
            return a
    raise EnvError(f"invalid {what} '{value}'{did_you_mean(value, allowed)}; valid values: {', '.join(allowed)}")


def parse_date(value: str, what: str = "date") -> date:
    """YYYY-MM-DD, or 'today' / 'tomorrow' / 'yesterday' relative to the simulated today."""
    v = str(value).strip().lower()
    rel = {"today": 0, "tomorrow": 1, "yesterday": -1}
    if v in rel:
        return TODAY + timedelta(days=rel[v])
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise EnvError(
            f"invalid {what} '{value}'; expected YYYY-MM-DD (e.g. {TODAY.isoformat()}) or today/tomorrow"
        ) from None


def parse_time(value: str, what: str = "time") -> time:
    v = str(value).strip().lower()
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::\d{2})?\s*(am|pm)?", v)
    if m:
        h, mi, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
        if ampm:
            if not 1 <= h <= 12:
                m = None
            else:
                h = h % 12 + (12 if ampm == "pm" else 0)
        if m and 0 <= h <= 23 and 0 <= mi <= 59:
            return time(h, mi)
    raise EnvError(f"invalid {what} '{value}'; expected 24-hour HH:MM such as 09:30 or 14:00")


def parse_datetime(value: str, what: str = "datetime") -> datetime:
    v = str(value).strip().replace("T", " ").rstrip("Z").strip()
    if v.lower() == "now":
        return NOW
    try:
        if len(v) == 10:
            return datetime.combine(date.fromisoformat(v), time(0, 0))
        return datetime.fromisoformat(v).replace(tzinfo=None, second=0, microsecond=0)
    except ValueError:
        raise EnvError(f"invalid {what} '{value}'; expected 'YYYY-MM-DD HH:MM' (e.g. 2026-03-02 14:30)") from None


_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def check_email(value: str, what: str = "email address") -> str:
    v = str(value).strip()
    if not _EMAIL_RE.match(v):
        raise EnvError(f"invalid {what} '{value}'; expected something like name@example.com")
    return v.lower()


def money(x: float) -> float:
    return round(float(x) + 0.0, 2)


def page(items: list[Any], limit: int, offset: int = 0) -> dict[str, Any]:
    """Common list envelope: the slice plus totals so a caller can tell when to page."""
    chunk = items[offset : offset + limit]
    return {"total": len(items), "offset": offset, "count": len(chunk), "items": chunk}


# --------------------------------------------------------------------------- files sandbox

_workdir: Path | None = None
_workdir_lock = threading.Lock()


def workdir_root() -> Path:
    """``ATLAS_ENV_WORKDIR`` or a fresh temp dir per process (removed at exit)."""
    global _workdir
    with _workdir_lock:
        if _workdir is None:
            env = os.environ.get("ATLAS_ENV_WORKDIR", "").strip()
            if env:
                root = Path(env).expanduser()
                root.mkdir(parents=True, exist_ok=True)
            else:
                root = Path(tempfile.mkdtemp(prefix="atlas-env-"))
                atexit.register(shutil.rmtree, root, True)
            _workdir = root.resolve()
        return _workdir


def episode_dirname(episode: str) -> str:
    """A filesystem-safe, collision-free directory name for an episode key."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", episode) and episode not in (".", ".."):
        return episode
    return "ep-" + hashlib.sha256(episode.encode()).hexdigest()[:20]


def safe_path(base: Path, user_path: str, what: str = "path") -> Path:
    """Resolve a workspace-relative path; refuse absolute paths, '..' and symlinks leading out."""
    raw = str(user_path).strip()
    if "\x00" in raw:
        raise EnvError(f"invalid {what}: contains a NUL byte")
    if raw in ("", ".", "./", "/"):
        if raw == "/":
            raise EnvError(f"{what} '/' is absolute; use '.' for the workspace root")
        return base
    if PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).is_absolute() or raw.startswith(("\\", "~")):
        raise EnvError(
            f"{what} '{user_path}' is absolute; use a path relative to the workspace root, e.g. 'notes/todo.txt'"
        )
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if ".." in parts:
        raise EnvError(f"{what} '{user_path}' contains '..'; paths must stay inside the workspace")
    resolved = (base / PurePosixPath(*parts)).resolve(strict=False)
    if not resolved.is_relative_to(base.resolve()):
        raise EnvError(f"{what} '{user_path}' leads outside the workspace (through a symbolic link); refused")
    return resolved


def rel(base: Path, p: Path) -> str:
    r = p.relative_to(base.resolve()).as_posix()
    return r or "."


# --------------------------------------------------------------------------- entry point


def build_quietly(build_fn: Callable[[int], S], seed: int) -> S:
    """Build with the cyclic GC paused, then freeze what was built.

    Registering ~15 tools creates many pydantic objects; collections triggered mid-build cost
    startup time and find nothing to free, and freezing keeps later collections short.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return build_fn(seed)
    finally:
        if enabled:
            gc.enable()
        gc.freeze()


def main(build_fn: Callable[[int], MCPServer]) -> None:
    """``python -m atlas_plugins.envs.<name>``: serve over stdio with the seed from ATLAS_ENV_SEED."""
    build_quietly(build_fn, env_seed()).run()
