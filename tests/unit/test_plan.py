"""The planner: table tests over chosen worlds, then an enumeration of every combination of the World's fields
that matter, asserting the invariants on each plan. The planner is pure, so each world is a plain value."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator import steps as st
from rotator.plan import Options, Plan, SlotState, Source, World, plan, same_identity
from rotator.secrets import SLOTS, AdminSecret, Credentials, Slot, SlotSecret, other


class K:
    """Step kinds by name, as the report spells them."""

    DISCARD_ADMIN_PENDING = st.DiscardAdminPending.kind
    PROMOTE_ADMIN_PENDING = st.PromoteAdminPending.kind
    DISCARD_SLOT_PENDING = st.DiscardSlotPending.kind
    WRITE_SLOT_PENDING = st.WriteSlotPending.kind
    CREATE_USER = st.CreateUser.kind
    SET_PASSWORD = st.SetPassword.kind
    VERIFY_LOGIN = st.VerifyLogin.kind
    PROMOTE_SLOT_PENDING = st.PromoteSlotPending.kind
    FIX_PERMISSIONS = st.FixPermissions.kind
    RENDER_CONFIG = st.RenderConfig.kind
    RESTORE_CONFIG = st.RestoreConfig.kind
    DEPLOY = st.Deploy.kind
    HEALTH_CHECK = st.HealthCheck.kind
    WRITE_ADMIN_PENDING = st.WriteAdminPending.kind
    SET_ADMIN_PASSWORD = st.SetAdminPassword.kind
    VERIFY_ADMIN = st.VerifyAdmin.kind
    MARK_USER = st.MarkUser.kind
    SYNC_GRANTS = st.SyncGrants.kind
    DRAIN_SLOT = st.DrainSlot.kind


def creds(user: str, pw: str) -> Credentials:
    return Credentials(username=user, password=pw, host="db", port=5432, dbname="app")


def secret(active: Slot = "A", pa: str = "pa-current", pb: str = "pb-current") -> SlotSecret:
    return SlotSecret(active_slot=active, a=creds("app_a", pa), b=creds("app_b", pb))


def slot_state(kind: str) -> SlotState:
    """ok: the secret's password works; missing; drift: nothing works; pending/config: only that one works."""
    if kind == "missing":
        return SlotState(exists=False)
    logins = {Source.CURRENT: kind == "ok", Source.PENDING: kind == "pending", Source.CONFIG: kind == "config"}
    return SlotState(exists=True, logins=logins)


def world(
    *,
    active: Slot = "A",
    config: Slot | None = "A",
    a: str = "ok",
    b: str = "ok",
    pending: dict[str, Any] | None = None,
    admin: str = "ok",
    admin_pending: bool = False,
    config_password: str | None = None,
    **extra: Any,
) -> World:
    s = secret(active)
    p = None
    if pending is not None:
        p = s.with_active(pending.get("active", active))
        for slot in pending.get("changed", ()):
            p = p.with_password(slot, f"p{slot.lower()}-pending")
    if config_password is None and config is not None:
        config_password = s.slot(config).password
    slots = {"A": slot_state(a), "B": slot_state(b)}
    if config is not None and config_password == s.slot(config).password and slots[config].exists:
        state = slots[config]
        slots[config] = SlotState(True, {**state.logins, Source.CONFIG: state.works(Source.CURRENT)})
    return World(
        secret=s,
        pending=p,
        admin=AdminSecret("admin", "admin-current"),
        admin_pending=AdminSecret("admin", "admin-pending") if admin_pending or admin == "pending" else None,
        admin_current_ok=admin == "ok",
        admin_pending_ok=admin == "pending",
        slots=slots,
        config_slot=config,
        config_present=config is not None,
        config_password=config_password,
        **extra,
    )


ADMIN = [K.WRITE_ADMIN_PENDING, K.SET_ADMIN_PASSWORD, K.VERIFY_ADMIN, K.PROMOTE_ADMIN_PENDING]
ROTATE_OLD = [K.WRITE_SLOT_PENDING, K.SET_PASSWORD, K.VERIFY_LOGIN, K.PROMOTE_SLOT_PENDING]
FLIP = [K.RENDER_CONFIG, K.DEPLOY, K.HEALTH_CHECK]
NORMAL = FLIP + ROTATE_OLD + ADMIN


def run(w: World, **opts: Any) -> Plan:
    return plan(w, Options(**opts))


def step(p: Plan, kind: str, n: int = 0) -> Any:
    return [s for s in p.steps if s.kind == kind][n]


def test_normal_a_to_b() -> None:
    p = run(world())
    assert p.kinds == NORMAL
    assert (p.flip_to, p.rollback_to) == ("B", "A")
    assert step(p, K.RENDER_CONFIG).slot == "B"
    write = step(p, K.WRITE_SLOT_PENDING)
    assert (write.active, write.fresh) == ("B", ("A",))
    assert step(p, K.SET_PASSWORD).slot == "A"


def test_normal_b_to_a() -> None:
    p = run(world(active="B", config="B"))
    assert p.kinds == NORMAL
    assert (p.flip_to, p.rollback_to) == ("A", "B")
    assert step(p, K.SET_PASSWORD).slot == "B"


@pytest.mark.parametrize("start", ["A", "B"])
def test_live_slot_alternates_on_every_run(start: Slot) -> None:
    """Apply each plan's flip to the world and plan again: the live slot alternates, never sticks."""
    active: Slot = start
    seen = []
    for _ in range(6):
        p = run(world(active=active, config=active))
        assert p.flip_to is not None and p.flip_to != active
        active = p.flip_to
        seen.append(active)
    assert seen == (["B", "A"] * 3 if start == "A" else ["A", "B"] * 3)


def test_first_run_neither_user_exists() -> None:
    p = run(world(a="missing", b="missing", config=None))
    assert p.kinds == (
        [
            K.WRITE_SLOT_PENDING,
            K.CREATE_USER,
            K.VERIFY_LOGIN,
            K.CREATE_USER,
            K.VERIFY_LOGIN,
            K.PROMOTE_SLOT_PENDING,
            *NORMAL,
        ]
    )
    assert step(p, K.WRITE_SLOT_PENDING).fresh == ("A", "B")
    assert [s.slot for s in p.steps if s.kind == K.CREATE_USER] == ["A", "B"]


def test_first_run_config_uses_admin_user() -> None:
    """The config's user is neither slot (e.g. the admin): no slot is live, bootstrap both and flip."""
    p = run(world(a="missing", b="missing", config=None, config_password="admin-current"))
    assert step(p, K.WRITE_SLOT_PENDING).fresh == ("A", "B")
    assert p.flip_to == "B"
    assert K.RENDER_CONFIG in p.kinds


def test_standby_user_missing() -> None:
    p = run(world(b="missing"))
    assert p.kinds[:4] == [K.WRITE_SLOT_PENDING, K.CREATE_USER, K.VERIFY_LOGIN, K.PROMOTE_SLOT_PENDING]
    assert step(p, K.CREATE_USER).slot == "B"
    assert step(p, K.WRITE_SLOT_PENDING).fresh == ("B",)
    assert p.kinds[4:] == NORMAL


def test_standby_password_drifted_is_set_back() -> None:
    p = run(world(b="drift"))
    assert p.kinds[:2] == [K.SET_PASSWORD, K.VERIFY_LOGIN]
    first = p.steps[0]
    assert (first.slot, first.source) == ("B", Source.CURRENT)
    assert "drifted" in first.reason
    assert p.kinds[2:] == NORMAL


def test_live_slot_drifted_config_works_adopts_never_changes_live() -> None:
    p = run(world(a="config", config_password="what-the-app-uses"))
    write = step(p, K.WRITE_SLOT_PENDING)
    assert write.adopt == (("A", Source.CONFIG),)
    assert p.kinds[:2] == [K.WRITE_SLOT_PENDING, K.PROMOTE_SLOT_PENDING]
    # The live slot A gets no password before the app has moved off it.
    before_flip = p.steps[: p.kinds.index(K.RENDER_CONFIG)]
    assert not [s for s in before_flip if s.kind in (K.SET_PASSWORD, K.CREATE_USER) and s.slot == "A"]
    assert p.kinds[2:] == NORMAL


def test_live_slot_nothing_works_is_not_touched_and_noted() -> None:
    p = run(world(a="drift", config_password="also-wrong"))
    assert p.kinds == NORMAL
    assert any("app may be down" in n for n in p.notes)


def test_config_already_on_standby_persists_flip_then_continues() -> None:
    """An earlier flip crashed after the config was written: finish the deploy, prove health, rotate old."""
    p = run(world(active="A", config="B"))
    assert p.kinds == [K.DEPLOY, K.HEALTH_CHECK, *ROTATE_OLD, *ADMIN]
    assert (p.flip_to, p.rollback_to) == ("B", "A")
    assert step(p, K.WRITE_SLOT_PENDING).active == "B"
    assert step(p, K.SET_PASSWORD).slot == "A"


def test_pending_flip_applied_is_finished_by_promotion() -> None:
    """Crash after ALTER USER of the old slot: the pending version works, promote it, no new flip."""
    p = run(world(active="A", config="B", a="pending", pending={"active": "B", "changed": ["A"]}))
    assert p.kinds == [K.PROMOTE_SLOT_PENDING, *ADMIN]
    assert p.flip_to is None


def test_pending_flip_not_yet_applied_is_finished() -> None:
    """Crash after writing the pending version, before ALTER USER: set it, verify, promote."""
    p = run(world(active="A", config="B", pending={"active": "B", "changed": ["A"]}))
    assert p.kinds == [K.SET_PASSWORD, K.VERIFY_LOGIN, K.PROMOTE_SLOT_PENDING, *ADMIN]
    assert step(p, K.SET_PASSWORD).source == Source.PENDING


def test_pending_that_would_move_the_live_slot_is_discarded() -> None:
    """A pending version whose active slot is not where the config points cannot be finished."""
    p = run(world(active="A", config="A", pending={"active": "B", "changed": ["A"]}))
    assert p.kinds == [K.DISCARD_SLOT_PENDING, *NORMAL]


def test_pending_bootstrap_interrupted_is_finished() -> None:
    p = run(world(a="ok", b="missing", config="A", pending={"changed": ["B"]}))
    assert p.kinds[:3] == [K.CREATE_USER, K.VERIFY_LOGIN, K.PROMOTE_SLOT_PENDING]
    assert p.kinds[3:] == NORMAL


def test_discarded_pending_password_that_works_is_adopted() -> None:
    p = run(world(active="A", config="A", b="pending", pending={"active": "B", "changed": ["B"]}))
    assert p.kinds[0] == K.DISCARD_SLOT_PENDING
    assert step(p, K.WRITE_SLOT_PENDING).adopt == (("B", Source.PENDING),)


def test_admin_pending_never_applied_is_discarded() -> None:
    p = run(world(admin_pending=True))
    assert p.kinds == [K.DISCARD_ADMIN_PENDING, *NORMAL]


def test_admin_drifted_pending_works_is_promoted() -> None:
    p = run(world(admin="pending"))
    assert p.kinds == [K.PROMOTE_ADMIN_PENDING, *NORMAL]


def test_nothing_logs_in_as_admin_blocks() -> None:
    p = run(world(admin="none"))
    assert p.steps == ()
    assert p.blocked is not None and "admin" in p.blocked and "re-run" in p.blocked


def test_sync_db_users_heals_only() -> None:
    p = run(world(b="drift"), sync_db_users=True)
    assert p.kinds == [K.SET_PASSWORD, K.VERIFY_LOGIN]
    assert run(world(), sync_db_users=True).kinds == []


def test_sync_db_users_records_where_the_config_points() -> None:
    p = run(world(active="A", config="B"), sync_db_users=True)
    assert p.kinds == [K.WRITE_SLOT_PENDING, K.PROMOTE_SLOT_PENDING]
    assert step(p, K.WRITE_SLOT_PENDING).active == "B"


def test_skip_admin() -> None:
    assert run(world(), skip_admin=True).kinds == FLIP + ROTATE_OLD


def test_fix_permissions_step() -> None:
    assert run(world(), sync_db_users=True, fix_permissions=True).kinds == [K.FIX_PERMISSIONS]


def test_without_a_config_file_the_flip_is_published_before_the_grace_period() -> None:
    """--deploy none for apps using the credential loader: they follow active_slot, so the flip is
    published (and promoted) before DEPLOY's grace period and before the old slot's password changes."""
    p = run(world(config=None, a="drift"), renders_config=False)
    assert K.RENDER_CONFIG not in p.kinds
    assert p.kinds == [K.WRITE_SLOT_PENDING, K.PROMOTE_SLOT_PENDING, K.DEPLOY, K.HEALTH_CHECK, *ROTATE_OLD, *ADMIN]
    assert p.steps[0].active == "B" and p.steps[0].fresh == ()
    # Slot A is active (protected) even though no config names it: never set before the flip is proven.
    assert p.kinds.index(K.SET_PASSWORD) > p.kinds.index(K.HEALTH_CHECK)


@pytest.mark.parametrize("renders", [True, False])
def test_the_old_slot_drains_after_the_flip_is_proven_and_before_its_password_changes(renders: bool) -> None:
    p = run(world(config="A" if renders else None), renders_config=renders, drain_timeout=45.0)
    drain = step(p, K.DRAIN_SLOT)
    assert (drain.on, drain.timeout) == ("A", 45.0)
    at = p.kinds.index(K.DRAIN_SLOT)
    assert p.kinds[at - 1] == K.HEALTH_CHECK and p.kinds[at + 1 :] == ROTATE_OLD + ADMIN
    # Not part of the flip: a drain that times out (or is stopped) leaves the proven flip in place.
    assert at not in p.rollbacks and max(p.rollbacks) == at - 1


def test_an_interrupted_flip_drains_the_slot_it_leaves() -> None:
    p = run(world(active="A", config="B"), drain_timeout=10.0)
    assert step(p, K.DRAIN_SLOT).on == "A"
    assert p.kinds.index(K.DRAIN_SLOT) == p.kinds.index(K.HEALTH_CHECK) + 1


def test_no_drain_without_a_timeout_or_a_flip() -> None:
    assert K.DRAIN_SLOT not in run(world(), drain_timeout=0.0).kinds
    assert K.DRAIN_SLOT not in run(world(config="B"), sync_db_users=True, drain_timeout=10.0).kinds
    finished = world(active="A", config="B", pending={"active": "B", "changed": ["A"]}, a="pending")
    assert K.DRAIN_SLOT not in run(finished, drain_timeout=10.0).kinds  # the old slot's password already changed


def test_an_rds_managed_admin_secret_is_read_never_written() -> None:
    p = run(world(admin_owner="rds"))
    assert p.kinds == FLIP + ROTATE_OLD
    assert "admin rotation skipped: managed by RDS (the admin secret's OwningService)" in p.notes[-1]


@pytest.mark.parametrize(
    ("admin", "admin_pending"), [("ok", True), ("pending", True)], ids=["pending-unused", "rds-mid-rotation"]
)
def test_an_rds_managed_admin_secrets_pending_version_is_left_to_rds(admin: str, admin_pending: bool) -> None:
    """RDS labels AWSPENDING while it rotates: the run logs in with whichever password works and moves no label."""
    p = run(world(admin=admin, admin_pending=admin_pending, admin_owner="rds"))
    assert p.kinds == FLIP + ROTATE_OLD and p.blocked is None


def test_an_rds_managed_admin_that_does_not_log_in_blocks_naming_rds() -> None:
    p = run(world(admin="none", admin_owner="rds"))
    assert p.steps == () and p.blocked is not None and "RDS" in p.blocked and "admin secret" in p.blocked


def test_password_changes_are_always_preceded_by_a_pending_write() -> None:
    """Write-ahead over many worlds: SET/CREATE with a pending password only after a WRITE in the same plan,
    or when finishing an observed pending version."""
    worlds = [
        world(),
        world(b="missing"),
        world(a="missing", b="missing", config=None),
        world(active="A", config="B"),
        world(b="drift"),
        world(active="B", config="B", a="missing"),
    ]
    for w in worlds:
        written = w.pending is not None
        for s in plan(w, Options()).steps:
            if s.kind == K.WRITE_SLOT_PENDING:
                written = True
            if s.kind in (K.SET_PASSWORD, K.CREATE_USER) and s.source == Source.PENDING:
                assert written, (w, s)
            if s.kind == K.PROMOTE_SLOT_PENDING:
                written = False


def test_never_changes_a_password_the_app_uses() -> None:
    for active, config in [("A", "A"), ("A", "B"), ("B", "B"), ("B", "A")]:
        for b in ["ok", "drift", "missing"]:
            w = world(active=active, config=config, b=b)
            p = plan(w, Options())
            flip_at = next((i for i, s in enumerate(p.steps) if s.kind == K.HEALTH_CHECK), len(p.steps))
            for s in p.steps[:flip_at]:
                if s.kind == K.SET_PASSWORD:  # creating a missing user cannot break a login in use
                    # ... and setting the password the config already holds gives the app nothing new
                    gives = w.password(s.slot, s.source)
                    assert s.slot not in (active, config) or gives == w.config_password, (active, config, b, s)


# ------------------------------------------------------------------ rollback is part of the plan


def rollback_kinds(p: Plan, failing: str) -> list[str]:
    return [s.kind for s in p.rollbacks[p.kinds.index(failing)]]


def test_rollback_of_a_rendered_flip() -> None:
    p = run(world())
    assert rollback_kinds(p, K.RENDER_CONFIG) == [K.RESTORE_CONFIG]  # never reached the app: no redeploy
    for failing in (K.DEPLOY, K.HEALTH_CHECK):
        assert rollback_kinds(p, failing) == [K.RESTORE_CONFIG, K.DEPLOY, K.HEALTH_CHECK]
    assert [s.slot for s in p.full_rollback][1:] == ["A", "A"]
    assert set(p.rollbacks) == {p.kinds.index(k) for k in FLIP}  # nothing after the flip is rolled back


def test_rollback_of_an_interrupted_flip_renders_the_old_slot() -> None:
    p = run(world(active="A", config="B"))
    assert rollback_kinds(p, K.DEPLOY) == [K.RENDER_CONFIG, K.DEPLOY, K.HEALTH_CHECK]
    assert all(s.slot == "A" for s in p.full_rollback)


def test_rollback_in_loader_mode_publishes_the_old_slot() -> None:
    p = run(world(config=None), renders_config=False)
    assert rollback_kinds(p, K.HEALTH_CHECK) == [
        K.WRITE_SLOT_PENDING,
        K.PROMOTE_SLOT_PENDING,
        K.DEPLOY,
        K.HEALTH_CHECK,
    ]
    assert rollback_kinds(p, K.PROMOTE_SLOT_PENDING) == rollback_kinds(p, K.HEALTH_CHECK)  # the publish's promote
    publish_back = p.full_rollback[0]
    assert isinstance(publish_back, st.WriteSlotPending) and publish_back.active == "A" and not publish_back.fresh


def test_plans_without_a_flip_have_no_rollback() -> None:
    assert run(world(b="drift"), sync_db_users=True).rollbacks == {}
    assert run(world(active="A", config="B", a="pending", pending={"active": "B", "changed": ["A"]})).rollbacks == {}


# ------------------------------------------------------------------ refusals: bad input, nothing planned


def test_a_slot_user_that_is_the_admin_is_refused() -> None:
    w = world()
    w = World(**{**w.__dict__, "admin": AdminSecret("app_b", "x")})
    p = run(w)
    assert p.steps == () and p.refused is not None and "admin" in p.refused


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (SlotState(True, {Source.CURRENT: True}, privileges=("SUPERUSER",)), "SUPERUSER"),
        (SlotState(True, {Source.CURRENT: False}, marked=False), "not created by the rotator"),
        (SlotState(False, other_hosts=("10.0.0.%",)), "--mysql-user-host"),
    ],
)
def test_unmanaged_or_privileged_slot_users_are_refused(state: SlotState, words: str) -> None:
    w = world()
    p = run(World(**{**w.__dict__, "slots": {"A": w.slots["A"], "B": state}}))
    assert p.steps == () and p.refused is not None and words in p.refused


def test_a_legacy_slot_user_is_marked_not_refused() -> None:
    w = world()
    legacy = SlotState(True, {Source.CURRENT: True}, marked=False, owner_member=True)
    p = run(World(**{**w.__dict__, "slots": {"A": w.slots["A"], "B": legacy}}))
    assert p.refused is None and p.kinds[0] == K.MARK_USER and p.steps[0].slot == "B"
    not_member = SlotState(True, {Source.CURRENT: True}, marked=False)
    assert run(World(**{**w.__dict__, "slots": {"A": w.slots["A"], "B": not_member}})).refused is not None
    on_mysql = World(**{**w.__dict__, "slots": {"A": w.slots["A"], "B": not_member}, "engine": "mysql"})
    assert run(on_mysql).kinds[0] == K.MARK_USER


def test_a_user_created_but_not_yet_marked_by_a_crashed_run_is_marked() -> None:
    """MySQL: a crash between CREATE USER (with the pending password) and granting the marker role."""
    w = world(b="missing", pending={"changed": ["B"]}, engine="mysql")
    half_made = SlotState(True, {Source.CURRENT: False, Source.PENDING: True}, marked=False)
    p = run(World(**{**w.__dict__, "slots": {"A": w.slots["A"], "B": half_made}}))
    assert p.refused is None, p.refused
    assert p.kinds[:2] == [K.PROMOTE_SLOT_PENDING, K.MARK_USER]


def test_other_refusals() -> None:
    assert run(world(admin_problems=("the admin lacks CREATEROLE: grant it",))).refused is not None
    refused = run(world(health_precheck="status 500 is not accepted")).refused
    assert refused is not None and "--health-url" in refused
    # The app is down on its slot: the failing health URL does not stop the flip that heals it.
    assert run(world(a="drift", config_password="wrong", health_precheck="status 500")).refused is None


def test_a_pending_version_of_another_identity_is_discarded() -> None:
    w = world(active="A", config="B", a="pending", pending={"active": "B", "changed": ["A"]})
    assert w.pending is not None
    moved = w.pending.with_slot("A", w.pending.slot("A").__class__("someone_else", "pa-pending", "db", 5432, "app"))
    p = run(World(**{**w.__dict__, "pending": moved}))
    assert p.kinds[0] == K.DISCARD_SLOT_PENDING
    assert any("disagrees" in n for n in p.notes)


# ------------------------------------------------------------------ every world that matters, enumerated


def _slot_states(pending_same: bool | None, config_here: bool) -> list[SlotState]:
    """Every state of one slot user. ``pending_same``: None without a pending version, else whether its password
    equals the current one (then both log in alike)."""
    out = [SlotState(exists=False)]
    for cur, pen, cfg in itertools.product([False, True], repeat=3):
        if (pen and pending_same is not False) or (cfg and not config_here):
            continue
        logins = {Source.CURRENT: cur}
        if pending_same is not None:
            logins[Source.PENDING] = cur if pending_same else pen
        if config_here:
            logins[Source.CONFIG] = cfg
        out.append(SlotState(True, logins))
    return out


_PENDINGS: list[dict[str, Any] | None] = [
    None,
    {"changed": ["A"]},
    {"changed": ["B"]},
    {"flip": True, "changed": ["old"]},
    {"flip": True, "changed": []},
    {"identity": True},
]


# Each slot lacking something the other holds: the plan heals the standby's only (one-sided drift is a table test).
_GRANTS: list[dict[Slot, tuple[str, ...]]] = [{}, {"A": ("SELECT ON TABLE reports",), "B": ("SET role=app_owner",)}]


def enumerate_worlds() -> list[tuple[World, Options]]:
    worlds = []
    for active, config, pend, admin, renders, sync, config_pw in itertools.product(
        SLOTS,
        [None, "A", "B"],
        _PENDINGS,
        ["ok", "ok+pending", "pending", "none"],
        [True, False],
        [False, True],
        ["its own", "the current one"],
    ):
        if config is None and config_pw != "its own":
            continue
        s = secret(active)
        p = None
        if pend is not None:
            p = s.with_active(other(active)) if pend.get("flip") else s
            for slot in pend.get("changed", []):
                target = active if slot == "old" else slot
                p = p.with_password(target, f"p{target.lower()}-pending")
            if pend.get("identity"):
                p = p.with_slot("B", Credentials("renamed_b", "pb-pending", "db", 5432, "app"))
        same = {slot: None if p is None else p.slot(slot).password == s.slot(slot).password for slot in SLOTS}
        for a_state, b_state, grants in itertools.product(
            _slot_states(same["A"], config == "A"), _slot_states(same["B"], config == "B"), _GRANTS
        ):
            if grants and not (a_state.exists and b_state.exists):
                continue  # rights are compared only between two existing users
            states = {"A": a_state, "B": b_state}
            config_password = "the-config-password" if config else None
            if config is not None and config_pw == "the current one":
                config_password = s.slot(config).password
                state = states[config]
                if state.exists and state.works(Source.CONFIG) != state.works(Source.CURRENT):
                    continue  # one password, two answers: not a world
            w = World(
                secret=s,
                pending=p,
                admin=AdminSecret("admin", "admin-current"),
                admin_pending=AdminSecret("admin", "admin-pending") if "pending" in admin else None,
                admin_current_ok=admin.startswith("ok"),
                admin_pending_ok=admin == "pending",
                slots=states,
                config_slot=config,
                config_present=config is not None,
                config_password=config_password,
                grants_missing=grants,
            )
            drain = 30.0 if len(worlds) % 2 else 0.0  # half the worlds with a drain, the planner's time stays flat
            if len(worlds) % 3 == 0:  # a third with an RDS-managed admin secret
                w = dataclasses.replace(w, admin_owner="rds")
            worlds.append((w, Options(renders_config=renders, sync_db_users=sync, drain_timeout=drain)))
    return worlds


def _in_use(w: World, opt: Options) -> set[Slot]:
    """What the app may be using: the config's slot when its password works, else the secret's active slot."""
    if opt.renders_config and w.config_works and w.config_slot is not None:
        return {w.config_slot}
    return {w.secret.active_slot}


def check_invariants(w: World, opt: Options, p: Plan) -> None:
    if p.refused or p.blocked:
        assert p.steps == () and p.rollbacks == {}
        return
    kinds = p.kinds
    in_use = _in_use(w, opt)
    health_at = next((i for i, s in enumerate(p.steps) if isinstance(s, st.HealthCheck)), len(p.steps))
    pending_open = w.pending is not None  # an observed pending version, until discarded or promoted
    written = False
    for i, s in enumerate(p.steps):
        if isinstance(s, st.DiscardSlotPending):
            pending_open = False
        if isinstance(s, st.WriteSlotPending):
            written = True
        if isinstance(s, st.SetPassword | st.CreateUser):
            # Write-ahead: a password set is stored first (pending, or the current version itself).
            assert s.source is Source.CURRENT or written or pending_open, (w, opt, kinds)
            # The live slot is never given a password it does not already use, before the flip is proven.
            if i < health_at:
                assert s.on not in in_use or not w.slots[s.on].exists, (w, opt, kinds, s)
        if isinstance(s, st.SyncGrants):
            # Rights are healed on the standby only, before the flip, and only to what was seen missing.
            assert s.on not in in_use and s.on != w.secret.active_slot and w.slots[s.on].exists, (w, opt, kinds)
            assert not (opt.live_secret and w.live_works and s.on == w.live_slot), (w, opt, kinds)
            assert i < health_at and s.missing == w.grants_missing[s.on], (w, opt, kinds)
        if isinstance(s, st.PromoteSlotPending):
            if not written:  # finishing the observed pending version: only one of the same identity
                assert pending_open and w.pending is not None and same_identity(w.pending, w.secret), (w, opt)
            written = pending_open = False
    assert not written, "a pending slot version is left unpromoted"
    in_use_now = {w.secret.active_slot} | ({w.config_slot} if opt.renders_config and w.config_works else set())
    if opt.live_secret and w.live_works and w.live_slot is not None:
        in_use_now.add(w.live_slot)
    for slot in SLOTS:
        if w.grants_missing.get(slot) and slot not in in_use_now:
            assert [x for x in p.steps if isinstance(x, st.SyncGrants) and x.on == slot], (w, opt, kinds)
    if w.pending is not None:
        assert (
            kinds and kinds[0] in (K.DISCARD_SLOT_PENDING, K.SET_PASSWORD, K.CREATE_USER, K.PROMOTE_SLOT_PENDING)
        ) or (kinds[0] in (K.DISCARD_ADMIN_PENDING, K.PROMOTE_ADMIN_PENDING)), kinds
    if p.flip_to is not None:
        assert p.rollback_to == other(p.flip_to) and not opt.sync_db_users
        assert p.rollbacks and all(
            isinstance(
                p.steps[i],
                st.RenderConfig
                | st.WriteSlotPending
                | st.PromoteSlotPending
                | st.WriteLivePending
                | st.PromoteLivePending
                | st.Deploy
                | st.HealthCheck,
            )
            for i in p.rollbacks
        )
        full = p.full_rollback
        assert isinstance(full[-1], st.HealthCheck) and full[-1].on == p.rollback_to
    else:
        assert p.rollbacks == {}
    if w.admin_owner is not None:  # its owner rotates it: no admin step, no label moved on its secret
        assert not set(kinds) & {*ADMIN, K.DISCARD_ADMIN_PENDING}, kinds
        assert any("admin rotation skipped: managed by RDS" in note for note in p.notes) or opt.sync_db_users
    drains = [i for i, s in enumerate(p.steps) if isinstance(s, st.DrainSlot)]
    if p.flip_to is not None and opt.drain_timeout > 0:
        # The old slot drains once: right after the flip is proven, before its password changes.
        assert drains == [max(p.rollbacks) + 1], kinds
        drain = p.steps[drains[0]]
        assert drain.on == p.rollback_to and drain.timeout == opt.drain_timeout
        assert all(s.on != p.rollback_to for s in p.steps[: drains[0]] if isinstance(s, st.SetPassword) and s.on)
    else:
        assert drains == [], kinds


def test_every_enumerated_world_keeps_the_invariants() -> None:
    worlds = enumerate_worlds()
    assert len(worlds) >= 20_000
    for w, opt in worlds:
        check_invariants(w, opt, plan(w, opt))


def consistent(active: Slot, config: bool) -> World:
    return world(active=active, config=active if config else None)


@pytest.mark.parametrize(("active", "config"), list(itertools.product(SLOTS, [True, False])))
def test_a_consistent_world_needs_no_healing(active: Slot, config: bool) -> None:
    w = consistent(active, config)
    opt = Options(renders_config=config)
    assert plan(w, Options(renders_config=config, sync_db_users=True)).steps == ()
    loader_flip = [K.WRITE_SLOT_PENDING, K.PROMOTE_SLOT_PENDING, K.DEPLOY, K.HEALTH_CHECK]
    assert plan(w, opt).kinds == (FLIP if config else loader_flip) + ROTATE_OLD + ADMIN, (
        "heal steps on a consistent world"
    )


# ------------------------------------------------------------------ grants kept equal


def test_standby_lacking_rights_of_the_live_slot_is_synced_before_the_flip() -> None:
    p = run(world(grants_missing={"B": ("SELECT ON TABLE reports",)}))
    assert p.kinds == [K.SYNC_GRANTS, *NORMAL]
    assert step(p, K.SYNC_GRANTS).slot == "B" and step(p, K.SYNC_GRANTS).missing == ("SELECT ON TABLE reports",)


def test_the_live_slot_is_never_given_the_standbys_rights() -> None:
    assert run(world(grants_missing={"A": ("SELECT ON TABLE reports",)})).kinds == NORMAL
    p = run(world(active="B", config="B", grants_missing={"B": ("x",), "A": ("y",)}))
    assert [s.slot for s in p.steps if s.kind == K.SYNC_GRANTS] == ["A"]


def test_grants_are_synced_by_sync_db_users_too() -> None:
    assert run(world(grants_missing={"B": ("MEMBER OF app_owner",)}), sync_db_users=True).kinds == [K.SYNC_GRANTS]


def test_an_interrupted_flip_uses_both_slots_so_grants_wait() -> None:
    p = run(world(active="A", config="B", grants_missing={"A": ("x",)}))
    assert K.SYNC_GRANTS not in p.kinds
    assert any("both slots may be in use" in n for n in p.notes)


def test_a_crash_inside_create_user_is_healed_by_the_sync() -> None:
    """PostgreSQL: the standby was created and marked, then the run died before GRANT owner / SET role."""
    half = {"B": ("MEMBER OF app_owner", "SET role=app_owner")}
    p = run(world(b="pending", pending={"changed": ["B"]}, grants_missing=half))
    assert p.kinds[:2] == [K.PROMOTE_SLOT_PENDING, K.SYNC_GRANTS]


# ------------------------------------------------------------------ --rotate-after: the age policy (rotator.age)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY = 86400.0


def aged(w: World, *, a: float | None = None, b: float | None = None, admin: float | None = None) -> World:
    """``w`` at NOW with each credential's password ``n`` days old (None: no rotated_at)."""

    def at(days: float | None) -> datetime | None:
        return None if days is None else NOW - timedelta(days=days)

    s = w.secret
    s = s.with_slot("A", dataclasses.replace(s.a, rotated_at=at(a))).with_slot(
        "B", dataclasses.replace(s.b, rotated_at=at(b))
    )
    return dataclasses.replace(w, secret=s, admin=dataclasses.replace(w.admin, rotated_at=at(admin)), now=NOW)


def test_rotate_after_a_young_live_slot_heals_but_does_not_flip() -> None:
    w = aged(world(b="drift"), a=3, b=40, admin=3)
    p = run(w, rotate_after_s=30 * DAY)
    assert p.flip_to is None and p.rollbacks == {}
    assert p.kinds == [K.SET_PASSWORD, K.VERIFY_LOGIN]  # the drifted standby is healed all the same
    assert any("younger than --rotate-after 30d" in n for n in p.notes)


def test_rotate_after_an_old_live_slot_flips() -> None:
    assert run(aged(world(), a=30, b=1, admin=30), rotate_after_s=30 * DAY).kinds == NORMAL


def test_rotate_after_an_unknown_age_flips() -> None:
    assert run(aged(world(), a=None, b=1, admin=None), rotate_after_s=30 * DAY).kinds == NORMAL
    # And so does a world without a clock (no ages at all), as every run did before the policy.
    assert run(world(), rotate_after_s=30 * DAY).kinds == NORMAL


def test_rotate_after_an_old_admin_rotates_without_a_flip() -> None:
    assert run(aged(world(), a=3, b=3, admin=31), rotate_after_s=30 * DAY).kinds == ADMIN
    assert run(aged(world(), a=3, b=3, admin=31), rotate_after_s=30 * DAY, skip_admin=True).kinds == []


def test_rotate_after_a_flip_leaves_a_young_admin_alone() -> None:
    assert run(aged(world(), a=40, b=1, admin=1), rotate_after_s=30 * DAY).kinds == FLIP + ROTATE_OLD


def test_rotate_after_an_interrupted_flip_is_always_finished() -> None:
    w = aged(world(active="A", config="B"), a=1, b=1, admin=1)
    p = run(w, rotate_after_s=30 * DAY)
    assert p.flip_to == "B"


def test_rotate_after_an_adopted_live_password_has_an_unknown_age() -> None:
    w = aged(world(a="config", config_password="the-config-password"), a=1, b=1, admin=1)
    assert run(w, rotate_after_s=30 * DAY).flip_to == "B"


@pytest.mark.parametrize("where", ["a", "b", "admin"])
def test_a_rotated_at_in_the_future_is_refused(where: str) -> None:
    w = aged(world(), **{"a": 1, "b": 1, "admin": 1, where: -1})
    p = run(w)
    assert p.refused and "rotated_at" in p.refused and p.steps == ()
    # Clock skew of a few minutes is not refused.
    assert not run(aged(world(), **{"a": 1, "b": 1, "admin": 1, where: -60 / DAY})).refused


def test_every_enumerated_world_keeps_the_invariants_under_the_age_policy() -> None:
    """The enumeration again, each world with a live slot young, old or of unknown age, and --rotate-after:
    the invariants hold, and a young live slot that logs in with its secret's password is never flipped away
    from unless an interrupted flip is being finished."""
    variants = [(3.0, 3.0), (45.0, 45.0), (None, None), (3.0, 45.0)]
    opt_flips = 0
    for i, (w, opt) in enumerate(enumerate_worlds()):
        live_days, admin_days = variants[i % len(variants)]
        active = w.secret.active_slot
        w = aged(w, **{active.lower(): live_days, other(active).lower(): 1.0, "admin": admin_days})
        opt = dataclasses.replace(opt, rotate_after_s=30 * DAY)
        p = plan(w, opt)
        check_invariants(w, opt, p)
        young = live_days is not None and live_days < 30
        clean = w.pending is None and w.slots[active].works(Source.CURRENT)
        interrupted = opt.renders_config and w.config_works and w.config_slot != active
        if young and clean and not interrupted and p.flip_to is not None:
            raise AssertionError((w, opt, p.kinds))
        opt_flips += p.flip_to is not None
    assert opt_flips > 0
