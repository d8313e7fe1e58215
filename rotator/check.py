"""`rotator check`: a pre-flight from the same network path as `rotate`, with the same settings, that changes
nothing. It answers "would a rotation work from here?" one row at a time, each row naming the fix.

:func:`run_checks` takes the :class:`~rotator.rotation.Rotation` that :func:`rotator.wiring.build_rotation`
builds for `rotate` (so the store, engine, config file, deployer and health URL are exactly the ones a rotation
would use) and returns a :class:`CheckReport`: structured rows (``ok``, ``FAIL`` or ``skip``, and a detail) that
:mod:`rotator.present` renders as a table and :meth:`CheckReport.as_dict` as JSON. A fleet runs it per database.

What it does to the world: reads both secrets (current and pending), logs in as the admin and as each slot
user (one short session each), reads the users' catalog rows and the admin's own rights, reads the deployed
config, creates and removes one empty probe file next to the config path (the writer's own test that the
directory is writable), calls ECS DescribeServices and GETs the health URL. No lock is taken (a check never
makes a rotation wait or fail), no statement that changes anything is sent, no secret version or label moves.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from rotator import log
from rotator.aws import AwsClients
from rotator.config import Settings
from rotator.db import mysql as mysql_engine
from rotator.db._common import MYSQL_MAX_DATABASE_CHARS, MYSQL_MAX_HOST_CHARS, PG_MAX_IDENTIFIER_BYTES
from rotator.db.base import AdminSession, Engine
from rotator.errors import AdminLoginFailed, DeployError, ExitCode, RotatorError
from rotator.live import LiveVersions, read_live, slot_of
from rotator.observe import Secrets, admin_endpoint, admin_logins, choose_engine, observe, same_server
from rotator.plan import Plan, Source, World, plan
from rotator.render import ConfigFile
from rotator.rotation import Rotation
from rotator.secrets import SLOTS, AdminSecret, SlotSecret
from rotator.store.base import SecretVersions

Status = Literal["ok", "FAIL", "skip"]
OK: Status = "ok"
FAIL: Status = "FAIL"
SKIP: Status = "skip"

MYSQL_MAX_USER_CHARS = 32  # MySQL 8's limit (MariaDB allows 80): a name that fits both moves between them
_CHECKS = (
    "slot secret",
    "admin secret",
    "name lengths",
    "database TLS",
    "admin login",
    "admin rights",
    "slot users",
    "plan",
    "template",
    "config path",
    "ECS service",
    "health URL",
    "live secret",
)


@dataclass(frozen=True)
class CheckResult:
    """One row: ``check`` is one of the names above, ``detail`` says what was seen or what to fix."""

    check: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail}


@dataclass
class CheckReport:
    results: list[CheckResult] = field(default_factory=list)
    aws_api_calls: int = 0
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.status != FAIL for r in self.results)

    @property
    def exit_code(self) -> int:
        return int(ExitCode.OK if self.ok else ExitCode.BAD_INPUT)

    def result(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "check_report",
            "outcome": "ok" if self.ok else "failed",
            "exit_code": self.exit_code,
            "checks": [r.as_dict() for r in self.results],
            "failed": [r.check for r in self.results if r.status == FAIL],
            "aws_api_calls": self.aws_api_calls,
            "duration_ms": round(self.duration_ms, 1),
        }


def run_checks(rotation: Rotation, aws: AwsClients | None = None) -> CheckReport:
    """Every check, in order; a check whose inputs failed is skipped with the reason. Never raises for a
    failed check; every detail is scrubbed of every secret the process has seen."""
    started = time.monotonic()
    report = CheckReport()
    _Preflight(rotation, aws, report).run()
    report.results = [dataclasses.replace(r, detail=log.scrub(r.detail)) for r in report.results]
    report.aws_api_calls = rotation.adapters.api_calls()
    report.duration_ms = (time.monotonic() - started) * 1000
    return report


class _Failed(Exception):
    """A check failed; its row is written already."""


class _Preflight:
    def __init__(self, rotation: Rotation, aws: AwsClients | None, report: CheckReport) -> None:
        self.rotation = rotation
        self.settings: Settings = rotation.settings
        self.adapters = rotation.adapters
        self.aws = aws
        self.report = report
        self.live: LiveVersions | None = None
        self.live_error: str | None = None
        self.world: World | None = None

    # ------------------------------------------------------------ rows

    def add(self, check: str, status: Status, detail: str) -> None:
        assert check in _CHECKS, check
        self.report.results.append(CheckResult(check, status, detail))

    @contextmanager
    def row(self, check: str) -> Iterator[None]:
        """Run one check: a RotatorError becomes its FAIL row (its message names the fix), and so does any
        other exception (by type only: its text could quote a value)."""
        try:
            yield
        except _Failed:
            raise
        except RotatorError as exc:
            self.add(check, FAIL, str(exc))
            raise _Failed from None
        except Exception as exc:
            log.get_logger("rotator").exception("check_error", check=check)
            self.add(check, FAIL, f"unexpected error ({type(exc).__name__}): see the log, and report it")
            raise _Failed from None

    def attempt(self, check: str, body: Callable[[], Any]) -> Any:
        """``body()`` within :meth:`row`; None when it failed (the row says why)."""
        try:
            with self.row(check):
                return body()
        except _Failed:
            return None

    def skip(self, checks: tuple[str, ...], why: str) -> None:
        for check in checks:
            self.add(check, SKIP, why)

    # ------------------------------------------------------------ the run

    def run(self) -> None:
        s = self.settings
        if s.live_secret is not None:
            try:
                self.live = read_live(self.adapters.store, s.live_secret)
                log.register_secret(self.live.current.password)
            except RotatorError as exc:
                self.live_error = str(exc)
        slot_v = self.attempt("slot secret", lambda: self._slot_secret())
        admin_v = self.attempt("admin secret", lambda: self._admin_secret())
        if slot_v is None:
            self.skip(("name lengths",), "the slot secret is not usable")
        else:
            self.attempt("name lengths", lambda: self._names(slot_v))
        db_checks = ("database TLS", "admin login", "admin rights", "slot users", "plan")
        if slot_v is None or admin_v is None:
            self.skip(db_checks, "needs both secrets")
        else:
            self._database(slot_v, admin_v)
        self._config(slot_v)
        if s.deploy == "ecs":
            self.attempt("ECS service", self._ecs)
        else:
            self.skip(("ECS service",), f"--deploy {s.deploy}")
        if self.adapters.http_check is None:
            self.skip(("health URL",), "no --health-url")
        else:
            self.attempt("health URL", self._health)
        self._live_secret(slot_v, admin_v)

    # ------------------------------------------------------------ secrets

    def _slot_secret(self) -> tuple[SecretVersions, SlotSecret, SlotSecret | None, str]:
        s = self.settings
        versions = self.adapters.store.read(s.slot_secret)
        current = SlotSecret.parse(versions.current.value, "slot secret (AWSCURRENT)")
        log.register_secret(*current.passwords())
        pending = _pending(versions, lambda t: SlotSecret.parse(t, "slot secret (AWSPENDING)"))
        if pending is not None:
            log.register_secret(*pending.passwords())
        engine = choose_engine(s.engine, current)
        if not same_server(current):
            raise RotatorError(
                "slots A and B name different servers or databases: fix host, port and dbname in the slot secret"
            )
        a, b = current.slot("A"), current.slot("B")
        detail = f"{engine}, {a.host}:{a.port}/{a.dbname}, A={a.username} B={b.username}, active {current.active_slot}"
        empty = [slot for slot in SLOTS if not current.slot(slot).password]
        if empty:
            detail += f"; no password yet for {'/'.join(empty)} (the first rotate creates it)"
        if pending is not None:
            detail += "; an AWSPENDING version exists (the next rotate finishes or discards it)"
        self.add("slot secret", OK, detail)
        return versions, current, pending, engine

    def _admin_secret(self) -> tuple[SecretVersions, AdminSecret, AdminSecret | None]:
        versions = self.adapters.store.read(self.settings.admin_secret)
        admin = AdminSecret.parse(versions.current.value, "admin secret (AWSCURRENT)")
        log.register_secret(admin.password)
        pending = _pending(versions, lambda t: AdminSecret.parse(t, "admin secret (AWSPENDING)"))
        if pending is not None:
            log.register_secret(pending.password)
        where = f" at {admin.host}:{admin.port}" if admin.host else " (host and port from the slot secret)"
        detail = f"user {admin.username}{where}"
        if versions.owning_service == "rds":
            detail += "; managed by RDS: read every run, never written (admin rotation skipped)"
        if pending is not None:
            detail += "; an AWSPENDING version exists (the next rotate finishes or discards it)"
        self.add("admin secret", OK, detail)
        return versions, admin, pending

    # ------------------------------------------------------------ names

    def _names(self, slot_v: tuple[SecretVersions, SlotSecret, SlotSecret | None, str]) -> None:
        _, current, pending, engine = slot_v
        problems: list[str] = []
        longest: tuple[int, str] = (-1, "")
        for what, name, limit, unit in self._named(current, pending, engine):
            size = len(name.encode()) if unit == "bytes" else len(name)
            if size > limit:
                problems.append(f"{what} {name!r} is {size} {unit} long: {_ENGINE_LABEL[engine]} allows {limit}")
            elif size > longest[0]:
                longest = (size, f"{what} {name!r}, {size}/{limit} {unit}")
        if problems:
            raise RotatorError("; ".join(problems) + ": use shorter names in the slot secret (or --pg-owner-role)")
        self.add("name lengths", OK, f"all fit {_ENGINE_LABEL[engine]} (longest: {longest[1]})")

    def _named(
        self, current: SlotSecret, pending: SlotSecret | None, engine: str
    ) -> Iterator[tuple[str, str, int, str]]:
        """(what, name, limit, unit) of every name the rotation creates or uses on the server."""
        dbname = current.slot(current.active_slot).dbname
        users = {current.slot(slot).username: f"slot {slot} user" for slot in SLOTS}
        if pending is not None:
            for slot in SLOTS:
                users.setdefault(pending.slot(slot).username, f"pending slot {slot} user")
        if engine == "postgres":
            for name, what in users.items():
                yield what, name, PG_MAX_IDENTIFIER_BYTES, "bytes"
            yield "database", dbname, PG_MAX_IDENTIFIER_BYTES, "bytes"
            owner = self.settings.pg_owner_role or f"{dbname}_owner"
            yield "owner role", owner, PG_MAX_IDENTIFIER_BYTES, "bytes"
        else:
            for name, what in users.items():
                yield what, name, MYSQL_MAX_USER_CHARS, "characters"
            yield "database", dbname, MYSQL_MAX_DATABASE_CHARS, "characters"
            yield "marker role", mysql_engine.marker_role(dbname), MYSQL_MAX_USER_CHARS, "characters"
            yield "user host", self.settings.mysql_user_host, MYSQL_MAX_HOST_CHARS, "characters"

    # ------------------------------------------------------------ the database

    def _database(
        self,
        slot_v: tuple[SecretVersions, SlotSecret, SlotSecret | None, str],
        admin_v: tuple[SecretVersions, AdminSecret, AdminSecret | None],
    ) -> None:
        s = self.settings
        slot_versions, current, pending, engine_name = slot_v
        admin_versions, admin, admin_pending = admin_v
        try:
            engine = self.adapters.engine_for(engine_name)
        except RotatorError as exc:  # a setting the engine refuses (--pg-owner-role): the names row says so too
            self.skip(("database TLS", "admin login", "admin rights", "slot users", "plan"), str(exc))
            return
        sec = Secrets(slot_versions, current, pending, admin_versions, admin, admin_pending)
        opened = self.attempt("database TLS", lambda: self._connect(engine, sec))
        if opened is None:
            self.skip(("admin login", "admin rights", "slot users", "plan"), "no connection to the database")
            return
        session, password, source = opened
        if session is None:
            self.add(
                "admin login",
                FAIL,
                f"the database refused admin {admin.username!r} with the admin secret's AWSCURRENT"
                f"{' and AWSPENDING' if admin_pending else ''} password: put the admin's real password in the "
                f"admin secret ({s.admin_secret})",
            )
            self.skip(("admin rights", "slot users", "plan"), "no admin login")
            return
        try:
            self.add("admin login", OK, f"{admin.username} logs in with the {source} password")
            dbname = current.slot(current.active_slot).dbname
            self.attempt("admin rights", lambda: self._rights(session, dbname))
            world = self.attempt("slot users", lambda: self._slots(engine, session, sec, password))
            if world is None:
                self.skip(("plan",), "the slot users could not be observed")
            elif self.live_error is not None:
                self.skip(("plan",), "the live secret is not usable")
            else:
                self.attempt("plan", lambda: self._plan(world))
        finally:
            try:
                session.close()
            except Exception as exc:  # closing a read-only session: nothing to undo
                log.get_logger("rotator").warning("close_failed", error=type(exc).__name__)

    def _connect(self, engine: Engine, sec: Secrets) -> tuple[AdminSession | None, str | None, str]:
        """The admin session, with the password that opened it and that password's source. A connection that
        fails for any reason but a refused password (no TLS where TLS is asked for, a bad CA bundle, no route)
        fails the TLS row: the configured TLS never falls back to plaintext, so neither does this check."""
        tls = self.settings.tls
        if tls.ca_bundle is not None and not os.path.isfile(tls.ca_bundle):
            raise RotatorError(f"CA bundle {tls.ca_bundle} is not a file: check --db-ca-bundle (ROTATOR_DB_CA_BUNDLE)")
        ep = admin_endpoint(sec.admin, sec.current, tls)
        candidates = [("AWSCURRENT", sec.admin.password)]
        if sec.admin_pending is not None:
            candidates.append(("AWSPENDING", sec.admin_pending.password))
        session: AdminSession | None = None
        used: tuple[str | None, str] = (None, "")
        for source, password in candidates:
            try:
                session = engine.admin_session(ep, sec.admin.username, password)
            except AdminLoginFailed as exc:
                if not exc.auth_failed:
                    raise RotatorError(f"{exc}; {_tls_fix(tls.mode)}") from None
                continue
            used = (password, source)
            break
        if tls.mode == "disable":
            self.add(
                "database TLS",
                OK,
                f"{ep.host}:{ep.port} answers in plaintext (--db-tls disable): use only on a trusted network",
            )
        else:
            verified = {"require": "not verified", "verify-ca": "CA verified", "verify-full": "CA and host verified"}
            self.add("database TLS", OK, f"{ep.host}:{ep.port} answers over TLS ({verified[tls.mode]})")
        return session, used[0], used[1]

    def _rights(self, session: AdminSession, dbname: str) -> None:
        problems = session.admin_problems(dbname=dbname)
        if problems:
            raise RotatorError("; ".join(problems))
        self.add("admin rights", OK, f"can create and alter the slot users of {dbname}")

    def _slots(self, engine: Engine, session: AdminSession, sec: Secrets, password: str | None) -> World:
        s = self.settings
        config = self._config_file(sec.current)
        observed = observe(
            engine=engine,
            session=session,
            sec=sec,
            admin_ok=admin_logins(engine, sec, password, s.tls),
            tls=s.tls,
            config=config,
            deployment=self.adapters.deployer.describe().status if self.adapters.deployer is not None else "n/a",
            health_check=None,  # its own row
            live=self.live,
        )
        world = self.world = observed.world
        parts = []
        for slot in SLOTS:
            st, creds = world.slots[slot], world.secret.slot(slot)
            if not st.exists:
                parts.append(f"{slot} {creds.username}: missing (the first rotate creates it)")
                continue
            logs_in = [src.value for src, ok in st.logins.items() if ok]
            state = f"logs in ({', '.join(logs_in)} password)" if logs_in else "no stored password logs in"
            if st.privileges:
                state += f", holds {', '.join(st.privileges)}"
            if not st.marked:
                state += ", not marked as a slot user"
            parts.append(f"{slot} {creds.username}: {state}")
        self.add("slot users", OK, "; ".join(parts))
        return world

    def _plan(self, world: World) -> None:
        the_plan: Plan = plan(world, self.rotation.options())
        if the_plan.refused:
            raise RotatorError(f"rotate would refuse: {the_plan.refused}")
        if the_plan.blocked:
            raise RotatorError(f"rotate would stop for a human: {the_plan.blocked}")
        kinds = [st.kind for st in the_plan.steps]
        detail = f"rotate would run {len(kinds)} steps" + (
            f", flipping the app to slot {the_plan.flip_to}" if the_plan.flip_to else ""
        )
        detail += " (rotate --dry-run shows them)"
        if the_plan.notes:
            detail += "; " + "; ".join(the_plan.notes)
        self.add("plan", OK, detail)

    # ------------------------------------------------------------ the config file

    def _config_file(self, current: SlotSecret | None) -> ConfigFile | None:
        if current is None:
            return None
        return self.adapters.config_for(choose_engine(self.settings.engine, current))

    def _config(self, slot_v: tuple[SecretVersions, SlotSecret, SlotSecret | None, str] | None) -> None:
        s = self.settings
        if s.template is None or s.config_path is None:
            self.skip(("template", "config path"), "no --template/--config-path: the app reads the secret itself")
            return
        current = slot_v[1] if slot_v is not None else None
        config = self._config_file(current) or ConfigFile(s.template, s.config_path, s.file_mode, s.file_owner)
        template, path = s.template, s.config_path

        def check_template() -> None:
            if not template.is_file():
                raise RotatorError(f"template {template} does not exist: check --template (ROTATOR_TEMPLATE)")
            slots = (current.slot("A"), current.slot("B")) if current is not None else ()
            config.check_template(*slots)
            self.add("template", OK, f"{template.name} renders both slots and reads them back")

        def check_path() -> None:
            if not path.parent.is_dir():
                raise RotatorError(
                    f"directory of --config-path {path} does not exist: create it or fix ROTATOR_CONFIG_PATH"
                )
            config.check_path()
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self.add("config path", OK, f"{path}: absent, its directory is writable (the first rotate renders it)")
                return
            detail = f"{path}: writable, mode {stat.S_IMODE(st.st_mode):04o}"
            if stat.S_IMODE(st.st_mode) != s.file_mode:
                detail += f" (--file-mode is {s.file_mode:04o}: pass --fix-permissions to set it)"
            if template.is_file():
                deployed = config.read_deployed()
                if deployed is not None and deployed.username:
                    slot = current.slot_of_user(deployed.username) if current is not None else None
                    detail += f"; holds user {deployed.username}" + (f" (slot {slot})" if slot else " (no slot's)")
            self.add("config path", OK, detail)

        self.attempt("template", check_template)
        self.attempt("config path", check_path)

    # ------------------------------------------------------------ ECS, health, live secret

    def _ecs(self) -> None:
        s = self.settings
        if self.aws is None:
            raise RotatorError("no AWS clients to describe the ECS service with")
        where = f"ECS service {s.ecs_cluster}/{s.ecs_service}"
        resp = self.aws.edge("ecs", refused=DeployError, failed=DeployError).call(
            "DescribeServices",
            what=where,
            fix="check --ecs-cluster, --ecs-service and the region (AWS_REGION)",
            cluster=s.ecs_cluster,
            services=[s.ecs_service],
        )
        services = resp.get("services", [])
        if not services or services[0].get("status") != "ACTIVE":
            state = services[0].get("status") if services else "not found"
            raise RotatorError(
                f"{where}: {state}: check --ecs-cluster and --ecs-service (ROTATOR_ECS_CLUSTER/_SERVICE)"
            )
        svc = services[0]
        controller = (svc.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS":
            raise RotatorError(
                f"{where} uses the {controller} deployment controller: the rotator forces and follows ECS rolling "
                "deployments only; use --deploy command with your pipeline's command instead"
            )
        breaker = (svc.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable"):
            raise RotatorError(
                f"{where} has the deployment circuit breaker off: a deployment whose tasks never start would only "
                "end at --deploy-timeout; turn it on: aws ecs update-service --cluster "
                f"{s.ecs_cluster} --service {s.ecs_service} --deployment-configuration "
                "'deploymentCircuitBreaker={enable=true,rollback=true}'"
            )
        rollback = "on" if breaker.get("rollback") else "off (the rotator rolls its own flip back)"
        state = self.adapters.deployer.describe() if self.adapters.deployer is not None else None
        detail = f"{where}: ACTIVE, circuit breaker on, its rollback {rollback}"
        if state is not None:
            detail += f"; {state.detail}"
        self.add("ECS service", OK, detail)

    def _health(self) -> None:
        check = self.adapters.http_check
        assert check is not None
        result = check.run()
        if not result.ok:
            raise RotatorError(f"{result.detail}: the app must be healthy on the live slot before a rotation")
        self.add("health URL", OK, result.detail)

    def _live_secret(
        self,
        slot_v: tuple[SecretVersions, SlotSecret, SlotSecret | None, str] | None,
        admin_v: tuple[SecretVersions, AdminSecret, AdminSecret | None] | None,
    ) -> None:
        """The live secret (--live-secret) names the slot the slot secret calls active, with exactly that slot's
        credentials, and they log in."""
        s = self.settings
        if s.live_secret is None:
            self.skip(("live secret",), "no --live-secret")
            return
        if self.live_error is not None:
            self.add("live secret", FAIL, self.live_error)
            return
        if slot_v is None or admin_v is None:
            self.skip(("live secret",), "needs both secrets")
            return
        self.attempt("live secret", lambda: self._live(slot_v[1], admin_v[1], slot_v[3]))

    def _live(self, current: SlotSecret, admin: AdminSecret, engine: str) -> None:
        assert self.live is not None
        live = self.live.current
        slot = slot_of(live, current, admin, engine, what="the live secret")
        pending = (
            "; an AWSPENDING version exists (an interrupted write: the next rotate finishes or discards it)"
            if self.live.pending
            else ""
        )
        active = current.active_slot
        if slot is None:
            self.add("live secret", OK, f"holds no user yet: the first rotate fills it with slot {active}{pending}")
            return
        heal = "`rotator rotate` rewrites it (`rotate --dry-run` shows the step)"
        if live.owned() != live.pointing_at(current.slot(slot), engine).owned():
            raise RotatorError(
                f"the live secret names slot {slot} ({live.username}) but its password, host, port, dbname or engine "
                f"differ from the slot secret's: {heal}"
            )
        if slot != active:
            raise RotatorError(
                f"the live secret names slot {slot} but the slot secret's active slot is {active} (an interrupted "
                f"flip): {heal}"
            )
        world = self.world
        if world is not None and not world.slots[slot].logins.get(Source.LIVE, False):
            raise RotatorError(
                f"the live secret's credentials (slot {slot}, {live.username}) do not log in: {heal} once the slot "
                "secret's password works"
            )
        tried = ", logs in" if world is not None else ""
        self.add("live secret", OK, f"names slot {slot} ({live.username}), the same as the slot secret{tried}{pending}")


_ENGINE_LABEL = {"postgres": "PostgreSQL", "mysql": "MySQL"}


def _tls_fix(mode: str) -> str:
    if mode == "disable":
        return "check the host and port in the secrets and the network path (security groups, VPC routes)"
    return (
        f"with --db-tls {mode} the connection must be encrypted and never falls back to plaintext: enable TLS on the "
        "server (RDS and Aurora have it on), check --db-ca-bundle for verify-*, and the host, port and network path"
    )


def _pending(versions: SecretVersions, parse: Callable[[str], Any]) -> Any:
    if versions.pending is None:
        return None
    try:
        return parse(versions.pending.value)
    except RotatorError as exc:
        raise RotatorError(
            f"{exc}; the AWSPENDING version of {versions.secret_id} is not usable: remove its AWSPENDING label"
        ) from None
