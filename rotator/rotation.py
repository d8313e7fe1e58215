"""The orchestrator: observe() -> World, plan(World) -> steps, apply each step through the adapters.

One run holds an advisory lock on the database server for its whole length. A failed flip (render,
deploy or health) rolls the config back, redeploys and proves the old slot healthy. Every password
change is preceded by a pending write (see rotator.plan), so a crash at any instant loses nothing.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rotator import health, render
from rotator.config import Settings
from rotator.db._common import AdminLoginFailed
from rotator.db.base import AdminSession, Endpoint, Engine, LoginResult
from rotator.deploy.base import Deployer
from rotator.errors import (
    BadInput,
    DatabaseError,
    ExitCode,
    Locked,
    NeedsHuman,
    RolledBack,
    RotatorError,
    SecretFormatError,
)
from rotator.log import get_logger, register_secret, scrub
from rotator.plan import FLIP_KINDS, Kind, Options, Plan, SlotState, Source, Step, World, plan
from rotator.secrets import SLOTS, AdminSecret, Credentials, Slot, SlotSecret, normalize_engine, other
from rotator.store.base import SecretStore, SecretVersions

KILL_AFTER_STEP_ENV = "ROTATOR_TEST_KILL_AFTER_STEP"  # crash-safety tests: SIGKILL right after step N (1-based)

log = get_logger("rotator")


@dataclass
class StepRecord:
    step: str
    slot: str | None
    reason: str
    outcome: str = "pending"
    duration_ms: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "slot": self.slot,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 1),
            "reason": self.reason,
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Report:
    dry_run: bool
    slots_before: dict[str, Any] = field(default_factory=dict)
    slots_after: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocked: str | None = None
    outcome: str = "ok"
    exit_code: int = 0
    error: str | None = None
    aws_api_calls: int = 0
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "rotation_report",
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "slots_before": self.slots_before,
            "slots_after": self.slots_after,
            "observed": self.observed,
            "steps": [s.as_dict() for s in self.steps],
            "notes": self.notes,
            "blocked": self.blocked,
            "error": self.error,
            "aws_api_calls": self.aws_api_calls,
            "duration_ms": round(self.duration_ms, 1),
        }


@dataclass(frozen=True)
class Secrets:
    slot_versions: SecretVersions
    current: SlotSecret
    pending: SlotSecret | None
    admin_versions: SecretVersions
    admin: AdminSecret
    admin_pending: AdminSecret | None


@dataclass(frozen=True)
class AdminLogin:
    current_ok: bool
    pending_ok: bool
    password: str | None = field(default=None, repr=False)  # the one that logs in, if any


@dataclass
class Observation:
    """What observe() saw, plus the version ids apply needs."""

    world: World
    secrets: Secrets


class Rotation:
    def __init__(
        self,
        settings: Settings,
        store: SecretStore,
        engine_factory: Callable[[str], Engine],
        deployer: Deployer | None,
        *,
        api_calls: Callable[[], int],
        http_check: health.HttpCheck | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine_factory = engine_factory
        self._engine: Engine | None = None
        self.config: render.ConfigFile | None = None
        self.deployer = deployer
        self.api_calls = api_calls
        self.http_check = http_check
        self.report = Report(dry_run=settings.dry_run)

    # ------------------------------------------------------------------ observe (reads only)

    def read_secrets(self) -> Secrets:
        s = self.settings
        slot_v = self.store.read(s.slot_secret)
        admin_v = self.store.read(s.admin_secret)
        current = SlotSecret.parse(slot_v.current.value, "slot secret (AWSCURRENT)")
        pending = _parse_pending(slot_v, lambda t: SlotSecret.parse(t, "slot secret (AWSPENDING)"))
        admin = AdminSecret.parse(admin_v.current.value, "admin secret (AWSCURRENT)")
        admin_pending = _parse_pending(admin_v, lambda t: AdminSecret.parse(t, "admin secret (AWSPENDING)"))
        for secret in (current, pending):
            if secret is not None:
                register_secret(*secret.passwords())
        register_secret(admin.password, admin_pending.password if admin_pending else None)
        engine = normalize_engine(s.engine, "--engine") if s.engine else current.engine
        if engine is None:
            raise BadInput('no database engine: pass --engine mysql|postgres or add "engine" to the slot secret')
        if current.engine is not None and current.engine != engine:
            raise BadInput(f"the slot secret says engine {current.engine} but --engine is {engine}: make them agree")
        self._engine = self.engine_factory(engine)
        if s.template is not None and s.config_path is not None:
            self.config = render.ConfigFile(
                s.template,
                s.config_path,
                s.file_mode,
                s.file_owner,
                extra={"db_scheme": "mysql" if engine == "mysql" else "postgresql"},
            )
        return Secrets(slot_v, current, pending, admin_v, admin, admin_pending)

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "read_secrets() chooses the engine"
        return self._engine

    def endpoint(self, creds: Credentials) -> Endpoint:
        return Endpoint(host=creds.host, port=creds.port, dbname=creds.dbname, tls=self.settings.tls)

    def admin_endpoint(self, admin: AdminSecret, secret: SlotSecret) -> Endpoint:
        active = secret.slot(secret.active_slot)
        host, port = admin.endpoint(active)
        return Endpoint(host=host, port=port, dbname=active.dbname, tls=self.settings.tls)

    def login(self, endpoint: Endpoint, username: str, password: str) -> LoginResult:
        """A login check that tells a refused password from an outage (which would make observations wrong)."""
        result = self.engine.check_login(endpoint, username, password)
        if not result.ok and not result.auth_failed:
            raise RotatorError(
                f"cannot reach the database at {endpoint.host}:{endpoint.port} as {username}: {result.reason}; "
                "check the network path, --db-tls and the host in the secret, then re-run"
            )
        return result

    def admin_connect(self, sec: Secrets) -> tuple[AdminLogin, AdminSession | None]:
        """Open the admin session with the current password, else the pending one. The session itself is the
        login check (one SCRAM handshake fewer than checking first)."""
        ep = self.admin_endpoint(sec.admin, sec.current)
        candidates = [(sec.admin.password, AdminLogin(True, False, sec.admin.password))]
        if sec.admin_pending is not None:
            candidates.append((sec.admin_pending.password, AdminLogin(False, True, sec.admin_pending.password)))
        for password, login in candidates:
            try:
                return login, self.engine.admin_session(ep, sec.admin.username, password)
            except AdminLoginFailed as exc:
                if not exc.auth_failed:
                    raise RotatorError(
                        f"cannot reach the database at {ep.host}:{ep.port} as the admin: {exc}; check the network "
                        "path, --db-tls and the host in the secrets, then re-run"
                    ) from None
        return AdminLogin(False, False), None

    def observe(self, sec: Secrets, admin: AdminLogin, session: AdminSession | None) -> Observation:
        s, p = sec.current, sec.pending
        deployed = self.read_deployed()
        config_slot: Slot | None = None
        if deployed is not None and deployed.username:
            config_slot = s.slot_of_user(deployed.username)
            register_secret(deployed.password)
        slots: dict[Slot, SlotState] = {}
        for slot in SLOTS:
            creds = s.slot(slot)
            exists = session is not None and session.user_exists(creds.username)
            logins: dict[Source, bool] = {}
            tried: dict[str, bool] = {}
            candidates = [
                (Source.CURRENT, creds.password),
                (Source.PENDING, p.slot(slot).password if p else None),
                (Source.CONFIG, deployed.password if deployed and config_slot == slot else None),
            ]
            for source, password in candidates:
                if not exists or not password:
                    continue
                if password not in tried:
                    tried[password] = self.login(self.endpoint(creds), creds.username, password).ok
                logins[source] = tried[password]
            slots[slot] = SlotState(exists=exists, logins=logins)
        world = World(
            secret=s,
            pending=p,
            admin=sec.admin,
            admin_pending=sec.admin_pending,
            admin_current_ok=admin.current_ok,
            admin_pending_ok=admin.pending_ok,
            slots=slots,
            config_slot=config_slot,
            config_present=deployed is not None,
            config_password=deployed.password if deployed else None,
            deployment=self.deployer.describe().status if self.deployer is not None else "n/a",
        )
        return Observation(world, sec)

    def read_deployed(self) -> render.DeployedConfig | None:
        return self.config.read_deployed() if self.config is not None else None

    def options(self) -> Options:
        s = self.settings
        return Options(
            renders_config=s.renders_config,
            sync_db_users=s.sync_db_users,
            skip_admin=s.skip_admin,
            fix_permissions=s.fix_permissions,
        )

    def lock_name(self, secret: SlotSecret) -> str:
        if self.settings.lock_name:
            return self.settings.lock_name
        active = secret.slot(secret.active_slot)
        return f"rotator:{active.host}:{active.port}:{active.dbname}"

    # ------------------------------------------------------------------ run

    def run(self) -> Report:
        started = time.monotonic()
        report = self.report
        try:
            self._run()
        except RotatorError as exc:
            report.outcome = type(exc).__name__
            report.exit_code = int(exc.exit_code)
            report.error = scrub(str(exc))
        except Exception as exc:  # never a raw traceback (which could carry a value) out of a run
            log.exception("unexpected_error")
            report.outcome = "UnexpectedError"
            report.exit_code = int(ExitCode.FAILED)
            report.error = f"{type(exc).__name__}: {scrub(str(exc))}; a re-run heals what this run left"
        finally:
            report.aws_api_calls = self.api_calls()
            report.duration_ms = (time.monotonic() - started) * 1000
        return report

    def _run(self) -> None:
        sec = self.read_secrets()
        admin, session = self.admin_connect(sec)
        lock: str | None = None
        try:
            if session is not None:
                name = self.lock_name(sec.current)
                if not session.try_lock(name):
                    raise Locked(
                        "another rotation of this database holds the lock: nothing was changed; "
                        "wait for it to finish (its log says how it went), then re-run"
                    )
                lock = name
            obs = self.observe(sec, admin, session)
            the_plan = plan(obs.world, self.options())
            self._describe(obs, the_plan)
            if the_plan.blocked:
                raise NeedsHuman(the_plan.blocked)
            if self.settings.dry_run:
                for st in the_plan.steps:
                    self.report.steps.append(StepRecord(st.kind.value, st.slot, st.reason, outcome="planned"))
                    log.info("plan", step=st.kind.value, slot=st.slot, reason=st.reason)
                self.report.slots_after = dict(self.report.slots_before)
                return
            assert session is not None
            Applier(self, obs, the_plan, session).apply_all()
        finally:
            if session is not None:
                try:
                    if lock is not None:
                        session.unlock(lock)
                finally:
                    session.close()

    def _describe(self, obs: Observation, the_plan: Plan) -> None:
        w = obs.world
        self.report.slots_before = {"active": w.secret.active_slot, "config": w.config_slot}
        self.report.notes = list(the_plan.notes)
        self.report.blocked = the_plan.blocked
        self.report.observed = {
            "engine": self.engine.name,
            "active_slot": w.secret.active_slot,
            "config_slot": w.config_slot,
            "config_present": w.config_present,
            "pending_slot_version": w.pending is not None,
            "pending_admin_version": w.admin_pending is not None,
            "admin_login": "current" if w.admin_current_ok else "pending" if w.admin_pending_ok else "none",
            "slots": {
                slot: {"exists": st.exists, **{f"{src.value}_password_logs_in": ok for src, ok in st.logins.items()}}
                for slot, st in w.slots.items()
            },
            "deployment": w.deployment,
        }
        log.info("observed", **self.report.observed)
        for note in the_plan.notes:
            log.warning("note", note=note)


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


class Applier:
    """Runs a plan's steps in order, tracking the secret values as they change."""

    def __init__(self, rotation: Rotation, obs: Observation, the_plan: Plan, session: AdminSession) -> None:
        self.r = rotation
        self.s = rotation.settings
        self.obs = obs
        self.plan = the_plan
        self.session = session
        w = obs.world
        self.secret: SlotSecret = w.secret
        self.pending: SlotSecret | None = w.pending
        sv, av = obs.secrets.slot_versions, obs.secrets.admin_versions
        self.pending_version: str | None = sv.pending.version_id if sv.pending else None
        self.admin: AdminSecret = w.admin
        self.admin_pending: AdminSecret | None = w.admin_pending
        self.admin_pending_version: str | None = av.pending.version_id if av.pending else None
        self.snapshot: bytes | None = None
        self.rendered = False
        self.config_slot = w.config_slot

    # -------------------------------------------------------------- helpers

    def password(self, slot: Slot, source: Source) -> str:
        if source is Source.PENDING:
            assert self.pending is not None, "planner bug: pending password used before a pending write"
            return self.pending.slot(slot).password
        if source is Source.CURRENT:
            return self.secret.slot(slot).password
        pw = self.obs.world.password(slot, source)
        assert pw is not None
        return pw

    def creds(self, slot: Slot, source: Source | None = None) -> Credentials:
        base = self.pending if source is Source.PENDING and self.pending is not None else self.secret
        return base.slot(slot)

    def admin_endpoint(self) -> Endpoint:
        return self.r.admin_endpoint(self.admin, self.secret)

    # -------------------------------------------------------------- the loop

    def apply_all(self) -> None:
        report = self.r.report
        records = [StepRecord(s.kind.value, s.slot, s.reason) for s in self.plan.steps]
        report.steps = records
        kill_after = os.environ.get(KILL_AFTER_STEP_ENV)
        for index, (step, record) in enumerate(zip(self.plan.steps, records, strict=True), start=1):
            t0 = time.monotonic()
            try:
                try:
                    self.apply(step)
                except RotatorError:
                    raise
                except Exception as unexpected:  # a bug or an unmapped library error: still roll back
                    raise RotatorError(f"{type(unexpected).__name__}: {scrub(str(unexpected))}") from None
            except RotatorError as exc:
                record.outcome, record.error = "failed", str(exc)
                record.duration_ms = (time.monotonic() - t0) * 1000
                log.error(
                    "step",
                    step=step.kind.value,
                    slot=step.slot,
                    outcome="failed",
                    error=str(exc),
                    duration_ms=round(record.duration_ms, 1),
                )
                if step.kind in FLIP_KINDS:
                    self.rollback(step, exc)
                raise
            record.outcome = "ok"
            record.duration_ms = (time.monotonic() - t0) * 1000
            log.info(
                "step",
                step=step.kind.value,
                slot=step.slot,
                outcome="ok",
                duration_ms=round(record.duration_ms, 1),
                reason=step.reason,
            )
            if kill_after == str(index):
                os.kill(os.getpid(), signal.SIGKILL)
        report.slots_after = {"active": self.secret.active_slot, "config": self.config_slot}

    def apply(self, step: Step) -> None:
        handler = getattr(self, f"_{step.kind.value}")
        handler(step)

    # -------------------------------------------------------------- admin

    def _discard_admin_pending(self, step: Step) -> None:
        self.r.store.discard_pending(self.s.admin_secret)
        self.admin_pending, self.admin_pending_version = None, None

    def _promote_admin_pending(self, step: Step) -> None:
        assert self.admin_pending is not None and self.admin_pending_version is not None
        self.r.store.promote(self.s.admin_secret, self.admin_pending_version)
        self.admin, self.admin_pending, self.admin_pending_version = self.admin_pending, None, None

    def _write_admin_pending(self, step: Step) -> None:
        new = self.admin.with_password(self.s.password_policy.generate())
        register_secret(new.password)
        self.admin_pending_version = self.r.store.put_pending(self.s.admin_secret, new.to_json(), str(uuid.uuid4()))
        self.admin_pending = new

    def _set_admin_password(self, step: Step) -> None:
        assert self.admin_pending is not None
        self.session.set_password(self.admin.username, self.admin_pending.password)

    def _verify_admin(self, step: Step) -> None:
        assert self.admin_pending is not None
        result = self.r.login(self.admin_endpoint(), self.admin.username, self.admin_pending.password)
        if not result.ok:
            raise DatabaseError(
                f"the new admin password does not log in ({result.reason}); a re-run promotes or "
                "discards the pending admin version"
            )

    # -------------------------------------------------------------- slots

    def _discard_slot_pending(self, step: Step) -> None:
        self.r.store.discard_pending(self.s.slot_secret)
        self.pending, self.pending_version = None, None

    def _write_slot_pending(self, step: Step) -> None:
        new = self.secret
        for slot, source in step.adopt:
            pw = self.obs.world.password(slot, source)
            assert pw is not None
            new = new.with_password(slot, pw)
        for slot in step.fresh:
            new = new.with_password(slot, self.s.password_policy.generate())
        if step.active is not None:
            new = new.with_active(step.active)
        register_secret(*new.passwords())
        self.pending_version = self.r.store.put_pending(self.s.slot_secret, new.to_json(), str(uuid.uuid4()))
        self.pending = new

    def publish_active(self, slot: Slot) -> None:
        """Loader apps follow active_slot: rolling them back means publishing the old slot again."""
        self._write_slot_pending(Step(Kind.WRITE_SLOT_PENDING, "roll back", active=slot))
        self._promote_slot_pending(Step(Kind.PROMOTE_SLOT_PENDING, "roll back"))

    def _promote_slot_pending(self, step: Step) -> None:
        assert self.pending is not None and self.pending_version is not None
        self.r.store.promote(self.s.slot_secret, self.pending_version)
        self.secret, self.pending, self.pending_version = self.pending, None, None

    def _create_user(self, step: Step) -> None:
        assert step.slot is not None and step.source is not None
        creds = self.creds(step.slot, step.source)
        peer = self.secret.slot(other(step.slot)).username
        grants_from = peer if self.session.user_exists(peer) else None
        self.session.create_user(
            creds.username, self.password(step.slot, step.source), dbname=creds.dbname, grants_from=grants_from
        )

    def _set_password(self, step: Step) -> None:
        assert step.slot is not None and step.source is not None
        self.session.set_password(self.creds(step.slot).username, self.password(step.slot, step.source))

    def _verify_login(self, step: Step) -> None:
        assert step.slot is not None and step.source is not None
        creds = self.creds(step.slot, step.source)
        result = self.r.login(self.r.endpoint(creds), creds.username, self.password(step.slot, step.source))
        if not result.ok:
            raise DatabaseError(f"slot {step.slot}'s password does not log in after it was set ({result.reason})")

    # -------------------------------------------------------------- config, deploy, health

    def _fix_permissions(self, step: Step) -> None:
        assert self.r.config is not None
        self.r.config.fix_permissions()

    def _render_config(self, step: Step) -> None:
        assert step.slot is not None
        self.write_config(step.slot, take_snapshot=True)

    def write_config(self, slot: Slot, *, take_snapshot: bool) -> None:
        config = self.r.config
        assert config is not None
        if take_snapshot:
            self.snapshot = config.snapshot()
            self.rendered = True
        config.write(self.secret.slot(slot), slot)
        self.config_slot = slot

    def _deploy(self, step: Step) -> None:
        if self.r.deployer is not None:
            self.r.deployer.deploy(step.reason, slot=step.slot)

    def _health_check(self, step: Step) -> None:
        assert step.slot is not None
        self.check_health(step.slot)

    def check_health(self, slot: Slot) -> None:
        creds = self.secret.slot(slot)
        checks: list[Any] = [
            health.DbLoginCheck(
                lambda: self.r.engine.check_login(self.r.endpoint(creds), creds.username, creds.password),
                name=f"db login as slot {slot}",
            )
        ]
        if self.r.http_check is not None:
            checks.append(self.r.http_check)
        # A deployer that could report its state when we observed (ECS; not a shell command) must report it
        # stable now: no circuit-breaker rollback under way.
        if self.r.deployer is not None and self.obs.world.deployment != "unknown":
            checks.append(health.DeploymentCheck(self.r.deployer.describe))
        health.run_checks(checks)

    def rollback(self, failed: Step, exc: RotatorError) -> None:
        back = self.plan.rollback_to
        assert back is not None
        log.warning("rollback", failed_step=failed.kind.value, to_slot=back, error=str(exc))
        try:
            if self.r.config is not None:
                if self.rendered:
                    self.r.config.restore(self.snapshot)
                    self.config_slot = self.obs.world.config_slot
                else:
                    self.write_config(back, take_snapshot=False)
            elif self.secret.active_slot != back:
                self.publish_active(back)
            if self.r.deployer is not None:
                self.r.deployer.deploy(f"roll back to slot {back}", slot=back)
            self.check_health(back)
        except RotatorError as second:
            raise NeedsHuman(
                f"the flip failed ({exc}) and so did the rollback to slot {back} ({second}): the app may be down; "
                f"check the deployment and the config, then re-run"
            ) from None
        self.r.report.slots_after = {"active": self.secret.active_slot, "config": self.config_slot}
        raise RolledBack(
            f"the flip failed at {failed.kind.value} ({exc}); rolled back: the config is on slot {back} again "
            "and the app is healthy on it"
        ) from None
