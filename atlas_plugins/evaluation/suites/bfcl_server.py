"""BFCL v4 multi-turn API classes served as real MCP servers (one process, streamable HTTP).

    python -m atlas_plugins.evaluation.suites.bfcl_server [--host 127.0.0.1] [--port 0]
                                                          [--servers a,b] [--capacity 256]

Each BFCL class (the Python backends that ship in the ``bfcl-eval`` wheel under
``bfcl_eval.eval_checker.multi_turn_eval.func_source_code``) becomes one MCP server, mounted at
``/<server>/mcp``; server names are in :data:`BFCL_SERVERS` (``gorilla_file_system``,
``math_api``, ``message_api``, ``twitter_api``, ``ticket_api``, ``trading_bot``, ``travel_api``,
``vehicle_control``). Tools and descriptions come from BFCL's own function docs
(``bfcl_eval/data/multi_turn_func_doc/*.json``); their parameter schemas are converted to JSON
Schema by :func:`to_json_schema` (BFCL ``dict`` -> ``object``, ``float`` -> ``number``,
``tuple`` -> ``array``, ``any`` -> no type constraint). Once it accepts connections the process
prints one JSON line, ``{"url": "http://127.0.0.1:PORT", "servers": [...]}``, and serves until
killed or until its stdin (when a pipe) is closed, like :mod:`atlas_plugins.envs.hub`.

**Episode contract.** State is kept per episode id, the request's ``_meta["atlas/episode"]``
(:data:`atlas_plugins.envs.EPISODE_META_KEY`). An episode's instances are created on its first
call, one per class, exactly as BFCL's executor creates them:
``cls()`` then ``instance._load_scenario(deepcopy(initial_config[ClassName]), long_context=...)``
(no ``_load_scenario`` for the stateless ``MathAPI``), where ``initial_config`` is the BFCL task's
and ``long_context`` is true for the ``multi_turn_long_context`` category. The task is found:

1. from ``_meta["atlas/task_id"]`` (:data:`TASK_META_KEY`) when present — an id that is not a BFCL
   multi-turn task is an error result naming it;
2. else from the episode id: the native agent names episodes ``f"{task.id}-{10 hex chars}"``, so
   the last ``-xxxxxxxxxx`` part is stripped (``multi_turn_base_7-0a1b2c3d4e`` ->
   ``multi_turn_base_7``); an episode id that is itself a task id also works;
3. otherwise (no meta, or not a BFCL id) the episode starts from the class's default scenario
   (``_load_scenario({})``).

At most ``capacity`` episodes are live; the least recently used is dropped (its next call starts
over from the initial state), so memory stays flat over long runs.

**Results.** A tool's return value is rendered exactly as BFCL's executor renders it for the model
(``json.dumps`` for a dict, the string itself, else ``str(value)``). An exception raised by the
class becomes an MCP error result with BFCL's text ``"Error during execution: <message>"``; a
return value of the form ``{"error": "..."}`` (how BFCL classes report refusals) is sent with the
same text BFCL shows and ``isError`` set, so clients can count it as a failed call.

Importing this module is cheap (no ``mcp``, no ``bfcl_eval`` class modules): the server parts
load inside :func:`build_server` / :func:`serve`.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import json
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from atlas_plugins.envs import EPISODE_META_KEY
from atlas_plugins.toolspace.toolspace import ServerProcess

#: ``_meta`` key naming the BFCL task explicitly (overrides the id derived from the episode).
TASK_META_KEY = "atlas/task_id"

#: The four BFCL v4 multi-turn categories (200 tasks each).
MULTI_TURN_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)

_BACKEND_PREFIX = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
_STATELESS = {"MathAPI"}  # mirrors bfcl_eval.constants.executable_backend_config.STATELESS_CLASSES
_EPISODE_SUFFIX = re.compile(r"^(?P<task>.+)-[0-9a-fA-F]{10}$")


@dataclass(frozen=True)
class BFCLClass:
    """One BFCL API class and the MCP server name it is served under."""

    server: str
    class_name: str
    module: str  # under bfcl_eval.eval_checker.multi_turn_eval.func_source_code
    func_doc: str  # file under bfcl_eval/data/multi_turn_func_doc

    @property
    def module_path(self) -> str:
        return f"{_BACKEND_PREFIX}.{self.module}"


#: Server name -> class, in BFCL's own order (executable_backend_config.CLASS_FILE_PATH_MAPPING).
BFCL_SERVERS: dict[str, BFCLClass] = {
    c.server: c
    for c in (
        BFCLClass("gorilla_file_system", "GorillaFileSystem", "gorilla_file_system", "gorilla_file_system.json"),
        BFCLClass("math_api", "MathAPI", "math_api", "math_api.json"),
        BFCLClass("message_api", "MessageAPI", "message_api", "message_api.json"),
        BFCLClass("twitter_api", "TwitterAPI", "posting_api", "posting_api.json"),
        BFCLClass("ticket_api", "TicketAPI", "ticket_api", "ticket_api.json"),
        BFCLClass("trading_bot", "TradingBot", "trading_bot", "trading_bot.json"),
        BFCLClass("travel_api", "TravelAPI", "travel_booking", "travel_booking.json"),
        BFCLClass("vehicle_control", "VehicleControlAPI", "vehicle_control", "vehicle_control.json"),
    )
}
#: BFCL class name -> server name.
SERVER_OF_CLASS: dict[str, str] = {c.class_name: c.server for c in BFCL_SERVERS.values()}

INSTALL_HINT = "pip install --no-deps bfcl-eval"


# --------------------------------------------------------------------------- wheel data


def bfcl_data_dir() -> Path:
    """``bfcl_eval/data`` of the installed wheel (found without importing its heavy modules)."""
    import importlib.util

    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the BFCL suite needs the bfcl-eval wheel; install it with: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def normalise_category(category: str) -> str:
    """``"base"`` or ``"multi_turn_base"`` -> ``"multi_turn_base"``; unknown names raise ``ValueError``."""
    name = category if category.startswith("multi_turn_") else f"multi_turn_{category}"
    if name not in MULTI_TURN_CATEGORIES:
        raise ValueError(f"unknown BFCL multi-turn category {category!r}; known: {', '.join(MULTI_TURN_CATEGORIES)}")
    return name


@cache
def load_entries(category: str) -> tuple[dict[str, Any], ...]:
    """The category's test entries, each with its ``ground_truth`` (list of turns of call strings)."""
    category = normalise_category(category)
    data = bfcl_data_dir()
    questions = _read_jsonl(data / f"BFCL_v4_{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in _read_jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json")}
    out = []
    for q in questions:
        if q["id"] not in answers:
            raise ValueError(
                f"BFCL data: task {q['id']!r} has no ground truth in possible_answer/BFCL_v4_{category}.json"
            )
        out.append({**q, "ground_truth": answers[q["id"]]})
    return tuple(out)


def category_of(task_id: str) -> str | None:
    """``"multi_turn_base_7" -> "multi_turn_base"``; None when it is not a multi-turn id."""
    head, sep, tail = task_id.rpartition("_")
    return head if sep and tail.isdigit() and head in MULTI_TURN_CATEGORIES else None


@cache
def _entries_by_id(category: str) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in load_entries(category)}


def find_entry(task_id: str) -> dict[str, Any] | None:
    """The BFCL test entry (question, initial_config, involved_classes, ground_truth, …) or None."""
    category = category_of(task_id)
    return _entries_by_id(category).get(task_id) if category else None


def task_id_of_episode(episode: str) -> str:
    """``"multi_turn_base_7-0a1b2c3d4e" -> "multi_turn_base_7"`` (the native agent's episode ids)."""
    m = _EPISODE_SUFFIX.match(episode)
    return m.group("task") if m else episode


@cache
def func_docs(server: str) -> tuple[dict[str, Any], ...]:
    """BFCL's function docs for one server, as shipped in the wheel."""
    cls = _bfcl_class(server)
    return tuple(_read_jsonl(bfcl_data_dir() / "multi_turn_func_doc" / cls.func_doc))


def tool_names(server: str) -> list[str]:
    return [d["name"] for d in func_docs(server)]


def _bfcl_class(server: str) -> BFCLClass:
    try:
        return BFCL_SERVERS[server]
    except KeyError:
        raise ValueError(f"unknown BFCL server {server!r}; known: {', '.join(BFCL_SERVERS)}") from None


def server_summary(server: str) -> str:
    """One line: the class preamble BFCL puts before "Tool description:" in every function doc."""
    desc = func_docs(server)[0].get("description", "")
    head = desc.split("Tool description:")[0].strip()
    head = re.sub(r"^This tool belongs to (the )?", "", head)
    return (head[:1].upper() + head[1:]) if head else server


# BFCL's type names (Python-flavoured) -> JSON Schema. ``any`` means "no constraint".
_TYPE_MAP: dict[str, str | None] = {
    "dict": "object",
    "object": "object",
    "float": "number",
    "number": "number",
    "integer": "integer",
    "int": "integer",
    "string": "string",
    "str": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "any": None,
    "null": "null",
}


def to_json_schema(node: Any, where: str = "parameters") -> Any:
    """Convert one BFCL parameter schema (recursively) to JSON Schema.

    Raises ``ValueError`` naming the place of a type it does not know.
    """
    if isinstance(node, list):
        return [to_json_schema(x, where) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            types = value if isinstance(value, list) else [value]
            mapped: list[str] = []
            for t in types:
                if t not in _TYPE_MAP:
                    raise ValueError(f"{where}: unknown BFCL type {t!r}; known: {', '.join(_TYPE_MAP)}")
                kind = _TYPE_MAP[t]
                if kind is None:  # "any" anywhere means unconstrained
                    mapped = []
                    break
                mapped.append(kind)
            if mapped:
                out["type"] = mapped[0] if len(mapped) == 1 else list(dict.fromkeys(mapped))
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: to_json_schema(v, f"{where}.{k}") for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            out[key] = to_json_schema(value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def input_schema(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A tool's MCP input schema from its BFCL function doc."""
    schema = to_json_schema(
        doc.get("parameters") or {"type": "dict", "properties": {}}, f"{doc.get('name')}.parameters"
    )
    schema["type"] = "object"
    schema.setdefault("properties", {})
    if not schema.get("required"):
        schema.pop("required", None)
    return schema


def render_result(value: Any) -> str:
    """A return value as BFCL's executor shows it to the model (multi_turn_utils)."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def is_error_value(value: Any) -> bool:
    """BFCL classes report refusals as ``{"error": "..."}``."""
    return isinstance(value, dict) and set(value) == {"error"}


@cache
def api_class(class_name: str) -> type:
    """The BFCL API class (imports only its own module; no other bfcl-eval dependency)."""
    server = SERVER_OF_CLASS.get(class_name)
    if server is None:
        raise ValueError(f"unknown BFCL class {class_name!r}; known: {', '.join(SERVER_OF_CLASS)}")
    module = importlib.import_module(BFCL_SERVERS[server].module_path)
    return getattr(module, class_name)


def new_instance(class_name: str, entry: Mapping[str, Any] | None) -> Any:
    """A fresh instance loaded with the task's scenario, as BFCL's executor builds it."""
    inst = api_class(class_name)()
    if class_name not in _STATELESS:
        config = (entry or {}).get("initial_config", {}).get(class_name, {})
        long_context = bool(entry and "long_context" in str(entry["id"]))
        inst._load_scenario(copy.deepcopy(config), long_context=long_context)
    return inst


# --------------------------------------------------------------------------- episodes


class UnknownTask(ValueError):
    """``_meta["atlas/task_id"]`` named a task that is not a BFCL multi-turn task."""


class EpisodeStates:
    """Per-episode BFCL instances, one per class, created lazily; least recently used dropped."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._episodes: OrderedDict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def instance(self, episode: str, class_name: str, task_id: str | None = None) -> Any:
        with self._lock:
            slot = self._episodes.get(episode)
            if slot is None:
                if task_id is not None:
                    entry = find_entry(task_id)
                    if entry is None:
                        raise UnknownTask(
                            f"_meta[{TASK_META_KEY!r}] = {task_id!r} is not a BFCL multi-turn task id "
                            f"(expected e.g. 'multi_turn_base_0')"
                        )
                else:
                    entry = find_entry(task_id_of_episode(episode))
                slot = (entry, {})
                self._episodes[episode] = slot
                while len(self._episodes) > self.capacity:
                    self._episodes.popitem(last=False)
            else:
                self._episodes.move_to_end(episode)
            entry, instances = slot
            inst = instances.get(class_name)
            if inst is None:
                inst = instances[class_name] = new_instance(class_name, entry)
            return inst

    def task_of(self, episode: str) -> str | None:
        with self._lock:
            slot = self._episodes.get(episode)
        return slot[0]["id"] if slot and slot[0] else None

    def episodes(self) -> list[str]:
        with self._lock:
            return list(self._episodes)

    def drop(self, episode: str) -> bool:
        with self._lock:
            return self._episodes.pop(episode, None) is not None


def _meta_of(ctx: Any) -> Mapping[str, Any]:
    try:
        meta = ctx.request_context.meta
    except (ValueError, AttributeError):  # in-process call outside a request
        return {}
    if meta is None:
        return {}
    if isinstance(meta, Mapping):
        return meta
    dump = getattr(meta, "model_dump", None)
    return dump(by_alias=True) if callable(dump) else {}


# --------------------------------------------------------------------------- MCP server


def build_server(server: str, states: EpisodeStates) -> Any:
    """One BFCL class as an ``MCPServer`` whose tools are exactly BFCL's function docs."""
    from atlas_plugins.mcp_compat import MCPServer, make_tool, request_context, text_content, tool_result

    cls_info = _bfcl_class(server)
    cls = api_class(cls_info.class_name)
    docs = {d["name"]: d for d in func_docs(server)}
    missing = [n for n in docs if not callable(getattr(cls, n, None))]
    if missing:
        raise RuntimeError(
            f"bfcl-eval {cls_info.class_name} lacks documented function(s) {missing}; wheel/doc mismatch"
        )
    schemas = {n: input_schema(d) for n, d in docs.items()}
    tools = [make_tool(n, d.get("description", ""), schemas[n]) for n, d in docs.items()]

    def error(text: str) -> Any:
        return tool_result([text_content(text)], is_error=True)

    class BFCLServer(MCPServer):
        """Tools listed from BFCL's docs; calls dispatched to the episode's class instance."""

        async def list_tools(self) -> list[Any]:
            return list(tools)

        def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
            return schemas.get(name)

        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            if name not in docs:
                return error(f"Unknown tool {name!r} on {server}; its tools: {', '.join(docs)}")
            if not isinstance(arguments, dict):
                return error(f"arguments for {server}:{name} must be an object, got {type(arguments).__name__}")
            meta = _meta_of(request_context(self, context))
            episode = meta.get(EPISODE_META_KEY)
            episode = "default" if episode in (None, "") else str(episode)
            task_id = meta.get(TASK_META_KEY)
            try:
                inst = states.instance(episode, cls_info.class_name, None if task_id in (None, "") else str(task_id))
            except UnknownTask as exc:
                return error(str(exc))
            # Sync on purpose: an async tool body runs atomically on the loop, so concurrent
            # sessions never interleave inside one BFCL state update.
            try:
                value = getattr(inst, name)(**arguments)
            except Exception as exc:  # noqa: BLE001 - BFCL's executor reports every exception like this
                return error(f"Error during execution: {exc}")
            text = render_result(value)
            return tool_result([text_content(text)], is_error=is_error_value(value))

    return BFCLServer(server, instructions=server_summary(server), log_level="WARNING")


def parse_names(value: str | None) -> list[str]:
    if not value:
        return list(BFCL_SERVERS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BFCL_SERVERS]
    if unknown:
        raise SystemExit(f"unknown BFCL server(s) {', '.join(unknown)}; known: {', '.join(BFCL_SERVERS)}")
    return list(dict.fromkeys(names))


def build_app(
    names: list[str], capacity: int = 256, host: str = "127.0.0.1"
) -> tuple[Any, dict[str, Any], EpisodeStates]:
    """A Starlette app mounting each class's streamable-HTTP app at ``/<server>``; all share one state store."""
    from contextlib import AsyncExitStack, asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Mount

    from atlas_plugins.mcp_compat import http_app

    states = EpisodeStates(capacity)
    servers = {n: build_server(n, states) for n in names}
    routes = [Mount(f"/{n}", app=http_app(s, path="/mcp", host=host)) for n, s in servers.items()]

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        # Mounted apps' own lifespans do not run, so every session manager is started here.
        async with AsyncExitStack() as stack:
            for s in servers.values():
                await stack.enter_async_context(s.session_manager.run())
            yield

    return Starlette(routes=routes, lifespan=lifespan), servers, states


async def serve(names: list[str], host: str = "127.0.0.1", port: int = 0, capacity: int = 256) -> None:
    from atlas_plugins.envs.hub import serve_app

    app, _, _ = build_app(names, capacity, host)
    await serve_app(app, names, host, port, label="bfcl")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m atlas_plugins.evaluation.suites.bfcl_server",
        description="Serve the BFCL multi-turn API classes as MCP servers over streamable HTTP.",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument(
        "--servers", default=None, help=f"comma-separated subset of {', '.join(BFCL_SERVERS)} (default: all)"
    )
    ap.add_argument("--capacity", type=int, default=256, help="live episodes kept (least recently used dropped)")
    args = ap.parse_args(argv)
    names = parse_names(args.servers)
    if args.capacity < 1:
        raise SystemExit(f"--capacity must be at least 1, got {args.capacity}")
    import anyio

    try:
        anyio.run(serve, names, args.host, args.port, args.capacity)
    except KeyboardInterrupt:
        pass


# --------------------------------------------------------------------------- client side


def bfcl_toolspace_config(url: str, servers: list[str] | None = None) -> dict[str, Any]:
    """``Toolspace.from_dict`` config for an already running server at ``url`` (its JSON line)."""
    names = list(servers) if servers is not None else list(BFCL_SERVERS)
    for n in names:
        _bfcl_class(n)
    base = url.rstrip("/")
    return {"servers": {n: {"url": f"{base}/{n}/mcp", "summary": server_summary(n)} for n in names}}


class BFCLServerProcess(ServerProcess):
    """The server as a child process: ``start()`` returns its URL, ``stop()`` ends it."""

    def __init__(self, servers: list[str] | None = None, capacity: int = 256) -> None:
        self.servers = parse_names(",".join(servers)) if servers else list(BFCL_SERVERS)
        self.capacity = capacity
        super().__init__(
            [
                sys.executable,
                "-m",
                __name__,
                "--port",
                "0",
                "--servers",
                ",".join(self.servers),
                "--capacity",
                str(capacity),
            ],
            label="the BFCL MCP server",
        )

    def start(self, timeout: float = 60.0) -> str:
        if self.alive and self.url:
            return self.url
        bfcl_data_dir()  # fail here, with the install hint, rather than in the child
        return super().start(timeout)


def bfcl_toolspace(servers: list[str] | None = None, *, capacity: int = 256, **overrides: Any) -> Any:
    """A :class:`~atlas_plugins.toolspace.Toolspace` over the BFCL servers, owning the server process.

    The process starts with the toolspace (``start()`` / ``with``) and stops on ``close()``::

        with bfcl_toolspace(["gorilla_file_system"]) as ts:
            ts.call("gorilla_file_system", "ls", {}, episode="multi_turn_base_0-0123456789")
    """
    from atlas_plugins.toolspace import Toolspace

    proc = BFCLServerProcess(servers, capacity)

    class BFCLToolspace(Toolspace):
        process = proc

        def start(self) -> BFCLToolspace:
            if self._started:
                return self
            url = proc.start()
            for s in self.config.servers:  # the port is only known once the process runs
                s.url = f"{url}/{s.name}/mcp"
            try:
                super().start()
            except BaseException:
                proc.stop()
                raise
            return self

        def close(self) -> None:
            try:
                super().close()
            finally:
                proc.stop()

    # Placeholder URL until start(); the config must validate now.
    return BFCLToolspace.from_dict(bfcl_toolspace_config("http://127.0.0.1:0", proc.servers), **overrides)


def signature_names(class_name: str, tool: str) -> list[str]:
    """Parameter names of a BFCL method, in order (maps positional ground-truth arguments)."""
    fn = getattr(api_class(class_name), tool)
    return [p for p in inspect.signature(fn).parameters if p != "self"]


if __name__ == "__main__":
    main()
