"""The TOML configuration, validated once at start into frozen dataclasses.

Every error names the file and the key (``qsse.toml: instances[1].url: not a valid http(s) URL``)
so an operator can fix it without reading a traceback. Unknown keys are errors: a typo such as
``intervall`` must not silently fall back to a default.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from qsse.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 7476
    shutdown_timeout: float = 10.0
    #: URL prefix when served below a path of a reverse proxy ("" or "/qsse").
    base_path: str = ""

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interval: float = 2.0
    heartbeat: float = 5.0


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    id: int
    name: str
    url: str
    username: str = "admin"
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    timeout: float = 10.0
    basic_auth: BasicAuth | None = field(default=None, repr=False)
    #: Keep the sync loop running even when no client watches this instance.
    always_warm: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    instances: tuple[InstanceConfig, ...] = ()
    source: str = "<defaults>"

    def instance(self, instance_id: int) -> InstanceConfig | None:
        return next((i for i in self.instances if i.id == instance_id), None)


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises :class:`ConfigError` naming file and key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return parse(raw, source=str(p), base_dir=p.parent)


def parse(raw: Mapping[str, Any], *, source: str = "<config>", base_dir: Path | None = None) -> Config:
    try:
        return _Parser(source, base_dir or Path.cwd()).config(raw)
    except _KeyError as exc:
        raise ConfigError(f"{source}: {exc.key}: {exc.message}") from None


class _KeyError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class _Table:
    """One TOML table being read; remembers which keys were consumed to reject the rest."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, dict):
            raise _KeyError(path, "must be a table")
        self.raw: dict[str, Any] = raw
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type[T], default: T, check: Callable[[T], str | None] | None = None) -> T:
        self.seen.add(name)
        if name not in self.raw:
            return default
        value = self.raw[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise _KeyError(self.key(name), f"must be {_kind_name(kind)}, not {_kind_name(type(value))}")
        if check is not None and (problem := check(value)) is not None:
            raise _KeyError(self.key(name), problem)
        return value

    def require(self, name: str, kind: type[T], check: Callable[[T], str | None] | None = None) -> T:
        if name not in self.raw:
            raise _KeyError(self.key(name), "is required")
        return self.get(name, kind, cast(T, None), check)

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise _KeyError(self.key(unknown[0]), "unknown key")


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table",
            list: "an array"}.get(kind, kind.__name__)


def _positive(value: float) -> str | None:
    return None if value > 0 and math.isfinite(value) else "must be a positive number"


def _url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not a valid http(s) URL"
    return None


class _Parser:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def config(self, raw: Mapping[str, Any]) -> Config:
        top = _Table(dict(raw), "")
        server = self.server(top.get("server", dict, {}))
        sync = self.sync(top.get("sync", dict, {}))
        instances_raw = top.get("instances", list, [])
        top.finish()
        instances: list[InstanceConfig] = []
        for index, item in enumerate(instances_raw):
            inst = self.instance(_Table(item, f"instances[{index}]"))
            if any(i.id == inst.id for i in instances):
                raise _KeyError(f"instances[{index}].id", f"duplicate instance id {inst.id}")
            instances.append(inst)
        return Config(server=server, sync=sync, instances=tuple(instances), source=self.source)

    def server(self, raw: dict[str, Any]) -> ServerConfig:
        t = _Table(raw, "server")
        listen = t.get("listen", str, "127.0.0.1:7476")
        host, port = _split_listen(listen)
        if port is None:
            raise _KeyError("server.listen", "must be host:port with a port between 0 and 65535")
        base_path = t.get("base_path", str, "", _base_path)
        cfg = ServerConfig(
            host=host,
            port=port,
            shutdown_timeout=t.get("shutdown_timeout", float, 10.0, _positive),
            base_path=base_path.rstrip("/"),
        )
        t.finish()
        return cfg

    def sync(self, raw: dict[str, Any]) -> SyncConfig:
        t = _Table(raw, "sync")
        cfg = SyncConfig(
            interval=t.get("interval", float, 2.0, _positive),
            heartbeat=t.get("heartbeat", float, 5.0, _positive),
        )
        t.finish()
        return cfg

    def instance(self, t: _Table) -> InstanceConfig:
        ident = t.require("id", int, lambda v: None if v > 0 else "must be a positive integer")
        name = t.get("name", str, f"instance {ident}", lambda v: None if v.strip() else "must not be empty")
        url = t.require("url", str, _url).rstrip("/")
        password = self.password(t)
        basic = t.get("basic_auth", dict, {})
        basic_auth = None
        if basic:
            bt = _Table(basic, t.key("basic_auth"))
            basic_auth = BasicAuth(bt.require("username", str), bt.get("password", str, ""))
            bt.finish()
        cfg = InstanceConfig(
            id=ident,
            name=name,
            url=url,
            username=t.get("username", str, "admin"),
            password=password,
            verify_tls=t.get("verify_tls", bool, True),
            timeout=t.get("timeout", float, 10.0, _positive),
            basic_auth=basic_auth,
            always_warm=t.get("always_warm", bool, False),
        )
        t.finish()
        return cfg

    def password(self, t: _Table) -> str:
        given = [k for k in ("password", "password_file", "password_env") if k in t.raw]
        if len(given) > 1:
            raise _KeyError(t.key(given[1]), f"conflicts with {given[0]}; give only one")
        password = t.get("password", str, "")
        if path_text := t.get("password_file", str, ""):
            path = Path(path_text).expanduser()
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise _KeyError(t.key("password_file"), f"cannot read {path}: {exc.strerror}") from None
            password = lines[0] if lines else ""
        if var := t.get("password_env", str, ""):
            if var not in os.environ:
                raise _KeyError(t.key("password_env"), f"environment variable {var} is not set")
            password = os.environ[var]
        return password


def _split_listen(listen: str) -> tuple[str, int | None]:
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return "", None
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def _base_path(value: str) -> str | None:
    if value and not value.startswith("/"):
        return "must start with / (or be empty)"
    return None
