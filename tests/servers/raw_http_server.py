"""A hand-written HTTP endpoint that answers every MCP POST with a body too large to hold, for the
response limits of the streamable-HTTP client. ``python raw_http_server.py MODE PORTFILE``: it
listens on 127.0.0.1, writes its port to PORTFILE, and answers as MODE says:

- ``endless_json``: an ``application/json`` body that never ends (cut at 256 MiB, for safety);
- ``gzip_bomb``: 256 MiB of spaces, then a valid JSON-RPC answer to the request (still valid JSON),
  gzip-compressed to about 250 KB;
- ``endless_sse``: an event stream whose first event never ends (cut at 256 MiB);
- ``gzip_ok``: a well-behaved server (one tool, ``echo``) whose every answer is gzip-compressed.
"""

from __future__ import annotations

import json
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, PORTFILE = sys.argv[1], sys.argv[2]
CAP, CHUNK = 256 << 20, 1 << 20
# The padding (leading whitespace is valid JSON) is compressed once, before the port is published
# (it takes a while on a busy machine); each answer continues a copy of that compressor.
PACKER = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
PADDING = b"".join(PACKER.compress(b" " * CHUNK) for _ in range(CAP // CHUNK)) if MODE == "gzip_bomb" else b""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # no standalone event stream
        self.send_response(405)
        self.end_headers()

    def do_DELETE(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if "id" not in body:  # a notification
            self.send_response(202)
            self.end_headers()
            return
        result = {"protocolVersion": body.get("params", {}).get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "raw-http", "version": "0"}}
        if MODE == "gzip_ok" and body.get("method") == "tools/list":
            result = {"tools": [{"name": "echo", "description": "Echo.", "inputSchema": {"type": "object"}}]}
        elif MODE == "gzip_ok" and body.get("method") == "tools/call":
            text = json.dumps(body["params"].get("arguments") or {})
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        elif MODE == "gzip_ok" and body.get("method") != "initialize":
            result = {}
        answer = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result}).encode()
        self.send_response(200)
        try:
            if MODE in ("gzip_ok", "gzip_bomb"):
                if MODE == "gzip_ok":
                    blob = zlib.compress(answer, wbits=16 + zlib.MAX_WBITS)
                else:
                    packer = PACKER.copy()
                    blob = PADDING + packer.compress(answer) + packer.flush()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)
                return
            events = MODE == "endless_sse"
            self.send_header("Content-Type", "text/event-stream" if events else "application/json")
            self.end_headers()
            self.wfile.write(b"data: " + answer[:-2] if events else answer[:-2])
            for _ in range(CAP // CHUNK):
                self.wfile.write(b"y" * CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what the limit is for


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORTFILE, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
