"""HashiCorp Vault / OpenBao sources: a KV v2 secret, and the database secrets engine's static and dynamic
credentials, through one :class:`VaultSession` that keeps its token alive.

``hvac`` is optional (``pip install rotator[vault]``) and imported when the first session is made.

Lifetimes. Everything Vault hands out may expire: the token, a dynamic credential's lease, a static role's
password (at its next scheduled rotation). Each fetch reports ``valid_for``: the seconds until the earliest of
them needs attention (``renew_fraction`` of a lease's remaining time, 2/3 by default); the loader's cache
refreshes no later than that, whatever its own TTL. A refresh then:

- renews the token (``renew-self``) when it is renewable; re-logs in with AppRole when it is not, when the
  token's max TTL is reached, or when Vault refuses it (403, once);
- renews a dynamic lease (``sys/leases/renew``): the same login stays valid, and PostgreSQL's ``VALID UNTIL``
  moves with it. When Vault grants less than asked (the role's ``max_ttl`` is near), the next refresh issues
  new credentials (``<mount>/creds/<role>``) before the old ones expire; the old lease is left to expire, so
  pooled sessions made with it keep working until then;
- re-reads ``static-creds`` just after the scheduled rotation (``ttl`` + 1 s).

A login refused by the database makes the loader refresh once (:meth:`CredentialLoader.connect`): a dynamic
source then issues new credentials instead of renewing ones the database no longer accepts.

Never logged: tokens, AppRole secret ids, lease ids, passwords.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rotator.client import cache
from rotator.client._log import log
from rotator.client.errors import ConfigurationError, CredentialFormatError
from rotator.client.sources import Fetched, SourceKind

T = TypeVar("T")

INSTALL_HINT = "hvac is not installed: pip install 'rotator[vault]' to read credentials from Vault or OpenBao"


def _hvac() -> Any:
    try:
        import hvac
    except ImportError:
        raise ConfigurationError(INSTALL_HINT) from None
    return hvac


def _forbidden(exc: BaseException) -> bool:
    hvac = _hvac()
    return isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized)


@dataclass
class Lifetime:
    """A token or lease: granted ``duration`` seconds at ``started`` (monotonic); 0 means it never expires."""

    started: float
    duration: float
    renewable: bool
    requested: float  # what a renewal asks for: the first grant
    capped: bool = False  # a renewal granted less than asked: the max TTL is near, replace it next time

    def due(self, fraction: float) -> float | None:
        return None if self.duration <= 0 else self.started + self.duration * fraction

    def expires(self) -> float | None:
        return None if self.duration <= 0 else self.started + self.duration


def _env_secret(environ: Mapping[str, str], name: str) -> str | None:
    """``NAME``, else the contents of the file ``NAME_FILE`` (trailing newline dropped)."""
    value = environ.get(name)
    if value:
        return value
    path = environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n") or None
    except OSError as exc:
        raise ConfigurationError(f"{name}_FILE: cannot read {path} ({type(exc).__name__})") from None


class VaultSession:
    """An ``hvac.Client`` with a token that stays valid: token auth (``VAULT_TOKEN``) or AppRole.

    Share one session between the loaders of a process. Arguments fall back to the variables the rotator
    command reads: ``VAULT_ADDR``; with neither a token nor AppRole given, ``VAULT_ROLE_ID`` and
    ``VAULT_SECRET_ID`` (AppRole, mount ``VAULT_APPROLE_MOUNT``), else ``VAULT_TOKEN`` (each also as a file:
    ``VAULT_TOKEN_FILE``...); ``VAULT_NAMESPACE`` and ``VAULT_CACERT``.
    """

    def __init__(
        self,
        addr: str | None = None,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        approle_mount: str = "approle",
        namespace: str | None = None,
        verify: bool | str | None = None,
        timeout: float = 5.0,
        renew_fraction: float = 2 / 3,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.addr = addr or environ.get("VAULT_ADDR") or ""
        if not self.addr:
            raise ConfigurationError("no Vault address: pass addr= or set VAULT_ADDR (like https://vault:8200)")
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        if token is None and role_id is None and secret_id is None:
            # As the rotator command reads them: AppRole first, else the token (each NAME or the file NAME_FILE).
            role_id, secret_id = _env_secret(environ, "VAULT_ROLE_ID"), _env_secret(environ, "VAULT_SECRET_ID")
            if role_id is None and secret_id is None:
                token = _env_secret(environ, "VAULT_TOKEN")
            approle_mount = environ.get("VAULT_APPROLE_MOUNT") or approle_mount
        if (role_id is None) != (secret_id is None):
            raise ConfigurationError("AppRole needs both role_id and secret_id (VAULT_ROLE_ID and VAULT_SECRET_ID)")
        self._role_id = role_id
        self._secret_id = secret_id
        self._token = None if role_id else (token or None)
        if self._token is None and role_id is None:
            raise ConfigurationError(
                "no Vault credentials: pass token= (or set VAULT_TOKEN), or role_id= and secret_id= "
                "(or VAULT_ROLE_ID and VAULT_SECRET_ID)"
            )
        self.approle_mount = approle_mount
        self.namespace = namespace or environ.get("VAULT_NAMESPACE") or None
        self.verify = verify if verify is not None else (environ.get("VAULT_CACERT") or True)
        self.timeout = timeout
        self.renew_fraction = renew_fraction
        self._client: Any = None
        self._token_life: Lifetime | None = None
        self._token_final = False  # a plain token that can be renewed no further
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"VaultSession({self.addr}, auth={'approle' if self._role_id else 'token'})"

    @property
    def auth_method(self) -> str:
        return "approle" if self._role_id else "token"

    # ------------------------------------------------------------------ the token

    def _new_client(self) -> Any:
        hvac = _hvac()
        return hvac.Client(url=self.addr, verify=self.verify, timeout=self.timeout, namespace=self.namespace)

    def _login(self) -> None:
        client = self._new_client()
        now = cache._now()
        auth = client.auth.approle.login(
            role_id=self._role_id, secret_id=self._secret_id, use_token=True, mount_point=self.approle_mount
        )["auth"]
        duration = float(auth.get("lease_duration") or 0)
        self._client = client
        self._token_life = Lifetime(now, duration, bool(auth.get("renewable")), requested=duration)
        self._token_final = False
        log.info("vault_login", method="approle", addr=self.addr, ttl_s=duration, renewable=bool(auth.get("renewable")))

    def _adopt_token(self) -> None:
        client = self._new_client()
        client.token = self._token
        now = cache._now()
        data = client.auth.token.lookup_self()["data"]
        duration = float(data.get("ttl") or 0)
        requested = float(data.get("creation_ttl") or duration)  # a renewal asks for the token's own TTL again
        self._client = client
        self._token_life = Lifetime(now, duration, bool(data.get("renewable")), requested=requested)

    def _renew(self) -> None:
        life = self._token_life
        assert life is not None and self._client is not None
        if life.renewable and not life.capped:
            now = cache._now()
            try:
                auth = self._client.auth.token.renew_self(increment=int(life.requested))["auth"]
            except Exception as exc:
                if not (_forbidden(exc) and self._role_id):
                    raise
                log.warning("vault_token_renew_failed", addr=self.addr, error=type(exc).__name__, action="login")
                self._login()
                return
            granted = float(auth.get("lease_duration") or 0)
            capped = granted < life.requested
            self._token_life = Lifetime(now, granted, bool(auth.get("renewable")), life.requested, capped)
            log.info("vault_token_renewed", addr=self.addr, ttl_s=granted, max_ttl_near=capped)
            return
        if self._role_id:
            self._login()
            return
        # Nothing more can be done for this token: say so once, and stop scheduling refreshes for it.
        self._token_final = True
        log.warning(
            "vault_token_expiring",
            addr=self.addr,
            expires_in_s=round(max(0.0, (life.expires() or 0) - cache._now()), 1),
            fix="use a renewable token with a longer max TTL, or AppRole",
        )

    def client(self) -> Any:
        """The client, its token renewed (or replaced by a new AppRole login) once its renewal is due."""
        with self._lock:
            if self._client is None:
                if self._role_id:
                    self._login()
                else:
                    self._adopt_token()
            elif not self._token_final:
                due = self._token_life.due(self.renew_fraction) if self._token_life else None
                if due is not None and cache._now() >= due:
                    self._renew()
            return self._client

    def valid_for(self) -> float | None:
        """Seconds until the token's renewal is due; None for a token that never expires."""
        life = self._token_life
        due = life.due(self.renew_fraction) if life and not self._token_final else None
        return None if due is None else max(0.0, due - cache._now())

    def call(self, fn: Callable[[Any], T]) -> T:
        """``fn(client)``; when Vault refuses the token (403) and AppRole is configured, log in again once."""
        client = self.client()
        try:
            return fn(client)
        except Exception as exc:
            if not (self._role_id and _forbidden(exc)):
                raise
            log.warning("vault_token_refused", addr=self.addr, error=type(exc).__name__, action="login")
        with self._lock:
            self._login()
            client = self._client
        return fn(client)


def _shorter(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class VaultKvSource:
    """A KV v2 secret: a slot secret or a plain one (``username``, ``password``, ``host``...).

    The secret's data is the JSON object itself; with ``field=`` one field holds it as JSON text instead.
    """

    def __init__(self, session: VaultSession, path: str, *, mount: str = "secret", field: str | None = None) -> None:
        if not path.strip("/"):
            raise ConfigurationError("empty Vault KV path: pass the secret's path, like app/db")
        self.session = session
        self.path = path.strip("/")
        self.mount = mount.strip("/")
        self.field = field

    @property
    def kind(self) -> SourceKind:
        return "vault"

    @property
    def label(self) -> str:
        return f"vault:{self.mount}/data/{self.path}"

    @property
    def hint(self) -> str:
        return (
            "check VAULT_ADDR, the token or AppRole, the KV v2 mount and path, and the policy "
            f"(read on {self.mount}/data/{self.path})"
        )

    def fetch(self) -> Fetched:
        response = self.session.call(
            lambda c: c.secrets.kv.v2.read_secret_version(
                path=self.path, mount_point=self.mount, raise_on_deleted_version=True
            )
        )
        data = response["data"]["data"]
        version = response["data"].get("metadata", {}).get("version")
        if self.field is not None:
            value = data.get(self.field) if isinstance(data, dict) else None
            if not isinstance(value, str):
                raise CredentialFormatError(f"{self.label}: field {self.field} is missing or not a JSON text")
            text = value
        else:
            text = json.dumps(data)
        return Fetched(
            text=text,
            format="json",
            arn=self.label,
            version=str(version) if version is not None else None,
            valid_for=self.session.valid_for(),
        )


class VaultDatabaseSource:
    """The database secrets engine: ``<mount>/static-creds/<role>`` (``static=True``) or ``<mount>/creds/<role>``.

    Vault returns only ``username`` and ``password``: pass host, port, dbname and engine to the loader as
    ``defaults``.
    """

    def __init__(
        self,
        session: VaultSession,
        role: str,
        *,
        static: bool,
        mount: str = "database",
        renew_fraction: float | None = None,
        min_lease: float = 1.0,
    ) -> None:
        if not role:
            raise ConfigurationError("empty Vault database role: pass the role's name")
        self.session = session
        self.role = role
        self.static = static
        self.mount = mount.strip("/")
        self.renew_fraction = renew_fraction if renew_fraction is not None else session.renew_fraction
        self.min_lease = min_lease
        self._lease_id: str | None = None
        self._lease: Lifetime | None = None
        self._data: dict[str, Any] | None = None

    @property
    def kind(self) -> SourceKind:
        return "vault"

    @property
    def label(self) -> str:
        return f"vault:{self.mount}/{'static-creds' if self.static else 'creds'}/{self.role}"

    @property
    def hint(self) -> str:
        return f"check VAULT_ADDR, the token or AppRole, and the policy (read on {self.label.removeprefix('vault:')})"

    def discard(self) -> None:
        """The database refused the credentials: the next fetch issues new ones instead of renewing."""
        self._lease = None
        self._lease_id = None
        self._data = None

    def fetch(self) -> Fetched:
        if self.static:
            return self._fetch_static()
        return self._fetch_dynamic()

    def _fetch_static(self) -> Fetched:
        data = self.session.call(
            lambda c: c.secrets.database.get_static_credentials(name=self.role, mount_point=self.mount)
        )["data"]
        ttl = data.get("ttl")
        # The password changes at the next scheduled rotation: read it again just after.
        next_rotation = float(ttl) + 1.0 if isinstance(ttl, int | float) and ttl > 0 else None
        rotated = data.get("last_vault_rotation")
        return Fetched(
            text=self._text(data),
            format="json",
            arn=self.label,
            version=str(rotated) if rotated else None,
            valid_for=_shorter(next_rotation, self.session.valid_for()),
        )

    def _text(self, data: Mapping[str, Any]) -> str:
        if not isinstance(data.get("username"), str) or not isinstance(data.get("password"), str):
            raise CredentialFormatError(f"{self.label} returned no username/password")
        return json.dumps({"username": data["username"], "password": data["password"]})

    def _issue(self) -> None:
        now = cache._now()
        response = self.session.call(
            lambda c: c.secrets.database.generate_credentials(name=self.role, mount_point=self.mount)
        )
        duration = float(response.get("lease_duration") or 0)
        self._lease_id = response.get("lease_id") or None
        self._lease = Lifetime(now, duration, bool(response.get("renewable")), requested=duration)
        self._data = dict(response["data"])
        log.info("vault_credentials_issued", source=self.label, lease_s=duration, renewable=self._lease.renewable)

    def _renew(self) -> bool:
        """Renew the lease; False when it cannot be (gone, refused, or too short to be worth keeping)."""
        lease = self._lease
        assert lease is not None and self._lease_id is not None
        now = cache._now()
        lease_id = self._lease_id
        try:
            response = self.session.call(lambda c: c.sys.renew_lease(lease_id=lease_id, increment=int(lease.requested)))
        except Exception as exc:
            hvac = _hvac()
            if isinstance(
                exc, hvac.exceptions.InvalidRequest | hvac.exceptions.InvalidPath | hvac.exceptions.Forbidden
            ):
                log.warning("vault_lease_renew_failed", source=self.label, error=type(exc).__name__, action="issue")
                return False
            raise
        granted = float(response.get("lease_duration") or 0)
        capped = granted < lease.requested
        self._lease = Lifetime(now, granted, bool(response.get("renewable")), lease.requested, capped)
        log.info("vault_lease_renewed", source=self.label, lease_s=granted, max_ttl_near=capped)
        return granted >= self.min_lease

    def _fetch_dynamic(self) -> Fetched:
        lease = self._lease
        now = cache._now()
        expires = lease.expires() if lease else None
        # Renewing takes one round trip: a lease with less than half a second left is replaced instead.
        usable = lease is not None and self._data is not None and (expires is None or expires - now > 0.5)
        due = lease.due(self.renew_fraction) if lease else None
        if not usable:
            self._issue()
        elif lease is not None and due is not None and now >= due:
            if not lease.renewable or lease.capped or not self._renew():
                self._issue()  # the max TTL is near (or renewal is not possible): new credentials before expiry
        assert self._lease is not None and self._data is not None
        due = self._lease.due(self.renew_fraction)
        return Fetched(
            text=self._text(self._data),
            format="json",
            arn=self.label,
            version=None,
            valid_for=_shorter(None if due is None else max(0.0, due - cache._now()), self.session.valid_for()),
        )
