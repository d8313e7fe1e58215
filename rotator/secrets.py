"""The slot and admin secret models: parse, validate, serialize. Pure; no I/O.

Slot secret (seed 003), one per database::

    {"active_slot": "A",
     "A": {"username": "app_a", "password": "...", "host": "...", "port": "3306", "dbname": "app"},
     "B": {...},
     "engine": "mysql"}            # optional: "mysql" | "postgres"

Each slot, and the admin secret, may carry ``"rotated_at": "2026-12-04T14:45:00Z"``: when its password was
generated (see rotator.age). It is parsed strictly: anything but a UTC time in that form is bad input.

Admin secret: ``{"username", "password", "host", "port"}``; an RDS-managed master secret has only
username and password, and then host/port come from the slot secret.

Unknown keys (top level and per slot) are kept as they are, so a round trip never drops a user's data.
Errors name the field and the fix and never include a value.

What is refused before anything changes: a port that is not 1-65535 in ASCII digits (``"5432²"``, ``"٣٣٠٦"``,
``true``); JSON nested deeper than :data:`MAX_DEPTH`; a NUL character anywhere (libpq sends C strings,
so it cannot carry one, and a MySQL password with one cannot be typed by any client); any other control
character in a username, host or database name. Other control characters are allowed in a password: both
drivers carry them and every template filter escapes them, and refusing them would refuse a password that
already logs in. Generated passwords never contain one (see :mod:`rotator.passwords`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from rotator import age
from rotator.errors import SecretFormatError

Slot = Literal["A", "B"]
SLOTS: tuple[Slot, Slot] = ("A", "B")
ENGINES = ("mysql", "postgres")
ENGINE_ALIASES = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "postgres": "postgres",
    "postgresql": "postgres",
    "aurora-postgresql": "postgres",
}
_SLOT_KEYS = ("username", "password", "host", "port", "dbname")
_ROTATED_AT = age.ROTATED_AT  # optional, per slot and in the admin secret: when the password was generated
_ASCII_PORT = re.compile(r"[0-9]{1,5}")  # not str.isdigit(): it accepts "5432²" and "٣٣٠٦"
MAX_DEPTH = 32  # a slot secret is 3 levels deep; json.loads and json.dumps recurse once per level
_TOO_DEEP = "{what} is nested deeper than " + str(MAX_DEPTH) + " levels: store the flat seed 003 shape"
# Any C0 control character or DEL: never in a user, host or database name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def other(slot: Slot) -> Slot:
    return "B" if slot == "A" else "A"


def normalize_engine(value: object, where: str) -> str:
    engine = ENGINE_ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
    if engine is None:
        raise SecretFormatError(f"{where}: unknown engine: use one of mysql, postgres")
    return engine


def _load_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise SecretFormatError(_TOO_DEEP.format(what=what)) from None
    except (ValueError, TypeError):  # JSONDecodeError, and an integer of more than 4300 digits
        raise SecretFormatError(f"{what} is not valid JSON: store a JSON object") from None
    if not isinstance(data, dict):
        raise SecretFormatError(f"{what} is not a JSON object: store a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise SecretFormatError(_TOO_DEEP.format(what=what))
    return data


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (so no depth can overflow the stack here)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise SecretFormatError(f"{where}.port must be a number 1-65535, as an int or a string")
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and _ASCII_PORT.fullmatch(value.strip()):
        port = int(value.strip())
    else:
        raise SecretFormatError(f"{where}.port must be a number 1-65535, as an int or a string")
    if not 1 <= port <= 65535:
        raise SecretFormatError(f"{where}.port must be a number 1-65535, as an int or a string")
    return port


def _string(data: dict[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    if key not in data:
        raise SecretFormatError(f"{where}.{key} is missing: add it to the secret")
    value = data[key]
    if not isinstance(value, str):
        raise SecretFormatError(f"{where}.{key} must be a string")
    if not value and not allow_empty:
        raise SecretFormatError(f"{where}.{key} is empty: set it in the secret")
    if key == "password":
        if "\x00" in value:
            raise SecretFormatError(f"{where}.password contains a NUL character, which libpq cannot send: change it")
    elif _CONTROL.search(value):
        raise SecretFormatError(f"{where}.{key} contains a control character: remove it")
    return value


@dataclass(frozen=True)
class Credentials:
    """One slot's login. ``port_as_str`` remembers how the port was written, to write it back the same way."""

    username: str
    password: str = field(repr=False)
    host: str
    port: int
    dbname: str
    port_as_str: bool = False
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    rotated_at: datetime | None = field(default=None, compare=False)  # None: unknown (see rotator.age)

    @classmethod
    def parse(cls, data: Any, where: str) -> Credentials:
        if not isinstance(data, dict):
            raise SecretFormatError(f"{where} must be an object with {', '.join(_SLOT_KEYS)}")
        dbname_key = "dbname" if "dbname" in data else "database" if "database" in data else "dbname"
        return cls(
            username=_string(data, "username", where),
            # An empty password is allowed on input: bootstrap replaces it with a generated one.
            password=_string(data, "password", where, allow_empty=True),
            host=_string(data, "host", where),
            port=_port(data.get("port"), where) if "port" in data else _missing_port(where),
            dbname=_string(data, dbname_key, where),
            port_as_str=isinstance(data.get("port"), str),
            extras={k: v for k, v in data.items() if k not in (*_SLOT_KEYS, "database", _ROTATED_AT)},
            rotated_at=age.optional_timestamp(data, where),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "host": self.host,
            "port": str(self.port) if self.port_as_str else self.port,
            "dbname": self.dbname,
        }
        out.update(self.extras)
        if self.rotated_at is not None:
            out[_ROTATED_AT] = age.format_timestamp(self.rotated_at)
        return out

    def with_password(self, password: str, rotated_at: datetime | None = None) -> Credentials:
        """Another password: its time is ``rotated_at`` (None: unknown, e.g. a password adopted from the config)."""
        return replace(self, password=password, rotated_at=rotated_at)


def _missing_port(where: str) -> int:
    raise SecretFormatError(f"{where}.port is missing: add it to the secret")


@dataclass(frozen=True)
class SlotSecret:
    active_slot: Slot
    a: Credentials
    b: Credentials
    engine: str | None = None
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, what: str = "slot secret") -> SlotSecret:
        data = _load_json(text, what)
        active = data.get("active_slot")
        if active not in SLOTS:
            raise SecretFormatError(f'{what}: active_slot must be "A" or "B"')
        a = Credentials.parse(data.get("A"), f"{what}: A")
        b = Credentials.parse(data.get("B"), f"{what}: B")
        if a.username == b.username:
            raise SecretFormatError(f"{what}: A.username and B.username must differ (two login users)")
        engine = data.get("engine")
        if engine is not None:
            if not isinstance(engine, str):
                raise SecretFormatError(f"{what}: engine must be a string: mysql or postgres")
            engine = normalize_engine(engine, what)
        extras = {k: v for k, v in data.items() if k not in ("active_slot", "A", "B", "engine")}
        return cls(active_slot=active, a=a, b=b, engine=engine, extras=extras)

    def to_json(self) -> str:
        out: dict[str, Any] = {"active_slot": self.active_slot, "A": self.a.to_dict(), "B": self.b.to_dict()}
        if self.engine is not None:
            out["engine"] = self.engine
        out.update(self.extras)
        return json.dumps(out, separators=(",", ":"))

    @property
    def standby_slot(self) -> Slot:
        return other(self.active_slot)

    def slot(self, name: Slot) -> Credentials:
        return self.a if name == "A" else self.b

    def with_slot(self, name: Slot, creds: Credentials) -> SlotSecret:
        return replace(self, a=creds) if name == "A" else replace(self, b=creds)

    def with_password(self, name: Slot, password: str, rotated_at: datetime | None = None) -> SlotSecret:
        return self.with_slot(name, self.slot(name).with_password(password, rotated_at))

    def with_active(self, name: Slot) -> SlotSecret:
        return replace(self, active_slot=name)

    def slot_of_user(self, username: str) -> Slot | None:
        for name in SLOTS:
            if self.slot(name).username == username:
                return name
        return None

    def passwords(self) -> list[str]:
        return [p for p in (self.a.password, self.b.password) if p]


@dataclass(frozen=True)
class AdminSecret:
    username: str
    password: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    port_as_str: bool = False
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    rotated_at: datetime | None = field(default=None, compare=False)  # None: unknown (see rotator.age)

    @classmethod
    def parse(cls, text: str, what: str = "admin secret") -> AdminSecret:
        data = _load_json(text, what)
        host = data.get("host")
        if host is not None and (not isinstance(host, str) or not host or _CONTROL.search(host)):
            raise SecretFormatError(f"{what}.host must be a non-empty string without control characters, or left out")
        port = _port(data["port"], what) if data.get("port") not in (None, "") else None
        return cls(
            username=_string(data, "username", what),
            password=_string(data, "password", what),
            host=host,
            port=port,
            port_as_str=isinstance(data.get("port"), str),
            extras={k: v for k, v in data.items() if k not in ("username", "password", "host", "port", _ROTATED_AT)},
            rotated_at=age.optional_timestamp(data, what),
        )

    def to_json(self) -> str:
        out: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.host is not None:
            out["host"] = self.host
        if self.port is not None:
            out["port"] = str(self.port) if self.port_as_str else self.port
        out.update(self.extras)
        if self.rotated_at is not None:
            out[_ROTATED_AT] = age.format_timestamp(self.rotated_at)
        return json.dumps(out, separators=(",", ":"))

    def with_password(self, password: str, rotated_at: datetime | None = None) -> AdminSecret:
        return replace(self, password=password, rotated_at=rotated_at)

    def endpoint(self, fallback: Credentials) -> tuple[str, int]:
        """Where to connect as admin: the admin secret's host/port, else the slot secret's."""
        return (self.host or fallback.host, self.port or fallback.port)
