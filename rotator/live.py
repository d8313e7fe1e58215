"""The live secret: a plain single-user secret that always holds the slot the app should use.

It is in the RDS format, plus seed 002's ``database`` key (the same value as ``dbname``)::

    {"engine": "postgres", "host": "...", "port": 5432, "username": "app_b", "password": "...",
     "dbname": "app", "database": "app", ...any keys of the app's own, kept as they are}

ECS task definitions read it with ``valueFrom: <arn>:password::``, seed 002's ``get_database_credentials``
reads it once at start, RDS Proxy logs in with it. It is a *target* of the flip, like the rendered config:
written write-ahead (AWSPENDING, proven to log in, then AWSCURRENT) before the deployment, written back by a
rollback, and rewritten when it drifts. The rotator owns the keys above; every other key is kept. ``host`` and
``port`` are the app's way in and are only filled when missing: an app that connects through RDS Proxy or
PgBouncer keeps that endpoint (overwritten with the database's own, it would bypass the proxy, or be refused
by a security group that admits only the proxy).

It must exist before the first run (``{}`` is enough: the first run fills it), so that its ARN can go in the
task definition and the rotation role needs no ``CreateSecret``. What is refused before anything changes: a
live secret that is the slot secret or the admin secret, names the admin user or a user that is neither slot
user, or names another engine. Pure, except :func:`read_live`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rotator.errors import BadInput, SecretFormatError, SecretNotFound
from rotator.secrets import ENGINE_ALIASES, AdminSecret, Credentials, Slot, SlotSecret, _load_json, _port
from rotator.store.base import SecretStore

OWNED = ("engine", "host", "port", "username", "password", "dbname", "database")


@dataclass(frozen=True)
class LiveSecret:
    """One version of the live secret. ``username`` is "" when the secret names nobody yet."""

    username: str = ""
    password: str = field(default="", repr=False)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    engine: str | None = None  # as written (``postgres``, ``aurora-postgresql``, ``mariadb``, ...)
    port_as_str: bool = False
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, what: str = "live secret") -> LiveSecret:
        data = _load_json(text, what)
        if "active_slot" in data or isinstance(data.get("A"), dict):
            raise SecretFormatError(
                f"{what} is a slot secret (it has active_slot/A/B): --live-secret must name its own single-user "
                "secret, not --slot-secret"
            )
        values: dict[str, Any] = {}
        for key in ("username", "password", "host", "dbname", "database", "engine"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise SecretFormatError(f"{what}.{key} must be a string")
            values[key] = value
        if "\x00" in (values["password"] or ""):
            raise SecretFormatError(f"{what}.password contains a NUL character, which libpq cannot send")
        port = data.get("port")
        return cls(
            username=values["username"] or "",
            password=values["password"] or "",
            host=values["host"],
            port=_port(port, what) if port not in (None, "") else None,
            dbname=values["dbname"] or values["database"],
            engine=values["engine"],
            port_as_str=isinstance(port, str),
            extras={k: v for k, v in data.items() if k not in OWNED},
        )

    def pointing_at(self, creds: Credentials, engine: str) -> LiveSecret:
        """This secret rewritten to ``creds``: the owned keys replaced, the app's own keys kept, the engine kept
        as written when it is the same engine (``aurora-postgresql`` stays), the port kept as a string or int;
        a host (and its port) the secret already has is kept (module docstring: a proxy's endpoint)."""
        same = self.engine is not None and ENGINE_ALIASES.get(self.engine.strip().lower()) == engine
        keep = bool(self.host)
        return LiveSecret(
            username=creds.username,
            password=creds.password,
            host=self.host if keep else creds.host,
            port=self.port if keep and self.port is not None else creds.port,
            dbname=creds.dbname,
            engine=self.engine if same else engine,
            port_as_str=self.port_as_str,
            extras=dict(self.extras),
        )

    def to_json(self) -> str:
        out: dict[str, Any] = {
            "engine": self.engine,
            "host": self.host,
            "port": str(self.port) if self.port_as_str and self.port is not None else self.port,
            "username": self.username,
            "password": self.password,
            "dbname": self.dbname,
            "database": self.dbname,
        }
        out.update(self.extras)
        return json.dumps(out, separators=(",", ":"))

    def owned(self) -> tuple[object, ...]:
        """The values the rotator owns, to tell whether a rewrite would change anything."""
        return (self.username, self.password, self.host, self.port, self.dbname, self.engine)


def slot_of(live: LiveSecret, secret: SlotSecret, admin: AdminSecret, engine: str, *, what: str) -> Slot | None:
    """The slot the live secret names (None: it names nobody yet), or BadInput for what the rotator must not
    overwrite: the admin, a user that is neither slot user, another engine."""
    if live.engine is not None and ENGINE_ALIASES.get(live.engine.strip().lower()) != engine:
        raise BadInput(
            f"{what} says engine {live.engine!r} but the slot secret's database is {engine}: "
            "--live-secret must be the live secret of this database"
        )
    if not live.username:
        return None
    if live.username == admin.username:
        raise BadInput(
            f"{what} names the admin user: --live-secret must be the app's own secret, never the admin secret; "
            "pass the app's secret (or a new one holding {})"
        )
    slot = secret.slot_of_user(live.username)
    if slot is None:
        raise BadInput(
            f"{what} names a user that is neither slot user of the slot secret: the rotator overwrites only a "
            "live secret it manages; adopt that user first (rotator adopt), or pass a new secret holding {}"
        )
    return slot


@dataclass(frozen=True)
class LiveVersions:
    current: LiveSecret
    pending: bool  # an AWSPENDING version other than AWSCURRENT exists (an interrupted write)
    version_id: str


def read_live(store: SecretStore, secret_id: str) -> LiveVersions:
    """Read the live secret (it must exist: the first run fills an empty ``{}``)."""
    try:
        versions = store.read(secret_id)
    except SecretNotFound as exc:
        raise BadInput(
            f"{exc}; the live secret must exist before the first run (its ARN goes in the task definition): "
            "create it holding {} (aws secretsmanager create-secret --name NAME --secret-string '{}'), then re-run"
        ) from None
    current = LiveSecret.parse(versions.current.value, "live secret (AWSCURRENT)")
    return LiveVersions(current, versions.pending is not None, versions.current.version_id)
