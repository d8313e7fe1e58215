"""The orchestrator: read, lock, read again, observe() -> World, plan(World) -> Plan, apply the plan.

One run holds an advisory lock on the database server for its whole length, and every decision rests on
what was read after the lock was taken. A failed flip runs the plan's own rollback steps. Every password
change is preceded by a pending write (see rotator.plan), so a crash at any instant loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rotator import age, health
from rotator.apply import AfterStep, Applier, Ports, State
from rotator.config import Settings
from rotator.db.base import AdminSession, Engine
from rotator.deploy.base import Deployer
from rotator.errors import BadInput, ExitCode, Locked, NeedsHuman, RotatorError
from rotator.live import read_live
from rotator.log import get_logger, scrub
from rotator.observe import (
    AdminLogin,
    Observed,
    Secrets,
    admin_logins,
    choose_engine,
    lock_name,
    observe,
    open_admin,
    read_secrets,
)
from rotator.plan import NO_ADMIN_LOGIN, Options, Plan, plan
from rotator.render import ConfigFile
from rotator.report import Report, StepRecord
from rotator.secrets import SlotSecret
from rotator.signals import StopSignal
from rotator.store.base import SecretStore

log = get_logger("rotator")


@dataclass(frozen=True)
class Adapters:
    """The concrete parts of a run, chosen by rotator.wiring."""

    store: SecretStore
    engine_for: Callable[[str], Engine]  # engine name -> engine
    config_for: Callable[[str], ConfigFile | None]  # engine name -> the app's config file, if any
    deployer: Deployer | None
    http_check: health.HttpCheck | None
    api_calls: Callable[[], int]  # AWS API calls made, every service
    store_operations: Callable[[], int]  # logical operations on the secret store (reads, writes, label moves)
    check_inputs: Callable[[], None] = lambda: None  # filesystem checks of the settings, before any change
    clock: Callable[[], datetime] = age.utc_now  # "now" for ages and the rotated_at of new passwords
    after_run: Callable[[Report], None] = lambda report: None  # audit event, metrics (rotator.wiring)


class Rotation:
    def __init__(self, settings: Settings, adapters: Adapters, *, after_step: AfterStep | None = None) -> None:
        self.settings = settings
        self.adapters = adapters
        self.after_step = after_step
        self.report = Report(dry_run=settings.dry_run)

    def options(self) -> Options:
        s = self.settings
        return Options(
            renders_config=s.renders_config,
            sync_db_users=s.sync_db_users,
            skip_admin=s.skip_admin,
            fix_permissions=s.fix_permissions,
            live_secret=s.live_secret is not None,
            rotate_after_s=s.rotate_after,
            drain_timeout=s.drain_timeout,
            drain_quiet=s.drain_quiet,
        )

    def run(self, stop_signal: StopSignal | None = None) -> Report:
        """``stop_signal``: one the caller sets (a fleet's worker threads get no signal handler of their own)."""
        started = time.monotonic()
        report = self.report
        try:
            with (stop_signal or StopSignal()).installed() as stop:
                self._run(stop)
        except RotatorError as exc:
            report.outcome = type(exc).__name__
            report.exit_code = int(exc.exit_code)
            report.error = scrub(str(exc))
        except Exception as exc:  # never a raw traceback (which could carry a value) out of a run
            log.exception("unexpected_error")
            report.outcome = "UnexpectedError"
            report.exit_code = int(ExitCode.FAILED)
            report.error = f"{type(exc).__name__}: {scrub(str(exc))}"
        finally:
            report.aws_api_calls = self.adapters.api_calls()
            report.store_operations = self.adapters.store_operations()
            report.duration_ms = (time.monotonic() - started) * 1000
        try:
            self.adapters.after_run(report)
        except Exception as exc:  # auditing and metrics never change a run's outcome
            log.warning("after_run_failed", error=type(exc).__name__)
        return report

    def _read(self) -> Secrets:
        return read_secrets(self.adapters.store, self.settings.slot_secret, self.settings.admin_secret)

    def _run(self, stop: StopSignal) -> None:
        s, a = self.settings, self.adapters
        a.check_inputs()
        first = self._read()
        engine_name = choose_engine(s.engine, first.current)
        engine = a.engine_for(engine_name)
        config = a.config_for(engine_name)
        if config is not None:
            config.check(first.current.slot("A"), first.current.slot("B"))
        sec, admin = open_admin(engine, first, self._read, s.tls)
        if admin.session is None:
            raise NeedsHuman(NO_ADMIN_LOGIN)
        session = admin.session
        lock: str | None = None
        try:
            name = lock_name(sec.current, s.lock_name)
            if not session.try_lock(name):
                raise Locked(
                    "another rotation of this database holds the lock: nothing was changed; "
                    "wait for it to finish (its log says how it went), then re-run"
                )
            lock = name
            self._locked(stop, engine, session, admin, name, config, checked=first.current)
        finally:
            _release(session, lock)

    def _locked(
        self,
        stop: StopSignal,
        engine: Engine,
        session: AdminSession,
        admin: AdminLogin,
        name: str,
        config: ConfigFile | None,
        *,
        checked: SlotSecret,
    ) -> None:
        s, a = self.settings, self.adapters
        sec = self._read()  # the truth: read with the lock held
        if lock_name(sec.current, s.lock_name) != name or choose_engine(s.engine, sec.current) != engine.name:
            raise RotatorError("the slot secret moved to another database while this run took the lock: re-run")
        if config is not None:
            # Every password the flip may render must fit the config's format: a pending version's too (it may be
            # finished), and AWSCURRENT again if it changed since the check before the lock.
            for version in (sec.current, sec.pending):
                if version is not None and version != checked:
                    config.check(version.slot("A"), version.slot("B"))
        obs = observe(
            engine=engine,
            session=session,
            sec=sec,
            admin_ok=admin_logins(engine, sec, admin.password, s.tls),
            tls=s.tls,
            config=config,
            deployment=a.deployer.describe().status if a.deployer is not None else "n/a",
            health_check=None if s.sync_db_users else a.http_check,
            live=read_live(a.store, s.live_secret) if s.live_secret is not None else None,
            now=a.clock(),
        )
        self.report.ages = age.policy_of(obs.world, s).as_dict()
        the_plan = plan(obs.world, self.options())
        self._describe(obs, the_plan)
        if the_plan.refused:
            raise BadInput(the_plan.refused + "; nothing was changed")
        if the_plan.blocked:
            raise NeedsHuman(the_plan.blocked)
        if s.dry_run:
            self.report.steps = [StepRecord.of(st, "planned") for st in the_plan.steps]
            self.report.rollback = [StepRecord.of(st, "planned") for st in the_plan.full_rollback]
            for st in the_plan.steps:
                log.info("plan", **st.describe())
            for st in the_plan.full_rollback:
                log.info("plan_rollback", **st.describe())
            self.report.slots_after = dict(self.report.slots_before)
            return
        w = obs.world
        sv, av = sec.slot_versions, sec.admin_versions
        state = State(
            secret=w.secret,
            pending=w.pending,
            pending_version=sv.pending.version_id if sv.pending else None,
            admin=w.admin,
            admin_pending=w.admin_pending,
            admin_pending_version=av.pending.version_id if av.pending else None,
            config_slot=w.config_slot,
            live=obs.live.current if obs.live else None,
            live_slot=w.live_slot,
        )
        ports = Ports(
            store=a.store,
            slot_secret=s.slot_secret,
            admin_secret=s.admin_secret,
            session=session,
            engine=engine,
            tls=s.tls,
            policy=s.password_policy,
            config=config,
            deployer=a.deployer,
            http_check=a.http_check,
            world=w,
            live_secret=s.live_secret,
            clock=a.clock,
        )
        try:
            Applier(ports, state, the_plan, self.report, stop=stop, after_step=self.after_step).apply_all()
        finally:
            # The ages as the run leaves them (a flip has just given the old slot and the admin new passwords).
            after = replace(w, secret=state.secret, admin=state.admin, config_slot=None, now=a.clock())
            self.report.ages = age.policy_of(after, s).as_dict()

    def _describe(self, obs: Observed, the_plan: Plan) -> None:
        w = obs.world
        self.report.slots_before = {"active": w.secret.active_slot, "config": w.config_slot}
        if self.settings.live_secret is not None:
            self.report.slots_before["live"] = w.live_slot
        self.report.notes = list(the_plan.notes)
        self.report.blocked = the_plan.blocked
        observed: dict[str, Any] = {
            "engine": w.engine,
            "active_slot": w.secret.active_slot,
            "config_slot": w.config_slot,
            "config_present": w.config_present,
            "pending_slot_version": w.pending is not None,
            "pending_admin_version": w.admin_pending is not None,
            "admin_login": "current" if w.admin_current_ok else "pending" if w.admin_pending_ok else "none",
            "slots": {
                slot: {
                    "exists": st.exists,
                    **{f"{src.value}_password_logs_in": ok for src, ok in st.logins.items()},
                    **({"marked": st.marked} if st.exists else {}),
                    **({"privileges": list(st.privileges)} if st.privileges else {}),
                }
                for slot, st in w.slots.items()
            },
            "deployment": w.deployment,
        }
        if self.settings.live_secret is not None:
            observed["live_secret"] = {"slot": w.live_slot, "pending_version": w.live_pending, "exact": w.live_exact}
        if w.admin_problems:
            observed["admin_problems"] = list(w.admin_problems)
        if w.admin_owner is not None:
            observed["admin_secret_owner"] = w.admin_owner
        if any(w.grants_missing.values()):
            observed["grants_missing"] = {slot: list(g) for slot, g in w.grants_missing.items() if g}
        if w.health_precheck is not None:
            observed["health_precheck"] = w.health_precheck
        self.report.observed = observed
        log.info("observed", **observed)
        for note in the_plan.notes:
            log.warning("note", note=note)


def _release(session: AdminSession, lock: str | None) -> None:
    """Unlock and close. A failure here never masks the run's outcome: the server drops a closed session's lock."""
    try:
        if lock is not None:
            session.unlock(lock)
    except RotatorError as exc:
        log.warning("unlock_failed", error=str(exc), detail="the lock is released when the session ends")
    finally:
        try:
            session.close()
        except Exception as exc:
            log.warning("close_failed", error=type(exc).__name__)
