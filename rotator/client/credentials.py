"""What a service needs to log in, parsed from the secret formats we meet. Pure; no I/O.

Formats, told apart by their keys:

- slot secret (the rotator's own): ``{"active_slot": "A", "A": {...}, "B": {...}, "engine": ...}``: the
  active slot's object is read, top-level ``host``/``port``/``dbname``/``engine`` fill what a slot lacks;
- plain: ``{"username", "password", "host", "port", "dbname" | "database"}`` (seed 002 uses ``database``);
- RDS-managed: the same keys as RDS writes them (``engine`` like ``postgres``/``aurora-mysql``, ``port`` a
  number, ``dbInstanceIdentifier``...). A master-user secret that RDS manages holds only username/password:
  pass host/port/dbname as ``defaults``.

Every key name is configurable (:class:`KeyNames`). Errors name the key, never a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from rotator.client.errors import CredentialFormatError
from rotator.parsing import ascii_int

_ENGINES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",  # RDS's name for Aurora MySQL 5.6
}
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}


def normalize_engine(value: str | None) -> str | None:
    """``postgres`` or ``mysql`` for the names RDS and URLs use; anything else lower-cased as is."""
    if value is None:
        return None
    raw = value.strip().lower()
    return _ENGINES.get(raw, _ENGINES.get(raw.split("+", 1)[0], raw))


@dataclass(frozen=True)
class DbCredentials:
    """One login. ``version`` and ``options`` do not take part in equality: two fetches of the same login are
    equal even if Secrets Manager gave them different version ids."""

    username: str
    password: str = field(repr=False)
    host: str | None
    port: int | None
    dbname: str | None
    engine: str | None = None
    slot: str | None = None
    version: str | None = field(default=None, compare=False)
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    url: str | None = field(default=None, compare=False, repr=False)  # the DATABASE_URL it came from, if any

    @property
    def identity(self) -> tuple[str, str | None, int | None, str | None]:
        """Who and where, without the password: a pooled session made with another identity should be replaced."""
        return (self.username, self.host, self.port, self.dbname)


@dataclass(frozen=True)
class KeyNames:
    """Which JSON keys hold what. Each field lists the names tried in order; the first present wins."""

    username: tuple[str, ...] = ("username",)
    password: tuple[str, ...] = ("password",)
    host: tuple[str, ...] = ("host",)
    port: tuple[str, ...] = ("port",)
    dbname: tuple[str, ...] = ("dbname", "database")
    engine: tuple[str, ...] = ("engine",)
    active_slot: tuple[str, ...] = ("active_slot",)

    @classmethod
    def of(cls, **names: str | Sequence[str]) -> KeyNames:
        """``KeyNames.of(username="user", dbname=["db", "database"])``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown key field(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
        return cls(**{k: (v,) if isinstance(v, str) else tuple(v) for k, v in names.items()})

    @classmethod
    def parse(cls, spec: str) -> KeyNames:
        """From an environment variable: ``"username=user,dbname=db|database"``."""
        names: dict[str, list[str]] = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, keys = item.partition("=")
            if not sep or not keys.strip():
                raise ValueError(f"bad key-name item {item!r}: write field=key or field=key1|key2")
            names[name.strip()] = [k.strip() for k in keys.split("|") if k.strip()]
        return cls.of(**names)


def _pick(data: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    for name in names:
        if name in data and data[name] is not None:
            return name, data[name]
    return None


def _text(found: tuple[str, Any] | None, where: str, what: str, *, required: bool) -> str | None:
    if found is None:
        if required:
            raise CredentialFormatError(f"{where}: {what} is missing: add it to the secret")
        return None
    key, value = found
    if not isinstance(value, str):
        raise CredentialFormatError(f"{where}.{key} must be a string")
    if not value and required:
        raise CredentialFormatError(f"{where}.{key} is empty: set it in the secret")
    return value or None


def _port(found: tuple[str, Any] | None, where: str) -> int | None:
    if found is None:
        return None
    key, value = found
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and (digits := ascii_int(value)) is not None:
        port = digits  # ASCII digits only: str.isdigit() also takes "5432²" and other scripts' digits
    else:
        raise CredentialFormatError(f"{where}.{key} must be a port number, as an int or a string")
    if not 1 <= port <= 65535:
        raise CredentialFormatError(f"{where}.{key} must be a port number 1-65535")
    return port


def parse_secret(
    text: str,
    *,
    keys: KeyNames | None = None,
    defaults: Mapping[str, Any] | None = None,
    version: str | None = None,
    what: str = "secret",
) -> DbCredentials:
    """Parse a slot, plain or RDS secret. ``defaults`` (keyed by field name: host, port, dbname, engine) fill
    what the secret lacks."""
    keys = keys or KeyNames()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        # from None: the decode error holds the whole document, password included
        raise CredentialFormatError(f"{what} is not valid JSON: store a JSON object") from None
    if not isinstance(data, dict):
        raise CredentialFormatError(f"{what} is not a JSON object: store a JSON object")

    slot: str | None = None
    found_slot = _pick(data, keys.active_slot)
    if found_slot is not None:
        slot_key, slot = found_slot
        if not isinstance(slot, str) or not isinstance(data.get(slot), dict):
            raise CredentialFormatError(f'{what}.{slot_key} must name a slot object of the secret (like "A")')
        where = f"{what}.{slot}"
        # The slot's own keys first, then the top level (a shared host, the engine), then the defaults.
        layers: tuple[Mapping[str, Any], ...] = (data[slot], data)
    else:
        where = what
        layers = (data,)

    def pick(names: tuple[str, ...], default_key: str) -> tuple[str, Any] | None:
        for layer in layers:
            found = _pick(layer, names)
            if found is not None:
                return found
        if defaults and defaults.get(default_key) is not None:
            return f"defaults[{default_key}]", defaults[default_key]
        return None

    username = _text(_pick(layers[0], keys.username), where, "username", required=True)
    password = _text(_pick(layers[0], keys.password), where, "password", required=True)
    engine = normalize_engine(_text(pick(keys.engine, "engine"), where, "engine", required=False))
    port = _port(pick(keys.port, "port"), where)
    used = {
        n for group in (keys.username, keys.password, keys.host, keys.port, keys.dbname, keys.engine) for n in group
    }
    options = {k: v for k, v in layers[0].items() if k not in used}
    assert username is not None and password is not None
    return DbCredentials(
        username=username,
        password=password,
        host=_text(pick(keys.host, "host"), where, "host", required=True),
        port=port if port is not None else DEFAULT_PORTS.get(engine or ""),
        dbname=_text(pick(keys.dbname, "dbname"), where, "dbname", required=False),
        engine=engine,
        slot=slot,
        version=version,
        options=options,
    )


def parse_database_url(url: str, *, what: str = "DATABASE_URL") -> DbCredentials:
    """``postgresql+asyncpg://user:pass@host:5432/db?sslmode=require`` and the like; percent-escapes decoded."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CredentialFormatError(f"{what} is not a valid URL: use scheme://user:password@host:port/dbname") from None
    if not parts.scheme or not parts.netloc:
        raise CredentialFormatError(f"{what} is not a valid URL: use scheme://user:password@host:port/dbname")
    if parts.username is None:
        raise CredentialFormatError(f"{what} has no user name: use scheme://user:password@host:port/dbname")
    engine = normalize_engine(parts.scheme)
    dbname = unquote(parts.path.lstrip("/")) or None
    return DbCredentials(
        username=unquote(parts.username),
        password=unquote(parts.password or ""),
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port if port is not None else DEFAULT_PORTS.get(engine or ""),
        dbname=dbname,
        engine=engine,
        options=dict(parse_qsl(parts.query)),
        url=url,
    )
