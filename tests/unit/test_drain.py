"""The drain's decision over sequences of looks at a user's sessions (rotator.drain). The server's answers are
given as values (the engines' real reads are tested in tests/integration/test_drain.py); the clock is the
looks' own, so no test sleeps."""

from __future__ import annotations

from collections.abc import Iterator

from rotator.db.base import SessionInfo, UserSessions
from rotator.drain import wait_for_drain


def session(pid: int, *, started: float | None = 0.0, active: float | None = 0.0, app: str = "") -> SessionInfo:
    return SessionInfo(pid, f"10.0.0.{pid}:5{pid:04d}", app, started, active)


class Server:
    """The first look at t = 100, then one per sample (1 s here): each look's sessions come from ``looks``."""

    def __init__(self, looks: list[tuple[SessionInfo, ...]]) -> None:
        self._looks: Iterator[tuple[SessionInfo, ...]] = iter(looks)
        self.t = 100.0

    def read(self) -> UserSessions:
        return UserSessions(self.t, next(self._looks))

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def clock(self) -> float:
        return self.t


def drain(looks: list[tuple[SessionInfo, ...]], timeout: float = 10.0) -> tuple[bool, list[int], float]:
    server = Server(looks)
    result = wait_for_drain(server.read, timeout, sleep=server.sleep, clock=server.clock, sample=1.0)
    return result.drained, [s.id for s in result.in_use], result.seconds


def test_idle_sessions_left_open_do_not_hold_the_drain() -> None:
    idle = (session(1, started=50, active=60), session(2, started=50, active=None))
    assert drain([idle, idle]) == (True, [], 1.0)


def test_a_session_opened_after_the_flip_holds_it_until_a_quiet_interval() -> None:
    old = session(1, started=50, active=60)
    new = session(7, started=100.5, active=100.6, app="billing")
    assert drain([(old,), (old, new), (old, new), (old,)]) == (True, [7], 2.0)


def test_a_session_opened_before_the_flip_that_keeps_running_statements_does_not_hold_it() -> None:
    # A long-lived pool's connection: its password is checked only at login, so it keeps working.
    looks = [(session(1, started=50, active=t),) for t in (99.5, 100.5, 101.5, 102.5)]
    assert drain(looks) == (True, [], 1.0)


def test_sessions_the_admin_cannot_see_the_times_of_count_when_they_appear() -> None:
    hidden = session(3, started=None, active=None)
    assert drain([(), (hidden,), (hidden,)]) == (True, [3], 2.0)


def test_timeout_names_who_is_still_on_it() -> None:
    looks = [()] + [(session(9, started=100 + i, active=100 + i, app="cron-report"),) for i in range(1, 5)]
    server = Server(looks)
    result = wait_for_drain(server.read, 3.0, sleep=server.sleep, clock=server.clock, sample=1.0)
    assert not result.drained and result.seconds == 3.0
    assert result.who() == '10.0.0.9 (application_name "cron-report")'


def test_who_counts_and_caps() -> None:
    server = Server([(), tuple(session(i, started=101, active=101) for i in range(1, 9)), ()])
    result = wait_for_drain(server.read, 10.0, sleep=server.sleep, clock=server.clock, sample=1.0)
    assert result.drained and result.who(limit=3) == "10.0.0.1, 10.0.0.2, 10.0.0.3, and 5 more"


def test_hidden_details_are_said() -> None:
    hidden = session(3, started=None, active=None)
    server = Server([(hidden,), (hidden,)])
    assert wait_for_drain(server.read, 5.0, sleep=server.sleep, clock=server.clock, sample=1.0).hidden
