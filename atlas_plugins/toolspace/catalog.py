"""Catalogue-only servers: tool schemas without a running process.

Used to make a tool space large (thousands of real third-party schemas) for context and
retrieval work. The JSONL shape is the one of ``../shared/data/toolspace/*.jsonl``:
``{"id", "name", "summary", "tools": [{"name", "description", "input_schema"}]}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from atlas_plugins.errors import ConfigError
from atlas_plugins.types import ServerInfo, ToolSpec

_BAD_NAME_CHARS = re.compile(r"[:\s]+")


def clean_server_name(name: str) -> str:
    """Server names become part of ``server:tool``: no colons, no whitespace runs."""
    cleaned = _BAD_NAME_CHARS.sub("-", name.strip()).strip("-")
    return cleaned or "server"


def server_from_record(record: dict[str, Any], *, where: str = "catalogue") -> ServerInfo:
    if not isinstance(record, dict) or "name" not in record:
        raise ConfigError(f"{where}: each record needs at least a 'name' (got {str(record)[:80]!r})")
    name = clean_server_name(str(record["name"]))
    tools = []
    seen: set[str] = set()
    for t in record.get("tools") or []:
        if not isinstance(t, dict) or not t.get("name"):
            continue  # real catalogues contain junk rows; skip rather than fail the whole file
        tname = str(t["name"])
        if tname in seen:  # a server cannot list one name twice; keep the first
            continue
        seen.add(tname)
        schema = t.get("input_schema") or t.get("inputSchema") or {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            schema = {"type": "object", "properties": {}}
        tools.append(
            ToolSpec(
                server=name,
                name=tname,
                description=str(t.get("description") or ""),
                input_schema=schema,
                output_schema=t.get("output_schema") or t.get("outputSchema"),
            )
        )
    summary = str(record.get("summary") or record.get("description") or "").strip()
    return ServerInfo(name=name, summary=summary, transport="catalog", tools=tools)


def load_catalog(path: str | Path, *, limit: int | None = None) -> list[ServerInfo]:
    """Read a JSONL catalogue. Server names that repeat get ``-2``, ``-3`` suffixes."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"catalogue file {str(p)!r} does not exist")
    servers: list[ServerInfo] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from None
            servers.append(server_from_record(record, where=f"{p}:{lineno}"))
            if limit is not None and len(servers) >= limit:
                break
    return dedupe_names(servers)


def dedupe_names(servers: Iterable[ServerInfo], taken: set[str] | None = None) -> list[ServerInfo]:
    taken = set() if taken is None else taken
    out = []
    for s in servers:
        name, i = s.name, 2
        while name in taken:
            name = f"{s.name}-{i}"
            i += 1
        taken.add(name)
        if name != s.name:
            s = ServerInfo(
                name=name,
                summary=s.summary,
                transport=s.transport,
                tools=[t.model_copy(update={"server": name}) for t in s.tools],
            )
        out.append(s)
    return out
