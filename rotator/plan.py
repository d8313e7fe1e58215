"""The pure planner: ``plan(world, options) -> Plan``. No I/O, no randomness, no clock.

A World is what observe() saw after the lock was taken. The plan is the ordered list of steps that takes
that world to a consistent, rotated one, built in phases that each pass a frozen value forward:

1. refuse: bad input that no step may act on (a slot user we do not manage, a privileged one, ...);
2. admin: everything else needs a working admin password;
3. pending: finish or discard a pending slot version left by an earlier run;
4. reconcile: adopt working passwords, create missing users, set drifted standby passwords back;
5. flip: render/publish, deploy, prove health (with the steps that undo a failed flip), then give the old
   slot a fresh password and rotate the admin.

Write-ahead is built into the step sequences: every password not yet in AWSCURRENT is written as
AWSPENDING first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rotator import age
from rotator.drain import QUIET
from rotator.secrets import SLOTS, AdminSecret, Slot, SlotSecret, other
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

__all__ = ["NO_ADMIN_LOGIN", "Options", "Plan", "SlotState", "Source", "World", "plan"]


@dataclass(frozen=True)
class SlotState:
    """One slot user, as observed. ``logins`` maps each candidate password source to whether it logs in."""

    exists: bool
    logins: Mapping[Source, bool] = field(default_factory=dict)
    marked: bool = True  # carries this rotator's slot-user marker for this database
    privileges: tuple[str, ...] = ()  # dangerous rights it holds (superuser, global privileges, ...)
    owner_member: bool = False  # PostgreSQL: member of the owner role (how pre-marker slot users are known)
    other_hosts: tuple[str, ...] = ()  # MySQL: host parts the name exists with, when not with ours

    def works(self, source: Source) -> bool:
        return self.logins.get(source, False)


@dataclass(frozen=True)
class World:
    secret: SlotSecret
    pending: SlotSecret | None
    admin: AdminSecret
    admin_pending: AdminSecret | None
    admin_current_ok: bool
    admin_pending_ok: bool
    slots: Mapping[Slot, SlotState]
    config_slot: Slot | None = None  # the slot whose user the deployed config uses; None: missing/other user
    config_present: bool = False
    config_password: str | None = field(default=None, repr=False)
    deployment: str = "unknown"
    admin_problems: tuple[str, ...] = ()  # what the admin lacks to create and alter users
    health_precheck: str | None = None  # why the health URL fails on the live slot; None: passes or not checked
    engine: str = "postgres"
    # The live secret (--live-secret): the slot its AWSCURRENT names (None: nobody yet), its password, whether
    # an interrupted write left an AWSPENDING version, and whether it already holds exactly the slot secret's
    # AWSCURRENT credentials of that slot.
    live_slot: Slot | None = None
    live_password: str | None = field(default=None, repr=False)
    live_pending: bool = False
    live_exact: bool = False
    # Per slot: the rights the other slot's user holds and this one's lacks (both users exist), by name.
    grants_missing: Mapping[Slot, tuple[str, ...]] = field(default_factory=dict)
    now: datetime | None = None  # the clock at observe(): ages are rotated_at against it (None: unknown)
    # The service that owns the admin secret (its OwningService, "rds" for an RDS-managed master password): it
    # rotates the admin password, so the rotator only reads that secret and never changes the admin user.
    admin_owner: str | None = None

    def password(self, slot: Slot, source: Source) -> str | None:
        if source is Source.CURRENT:
            return self.secret.slot(slot).password
        if source is Source.PENDING:
            return self.pending.slot(slot).password if self.pending is not None else None
        if source is Source.LIVE:
            return self.live_password if self.live_slot == slot else None
        return self.config_password if self.config_slot == slot else None

    def logs_in(self, slot: Slot, password: str) -> bool:
        """Whether ``password`` was seen logging in as the slot's user, under any source that holds it."""
        state = self.slots[slot]
        return any(ok and self.password(slot, src) == password for src, ok in state.logins.items())

    @property
    def config_works(self) -> bool:
        """The deployed config names a slot user and its password logs in: the app can be using it."""
        return self.config_slot is not None and self.slots[self.config_slot].works(Source.CONFIG)

    @property
    def live_works(self) -> bool:
        """The live secret names a slot user and its password logs in: apps started from it can be using it."""
        return self.live_slot is not None and self.slots[self.live_slot].works(Source.LIVE)


@dataclass(frozen=True)
class Options:
    renders_config: bool = True  # a template/config path is configured
    sync_db_users: bool = False  # heal the users only, no flip
    skip_admin: bool = False
    fix_permissions: bool = False
    live_secret: bool = False  # a live secret is configured (a target of the flip, like the config)
    rotate_after_s: float | None = None  # flip (and rotate the admin) only when that old; None: every run
    drain_timeout: float = 0.0  # > 0: wait for the old slot to drain before its password changes
    drain_quiet: float = QUIET  # seconds without a new session of the old slot's user that count as drained


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    blocked: str | None = None  # no run can proceed without a human (exit 5)
    refused: str | None = None  # bad input: nothing may change (exit 2)
    notes: tuple[str, ...] = ()
    flip_to: Slot | None = None  # the slot the app ends on, when this plan flips
    rollback_to: Slot | None = None  # the slot a failed flip returns to
    # Index of each flip step -> the steps that undo a failure of that step.
    rollbacks: Mapping[int, tuple[Step, ...]] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self.steps]

    @property
    def full_rollback(self) -> tuple[Step, ...]:
        """The rollback of the flip's last step: what ``--dry-run`` shows."""
        return self.rollbacks[max(self.rollbacks)] if self.rollbacks else ()


# ---------------------------------------------------------------- phase 1: refuse


def _refusal(w: World) -> str | None:
    s = w.secret
    future = _in_future(w)
    if future is not None:
        return future
    admin = w.admin.username
    # Only AWSCURRENT's names count: a pending version that names other users is discarded, never finished.
    for slot in SLOTS:
        if s.slot(slot).username == admin:
            return (
                f"slot {slot}'s user {admin!r} is the admin user: slot users must be two users of their own; "
                "fix the slot secret"
            )
    for slot in SLOTS:
        st, user = w.slots[slot], s.slot(slot).username
        if st.privileges:
            return (
                f"slot {slot}'s user {user!r} holds {', '.join(st.privileges)}: the rotator manages only unprivileged "
                "slot users; name another user in the slot secret, or revoke those rights"
            )
        if not st.exists and st.other_hosts:
            return (
                f"slot {slot}'s user {user!r} exists only with host {', '.join(st.other_hosts)}: creating it with "
                "--mysql-user-host would make a second, untracked account; pass --mysql-user-host with its host"
            )
        if st.exists and not st.marked and not _legacy(w, st):
            return (
                f"slot {slot}'s user {user!r} exists but was not created by the rotator: the rotator changes "
                "passwords only of the slot users it made; name a new user in the slot secret (it is created), "
                "or adopt the existing user explicitly"
            )
    if w.admin_problems:
        return "the admin cannot manage the slot users: " + "; ".join(w.admin_problems)
    return None


def _in_future(w: World) -> str | None:
    """A rotated_at ahead of the clock would hold every rotation off: refused, like any hostile input."""
    if w.now is None:
        return None
    recorded = [
        *((f"slot secret (AWSCURRENT) {slot}", w.secret.slot(slot).rotated_at) for slot in SLOTS),
        *((f"slot secret (AWSPENDING) {slot}", w.pending.slot(slot).rotated_at) for slot in SLOTS if w.pending),
        ("admin secret (AWSCURRENT)", w.admin.rotated_at),
        ("admin secret (AWSPENDING)", w.admin_pending.rotated_at if w.admin_pending else None),
    ]
    for where, when in recorded:
        if age.in_future(when, w.now):
            return (
                f"{where}.rotated_at is more than {age.FUTURE_SKEW_S:g} s ahead of this machine's clock: a time in "
                "the future would hold rotations off; fix or remove it in the secret (or fix the clock)"
            )
    return None


def _legacy(w: World, st: SlotState) -> bool:
    """A slot user this rotator made without its marker: before markers existed, or in a crash between creating
    a MySQL user and granting it the marker role. It logs in with the slot secret's password (AWSCURRENT, or the
    pending version this rotator wrote ahead) and, on PostgreSQL, is a member of the owner role it manages."""
    proven = st.works(Source.CURRENT) or st.works(Source.PENDING)
    return proven and (st.owner_member or w.engine != "postgres")


# ---------------------------------------------------------------- phase 2: admin

NO_ADMIN_LOGIN = (
    "no admin password logs in (neither the admin secret's AWSCURRENT nor its AWSPENDING, both just re-read): "
    "reset the master password (RDS console > Modify) and put it in the admin secret, then re-run"
)


def _admin_steps(w: World) -> tuple[list[Step], str | None]:
    if w.admin_owner is not None:
        # Its owner rotates it (and may hold AWSPENDING mid-rotation): use whichever password logs in, move no label.
        if w.admin_current_ok or w.admin_pending_ok:
            return [], None
        return [], (
            f"no admin password logs in (neither AWSCURRENT nor AWSPENDING of the admin secret, which "
            f"{_owner(w.admin_owner)} manages): check the database's master user settings in {_owner(w.admin_owner)}, "
            "then re-run"
        )
    if w.admin_current_ok:
        if w.admin_pending is not None:
            return [DiscardAdminPending("a pending admin password was never set: discard it")], None
        return [], None
    if w.admin_pending_ok:
        return [
            PromoteAdminPending(
                "the admin password was changed by an earlier run but not recorded: promote the pending value"
            )
        ], None
    return [], NO_ADMIN_LOGIN


def _owner(service: str) -> str:
    return "RDS" if service == "rds" else service


def _rotate_admin() -> list[Step]:
    return [
        WriteAdminPending("new admin password, written as pending before it is set"),
        SetAdminPassword("set the pending admin password in the database"),
        VerifyAdmin("prove the new admin password logs in"),
        PromoteAdminPending("record the new admin password as current"),
    ]


# ---------------------------------------------------------------- phase 3: a pending slot version


@dataclass(frozen=True)
class _Healed:
    """What the pending phase passes on: the secret the rest of the plan starts from."""

    base: SlotSecret
    fixed: frozenset[Slot] = frozenset()  # slots given a working password by finishing the pending version
    flip_finished: bool = False  # finishing it completed an earlier run's flip


def same_identity(a: SlotSecret, b: SlotSecret) -> bool:
    """Both versions describe the same two users on the same server and database."""
    return all(
        (x.username, x.host, x.port, x.dbname) == (y.username, y.host, y.port, y.dbname)
        for x, y in ((a.slot(slot), b.slot(slot)) for slot in SLOTS)
    )


def _finishable(w: World, p: SlotSecret, live: Slot | None) -> bool:
    """A pending slot version can be finished when everything the app may be using already works with it: the
    config's slot (when its password works), else the secret's active slot; and the pending active slot."""
    if live is not None and p.active_slot != live:
        return False
    in_use = {p.active_slot, live if live is not None else w.secret.active_slot}
    if w.live_works and w.live_slot is not None:
        in_use.add(w.live_slot)
    return all(w.logs_in(slot, p.slot(slot).password) for slot in in_use)


def _pending_steps(w: World, live: Slot | None) -> tuple[list[Step], _Healed, list[str]]:
    p = w.pending
    if p is None:
        return [], _Healed(w.secret), []
    if not same_identity(p, w.secret):
        return (
            [DiscardSlotPending("a pending slot version names other users, server or database: discard it")],
            _Healed(w.secret),
            [
                "the pending slot version disagrees with AWSCURRENT on a username, host, port or dbname "
                "(the secret was edited since): it was discarded, AWSCURRENT is the truth"
            ],
        )
    if not _finishable(w, p, live):
        return (
            [DiscardSlotPending("a pending slot version does not match what the app uses: discard it")],
            _Healed(w.secret),
            [],
        )
    steps: list[Step] = []
    fixed: set[Slot] = set()
    for slot in SLOTS:
        if w.logs_in(slot, p.slot(slot).password):
            continue
        if not w.slots[slot].exists:
            steps.append(CreateUser("finish the earlier run: create the user", on=slot))
        else:
            steps.append(SetPassword("finish the earlier run: set the pending password", on=slot))
        steps.append(VerifyLogin("prove the pending password logs in", on=slot))
        fixed.add(slot)
    steps.append(PromoteSlotPending("finish the earlier run: promote its pending version"))
    return steps, _Healed(p, frozenset(fixed), p.active_slot != w.secret.active_slot), []


# ---------------------------------------------------------------- phase 4: reconcile


@dataclass(frozen=True)
class _Reconciled:
    active: Slot  # the active slot the flip starts from
    persisted_flip: bool
    working: frozenset[Slot] = frozenset()  # slots whose AWSCURRENT password logs in once these steps ran


def _reconcile_steps(
    w: World, opt: Options, healed: _Healed, live: Slot | None, protected: set[Slot]
) -> tuple[list[Step], _Reconciled, list[str]]:
    base, fixed = healed.base, healed.fixed

    def works(slot: Slot, password: str) -> bool:
        return slot in fixed or w.logs_in(slot, password)

    steps: list[Step] = []
    notes: list[str] = []
    for slot in SLOTS:
        st = w.slots[slot]
        if st.exists and not st.marked and _legacy(w, st):
            steps.append(MarkUser("a slot user made before markers existed: mark it as managed", on=slot))
    adopt: list[tuple[Slot, Source]] = []
    missing = [slot for slot in SLOTS if slot not in fixed and not w.slots[slot].exists]
    for slot in SLOTS:
        if slot in fixed or slot in missing or works(slot, base.slot(slot).password):
            continue
        for src in (Source.CONFIG, Source.LIVE, Source.PENDING, Source.CURRENT):
            candidate = w.password(slot, src)
            if candidate and w.logs_in(slot, candidate):
                adopt.append((slot, src))
                break
    adopted = dict(adopt)
    drifted = [
        slot
        for slot in SLOTS
        if w.slots[slot].exists
        and slot not in protected
        and slot not in adopted
        and not works(slot, base.slot(slot).password)
    ]
    # A drifted standby whose recorded password is empty gets a fresh one instead of being set back to "".
    fresh = missing + [slot for slot in drifted if not base.slot(slot).password]
    persist_flip = opt.sync_db_users and live is not None and live != base.active_slot and not healed.flip_finished
    if adopt or fresh or persist_flip:
        what = [f"adopt slot {slot}'s working {src.value} password (the secret had drifted)" for slot, src in adopt]
        if missing:
            what.append(f"fresh passwords for the new users {', '.join(missing)}")
        if persist_flip:
            what.append(f"record that the config already uses slot {live}")
        steps.append(
            WriteSlotPending(
                "; ".join(what) or "fresh passwords for drifted slots",
                adopt=tuple(adopt),
                fresh=tuple(fresh),
                active=live if persist_flip else None,
            )
        )
        for slot in missing:
            steps.append(CreateUser("the user does not exist: create it", on=slot))
            steps.append(VerifyLogin("prove the new user logs in", on=slot))
        for slot in drifted:
            if slot in fresh:
                steps.append(SetPassword("no password works: set the fresh one", on=slot))
                steps.append(VerifyLogin("prove it logs in", on=slot))
        steps.append(PromoteSlotPending("record the healed slots as current"))
    for slot in drifted:
        if slot not in fresh:
            steps.append(
                SetPassword(
                    f"slot {slot}'s password drifted from the secret: set it back", on=slot, source=Source.CURRENT
                )
            )
            steps.append(VerifyLogin("prove the secret's password logs in", on=slot, source=Source.CURRENT))
    for slot in sorted(protected):
        if w.slots[slot].exists and not works(slot, base.slot(slot).password) and slot not in adopted:
            notes.append(
                f"slot {slot} is in use and none of its known passwords logs in: the app may be down; "
                "the flip moves it to a working slot and the old slot then gets a fresh password"
            )
    sync, note = _sync_grants(w, protected, missing)
    steps += sync
    notes += note
    if opt.fix_permissions:
        steps.append(FixPermissions("set the config file's mode and owner"))
    active = live if persist_flip and live is not None else base.active_slot
    working = frozenset(
        slot
        for slot in SLOTS
        if slot in fixed
        or slot in adopted
        or slot in missing
        or slot in drifted
        or works(slot, base.slot(slot).password)
    )
    return steps, _Reconciled(active, persist_flip, working), notes


def _sync_grants(w: World, protected: set[Slot], missing: list[Slot]) -> tuple[list[Step], list[str]]:
    """Heal the standby's rights to the live slot's before any flip; the slots in use are never touched."""
    steps: list[Step] = []
    notes: list[str] = []
    for slot in SLOTS:
        lacks = w.grants_missing.get(slot, ())
        if not lacks or not w.slots[slot].exists or slot in missing:
            continue
        if slot in protected:
            if other(slot) not in protected:
                continue  # the standby holds more than the live slot: harmless, never revoked
            notes.append(
                f"slot {slot} lacks rights slot {other(slot)} holds ({', '.join(lacks)}), but both slots may be in "
                "use: not healed in this run"
            )
            continue
        steps.append(
            SyncGrants(
                f"slot {slot} lacks rights the live slot {other(slot)} holds: grant them before any flip",
                on=slot,
                missing=tuple(lacks),
            )
        )
    return steps, notes


# ---------------------------------------------------------------- phase 5: flip


def _rotate_old_slot(old: Slot, new: Slot, why: str) -> list[Step]:
    return [
        WriteSlotPending(
            f"{why}: record the flip to slot {new} and a fresh password for slot {old}, as pending",
            active=new,
            fresh=(old,),
        ),
        SetPassword(f"give the old slot {old} its fresh password", on=old),
        VerifyLogin(f"prove slot {old}'s fresh password logs in", on=old),
        PromoteSlotPending(f"slot {new} is active; slot {old}'s fresh password is current"),
    ]


def _publish(slot: Slot, why: str) -> list[Step]:
    return [
        WriteSlotPending(
            f"{why}: publish active slot {slot} (credential-loader clients follow active_slot)", active=slot
        ),
        PromoteSlotPending(f"slot {slot} is active"),
    ]


@dataclass(frozen=True)
class _Flip:
    steps: tuple[Step, ...]
    rollbacks: Mapping[int, tuple[Step, ...]]  # index within ``steps``
    flip_to: Slot
    rollback_to: Slot


def _live_secret(opt: Options, slot: Slot, why: str) -> tuple[Step, ...]:
    """Point the live secret at ``slot`` (write-ahead: pending, proven to log in, current); nothing without one."""
    if not opt.live_secret:
        return ()
    return (
        WriteLivePending(f"{why}: write the live secret for slot {slot}, as pending", on=slot),
        PromoteLivePending(f"prove the live secret's slot {slot} credentials log in, then make them current", on=slot),
    )


def _back(back: Slot, *, config: tuple[Step, ...]) -> tuple[Step, ...]:
    return (
        *config,
        Deploy(f"roll the app back onto slot {back}", on=back),
        HealthCheck(f"prove the app is healthy on slot {back} again", on=back),
    )


def _flip(opt: Options, active: Slot, live: Slot | None, back_works: bool = True) -> _Flip:
    """``back_works``: the active slot's recorded password logs in, so a rollback may point the live secret back
    at it (else a rollback leaves the live secret on the new slot, which works and is not rotated)."""
    if live is not None and live != active:
        # The config already uses another slot than the secret's active one: an interrupted flip.
        steps: tuple[Step, ...] = (
            Deploy(
                f"the config already uses slot {live} but the secret says {active} "
                "(an earlier flip was interrupted): finish the deployment",
                on=live,
            ),
            HealthCheck(f"prove the app is healthy on slot {live}", on=live),
        )
        steps = (*_live_secret(opt, live, "the app moves to slot " + live), *steps)
        undo = _back(
            active,
            config=(
                RenderConfig(f"point the config back at slot {active}", on=active),
                *(_live_secret(opt, active, "roll back") if back_works else ()),
            ),
        )
        return _Flip(steps, dict.fromkeys(range(len(steps)), undo), live, active)
    new = other(active)
    deploy = Deploy(f"roll the app onto slot {new}", on=new)
    health = HealthCheck(f"prove the app is healthy on slot {new}", on=new)
    to_new = _live_secret(opt, new, f"move the app to slot {new}")
    back = _live_secret(opt, active, "roll back") if back_works else ()
    if opt.renders_config:
        restore = RestoreConfig(f"put the config back on slot {active}")
        undo = _back(active, config=(restore, *back))
        steps = (RenderConfig(f"point the app's config at the standby slot {new}", on=new), *to_new, deploy, health)
        # A failed render (or live secret write) never reached the app: put the file (and the live secret) back,
        # no redeploy. Apps started meanwhile from a promoted live secret are on the new slot, which keeps working.
        early: dict[int, tuple[Step, ...]] = {0: (restore,)}
        if to_new:
            early.update(
                {1: (restore, DiscardLivePending("drop the live secret's pending version")), 2: (restore, *back)}
            )
        return _Flip(steps, {**early, len(steps) - 2: undo, len(steps) - 1: undo}, new, active)
    # No config file: the secret is the app's config. Publish the flip before the grace period so that loader
    # clients move to the new slot while the old one still works; roll back by publishing the old slot again.
    undo = _back(active, config=(*_publish(active, "roll back"), *back))
    steps = (*_publish(new, f"move the app to slot {new}"), *to_new, deploy, health)
    # Once the publish is promoted (or its promotion failed half-way), the loader clients may be moving.
    return _Flip(steps, dict.fromkeys(range(1, len(steps)), undo), new, active)


# ---------------------------------------------------------------- the plan


def plan(w: World, opt: Options) -> Plan:
    refused = _refusal(w)
    if refused is not None:
        return Plan(steps=(), refused=refused)
    admin_steps, blocked = _admin_steps(w)
    if blocked is not None:
        return Plan(steps=(), blocked=blocked)
    # The slot the deployed config uses, when its password logs in (a config whose password fails is re-rendered).
    live = w.config_slot if opt.renders_config and w.config_works else None
    # The slots the app may be using right now: never given a password it does not already use.
    protected: set[Slot] = {w.secret.active_slot} | ({live} if live is not None else set())
    if opt.live_secret and w.live_works and w.live_slot is not None:
        protected.add(w.live_slot)  # apps started from the live secret may be using it
    pending_steps, healed, notes = _pending_steps(w, live)
    if opt.live_secret and w.live_pending:
        pending_steps.append(DiscardLivePending("an interrupted live secret write left a pending version"))
    reconcile_steps, rec, more_notes = _reconcile_steps(w, opt, healed, live, protected)
    steps = admin_steps + pending_steps + reconcile_steps
    notes += more_notes
    if opt.renders_config and w.config_slot is not None and not w.config_works:
        notes.append(
            f"the deployed config names slot {w.config_slot} with a password that does not log in: re-rendered"
        )
    if opt.sync_db_users:
        return Plan(steps=tuple(steps + _heal_live_secret(w, opt, rec, steps, notes)), notes=tuple(notes))
    admin_due = not opt.skip_admin and w.admin_owner is None and _admin_due(w, opt)
    if w.admin_owner is not None:
        notes.append(
            f"admin rotation skipped: managed by {_owner(w.admin_owner)} (the admin secret's OwningService); "
            f"{_owner(w.admin_owner)} rotates it, this run only read it"
        )
    if healed.flip_finished:
        notes.append(f"an earlier run's flip to slot {healed.base.active_slot} was finished; no new flip in this run")
        steps += _heal_live_secret(w, opt, rec, steps, notes)
        if admin_due:
            steps += _rotate_admin()
        return Plan(steps=tuple(steps), notes=tuple(notes))
    young = _younger_than_policy(w, opt, healed, rec.active, live)
    if young is not None:
        notes.append(young)
        if w.health_precheck is not None:
            notes.append(f"the health check fails on the live slot ({w.health_precheck}): fix it before the next flip")
        steps += _heal_live_secret(w, opt, rec, steps, notes)
        if admin_due:
            steps += _rotate_admin()
        return Plan(steps=tuple(steps), notes=tuple(notes))
    flip = _flip(opt, rec.active, live, rec.active in rec.working)
    if w.health_precheck is not None and _app_can_be_up(w, healed, live, protected):
        return Plan(
            steps=(),
            refused=(
                f"the health check fails on the live slot {live or rec.active} too ({w.health_precheck}): it could "
                "never pass after the flip; fix --health-url (or the app) first. Nothing was changed"
            ),
        )
    start = len(steps)
    steps += flip.steps
    if opt.drain_timeout > 0:
        steps.append(
            DrainSlot(
                f"wait until slot {flip.rollback_to} is no longer used to open sessions",
                on=flip.rollback_to,
                timeout=opt.drain_timeout,
                quiet=opt.drain_quiet,
            )
        )
    steps += _rotate_old_slot(flip.rollback_to, flip.flip_to, f"the app is healthy on slot {flip.flip_to}")
    if admin_due:
        steps += _rotate_admin()
    return Plan(
        steps=tuple(steps),
        notes=tuple(notes),
        flip_to=flip.flip_to,
        rollback_to=flip.rollback_to,
        rollbacks={start + i: undo for i, undo in flip.rollbacks.items()},
    )


def _heal_live_secret(w: World, opt: Options, rec: _Reconciled, steps: list[Step], notes: list[str]) -> list[Step]:
    """A plan without a flip: point the live secret at the active slot when it names another slot, a password
    that does not log in, or not exactly the slot secret's current credentials (or this plan changes them)."""
    if not opt.live_secret:
        return []
    changed = any(isinstance(s, PromoteSlotPending) for s in steps)
    if w.live_exact and w.live_slot == rec.active and w.live_works and not changed:
        return []
    if rec.active not in rec.working:
        notes.append(
            f"the live secret was left as it is: none of slot {rec.active}'s known passwords logs in; "
            "the next flip points it at a working slot"
        )
        return []
    return list(_live_secret(opt, rec.active, f"the live secret does not hold slot {rec.active}'s credentials"))


def _younger_than_policy(w: World, opt: Options, healed: _Healed, active: Slot, live: Slot | None) -> str | None:
    """Why no flip is due under --rotate-after (the live slot's password is younger), or None. An interrupted
    flip is always finished, and a password of unknown age (no rotated_at, or adopted because the secret had
    drifted) is always due."""
    if opt.rotate_after_s is None or (live is not None and live != active):
        return None
    creds = healed.base.slot(active)
    known = active in healed.fixed or w.logs_in(active, creds.password)
    seconds = age.age_s(creds.rotated_at, w.now) if known else None
    if age.due(seconds, opt.rotate_after_s) or seconds is None:
        return None
    return (
        f"slot {active}'s password is {age.format_duration(seconds)} old, younger than --rotate-after "
        f"{age.format_duration(opt.rotate_after_s)}: no flip in this run (it heals only)"
    )


def _admin_due(w: World, opt: Options) -> bool:
    """The admin rotates on every run without --rotate-after; with it, when its password is that old (the
    pending version's time when this run promotes it)."""
    admin = w.admin_pending if not w.admin_current_ok and w.admin_pending_ok and w.admin_pending else w.admin
    return age.due(age.age_s(admin.rotated_at, w.now), opt.rotate_after_s)


def _app_can_be_up(w: World, healed: _Healed, live: Slot | None, protected: set[Slot]) -> bool:
    """Whether the app has a working credential now, so a failing health URL is the URL's fault, not the
    outage the flip is about to heal."""
    return any(w.logs_in(slot, healed.base.slot(slot).password) for slot in protected if w.slots[slot].exists)
