"""Table tests: worlds -> plans. The planner is pure, so each world is a plain value."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.plan import Kind, Options, Plan, SlotState, Source, World, plan
from rotator.secrets import AdminSecret, Credentials, Slot, SlotSecret

K = Kind


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
) -> World:
    s = secret(active)
    p = None
    if pending is not None:
        p = s.with_active(pending.get("active", active))
        for slot in pending.get("changed", ()):
            p = p.with_password(slot, f"p{slot.lower()}-pending")
    if config_password is None and config is not None:
        config_password = s.slot(config).password
    return World(
        secret=s,
        pending=p,
        admin=AdminSecret("admin", "admin-current"),
        admin_pending=AdminSecret("admin", "admin-pending") if admin_pending or admin == "pending" else None,
        admin_current_ok=admin == "ok",
        admin_pending_ok=admin == "pending",
        slots={"A": slot_state(a), "B": slot_state(b)},
        config_slot=config,
        config_present=config is not None,
        config_password=config_password,
    )


ADMIN = [K.WRITE_ADMIN_PENDING, K.SET_ADMIN_PASSWORD, K.VERIFY_ADMIN, K.PROMOTE_ADMIN_PENDING]
ROTATE_OLD = [K.WRITE_SLOT_PENDING, K.SET_PASSWORD, K.VERIFY_LOGIN, K.PROMOTE_SLOT_PENDING]
FLIP = [K.RENDER_CONFIG, K.DEPLOY, K.HEALTH_CHECK]
NORMAL = FLIP + ROTATE_OLD + ADMIN


def run(w: World, **opts: Any) -> Plan:
    return plan(w, Options(**opts))


def step(p: Plan, kind: Kind, n: int = 0) -> Any:
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
                    assert s.slot not in (active, config), (active, config, b, s)
