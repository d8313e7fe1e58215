"""observe(): read what is true, change nothing. Secrets, the admin login, the users, the deployed config.

Secrets are read twice: once to find the server and the admin (so that the lock can be taken), and again
once the lock is held; every decision rests on the second read. The admin's "no password logs in" is only
concluded after both admin versions were re-read and found unchanged, so a run that loses a race against
another run's admin rotation never cries wolf.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rotator import health
from rotator.db.base import AdminSession, Endpoint, Engine, LoginResult, TlsConfig
from rotator.errors import AdminLoginFailed, BadInput, RotatorError, SecretFormatError
from rotator.live import LiveVersions, slot_of
from rotator.log import get_logger, register_secret
from rotator.parallel import together
from rotator.plan import SlotState, Source, World
from rotator.render import ConfigFile, DeployedConfig
from rotator.secrets import SLOTS, AdminSecret, Credentials, Slot, SlotSecret, normalize_engine
from rotator.store.base import SecretStore, SecretVersions, read_many

log = get_logger("rotator")

ADMIN_LOGIN_ATTEMPTS = 5  # reads of the admin secret before "no admin password logs in" is concluded


@dataclass(frozen=True)
class Secrets:
    slot_versions: SecretVersions
    current: SlotSecret
    pending: SlotSecret | None
    admin_versions: SecretVersions
    admin: AdminSecret
    admin_pending: AdminSecret | None

    @property
    def engine(self) -> str | None:
        return self.current.engine

    def admin_fingerprint(self) -> tuple[str, str | None]:
        v = self.admin_versions
        return v.current.version_id, v.pending.version_id if v.pending else None


def read_secrets(store: SecretStore, slot_secret: str, admin_secret: str) -> Secrets:
    slot_v, admin_v = read_many(store, slot_secret, admin_secret)
    current = SlotSecret.parse(slot_v.current.value, "slot secret (AWSCURRENT)")
    pending = _parse_pending(slot_v, lambda t: SlotSecret.parse(t, "slot secret (AWSPENDING)"))
    admin = AdminSecret.parse(admin_v.current.value, "admin secret (AWSCURRENT)")
    admin_pending = _parse_pending(admin_v, lambda t: AdminSecret.parse(t, "admin secret (AWSPENDING)"))
    for secret in (current, pending):
        if secret is not None:
            register_secret(*secret.passwords())
    register_secret(admin.password, admin_pending.password if admin_pending else None)
    return Secrets(slot_v, current, pending, admin_v, admin, admin_pending)


def _parse_pending(versions: SecretVersions, parse: Callable[[str], Any]) -> Any:
    if versions.pending is None:
        return None
    try:
        return parse(versions.pending.value)
    except SecretFormatError as exc:
        raise BadInput(
            f"{exc}; the AWSPENDING version of {versions.secret_id} is not usable: remove its AWSPENDING label "
            "(aws secretsmanager update-secret-version-stage --version-stage AWSPENDING --remove-from-version-id ...)"
        ) from None


def choose_engine(flag: str | None, secret: SlotSecret) -> str:
    engine = normalize_engine(flag, "--engine") if flag else secret.engine
    if engine is None:
        raise BadInput('no database engine: pass --engine mysql|postgres or add "engine" to the slot secret')
    if secret.engine is not None and secret.engine != engine:
        raise BadInput(f"the slot secret says engine {secret.engine} but --engine is {engine}: make them agree")
    return engine


def endpoint(creds: Credentials, tls: TlsConfig) -> Endpoint:
    return Endpoint(host=creds.host, port=creds.port, dbname=creds.dbname, tls=tls)


def admin_endpoint(admin: AdminSecret, secret: SlotSecret, tls: TlsConfig) -> Endpoint:
    active = secret.slot(secret.active_slot)
    host, port = admin.endpoint(active)
    return Endpoint(host=host, port=port, dbname=active.dbname, tls=tls)


def login(engine: Engine, ep: Endpoint, username: str, password: str) -> LoginResult:
    """A login check that tells a refused password from an outage (which would make observations wrong)."""
    result = engine.check_login(ep, username, password)
    if not result.ok and not result.auth_failed:
        raise RotatorError(
            f"cannot reach the database at {ep.host}:{ep.port} as {username}: {result.reason}; "
            "check the network path, --db-tls and the host in the secret, then re-run"
        )
    return result


def lock_name(secret: SlotSecret, override: str | None) -> str:
    """The run lock. Advisory locks live on the server the admin session is connected to (PostgreSQL: in that
    database), so the name carries only the database: however a host is spelled, one database is one lock."""
    return override or f"rotator:{secret.slot(secret.active_slot).dbname}"


@dataclass(frozen=True)
class AdminLogin:
    password: str | None = field(default=None, repr=False)  # the password the session logged in with
    session: AdminSession | None = None


def open_admin(
    engine: Engine, sec: Secrets, reread: Callable[[], Secrets], tls: TlsConfig
) -> tuple[Secrets, AdminLogin]:
    """Open the admin session with AWSCURRENT's password, else AWSPENDING's.

    When neither logs in, the secrets are read again: if another run changed the admin secret meanwhile, try
    its new values; only when both admin versions are unchanged since the failed logins is the failure
    conclusive (``AdminLogin.session`` is None).
    """
    for _ in range(ADMIN_LOGIN_ATTEMPTS):
        found = _try_admin(engine, sec, tls)
        if found.session is not None:
            return sec, found
        again = reread()
        if again.admin_fingerprint() == sec.admin_fingerprint():
            return again, found
        log.info("admin_secret_changed", detail="the admin secret changed while logging in: trying its new values")
        sec = again
    return sec, AdminLogin()


def _try_admin(engine: Engine, sec: Secrets, tls: TlsConfig) -> AdminLogin:
    ep = admin_endpoint(sec.admin, sec.current, tls)
    candidates = [sec.admin.password] + ([sec.admin_pending.password] if sec.admin_pending else [])
    for password in candidates:
        try:
            return AdminLogin(password, engine.admin_session(ep, sec.admin.username, password))
        except AdminLoginFailed as exc:
            if not exc.auth_failed:
                raise RotatorError(
                    f"cannot reach the database at {ep.host}:{ep.port} as the admin: {exc}; check the network "
                    "path, --db-tls and the host in the secrets, then re-run"
                ) from None
    return AdminLogin()


def admin_logins(engine: Engine, sec: Secrets, used: str | None, tls: TlsConfig) -> tuple[bool, bool]:
    """(current logs in, pending logs in), for secrets re-read after the lock. The session's own password is
    known to work; any other is checked."""
    ep = admin_endpoint(sec.admin, sec.current, tls)

    def works(password: str) -> bool:
        return password == used or login(engine, ep, sec.admin.username, password).ok

    current = works(sec.admin.password)
    pending = sec.admin_pending is not None and not current and works(sec.admin_pending.password)
    return current, pending


def same_server(secret: SlotSecret) -> bool:
    """Both slots name one database on one server: equal port and dbname, and hosts that are equal or resolve
    to a common address (``localhost`` and ``127.0.0.1``)."""
    a, b = secret.slot("A"), secret.slot("B")
    if (a.port, a.dbname) != (b.port, b.dbname):
        return False
    if a.host.lower() == b.host.lower():
        return True
    return bool(_addresses(a.host, a.port) & _addresses(b.host, b.port))


def _addresses(host: str, port: int) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return set()


@dataclass(frozen=True)
class Observed:
    world: World
    secrets: Secrets
    deployed: DeployedConfig | None = None
    live: LiveVersions | None = None


def observe(
    *,
    engine: Engine,
    session: AdminSession,
    sec: Secrets,
    admin_ok: tuple[bool, bool],
    tls: TlsConfig,
    config: ConfigFile | None,
    deployment: str,
    health_check: health.HttpCheck | None,
    live: LiveVersions | None = None,
    now: datetime | None = None,
) -> Observed:
    s, p = sec.current, sec.pending
    if not same_server(s):
        raise BadInput(
            "slots A and B name different servers or databases: both slot users must be on one server and "
            "database; fix host, port and dbname in the slot secret. Nothing was changed"
        )
    deployed = config.read_deployed() if config is not None else None
    config_slot: Slot | None = None
    if deployed is not None and deployed.username:
        config_slot = s.slot_of_user(deployed.username)
        register_secret(deployed.password)
    live_slot = slot_of(live.current, s, sec.admin, engine.name, what="the live secret") if live else None
    if live is not None:
        register_secret(live.current.password)
    dbname = s.slot(s.active_slot).dbname
    infos = {slot: session.inspect_user(s.slot(slot).username, dbname=dbname) for slot in SLOTS}
    # Which password logs in as which slot user: each distinct (slot, password) is tried once, all at once (each
    # login is a connection of its own), while the admin session asks its own questions below.
    sources: dict[Slot, dict[Source, str]] = {}
    for slot in SLOTS:
        candidates = {
            Source.CURRENT: s.slot(slot).password,
            Source.PENDING: p.slot(slot).password if p else None,
            Source.CONFIG: deployed.password if deployed and config_slot == slot else None,
            Source.LIVE: live.current.password if live and live_slot == slot else None,
        }
        exists = infos[slot].exists
        sources[slot] = {src: pw for src, pw in candidates.items() if exists and pw}
    tries = list(dict.fromkeys((slot, pw) for slot in SLOTS for pw in sources[slot].values()))

    def attempt(slot: Slot, password: str) -> Callable[[], bool]:
        creds = s.slot(slot)
        return lambda: login(engine, endpoint(creds, tls), creds.username, password).ok

    def admin_questions() -> tuple[dict[Slot, tuple[str, ...]], tuple[str, ...]]:
        grants_missing: dict[Slot, tuple[str, ...]] = {}
        if all(info.exists for info in infos.values()):
            lacks_a, lacks_b = session.missing_grants_both(s.slot("A").username, s.slot("B").username)
            grants_missing = {"A": lacks_a, "B": lacks_b}
        return grants_missing, tuple(session.admin_problems(dbname=dbname))

    # The admin session's questions last: a login's failure is raised first, as when the logins ran before them.
    calls: list[Callable[[], Any]] = [*(attempt(*t) for t in tries), admin_questions]
    *logins, answers = together(*calls)
    grants_missing, admin_problems = answers
    logged_in: dict[tuple[Slot, str], bool] = dict(zip(tries, logins, strict=True))
    slots: dict[Slot, SlotState] = {
        slot: SlotState(
            exists=info.exists,
            logins={src: logged_in[(slot, pw)] for src, pw in sources[slot].items()},
            marked=info.marked,
            privileges=info.privileges,
            owner_member=info.owner_member,
            other_hosts=() if info.exists else info.hosts,
        )
        for slot, info in infos.items()
    }
    world = World(
        secret=s,
        pending=p,
        admin=sec.admin,
        admin_pending=sec.admin_pending,
        admin_current_ok=admin_ok[0],
        admin_pending_ok=admin_ok[1],
        slots=slots,
        config_slot=config_slot,
        config_present=deployed is not None,
        config_password=deployed.password if deployed else None,
        deployment=deployment,
        admin_problems=admin_problems,
        health_precheck=_precheck(health_check),
        engine=engine.name,
        live_slot=live_slot,
        live_password=live.current.password if live else None,
        live_pending=live is not None and live.pending,
        live_exact=live is not None
        and live_slot is not None
        and live.current.owned() == live.current.pointing_at(s.slot(live_slot), engine.name).owned(),
        grants_missing=grants_missing,
        now=now,
        admin_owner=sec.admin_versions.owning_service,
    )
    return Observed(world, sec, deployed, live)


def _precheck(check: health.HttpCheck | None) -> str | None:
    """The health URL, asked once before anything changes: why it fails, or None."""
    if check is None:
        return None
    result = check.run()
    return None if result.ok else result.detail
