"""The planner with a live secret (--live-secret): table tests, then the enumerated worlds of test_plan with every
state of the live secret, run through a model of the database and the secrets that checks, at every step
boundary and through every rollback, that the live secret never names a password that does not log in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rotator import steps as st
from rotator.plan import Options, Plan, SlotState, Source, World, plan
from rotator.secrets import SLOTS, Slot, SlotSecret
from tests.unit.test_plan import ADMIN, FLIP, ROTATE_OLD, K, check_invariants, enumerate_worlds, world

WRITE_LIVE, PROMOTE_LIVE, DISCARD_LIVE = st.WriteLivePending.kind, st.PromoteLivePending.kind, "discard_live_pending"
LIVE = [WRITE_LIVE, PROMOTE_LIVE]


def live_world(live: Slot | None = "A", *, live_pw: str | None = None, logs_in: bool | None = None, **kw: Any) -> World:
    """``live``: the slot the live secret names; its password is that slot's current one unless ``live_pw``."""
    w = world(**kw)
    if live is None:
        return replace(w, live_slot=None, live_password=None, live_exact=False)
    password = live_pw if live_pw is not None else w.secret.slot(live).password
    state = w.slots[live]
    works = state.works(Source.CURRENT) if logs_in is None else logs_in
    slots = {**w.slots, live: SlotState(state.exists, {**state.logins, Source.LIVE: works and state.exists})}
    exact = password == w.secret.slot(live).password
    return replace(w, slots=slots, live_slot=live, live_password=password, live_exact=exact)


def run(w: World, **opts: Any) -> Plan:
    return plan(w, Options(live_secret=True, **opts))


def test_the_flip_writes_the_live_secret_before_the_deployment() -> None:
    p = run(live_world("A"))
    assert p.kinds == [K.RENDER_CONFIG, *LIVE, K.DEPLOY, K.HEALTH_CHECK, *ROTATE_OLD, *ADMIN]
    assert [s.slot for s in p.steps if s.kind in LIVE] == ["B", "B"]
    # A failed render or live write never reached the app: no redeploy. A promoted one is written back.
    assert [s.kind for s in p.rollbacks[0]] == [K.RESTORE_CONFIG]
    assert [s.kind for s in p.rollbacks[1]] == [K.RESTORE_CONFIG, DISCARD_LIVE]
    assert [s.kind for s in p.rollbacks[2]] == [K.RESTORE_CONFIG, *LIVE]
    for failing in (3, 4):
        assert [s.kind for s in p.rollbacks[failing]] == [K.RESTORE_CONFIG, *LIVE, K.DEPLOY, K.HEALTH_CHECK]
        assert all(s.slot in (None, "A") for s in p.rollbacks[failing])


def test_without_a_template_the_live_secret_follows_the_publish() -> None:
    p = run(live_world("A", config=None), renders_config=False)
    publish = [K.WRITE_SLOT_PENDING, K.PROMOTE_SLOT_PENDING]
    assert p.kinds == [*publish, *LIVE, K.DEPLOY, K.HEALTH_CHECK, *ROTATE_OLD, *ADMIN]
    assert [s.kind for s in p.full_rollback] == [*publish, *LIVE, K.DEPLOY, K.HEALTH_CHECK]


def test_an_empty_live_secret_is_filled_by_the_first_flip() -> None:
    p = run(live_world(None))
    assert p.kinds == [K.RENDER_CONFIG, *LIVE, K.DEPLOY, K.HEALTH_CHECK, *ROTATE_OLD, *ADMIN]


def test_without_the_option_nothing_changes() -> None:
    assert plan(live_world("A"), Options()).kinds == FLIP + ROTATE_OLD + ADMIN


def test_an_interrupted_live_write_is_discarded_first() -> None:
    p = run(replace(live_world("A"), live_pending=True))
    assert p.kinds[0] == DISCARD_LIVE
    w = replace(live_world("A", pending={"changed": ["B"]}), live_pending=True)
    assert run(w).kinds[:4] == [K.SET_PASSWORD, K.VERIFY_LOGIN, K.PROMOTE_SLOT_PENDING, DISCARD_LIVE]
    assert run(replace(live_world("A"), live_pending=True), sync_db_users=True).kinds == [DISCARD_LIVE]


@pytest.mark.parametrize(
    ("w", "why"),
    [
        (live_world("B"), "names the standby slot"),
        (live_world("A", live_pw="stale", logs_in=False), "a password that does not log in"),
        (live_world(None), "names nobody"),
    ],
)
def test_sync_heals_a_drifted_live_secret(w: World, why: str) -> None:
    p = run(w, sync_db_users=True)
    assert p.kinds == LIVE, why
    assert all(s.slot == "A" for s in p.steps)


def test_sync_leaves_an_exact_live_secret_alone() -> None:
    assert run(live_world("A"), sync_db_users=True).kinds == []


def test_a_live_password_that_logs_in_is_adopted_and_its_slot_protected() -> None:
    """The live secret names standby B with the password that works (the slot secret's B drifted): B is not set
    back before the flip (apps started from the live secret use it); its password is adopted instead."""
    w = live_world("B", live_pw="what-the-tasks-use", logs_in=True, b="drift")
    p = run(w)
    write = next(s for s in p.steps if isinstance(s, st.WriteSlotPending))
    assert ("B", Source.LIVE) in write.adopt
    before_health = p.steps[: p.kinds.index(K.HEALTH_CHECK)]
    assert not [s for s in before_health if isinstance(s, st.SetPassword) and s.on == "B"]


def test_the_live_slot_broken_and_nothing_else_works_is_left_and_noted() -> None:
    p = run(
        live_world("A", a="drift", live_pw="stale", logs_in=False, config_password="also-wrong"), sync_db_users=True
    )
    assert p.kinds == []
    assert any("live secret was left" in n for n in p.notes)


# ------------------------------------------------------------------ the model: does the live secret log in?


class Model:
    """The database (which passwords log in per slot) and the secrets, as the steps change them."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.db: dict[Slot, set[str]] = {}
        for slot in SLOTS:
            state = w.slots[slot]
            known = {w.password(slot, src) for src, ok in state.logins.items() if ok}
            self.db[slot] = {pw for pw in known if pw} if state.exists else set()
        self.cur: SlotSecret = w.secret
        self.pend: SlotSecret | None = w.pending
        self.written = False
        self.live: tuple[Slot, str] | None = None
        if w.live_slot is not None and w.live_password is not None:
            self.live = (w.live_slot, w.live_password)
        self.live_ok_at_start = w.live_works
        self.live_written = False
        self.live_pend: tuple[Slot, str] | None = None
        self.fresh = 0

    def live_logs_in(self) -> bool:
        return self.live is not None and self.live[1] in self.db[self.live[0]]

    def apply(self, s: st.Step) -> None:
        w = self.w
        if isinstance(s, st.WriteSlotPending):
            new = self.cur
            for slot, src in s.adopt:
                pw = w.password(slot, src)
                assert pw is not None
                new = new.with_password(slot, pw)
            for slot in s.fresh:
                self.fresh += 1
                new = new.with_password(slot, f"fresh-{self.fresh}")
            self.pend = new.with_active(s.active) if s.active else new
        elif isinstance(s, st.PromoteSlotPending):
            assert self.pend is not None
            self.cur, self.pend = self.pend, None
        elif isinstance(s, st.DiscardSlotPending):
            self.pend = None
        elif isinstance(s, st.CreateUser | st.SetPassword):
            if s.source is Source.PENDING:
                assert self.pend is not None
                pw = self.pend.slot(s.on).password
            elif s.source is Source.CURRENT:
                pw = self.cur.slot(s.on).password
            else:
                pw = w.password(s.on, s.source) or ""
            self.db[s.on] = {pw}
        elif isinstance(s, st.WriteLivePending):
            pw = self.cur.slot(s.on).password
            assert pw in self.db[s.on], f"the live secret is written with slot {s.on} credentials that do not log in"
            self.live_pend = (s.on, pw)
        elif isinstance(s, st.PromoteLivePending):
            assert self.live_pend is not None and self.live_pend[0] == s.on
            self.live, self.live_pend, self.live_written = self.live_pend, None, True
        elif isinstance(s, st.DiscardLivePending):
            self.live_pend = None

    def check(self, where: str) -> None:
        if self.live_written or self.live_ok_at_start:
            assert self.live_logs_in(), f"the live secret does not log in {where}"


def check_live(w: World, opt: Options, p: Plan) -> None:
    m = Model(w)
    for i, s in enumerate(p.steps):
        m.apply(s)
        m.check(f"after step {i + 1} {s.kind}")
    if p.steps and not (p.refused or p.blocked):
        ends_on = p.flip_to or (None if m.live is None else m.live[0])
        if p.flip_to is not None or m.live_written:
            assert m.live is not None and m.live[0] == (ends_on or m.cur.active_slot), "the live secret is elsewhere"
            assert m.live_logs_in(), "the live secret does not log in at the end"
    for index, undo in p.rollbacks.items():
        m = Model(w)
        for s in p.steps[:index]:
            m.apply(s)
        if isinstance(p.steps[index], st.PromoteLivePending):
            m.apply(p.steps[index])  # a promotion may have happened before it failed
        for s in undo:
            m.apply(s)
            m.check(f"in the rollback of step {index + 1} after {s.kind}")
        if any(isinstance(s, st.PromoteLivePending) for s in undo):
            assert m.live is not None and m.live[0] == p.rollback_to


def live_variants(w: World) -> list[World]:
    out = [replace(w, live_slot=None, live_password=None)]
    for slot in SLOTS:
        state = w.slots[slot]
        if not state.exists:
            continue
        others = any(state.logins.values())
        cur = w.secret.slot(slot).password
        slots = {**w.slots, slot: SlotState(True, {**state.logins, Source.LIVE: state.works(Source.CURRENT)})}
        out.append(replace(w, slots=slots, live_slot=slot, live_password=cur, live_exact=True))
        for works in [False, True] if not others else [False]:
            slots = {**w.slots, slot: SlotState(True, {**state.logins, Source.LIVE: works})}
            out.append(replace(w, slots=slots, live_slot=slot, live_password="the-live-password"))
    return out + [replace(v, live_pending=True) for v in out[:2]]


def test_every_enumerated_world_keeps_the_live_secret_logging_in() -> None:
    base = enumerate_worlds()[::10]
    count = 0
    for w0, opt0 in base:
        opt = replace(opt0, live_secret=True)
        for w in live_variants(w0):
            p = plan(w, opt)
            check_invariants(w, opt, p)
            check_live(w, opt, p)
            count += 1
    assert count >= 8_000
