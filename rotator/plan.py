"""The pure planner: ``plan(world, options) -> Plan``. No I/O, no randomness, no clock.

A World is what observe() saw. The plan is the ordered list of steps that takes that world to a
consistent, rotated one: heal (finish or discard a pending version, adopt working passwords,
create missing users, set drifted standby passwords back), then flip (render, deploy, health),
then give the old slot a fresh password and rotate the admin. Write-ahead is built into the step
sequences: every password that is not yet in AWSCURRENT is written as AWSPENDING first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rotator.secrets import SLOTS, AdminSecret, Slot, SlotSecret, other


class Source(StrEnum):
    """Where a password comes from."""

    CURRENT = "current"  # the slot secret's AWSCURRENT version (as healed so far in this run)
    PENDING = "pending"  # the pending version (observed, or written by this run)
    CONFIG = "config"  # the deployed app config


@dataclass(frozen=True)
class SlotState:
    """One slot user, as observed. ``logins`` maps each candidate password source to whether it logs in."""

    exists: bool
    logins: Mapping[Source, bool] = field(default_factory=dict)

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

    def password(self, slot: Slot, source: Source) -> str | None:
        if source is Source.CURRENT:
            return self.secret.slot(slot).password
        if source is Source.PENDING:
            return self.pending.slot(slot).password if self.pending is not None else None
        return self.config_password if self.config_slot == slot else None

    def logs_in(self, slot: Slot, password: str) -> bool:
        """Whether ``password`` was seen logging in as the slot's user, under any source that holds it."""
        state = self.slots[slot]
        return any(ok and self.password(slot, src) == password for src, ok in state.logins.items())


@dataclass(frozen=True)
class Options:
    renders_config: bool = True  # a template/config path is configured
    sync_db_users: bool = False  # heal the users only, no flip
    skip_admin: bool = False
    fix_permissions: bool = False


class Kind(StrEnum):
    DISCARD_ADMIN_PENDING = "discard_admin_pending"
    PROMOTE_ADMIN_PENDING = "promote_admin_pending"
    DISCARD_SLOT_PENDING = "discard_slot_pending"
    WRITE_SLOT_PENDING = "write_slot_pending"
    CREATE_USER = "create_user"
    SET_PASSWORD = "set_password"  # noqa: S105 - a step name
    VERIFY_LOGIN = "verify_login"
    PROMOTE_SLOT_PENDING = "promote_slot_pending"
    FIX_PERMISSIONS = "fix_permissions"
    RENDER_CONFIG = "render_config"
    DEPLOY = "deploy"
    HEALTH_CHECK = "health_check"
    WRITE_ADMIN_PENDING = "write_admin_pending"
    SET_ADMIN_PASSWORD = "set_admin_password"  # noqa: S105 - a step name
    VERIFY_ADMIN = "verify_admin"


# Steps whose failure must roll the app back to the old slot.
FLIP_KINDS = frozenset({Kind.RENDER_CONFIG, Kind.DEPLOY, Kind.HEALTH_CHECK})


@dataclass(frozen=True)
class Step:
    kind: Kind
    reason: str
    slot: Slot | None = None
    source: Source | None = None  # which password a SET/CREATE/VERIFY uses
    # WRITE_SLOT_PENDING: the new version = current (as healed) with these changes.
    adopt: tuple[tuple[Slot, Source], ...] = ()
    fresh: tuple[Slot, ...] = ()
    active: Slot | None = None

    def describe(self) -> str:
        parts = [self.kind.value]
        if self.slot:
            parts.append(f"slot {self.slot}")
        return " ".join(parts) + f": {self.reason}"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    blocked: str | None = None  # set when no run can proceed without a human
    notes: tuple[str, ...] = ()
    flip_to: Slot | None = None  # the slot the app ends on, when this plan flips
    rollback_to: Slot | None = None  # the slot a failed flip returns to

    @property
    def kinds(self) -> list[Kind]:
        return [s.kind for s in self.steps]


def _rotate_admin() -> list[Step]:
    return [
        Step(Kind.WRITE_ADMIN_PENDING, "new admin password, written as pending before it is set"),
        Step(Kind.SET_ADMIN_PASSWORD, "set the pending admin password in the database"),
        Step(Kind.VERIFY_ADMIN, "prove the new admin password logs in"),
        Step(Kind.PROMOTE_ADMIN_PENDING, "record the new admin password as current"),
    ]


def _rotate_old_slot(old: Slot, new: Slot, why: str) -> list[Step]:
    return [
        Step(
            Kind.WRITE_SLOT_PENDING,
            f"{why}: record the flip to slot {new} and a fresh password for slot {old}, as pending",
            active=new,
            fresh=(old,),
        ),
        Step(Kind.SET_PASSWORD, f"give the old slot {old} its fresh password", slot=old, source=Source.PENDING),
        Step(Kind.VERIFY_LOGIN, f"prove slot {old}'s fresh password logs in", slot=old, source=Source.PENDING),
        Step(Kind.PROMOTE_SLOT_PENDING, f"slot {new} is active; slot {old}'s fresh password is current"),
    ]


def _pending_finishable(w: World, live: Slot | None) -> bool:
    """A pending slot version can be finished when everything the app may be using already works with it."""
    p = w.pending
    assert p is not None
    if live is not None and p.active_slot != live:
        return False
    for slot in {p.active_slot, live} - {None}:
        assert slot is not None
        if not w.logs_in(slot, p.slot(slot).password):
            return False
    return True


def plan(w: World, opt: Options) -> Plan:
    steps: list[Step] = []
    notes: list[str] = []

    # --- Admin: everything else needs it.
    if w.admin_current_ok:
        if w.admin_pending is not None:
            steps.append(Step(Kind.DISCARD_ADMIN_PENDING, "a pending admin password was never set: discard it"))
    elif w.admin_pending_ok:
        steps.append(
            Step(
                Kind.PROMOTE_ADMIN_PENDING,
                "the admin password was changed by an earlier run but not recorded: promote the pending value",
            )
        )
    else:
        return Plan(
            steps=(),
            blocked=(
                "no admin password logs in (neither the admin secret's AWSCURRENT nor its AWSPENDING): "
                "reset the master password (RDS console > Modify) and put it in the admin secret, then re-run"
            ),
        )

    s = w.secret
    live = w.config_slot if opt.renders_config else None
    # The slots the app may be using right now: never given a password it does not already use.
    protected: set[Slot] = {s.active_slot} | ({live} if live else set())

    # --- A pending slot version left by an earlier run: finish it or discard it.
    base = s
    flip_finished = False
    fixed: set[Slot] = set()  # slots this plan already gives a working password (finishing a pending version)
    if w.pending is not None:
        p = w.pending
        if _pending_finishable(w, live):
            for slot in SLOTS:
                pw = p.slot(slot).password
                if w.logs_in(slot, pw):
                    continue
                if not w.slots[slot].exists:
                    steps.append(
                        Step(
                            Kind.CREATE_USER,
                            "finish the earlier run: create the user",
                            slot=slot,
                            source=Source.PENDING,
                        )
                    )
                else:
                    steps.append(
                        Step(
                            Kind.SET_PASSWORD,
                            "finish the earlier run: set the pending password",
                            slot=slot,
                            source=Source.PENDING,
                        )
                    )
                steps.append(
                    Step(Kind.VERIFY_LOGIN, "prove the pending password logs in", slot=slot, source=Source.PENDING)
                )
                fixed.add(slot)
            steps.append(Step(Kind.PROMOTE_SLOT_PENDING, "finish the earlier run: promote its pending version"))
            base = p
            flip_finished = p.active_slot != s.active_slot
        else:
            steps.append(
                Step(Kind.DISCARD_SLOT_PENDING, "a pending slot version does not match what the app uses: discard it")
            )

    def works(slot: Slot, password: str) -> bool:
        return slot in fixed or w.logs_in(slot, password)

    # --- Record reality: adopt passwords that work but are not in the secret; bootstrap missing users.
    adopt: list[tuple[Slot, Source]] = []
    fresh: list[Slot] = []
    missing: list[Slot] = []
    for slot in SLOTS:
        if slot in fixed:
            continue
        if not w.slots[slot].exists:
            missing.append(slot)
            fresh.append(slot)
            continue
        if works(slot, base.slot(slot).password):
            continue
        for src in (Source.CONFIG, Source.PENDING, Source.CURRENT):
            candidate = w.password(slot, src)
            if candidate and w.logs_in(slot, candidate):
                adopt.append((slot, src))
                break
    drifted = [
        slot
        for slot in SLOTS
        if w.slots[slot].exists
        and slot not in protected
        and slot not in dict(adopt)
        and not works(slot, base.slot(slot).password)
    ]
    # A drifted standby whose recorded password is empty gets a fresh one instead of being set back to "".
    fresh += [slot for slot in drifted if not base.slot(slot).password]
    persist_flip = opt.sync_db_users and live is not None and live != base.active_slot and not flip_finished
    if adopt or fresh or persist_flip:
        what = []
        if adopt:
            what.append(
                ", ".join(
                    f"adopt slot {slot}'s working {src.value} password (the secret had drifted)" for slot, src in adopt
                )
            )
        if missing:
            what.append(f"fresh passwords for the new users {', '.join(missing)}")
        if persist_flip:
            what.append(f"record that the config already uses slot {live}")
        steps.append(
            Step(
                Kind.WRITE_SLOT_PENDING,
                "; ".join(what) or "fresh passwords for drifted slots",
                adopt=tuple(adopt),
                fresh=tuple(fresh),
                active=live if persist_flip else None,
            )
        )
        for slot in missing:
            steps.append(Step(Kind.CREATE_USER, "the user does not exist: create it", slot=slot, source=Source.PENDING))
            steps.append(Step(Kind.VERIFY_LOGIN, "prove the new user logs in", slot=slot, source=Source.PENDING))
        for slot in drifted:
            if slot in fresh:
                steps.append(
                    Step(Kind.SET_PASSWORD, "no password works: set the fresh one", slot=slot, source=Source.PENDING)
                )
                steps.append(Step(Kind.VERIFY_LOGIN, "prove it logs in", slot=slot, source=Source.PENDING))
        steps.append(Step(Kind.PROMOTE_SLOT_PENDING, "record the healed slots as current"))
    for slot in drifted:
        if slot not in fresh:
            steps.append(
                Step(
                    Kind.SET_PASSWORD,
                    f"slot {slot}'s password drifted from the secret: set it back",
                    slot=slot,
                    source=Source.CURRENT,
                )
            )
            steps.append(
                Step(Kind.VERIFY_LOGIN, "prove the secret's password logs in", slot=slot, source=Source.CURRENT)
            )
    for slot in sorted(protected):
        if w.slots[slot].exists and not works(slot, base.slot(slot).password) and slot not in dict(adopt):
            notes.append(
                f"slot {slot} is in use and none of its known passwords logs in: the app may be down; "
                "the flip moves it to a working slot and the old slot then gets a fresh password"
            )

    if opt.fix_permissions:
        steps.append(Step(Kind.FIX_PERMISSIONS, "set the config file's mode and owner"))

    # --- Flip.
    active = live if persist_flip and live else base.active_slot
    flip_to: Slot | None = None
    rollback_to: Slot | None = None
    if not opt.sync_db_users:
        if flip_finished:
            notes.append(f"an earlier run's flip to slot {base.active_slot} was finished; no new flip in this run")
        elif live is not None and live != active:
            flip_to, rollback_to = live, active
            steps += [
                Step(
                    Kind.DEPLOY,
                    f"the config already uses slot {live} but the secret says {active} "
                    "(an earlier flip was interrupted): finish the deployment",
                    slot=live,
                ),
                Step(Kind.HEALTH_CHECK, f"prove the app is healthy on slot {live}", slot=live),
            ]
            steps += _rotate_old_slot(active, live, "the interrupted flip is proven")
        else:
            new = other(active)
            flip_to, rollback_to = new, active
            if opt.renders_config:
                steps.append(Step(Kind.RENDER_CONFIG, f"point the app's config at the standby slot {new}", slot=new))
            else:
                # No config file: the secret is the app's config. Publish the flip before the grace period so
                # that loader clients move to the new slot while the old one still works.
                steps += [
                    Step(
                        Kind.WRITE_SLOT_PENDING,
                        f"publish the flip to slot {new} (credential-loader clients follow active_slot)",
                        active=new,
                    ),
                    Step(Kind.PROMOTE_SLOT_PENDING, f"slot {new} is active; the old slot keeps working for now"),
                ]
            steps.append(Step(Kind.DEPLOY, f"roll the app onto slot {new}", slot=new))
            steps.append(Step(Kind.HEALTH_CHECK, f"prove the app is healthy on slot {new}", slot=new))
            steps += _rotate_old_slot(active, new, f"the app is healthy on slot {new}")
        if not opt.skip_admin:
            steps += _rotate_admin()

    return Plan(steps=tuple(steps), notes=tuple(notes), flip_to=flip_to, rollback_to=rollback_to)
