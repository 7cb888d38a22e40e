"""Toolspace configuration: which MCP servers, how to reach them, and call limits.

Three file shapes are accepted:

* YAML or TOML with a ``servers`` table (our own format)::

      call_timeout: 30
      max_response_chars: 4000
      servers:
        time: {command: uvx, args: [mcp-server-time]}
        remote: {url: "http://127.0.0.1:8000/mcp", headers: {Authorization: "Bearer ..."}}
        big: {catalog: ../shared/data/toolspace/toucan_servers.jsonl, limit: 100}
        calendar: {embedded: true}

* Claude-Desktop / Cursor style JSON: ``{"mcpServers": {"name": {"command", "args", "env",
  "cwd"} | {"url", "headers"}}}``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atlas_plugins.errors import ConfigError


class ServerConfig(BaseModel):
    """One server. Exactly one of ``command``, ``url``, ``catalog``, ``embedded``, ``tools``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    summary: str = ""
    # stdio
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    # streamable HTTP
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # catalogue-only: schemas without a process (a JSONL file, or inline tools)
    catalog: str | None = None
    limit: int | None = None
    tools: list[dict[str, Any]] | None = None
    # one of the embedded servers (atlas_plugins/envs)
    embedded: bool = False
    # a disabled server stays in the file but is not started
    disabled: bool = False

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if ":" in self.name:
            raise ValueError(f"server name {self.name!r} may not contain ':' (it separates server and tool)")
        kinds = [
            k
            for k, v in (
                ("command", self.command),
                ("url", self.url),
                ("catalog", self.catalog),
                ("tools", self.tools),
                ("embedded", self.embedded or None),
            )
            if v
        ]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"server {self.name!r} needs exactly one of command / url / catalog / tools / embedded (found: {found})"
            )
        return self

    @property
    def transport(self) -> Literal["stdio", "http", "catalog", "embedded"]:
        if self.command:
            return "stdio"
        if self.url:
            return "http"
        if self.embedded:
            return "embedded"
        return "catalog"


class ToolspaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servers: list[ServerConfig] = Field(default_factory=list)
    call_timeout: float = Field(default=30.0, gt=0, description="seconds per tool call")
    connect_timeout: float = Field(
        default=30.0, gt=0, description="seconds for a server's MCP handshake, and again for its tool listing"
    )
    max_response_chars: int = Field(default=4000, ge=100)
    max_message_bytes: int | None = Field(
        # 8 MiB: a rendered result keeps max_response_chars anyway, and a hostile line costs the SDK's
        # reader one re-copy of its buffer per 64 KiB read until the relay stops it.
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="largest message a configured server may send: a stdio server writing a longer stdout line is "
        "stopped (the SDK's client buffers a line without bound), a longer HTTP response body or event is dropped. "
        "None: no limit (and no relay process)",
    )
    max_restarts: int = Field(default=1, ge=0)
    #: How embedded servers run: one process per server over stdio, or all in one hub over HTTP.
    embedded_transport: Literal["stdio", "hub"] = "hub"
    seed: int = 0


def _normalise_servers(raw: object, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        out = []
        for name, spec in raw.items():
            if spec is None:
                spec = {}
            if not isinstance(spec, dict):
                raise ConfigError(f"{where}: server {name!r} must be a table/object, got {type(spec).__name__}")
            out.append({"name": str(name), **spec})
        return out
    if isinstance(raw, list):
        return list(raw)
    raise ConfigError(f"{where}: 'servers' must be a mapping of name -> settings")


def config_from_dict(data: dict[str, Any], *, source: str = "<dict>", base_dir: Path | None = None) -> ToolspaceConfig:
    """Build a config from parsed YAML/TOML/JSON data (either shape)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    if "mcpServers" in data:
        servers = _normalise_servers(data.pop("mcpServers"), source)
        for s in servers:  # Claude Desktop sets "type": "stdio"/"http"; we infer it
            s.pop("type", None)
            s.pop("transport", None)
        data["servers"] = servers + _normalise_servers(data.pop("servers", None), source)
    else:
        data["servers"] = _normalise_servers(data.get("servers"), source)
    if base_dir is not None:  # relative catalogue paths are relative to the config file
        for s in data["servers"]:
            if isinstance(s, dict) and s.get("catalog") and not Path(s["catalog"]).is_absolute():
                s["catalog"] = str((base_dir / s["catalog"]).resolve())
    try:
        cfg = ToolspaceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid toolspace config:\n{_format_validation(exc, data)}") from None
    names = [s.name for s in cfg.servers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: duplicate server names: {', '.join(dupes)}")
    return cfg


def _format_validation(exc: ValidationError, data: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        # servers.3.command -> servers.<name>.command, so the message names the server
        if len(loc) >= 2 and loc[0] == "servers" and isinstance(loc[1], int):
            try:
                loc[1] = data["servers"][loc[1]].get("name", loc[1])
            except (IndexError, AttributeError, KeyError):
                pass
        lines.append(f"  - {'.'.join(str(p) for p in loc) or '(top level)'}: {err['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path) -> ToolspaceConfig:
    """Read a toolspace config from YAML, TOML or JSON (by extension; JSON/YAML sniffed otherwise)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"toolspace config {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() == ".json":
            data = json.loads(text)
        else:  # YAML is a superset of JSON
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: could not parse: {exc}") from None
    return config_from_dict(data or {}, source=str(p), base_dir=p.parent)
