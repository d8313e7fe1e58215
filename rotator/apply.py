"""apply(): one registered handler per step kind, run over a small bundle of ports.

A handler gets the step, the :class:`Ports` (store, admin session, engine, config file, deployer, checks; built
by rotator.wiring and the orchestrator) and the run's :class:`State` (the secret values as they change). It
knows nothing of the orchestrator. :class:`Applier` runs a plan's steps in order, and when a flip step fails
(or a stop signal arrives mid-flip) runs the plan's own rollback steps for it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from rotator import age, drain, health
from rotator.db.base import AdminSession, Engine, LoginResult, TlsConfig
from rotator.deploy.base import Deployer
from rotator.errors import DatabaseError, HealthCheckError, NeedsHuman, RolledBack, RotatorError, StillInUse
from rotator.live import LiveSecret, read_live
from rotator.log import get_logger, register_secret, scrub
from rotator.observe import admin_endpoint, endpoint, login
from rotator.passwords import PasswordPolicy
from rotator.plan import Plan, World
from rotator.render import ConfigFile
from rotator.report import Report, StepRecord
from rotator.secrets import AdminSecret, Credentials, Slot, SlotSecret, other
from rotator.signals import Interrupted, StopSignal
from rotator.steps import (
    CreateUser,
    Deploy,
    DiscardAdminPending,
    DiscardLivePending,
    DiscardSlotPending,
    DrainSlot,
    FixPermissions,
    HealthCheck,
    MarkUser,
    PromoteAdminPending,
    PromoteLivePending,
    PromoteSlotPending,
    RenderConfig,
    RestoreConfig,
    SetAdminPassword,
    SetPassword,
    Source,
    Step,
    SyncGrants,
    VerifyAdmin,
    VerifyLogin,
    WriteAdminPending,
    WriteLivePending,
    WriteSlotPending,
)
from rotator.store.base import SecretStore

log = get_logger("rotator")

AfterStep = Callable[[int, Step], None]  # (1-based index, step): called after each step that succeeded


@dataclass(frozen=True)
class Ports:
    store: SecretStore
    slot_secret: str
    admin_secret: str
    session: AdminSession
    engine: Engine
    tls: TlsConfig
    policy: PasswordPolicy
    config: ConfigFile | None
    deployer: Deployer | None
    http_check: health.HttpCheck | None
    world: World  # what observe() saw (the config's password, the deployment's observed state)
    live_secret: str | None = None  # --live-secret
    clock: Callable[[], datetime] = age.utc_now  # stamps each generated password's rotated_at


@dataclass
class State:
    """The values a run changes, as they change."""

    secret: SlotSecret
    pending: SlotSecret | None
    pending_version: str | None
    admin: AdminSecret
    admin_pending: AdminSecret | None
    admin_pending_version: str | None
    config_slot: Slot | None
    snapshot: bytes | None = field(default=None, repr=False)
    snapshotted: bool = False
    live: LiveSecret | None = field(default=None, repr=False)  # the live secret's AWSCURRENT, as it changes
    live_slot: Slot | None = None
    live_pending: LiveSecret | None = field(default=None, repr=False)
    live_pending_version: str | None = None
    findings: list[str] = field(default_factory=list)  # what steps learned that the report should say

    def password(self, world: World, slot: Slot, source: Source) -> str:
        if source is Source.PENDING:
            if self.pending is None:
                raise RotatorError("planner bug: a pending password used before a pending write")
            return self.pending.slot(slot).password
        if source is Source.CURRENT:
            return self.secret.slot(slot).password
        pw = world.password(slot, source)
        if pw is None:
            raise RotatorError(f"planner bug: no {source.value} password for slot {slot}")
        return pw

    def creds(self, slot: Slot, source: Source) -> Credentials:
        base = self.pending if source is Source.PENDING and self.pending is not None else self.secret
        return base.slot(slot)


Handler = Callable[[Any, Ports, State], None]
HANDLERS: dict[type[Step], Handler] = {}
S = TypeVar("S", bound=Step)


def handles(kind: type[S]) -> Callable[[Callable[[S, Ports, State], None]], Callable[[S, Ports, State], None]]:
    def register(fn: Callable[[S, Ports, State], None]) -> Callable[[S, Ports, State], None]:
        HANDLERS[kind] = fn
        return fn

    return register


# ---------------------------------------------------------------- admin


@handles(DiscardAdminPending)
def _discard_admin_pending(step: DiscardAdminPending, p: Ports, s: State) -> None:
    p.store.discard_pending(p.admin_secret)
    s.admin_pending, s.admin_pending_version = None, None


@handles(PromoteAdminPending)
def _promote_admin_pending(step: PromoteAdminPending, p: Ports, s: State) -> None:
    if s.admin_pending is None or s.admin_pending_version is None:
        raise RotatorError("planner bug: no pending admin version to promote")
    p.store.promote(p.admin_secret, s.admin_pending_version)
    s.admin, s.admin_pending, s.admin_pending_version = s.admin_pending, None, None


@handles(WriteAdminPending)
def _write_admin_pending(step: WriteAdminPending, p: Ports, s: State) -> None:
    new = s.admin.with_password(p.policy.generate(), p.clock())
    register_secret(new.password)
    s.admin_pending_version = p.store.put_pending(p.admin_secret, new.to_json(), str(uuid.uuid4()))
    s.admin_pending = new


def _admin_pending(s: State) -> AdminSecret:
    if s.admin_pending is None:
        raise RotatorError("planner bug: no pending admin password")
    return s.admin_pending


@handles(SetAdminPassword)
def _set_admin_password(step: SetAdminPassword, p: Ports, s: State) -> None:
    p.session.set_password(s.admin.username, _admin_pending(s).password)


@handles(VerifyAdmin)
def _verify_admin(step: VerifyAdmin, p: Ports, s: State) -> None:
    result = login(p.engine, admin_endpoint(s.admin, s.secret, p.tls), s.admin.username, _admin_pending(s).password)
    if not result.ok:
        raise DatabaseError(
            f"the new admin password does not log in ({result.reason}); a re-run promotes or "
            "discards the pending admin version"
        )


# ---------------------------------------------------------------- slot secret versions


@handles(DiscardSlotPending)
def _discard_slot_pending(step: DiscardSlotPending, p: Ports, s: State) -> None:
    p.store.discard_pending(p.slot_secret)
    s.pending, s.pending_version = None, None


@handles(WriteSlotPending)
def _write_slot_pending(step: WriteSlotPending, p: Ports, s: State) -> None:
    new = s.secret
    for slot, source in step.adopt:
        new = new.with_password(slot, s.password(p.world, slot, source), _adopted_at(p.world, slot, source))
    now = p.clock()
    for slot in step.fresh:
        new = new.with_password(slot, p.policy.generate(), now)
    if step.active is not None:
        new = new.with_active(step.active)
    register_secret(*new.passwords())
    s.pending_version = p.store.put_pending(p.slot_secret, new.to_json(), str(uuid.uuid4()))
    s.pending = new


def _adopted_at(world: World, slot: Slot, source: Source) -> datetime | None:
    """An adopted password keeps the time its version recorded; one found only in the config has none."""
    if source is Source.PENDING and world.pending is not None:
        return world.pending.slot(slot).rotated_at
    if source is Source.CURRENT:
        return world.secret.slot(slot).rotated_at
    return None


@handles(PromoteSlotPending)
def _promote_slot_pending(step: PromoteSlotPending, p: Ports, s: State) -> None:
    if s.pending is None or s.pending_version is None:
        raise RotatorError("planner bug: no pending slot version to promote")
    p.store.promote(p.slot_secret, s.pending_version)
    s.secret, s.pending, s.pending_version = s.pending, None, None


# ---------------------------------------------------------------- database users


@handles(CreateUser)
def _create_user(step: CreateUser, p: Ports, s: State) -> None:
    creds = s.creds(step.on, step.source)
    peer = s.secret.slot(other(step.on)).username
    grants_from = peer if p.session.user_exists(peer) else None
    p.session.create_user(
        creds.username, s.password(p.world, step.on, step.source), dbname=creds.dbname, grants_from=grants_from
    )


@handles(SetPassword)
def _set_password(step: SetPassword, p: Ports, s: State) -> None:
    p.session.set_password(s.secret.slot(step.on).username, s.password(p.world, step.on, step.source))


@handles(VerifyLogin)
def _verify_login(step: VerifyLogin, p: Ports, s: State) -> None:
    creds = s.creds(step.on, step.source)
    result = login(p.engine, endpoint(creds, p.tls), creds.username, s.password(p.world, step.on, step.source))
    if not result.ok:
        raise DatabaseError(f"slot {step.on}'s password does not log in after it was set ({result.reason})")


@handles(MarkUser)
def _mark_user(step: MarkUser, p: Ports, s: State) -> None:
    creds = s.secret.slot(step.on)
    p.session.mark_user(creds.username, dbname=creds.dbname)


@handles(SyncGrants)
def _sync_grants(step: SyncGrants, p: Ports, s: State) -> None:
    """Re-read both users' rights now (not the observed list), grant what the standby lacks, then prove it."""
    source, target = s.secret.slot(other(step.on)).username, s.secret.slot(step.on).username
    p.session.execute(p.session.grant_statements(source, target))
    still = p.session.missing_grants(source, target)
    if still:
        raise DatabaseError(
            f"slot {step.on}'s user {target!r} still lacks {', '.join(still)} after granting it (the admin may not "
            f"hold the right to grant it): grant it to {target!r} by hand as the object's owner, then re-run"
        )


# ---------------------------------------------------------------- config, deployment, health


def _config(p: Ports) -> ConfigFile:
    if p.config is None:
        raise RotatorError("planner bug: a config step without a config file")
    return p.config


@handles(FixPermissions)
def _fix_permissions(step: FixPermissions, p: Ports, s: State) -> None:
    _config(p).fix_permissions()


@handles(RenderConfig)
def _render_config(step: RenderConfig, p: Ports, s: State) -> None:
    config = _config(p)
    if not s.snapshotted:
        s.snapshot, s.snapshotted = config.snapshot(), True
    config.write(s.secret.slot(step.on), step.on)
    s.config_slot = step.on


@handles(RestoreConfig)
def _restore_config(step: RestoreConfig, p: Ports, s: State) -> None:
    if s.snapshotted:
        _config(p).restore(s.snapshot)
        s.config_slot = p.world.config_slot


@handles(Deploy)
def _deploy(step: Deploy, p: Ports, s: State) -> None:
    if p.deployer is not None:
        p.deployer.deploy(step.reason, slot=step.on)


@handles(HealthCheck)
def _health_check(step: HealthCheck, p: Ports, s: State) -> None:
    creds = s.secret.slot(step.on)
    username, password = creds.username, creds.password
    if p.config is not None:
        # What the app really holds: the credentials read back from the deployed file.
        deployed = p.config.read_deployed()
        if deployed is None or not deployed.raw_ok or deployed.username != creds.username:
            why = "missing" if deployed is None else deployed.reason if not deployed.raw_ok else "names another user"
            raise HealthCheckError(f"the deployed config does not hold slot {step.on}'s credentials ({why})")
        register_secret(deployed.password)
        username, password = creds.username, deployed.password or ""
    checks: list[health.Check] = [
        health.DbLoginCheck(
            lambda: p.engine.check_login(endpoint(creds, p.tls), username, password),
            name=f"db login as slot {step.on}, with the credentials the app holds",
        )
    ]
    if p.live_secret is not None:
        checks.append(
            health.DbLoginCheck(lambda: _live_login(p, creds), name=f"the live secret logs in as slot {step.on}")
        )
    if p.http_check is not None:
        checks.append(p.http_check)
    # A deployer that could report its state when we observed (ECS; not a shell command) must report it
    # stable now: no circuit-breaker rollback under way.
    if p.deployer is not None and p.world.deployment != "unknown":
        checks.append(health.DeploymentCheck(p.deployer.describe))
    health.run_checks(checks)


# ---------------------------------------------------------------- the live secret


def _live_id(p: Ports) -> str:
    if p.live_secret is None:
        raise RotatorError("planner bug: a live secret step without --live-secret")
    return p.live_secret


@handles(DiscardLivePending)
def _discard_live_pending(step: DiscardLivePending, p: Ports, s: State) -> None:
    p.store.discard_pending(_live_id(p))
    s.live_pending, s.live_pending_version = None, None


@handles(WriteLivePending)
def _write_live_pending(step: WriteLivePending, p: Ports, s: State) -> None:
    new = (s.live or LiveSecret()).pointing_at(s.secret.slot(step.on), p.engine.name)
    register_secret(new.password)
    s.live_pending_version = p.store.put_pending(_live_id(p), new.to_json(), str(uuid.uuid4()))
    s.live_pending = new


@handles(PromoteLivePending)
def _promote_live_pending(step: PromoteLivePending, p: Ports, s: State) -> None:
    new, version = s.live_pending, s.live_pending_version
    if new is None or version is None:
        raise RotatorError("planner bug: no pending live secret version to promote")
    # Never point the app at credentials that do not log in: prove the exact values written first.
    result = login(p.engine, endpoint(s.secret.slot(step.on), p.tls), new.username, new.password)
    if not result.ok:
        raise DatabaseError(
            f"the live secret's pending credentials for slot {step.on} do not log in ({result.reason}): not promoted"
        )
    p.store.promote(_live_id(p), version)
    s.live, s.live_slot, s.live_pending, s.live_pending_version = new, step.on, None, None


def _live_login(p: Ports, creds: Credentials) -> LoginResult:
    """The live secret as the app reads it (AWSCURRENT, read back from the store) logs in as ``creds``'s user."""
    back = read_live(p.store, _live_id(p)).current
    if back.username != creds.username:
        return LoginResult(False, "the live secret names another user")
    register_secret(back.password)
    return p.engine.check_login(endpoint(creds, p.tls), back.username, back.password)


@handles(DrainSlot)
def _drain_slot(step: DrainSlot, p: Ports, s: State) -> None:
    user = s.secret.slot(step.on).username
    result = drain.wait_for_drain(lambda: p.session.sessions_of(user), step.timeout, quiet=step.quiet)
    if result.hidden:
        s.findings.append(
            f"the admin may not see when slot {step.on}'s sessions are active (PostgreSQL: grant it "
            "pg_read_all_stats, as RDS's master has): the drain watched only for new sessions"
        )
    if not result.drained:
        log.warning("drain_timeout", slot=step.on, seconds=round(result.seconds, 1), in_use=result.who())
        raise StillInUse(
            f"slot {step.on}'s user {user!r} is still used to open sessions after {step.timeout:g} s "
            f"(by {result.who()}): its password was NOT changed, so they keep working; move them to the "
            f"active slot (or raise --drain-timeout), then re-run"
        )
    if result.in_use:
        s.findings.append(
            f"slot {step.on} was still in use after the flip by {result.who()}; it drained in "
            f"{result.seconds:.0f} s, before its password changed"
        )
        log.warning("drain_late_clients", slot=step.on, seconds=round(result.seconds, 1), in_use=result.who())


# ---------------------------------------------------------------- the loop


def run_step(step: Step, p: Ports, s: State) -> None:
    handler = HANDLERS.get(type(step))
    if handler is None:
        raise RotatorError(f"no handler for step {step.kind}")
    try:
        handler(step, p, s)
    except RotatorError:
        raise
    except Exception as unexpected:  # a bug or an unmapped library error: still a clean, scrubbed failure
        raise RotatorError(f"{type(unexpected).__name__}: {scrub(str(unexpected))}") from None


_INTERRUPTIBLE = (Deploy, HealthCheck, DrainSlot)  # long waits a stop signal may cut short


class Applier:
    """Runs a plan's steps in order; a failed flip step runs the plan's rollback for it."""

    def __init__(
        self,
        ports: Ports,
        state: State,
        the_plan: Plan,
        report: Report,
        *,
        stop: StopSignal | None = None,
        after_step: AfterStep | None = None,
    ) -> None:
        self.ports = ports
        self.state = state
        self.plan = the_plan
        self.report = report
        self.stop = stop if stop is not None else StopSignal()
        self.after_step = after_step

    def apply_all(self) -> None:
        records = [StepRecord.of(step) for step in self.plan.steps]
        self.report.steps = records
        for index, (step, record) in enumerate(zip(self.plan.steps, records, strict=True)):
            if self.stop.requested:
                self._stopped(index)
            try:
                self._timed(step, record, interruptible=isinstance(step, _INTERRUPTIBLE))
            except RotatorError as exc:
                if index in self.plan.rollbacks:
                    self.rollback(index, step, exc)
                raise
            if self.after_step is not None:
                self.after_step(index + 1, step)
        self.report.slots_after = self._slots()

    def _slots(self) -> dict[str, Any]:
        slots: dict[str, Any] = {"active": self.state.secret.active_slot, "config": self.state.config_slot}
        if self.ports.live_secret is not None:
            slots["live"] = self.state.live_slot
        return slots

    def _timed(self, step: Step, record: StepRecord, *, interruptible: bool) -> None:
        t0 = time.monotonic()
        try:
            if interruptible:
                with self.stop.interruptible():
                    run_step(step, self.ports, self.state)
            else:
                run_step(step, self.ports, self.state)
        except RotatorError as exc:
            self._findings()
            record.finish("failed", t0, str(exc))
            log.error("step", **step.describe(), outcome="failed", error=str(exc), duration_ms=record.duration_ms)
            raise
        self._findings()
        record.finish("ok", t0)
        log.info("step", **step.describe(), outcome="ok", duration_ms=record.duration_ms)

    def _findings(self) -> None:
        self.report.notes.extend(self.state.findings)
        self.state.findings.clear()

    def _stopped(self, index: int) -> None:
        """A stop signal arrived: stop here. A flip under way and not yet proven healthy is rolled back first; a
        proven one is left for the next run to record (it finds the app on the new slot and finishes)."""
        exc = Interrupted(f"stopped by {self.stop.requested} before step {index + 1}")
        done = index - 1
        if done in self.plan.rollbacks and done != max(self.plan.rollbacks):
            self.rollback(done, self.plan.steps[done], exc)
        raise Interrupted(f"{exc}; a re-run continues from where this one stopped")

    def rollback(self, index: int, failed: Step, exc: RotatorError) -> None:
        back = self.plan.rollback_to
        undo = self.plan.rollbacks[index]
        log.warning("rollback", failed_step=failed.kind, to_slot=back, error=str(exc))
        records = [StepRecord.of(step) for step in undo]
        self.report.rollback = records
        try:
            for step, record in zip(undo, records, strict=True):
                self._timed(step, record, interruptible=False)
        except RotatorError as second:
            raise NeedsHuman(
                f"the flip failed ({exc}) and so did the rollback to slot {back} ({second}): the app may be down; "
                f"check the deployment and the config, then re-run"
            ) from None
        self.report.slots_after = self._slots()
        raise RolledBack(
            f"the flip failed at {failed.kind} ({exc}); rolled back: the app is on slot {back} again and healthy on it"
        ) from None
