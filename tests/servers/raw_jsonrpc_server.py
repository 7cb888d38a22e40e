"""A hand-written MCP server speaking raw JSON-RPC over stdio, for protocol-level misbehaviour the
SDK's own server classes cannot produce. ``python raw_jsonrpc_server.py MODE PIDFILE``; it writes
its pid to PIDFILE and then answers as MODE says:

- ``ok``: one tool, ``echo(x: str)``;
- ``hang_list``: the handshake, then never an answer to ``tools/list``;
- ``hang_init``: never answers ``initialize``, and ignores SIGTERM;
- ``err_list``: ``tools/list`` answered with a JSON-RPC error;
- ``bad_ref``: ``echo``'s input schema is a ``$ref`` to a definition that does not exist;
- ``bad_props``: ``echo``'s ``x`` has a number for its ``type`` and its ``enum`` (not JSON Schema);
- ``odd_names``: tools named ``echo`` twice, ``''``, ``'x\\ny'``, with a terminal escape, and ``ok-name``;
- ``redos``: ``echo``'s ``x`` has a ``pattern`` with catastrophic backtracking in Python's ``re``;
- ``long_line``: ``tools/call`` is answered with a line that never ends (1 MiB chunks, no newline);
- ``stderr_flood``: writes 64 MiB to stderr before it answers ``initialize``, then the line ``flood done``;
- ``daemon``: first starts a grandchild that leaves the process group (``setsid``), writes its pid to
  ``PIDFILE.daemon`` and sleeps for ever, as a server that spawns a background helper would.

Every ``tools/call`` of ``echo`` answers with its arguments as text.
"""

from __future__ import annotations

import json
import os
import signal
import sys

MODE, PIDFILE = sys.argv[1], sys.argv[2]
with open(PIDFILE, "w") as f:
    f.write(str(os.getpid()))
if MODE == "hang_init":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if MODE == "daemon" and os.fork() == 0:
    os.setsid()
    if os.fork() == 0:  # the classic double fork: the daemon's parent exits at once
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(PIDFILE + ".daemon", "w") as f:
            f.write(str(os.getpid()))
        import time
        while True:
            time.sleep(60)
    os._exit(0)

SCHEMAS = {
    "ok": {"type": "object", "properties": {"x": {"type": "string"}}},
    "bad_ref": {"type": "object", "$ref": "#/$defs/missing"},
    "bad_props": {"type": "object", "properties": {"x": {"type": 5, "enum": 3}}},
    "redos": {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(\\w+\\s?)*$"}}},
}
TOOLS = [{"name": "echo", "description": "Echo the arguments.", "inputSchema": SCHEMAS.get(MODE, SCHEMAS["ok"])}]
if MODE == "odd_names":
    TOOLS = [{"name": n, "description": "d", "inputSchema": SCHEMAS["ok"]}
             for n in ("echo", "echo", "", "x\ny", "\x1b[31mred", "ok-name")]


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    rid, method = msg.get("id"), msg.get("method")
    if rid is None:
        continue  # a notification
    if method == "initialize":
        if MODE == "hang_init":
            continue
        if MODE == "stderr_flood":
            block = ("x" * 1023 + "\n") * 1024
            for _ in range(64):
                sys.stderr.write(block)
            sys.stderr.write("flood done\n")
            sys.stderr.flush()
        version = msg["params"]["protocolVersion"]
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": {"name": "raw", "version": "0"}}})
    elif method == "tools/list":
        if MODE == "hang_list":
            continue
        if MODE == "err_list":
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": "listing failed on purpose"}})
            continue
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call" and MODE == "long_line":
        sys.stdout.write('{"jsonrpc": "2.0", "id": %d, "result": {"content": [{"type": "text", "text": "' % rid)
        while True:
            sys.stdout.write("y" * (1 << 20))
            sys.stdout.flush()
    elif method == "tools/call":
        text = json.dumps(msg["params"].get("arguments") or {})
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}], "isError": False}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
