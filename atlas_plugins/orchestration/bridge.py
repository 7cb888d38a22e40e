"""The host side of ``code_interpreter``: validates bridge requests and makes the MCP calls.

Executors differ only in how bytes reach the sandbox (:class:`Transport`); everything else is
here: the cell loop with its wall-time budget, restart-on-crash, the request handling, tool
calls through ``toolspace.call(..., episode=...)`` (so ``atlas_before_tool_call`` vetoes apply
and no MCP credentials enter the sandbox), the output formats learned from a session's first
successful call, and the error hints for small models.

Everything the sandbox sends is untrusted, because model code runs in the runner's process and
can write any bytes on the bridge:

* each message is size-capped, parsed with a nesting cap (:func:`~atlas_plugins.values.loads_bounded`)
  and schema-checked with pydantic; unknown ops are refused;
* what a ``done`` message reports (stdout, value, error) is capped again here, whatever the
  runner claims its own caps are;
* a cell's wall-time budget includes the tool calls it makes: each call gets only the time
  left in the budget;
* tool results are checked before they go into the sandbox (size, nesting), so an oversized
  result is an error the cell can read, not a broken bridge;
* output formats and examples shown by ``get_tools_info`` are learned per session, never
  shared between episodes.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError

from atlas_plugins.orchestration.base import CellResult
from atlas_plugins.orchestration.sandbox_runner import ERROR_CHARS, VALUE_REPR_CHARS
from atlas_plugins.toolspace.validation import python_signature
from atlas_plugins.types import ServerInfo, ToolSpec
from atlas_plugins.values import MAX_JSON_DEPTH, describe_value, loads_bounded, nesting_exceeds, printable, to_python
from atlas_plugins.wire.text import closest

if TYPE_CHECKING:
    from atlas_plugins.toolspace import Toolspace

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_RESULT_BYTES = 1024 * 1024  # the largest tool result (as JSON) sent into the sandbox
#: Objects and lists one bridge message may hold, beyond the executor's stdout cap (brackets are
#: counted inside strings too, and a 'done' message carries the cell's whole stdout). Parsing
#: 500,000 costs the host ~65 MB. Scalars are not counted: a message of 8 MiB of short strings or
#: numbers costs ~230 MB while it parses (measured), freed when the message is handled.
MAX_MESSAGE_CONTAINERS = 500_000
#: The most argument JSON one call's record keeps (records go into trajectories, 30 calls a cell):
#: the tool still gets the whole arguments, the host's record of them is cut.
MAX_RECORDED_ARGUMENT_BYTES = 64 * 1024
STATE_LOST = "the interpreter was restarted: every variable, import and MCPServer object from earlier cells is gone"


class SandboxDied(Exception):
    """The sandboxed interpreter exited (crash, limit, os._exit)."""


class CellTimeout(Exception):
    """No answer from the sandbox within the cell's wall-time limit."""


class ProtocolViolation(Exception):
    """The sandbox sent bytes that are not a valid bridge message (forged, oversized, malformed)."""


# -- messages from the sandbox (untrusted) --------------------------------------------------
class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadyMsg(_Msg):
    op: Literal["ready"]
    pid: StrictInt
    python: StrictStr = ""
    seccomp: StrictBool = False


class ServerMsg(_Msg):
    op: Literal["server"]
    id: StrictInt
    server: StrictStr = Field(max_length=200)


class InfoMsg(_Msg):
    op: Literal["info"]
    id: StrictInt
    server: StrictStr = Field(max_length=200)
    tools: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None, max_length=200)


class CallMsg(_Msg):
    op: Literal["call"]
    id: StrictInt
    server: StrictStr = Field(max_length=200)
    tool: StrictStr = Field(max_length=200)
    args: list[Any] = Field(default_factory=list, max_length=64)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class DoneMsg(_Msg):
    op: Literal["done"]
    cell: StrictInt
    ok: StrictBool
    value: StrictStr | None = None
    stdout: StrictStr = ""
    error: StrictStr | None = None
    error_type: StrictStr | None = None


#: A validated message from the sandbox; ``RequestMsg`` are those the bridge answers.
Message = ReadyMsg | ServerMsg | InfoMsg | CallMsg | DoneMsg
RequestMsg = ServerMsg | InfoMsg | CallMsg
SandboxMessage = Annotated[Message, Field(discriminator="op")]
_ADAPTER: TypeAdapter[Message] = TypeAdapter(SandboxMessage)


#: Each op's fields, with their ``max_length`` (None for fields without one).
_FIELDS: dict[str, dict[str, int | None]] = {
    get_args(m.model_fields["op"].annotation)[0]: {
        name: next((c.max_length for c in f.metadata if hasattr(c, "max_length")), None)
        for name, f in m.model_fields.items()
    }
    for m in get_args(Message)
}


# JSON may spell UTF-16 surrogates as escapes ("\ud800"); json.loads turns an unpaired one into a
# str that no UTF-8 writer accepts, so a forged (or, over E2B's ASCII lines, an honest) message
# would make the host raise later, wherever it logs, prints, saves or tokenizes the result.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with every unpaired surrogate in its strings (keys too) replaced by U+FFFD.
    Recursion is bounded: the value passed :func:`loads_bounded`'s nesting cap."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def _recorded_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` as a call's record keeps them: whole up to :data:`MAX_RECORDED_ARGUMENT_BYTES`
    of JSON, else a marker with the start of their JSON (a cell flooding calls with megabytes of
    arguments would otherwise hold hundreds of MB of host memory in its trajectory)."""
    text = json.dumps(arguments, ensure_ascii=False, default=repr)
    if len(text) <= MAX_RECORDED_ARGUMENT_BYTES:
        return arguments
    return {"_truncated": f"{len(text)} characters of arguments, cut", "_start": text[:2000]}


def parse_message(payload: bytes, max_containers: int = MAX_MESSAGE_CONTAINERS) -> Message:
    """Decode and validate one message; raises :class:`ProtocolViolation` naming the problem.
    ``max_containers``: brackets allowed (a transport whose output cap is raised raises it too)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(f"message of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte cap")
    # Each parsed container costs the host ~130 bytes: 8 MiB of "[{},{},...]" held 375 MB while
    # it parsed. Counting brackets (inside strings too) is an upper bound, and cheap.
    containers = payload.count(b"{") + payload.count(b"[")
    if containers > max_containers:
        raise ProtocolViolation(f"message holds up to {containers} objects and lists, over the cap of {max_containers}")
    try:
        # Strict UTF-8 first: json.loads(bytes) would accept UTF-16/32 and decode surrogate bytes
        # (b"\xed\xa0\x80") with 'surrogatepass', past the escape check below.
        text = payload.decode("utf-8")
        data = loads_bounded(text)
    except (ValueError, UnicodeDecodeError) as exc:  # UnicodeDecodeError is a ValueError; named for readers
        raise ProtocolViolation(f"message is not JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(text):
        data = _without_lone_surrogates(data)
    if not isinstance(data, dict) or "op" not in data:
        raise ProtocolViolation(f"message is not an object with an 'op': {str(data)[:120]!r}")
    if not isinstance(data["op"], str) or data["op"] not in _FIELDS:
        raise ProtocolViolation(f"unknown op {str(data['op'])[:60]!r} (expected one of {', '.join(_FIELDS)})")
    # Before pydantic, which builds one error per unknown key or bad list item: 700,000 forged
    # keys cost the host 5 s and 880 MB to report the first of them.
    fields = _FIELDS[data["op"]]
    extra = [k for k in data if k not in fields]
    if extra:
        shown = ", ".join(repr(k[:40]) for k in extra[:3])
        raise ProtocolViolation(f"invalid {data['op']!r} message: unknown fields {shown} ({len(extra)} in all)")
    for name, value in data.items():
        cap = fields[name]
        if cap is not None and isinstance(value, list) and len(value) > cap:
            raise ProtocolViolation(
                f"invalid {data['op']!r} message: {name}: {len(value)} items, over the cap of {cap}"
            )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ProtocolViolation(f"invalid {data['op']!r} message: {where}: {first['msg']}") from None


# -- output formats ---------------------------------------------------------------------------
def schema_sketch(schema: Any, depth: int = 0) -> str:
    """A JSON Schema as the same compact sketch :func:`describe_value` gives for values."""
    if not isinstance(schema, dict) or depth > 3:
        return "Any"
    t = schema.get("type")
    if t == "object" or (t is None and "properties" in schema):
        props = schema.get("properties") or {}
        if not props:
            return "dict"
        inner = ", ".join(f"{json.dumps(k)}: {schema_sketch(v, depth + 1)}" for k, v in list(props.items())[:12])
        return "{" + inner + (", ..." if len(props) > 12 else "") + "}"
    if t == "array":
        return f"list[{schema_sketch(schema.get('items'), depth + 1)}]"
    names = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
    if isinstance(t, list):
        return " | ".join(names.get(x, str(x)) for x in t)
    if t in names:
        return names[t]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(dict.fromkeys(schema_sketch(s, depth + 1) for s in schema[key]))
    return "Any"


def _wraps_result(schema: Any) -> bool:
    # FastMCP/MCPServer wraps a non-object return value as {"result": value} in structured output.
    return (
        isinstance(schema, dict)
        and set(schema.get("properties") or {}) == {"result"}
        and (schema.get("required") == ["result"] or schema.get("x-fastmcp-wrap-result") is True)
    )


def _unwrap_structured(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["properties"]["result"] if _wraps_result(schema) else schema


class OutputFormats:
    """Output format + example per tool: from ``output_schema``, else learned from the first
    successful call. One instance per session: an example shows real arguments and results,
    which must never reach another episode."""

    def __init__(self) -> None:
        self._learned: dict[str, dict[str, str]] = {}

    def get(self, spec: ToolSpec) -> dict[str, str]:
        learned = self._learned.get(spec.qualified_name, {})
        fmt = learned.get("format")
        if spec.output_schema:
            fmt = schema_sketch(_unwrap_structured(spec.output_schema))
        return {"format": fmt or "", "example": learned.get("example", "")}

    def learn(self, spec: ToolSpec, arguments: dict[str, Any], content: Any) -> None:
        if spec.qualified_name in self._learned:
            return
        value = to_python(content)
        call = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        if len(call) > 200:  # arguments are the sandbox's: a 6 MB one would ride on every hint
            call = call[:200] + "…"
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:200] + "…"
        self._learned[spec.qualified_name] = {
            "format": describe_value(value),
            "example": f"{spec.name}({call}) -> {shown}",
        }


def tools_info_text(specs: list[ToolSpec], formats: OutputFormats) -> str:
    blocks = []
    for spec in specs:
        lines = [python_signature(spec)]
        if spec.description:
            lines.append("    " + spec.description.strip().splitlines()[0][:200])
        fmt = formats.get(spec)
        lines.append("    returns: " + (fmt["format"] or "not known yet (call it once and look at the value)"))
        if fmt["example"]:
            lines.append("    example: " + fmt["example"])
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


# -- request handling --------------------------------------------------------------------------
class ToolBridge:
    """Answers one session's requests. Holds the per-cell log of tool calls."""

    def __init__(
        self,
        toolspace: Toolspace,
        *,
        episode: str | None,
        servers: list[str] | None,
        max_calls_per_cell: int = 30,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self.toolspace = toolspace
        self.episode = episode or f"exec-{uuid.uuid4().hex[:12]}"
        self.formats = OutputFormats()  # per session, see OutputFormats
        self.max_calls_per_cell = max_calls_per_cell
        self.max_result_bytes = max_result_bytes
        self.deadline = float("inf")  # time.monotonic() by which the running cell must finish
        known = {s.name: s for s in toolspace.servers if not s.catalog_only}
        if servers is not None:
            missing = [s for s in servers if s not in known]
            if missing:
                from atlas_plugins.errors import ConfigError

                raise ConfigError(
                    f"unknown or catalogue-only server(s) {', '.join(map(repr, missing))} for code_interpreter; "
                    f"available: {', '.join(known)}"
                )
            known = {k: known[k] for k in servers}
        self.servers = known
        self.calls: list[dict[str, Any]] = []
        self.call_time = 0.0

    def reset_cell(self, deadline: float = float("inf")) -> None:
        self.calls, self.call_time, self.deadline = [], 0.0, deadline

    def _server(self, name: str) -> ServerInfo:
        info = self.servers.get(name)
        if info is None:
            hint = closest(name, self.servers)
            msg = f"unknown server {name!r}."
            if hint:
                msg += f" Did you mean {' or '.join(map(repr, hint))}?"
            raise LookupError(msg + f" Available servers: {', '.join(self.servers)}")
        return info

    def handle(self, msg: RequestMsg) -> dict[str, Any]:
        """The reply to one validated request message."""
        try:
            if isinstance(msg, ServerMsg):
                return self._ok(msg.id, [t.name for t in self._server(msg.server).tools])
            if isinstance(msg, InfoMsg):
                return self._ok(msg.id, self._info(msg))
            if isinstance(msg, CallMsg):
                return self._call(msg)
        except LookupError as exc:
            return {"op": "result", "id": msg.id, "ok": False, "error": str(exc.args[0])}
        except (CellTimeout, SandboxDied, ProtocolViolation):
            raise  # the bridge's own signals to the session
        except Exception as exc:  # noqa: BLE001 - e.g. a server's malformed schema: the cell sees an error
            log.warning("bridge request %s failed on the host: %r", msg.op, exc)
            return {"op": "result", "id": msg.id, "ok": False, "error": f"the request failed: {type(exc).__name__}"}
        raise ProtocolViolation(f"{msg.op!r} is not a request")

    @staticmethod
    def _ok(rid: int, content: Any) -> dict[str, Any]:
        return {"op": "result", "id": rid, "ok": True, "content": content}

    def _info(self, msg: InfoMsg) -> str:
        info = self._server(msg.server)
        by_name = {t.name: t for t in info.tools}
        if msg.tools is None:
            return tools_info_text(list(by_name.values()), self.formats)
        parts, specs = [], []
        for name in msg.tools:
            if name in by_name:
                specs.append(by_name[name])
            else:
                hint = closest(name, by_name)
                parts.append(
                    f"no tool {name!r} on {msg.server!r}"
                    + (
                        f"; did you mean {' or '.join(map(repr, hint))}?"
                        if hint
                        else f"; its tools: {', '.join(by_name)}"
                    )
                )
        return "\n".join([tools_info_text(specs, self.formats), *parts]).strip()

    def _call(self, msg: CallMsg) -> dict[str, Any]:
        info = self._server(msg.server)
        if len(self.calls) >= self.max_calls_per_cell:
            return {
                "op": "result",
                "id": msg.id,
                "ok": False,
                "error": f"tool-call limit reached ({self.max_calls_per_cell} calls per cell)",
            }
        spec = next((t for t in info.tools if t.name == msg.tool), None)
        arguments = dict(msg.kwargs)
        if msg.args:
            # Positional arguments follow the schema's property order (what the signature shows).
            order = list(((spec.input_schema if spec else {}) or {}).get("properties") or {})
            if spec is None or len(msg.args) > len(order) or any(k in arguments for k in order[: len(msg.args)]):
                sig = python_signature(spec) if spec else f"{msg.tool}(...)"
                return {
                    "op": "result",
                    "id": msg.id,
                    "ok": False,
                    "error": f"call {msg.server}.{msg.tool} with keyword arguments; signature: {sig}",
                }
            arguments.update(zip(order, msg.args, strict=False))  # the positional ones: a prefix of order
        left = self.deadline - time.monotonic()
        if left <= 0.05:
            raise CellTimeout()
        timeout = left if left != float("inf") else None
        t0 = time.perf_counter()
        result = self.toolspace.call(msg.server, msg.tool, arguments, episode=self.episode, timeout=timeout)
        self.call_time += time.perf_counter() - t0
        content = result.content if result.ok else None  # the toolspace already unwrapped {'result': x}
        self.calls.append(
            {
                "server": msg.server,
                "tool": msg.tool,
                "arguments": _recorded_arguments(arguments),
                "ok": result.ok,
                "error": None if result.error is None else result.error[:2000],
                "error_type": result.error_type,
                "content_type": type(to_python(content)).__name__ if result.ok else None,
                "text": result.text[:2000],
            }
        )
        if not result.ok:
            error = result.error or "tool call failed"
            if result.error_type == "unknown_tool":
                error = error.replace(" on server ", " on ")
            return {"op": "result", "id": msg.id, "ok": False, "error": error}
        problem = self._unsendable(content)
        if problem:
            return {"op": "result", "id": msg.id, "ok": False, "error": f"{msg.server}.{msg.tool} returned {problem}"}
        if spec is not None:
            self.formats.learn(spec, arguments, content)
        return self._ok(msg.id, content)

    def _unsendable(self, content: Any) -> str | None:
        """Why a tool result cannot go into the sandbox, or None. A hostile MCP server may send
        anything; the cell gets a readable error instead of a broken bridge."""
        if nesting_exceeds(content, MAX_JSON_DEPTH):
            return f"a value nested deeper than {MAX_JSON_DEPTH} levels; it cannot be passed to code"
        size = len(json.dumps(content, ensure_ascii=False, default=repr))
        if size > self.max_result_bytes:
            return (
                f"{size} bytes, over the {self.max_result_bytes}-byte limit for code_interpreter; "
                "ask for less (filters, paging, a smaller range)"
            )
        return None

    def hint(self, error_type: str | None, error: str) -> str | None:
        """For a wrong-type use of a tool result, say what that tool returns."""
        if error_type not in ("TypeError", "KeyError", "IndexError", "AttributeError"):
            return None
        good = [c for c in self.calls if c["ok"]]
        if not good:
            return None
        last = good[-1]
        spec = next((t for t in self.servers[last["server"]].tools if t.name == last["tool"]), None)
        kind = last["content_type"]
        lead = f"{last['server']}.{last['tool']}(...) returned a {kind}"
        if "string indices must be integers" in error or (kind == "str" and error_type in ("TypeError", "KeyError")):
            lead = f"you indexed a str as if it were a dict or list; {lead}"
        elif "list indices must be integers" in error:
            lead = f"you indexed a list with a str key as if it were a dict; {lead}"
        fmt = self.formats.get(spec) if spec else {"format": "", "example": ""}
        text = f"hint: {lead}"
        if fmt["format"]:
            text += f"; its output format is {fmt['format']}"
        if fmt["example"]:
            text += f"; example: {fmt['example']}"
        return text


# -- sessions -----------------------------------------------------------------------------------
class Transport:
    """How bytes reach one sandboxed interpreter. Implemented per executor."""

    def start(self) -> None: ...

    def send(self, msg: dict[str, Any], deadline: float | None = None) -> None:
        """Deliver one message; raise CellTimeout if it cannot be written by ``deadline``
        (``time.monotonic()``): the sandbox decides whether it reads, so a write may not block."""

    def recv(self, deadline: float) -> Message:
        """The next validated message; raises CellTimeout / SandboxDied / ProtocolViolation."""
        raise NotImplementedError

    def stop(self) -> None: ...

    def pause(self) -> None:
        """Between cells: stop every thread of the interpreter (a no-op where a transport cannot)."""

    def resume(self) -> None:
        """Before a cell: let the interpreter's threads run again."""

    def diagnostics(self) -> str:
        return ""

    def crash_output(self, cell: int) -> str:
        """What ``cell`` printed before the interpreter died, where the transport can tell."""
        return ""


def _cap(text: str | None, limit: int, what: str) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n…[{len(text) - limit} more characters of {what} dropped]"


class BridgedSession:
    """A persistent interpreter reached over a :class:`Transport` (implements ``CodeSession``).

    ``timeout`` is the wall-time budget of one cell, tool calls included. ``output_limit``
    caps the stdout kept per cell; the value and error caps are the runner's own
    (``VALUE_REPR_CHARS``, ``ERROR_CHARS``), enforced again here because the runner's claims
    cannot be trusted.
    """

    def __init__(
        self,
        transport_factory: Callable[[], Transport],
        bridge: ToolBridge,
        *,
        timeout: float,
        start_timeout: float,
        response_limit: int,
        output_limit: int = 200_000,
    ) -> None:
        self._factory = transport_factory
        self.bridge = bridge
        self.timeout, self.start_timeout, self.response_limit = timeout, start_timeout, response_limit
        self.output_limit = output_limit
        self._cell = 0
        self._transport: Transport | None = None
        self.cold_start_ms: float | None = None
        self._start()

    @property
    def episode(self) -> str:
        return self.bridge.episode

    def _start(self) -> None:
        t0 = time.perf_counter()
        transport = self._factory()
        deadline = time.monotonic() + self.start_timeout  # one budget: the transport's start and 'ready'
        try:
            transport.start()
            msg = transport.recv(deadline)
        except (CellTimeout, SandboxDied, ProtocolViolation, OSError) as exc:
            detail = transport.diagnostics()
            transport.stop()
            raise self._start_error(exc, detail) from None
        except BaseException:
            transport.stop()
            raise
        if not isinstance(msg, ReadyMsg):
            transport.stop()
            raise self._start_error(ProtocolViolation(f"expected 'ready', got {msg.op!r}"), "")
        self._transport = transport
        self.cold_start_ms = (time.perf_counter() - t0) * 1000

    def _start_error(self, exc: Exception, detail: str) -> Exception:
        from atlas_plugins.errors import AtlasError

        reason = str(exc) or (
            f"nothing within start_timeout={self.start_timeout:g}s"
            if isinstance(exc, CellTimeout)
            else type(exc).__name__
        )
        return AtlasError(f"the sandboxed interpreter did not start ({reason})" + (f": {detail}" if detail else ""))

    def run(self, code: str) -> CellResult:
        """Run one cell. Never raises for problems of the code: they come back in the result."""
        if not isinstance(code, str):
            return CellResult(ok=False, error=f"code must be a str, got {type(code).__name__}")
        t0 = time.perf_counter()
        if self._transport is None:
            try:
                self._start()
            except Exception as exc:  # noqa: BLE001 - reported to the model, retried next cell
                return CellResult(ok=False, error=f"the interpreter could not be started: {exc}", restarted=True)
        self._cell += 1
        deadline = time.monotonic() + self.timeout  # one budget for the cell and its tool calls
        self.bridge.reset_cell(deadline)
        problem: str | None = None
        transport = self._transport
        assert transport is not None  # started above
        try:
            transport.resume()
            transport.send({"op": "run", "cell": self._cell, "code": code}, deadline)
            while True:
                msg = transport.recv(deadline)
                if isinstance(msg, DoneMsg):
                    if msg.cell != self._cell:
                        raise ProtocolViolation(f"'done' for cell {msg.cell} while cell {self._cell} runs")
                    # A thread the cell started would otherwise spin on between cells, outside
                    # every cell's time budget (measured: 1.8 CPU-s in 2 s after a cell returned).
                    transport.pause()
                    return self._finish(msg, t0)
                if isinstance(msg, ReadyMsg):
                    raise ProtocolViolation("unexpected 'ready' during a cell")
                transport.send(self.bridge.handle(msg), deadline)
        except CellTimeout:
            problem = f"the cell ran longer than its {self.timeout:g}s time limit (tool calls included) and was stopped"
        except SandboxDied as exc:
            problem = f"the interpreter crashed ({exc})"
        except ProtocolViolation as exc:
            problem = f"the sandbox sent an invalid bridge message ({exc})"
        except (BrokenPipeError, OSError) as exc:
            problem = f"the interpreter is unreachable ({exc})"
        problem = printable(problem)  # it may quote the sandbox's stderr or a forged message's keys
        log.warning("code_interpreter cell %d: %s; restarting the interpreter", self._cell, _one_line(problem))
        printed = _cap(transport.crash_output(self._cell), self.output_limit, "output") or ""
        self._restart()
        return CellResult(
            ok=False,
            stdout=printed,
            error=f"{problem}; {STATE_LOST}.",
            elapsed_ms=(time.perf_counter() - t0) * 1000,
            restarted=True,
            tool_calls=list(self.bridge.calls),
        )

    def _finish(self, msg: DoneMsg, t0: float) -> CellResult:
        error = _cap(msg.error, ERROR_CHARS, "the error")
        if error is not None:
            hint = self.bridge.hint(msg.error_type, error)
            if hint:
                error = _cap(error + "\n" + hint, ERROR_CHARS + 1000, "the error")
        return CellResult(
            ok=msg.ok and error is None,
            value=_cap(msg.value, VALUE_REPR_CHARS, "the value"),
            stdout=_cap(msg.stdout, self.output_limit, "output") or "",
            error=error,
            elapsed_ms=(time.perf_counter() - t0) * 1000,
            tool_calls=list(self.bridge.calls),
        )

    def observe(self, code: str) -> str:
        """Run a cell and return what the model sees (truncated to the response limit)."""
        return self.run(code).observation(self.response_limit)

    def _restart(self) -> None:
        if self._transport is not None:
            self._transport.stop()
            self._transport = None
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 - the next run() retries and reports
            log.warning("could not restart the interpreter now: %s", _one_line(printable(str(exc))))

    def close(self) -> None:
        if self._transport is not None:
            try:
                self._transport.send({"op": "exit"}, time.monotonic() + 1)
            except Exception:  # noqa: BLE001
                pass
            self._transport.stop()
            self._transport = None

    def __enter__(self) -> BridgedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(text: str) -> str:
    """``text`` for one log record: a newline from the sandbox's stderr would start a forged one."""
    return text.replace("\n", "\\n")
