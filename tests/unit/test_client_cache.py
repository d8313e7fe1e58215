"""Cache rules on a fake clock: TTL with jitter, stale-on-error, backoff in seconds, single flight.

No timing assertions: the clock is replaced, and thread tests count calls, not time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from rotator.client import CredentialLoader, CredentialsUnavailable
from rotator.client import cache as cache_module
from rotator.client.sources import DatabaseUrlSource, Fetched, SourceKind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock()
    monkeypatch.setattr(cache_module, "_now", clock)
    monkeypatch.setattr(cache_module, "_random", lambda: 0.0)
    yield clock


def secret(user: str, value: str = "pw-123456") -> str:
    return json.dumps({"username": user, "password": value, "host": "h", "port": 5432, "dbname": "d"})


@dataclass
class FakeSource:
    text: str = field(default_factory=lambda: secret("u1"))
    error: Exception | None = None
    calls: int = 0
    delay: float = 0.0

    @property
    def kind(self) -> SourceKind:
        return "secretsmanager"

    @property
    def label(self) -> str:
        return "fake"

    def fetch(self) -> Fetched:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return Fetched(self.text, "json")


def test_cached_within_ttl_then_refetched(clock: Clock) -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=10)
    assert loader.get().username == "u1"
    source.text = secret("u2")
    clock.advance(9.9)
    assert loader.get().username == "u1"
    assert source.calls == 1
    clock.advance(0.2)
    assert loader.get().username == "u2"
    assert source.calls == 2


def test_jitter_only_lengthens_the_ttl(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "_random", lambda: 0.999)
    source = FakeSource()
    loader = CredentialLoader(source, ttl=100, jitter=0.1)
    loader.get()
    clock.advance(109.8)  # ttl * (1 + 0.1 * 0.999) = 109.99
    loader.get()
    assert source.calls == 1
    clock.advance(0.2)
    loader.get()
    assert source.calls == 2


def test_stale_on_error_with_capped_exponential_backoff_in_seconds(clock: Clock) -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=10, backoff_base=1.0, backoff_cap=8.0)
    assert loader.get().username == "u1"
    source.error = ConnectionError("store down")
    clock.advance(10.1)

    attempts_at: list[float] = []
    start = clock.now
    for _ in range(240):  # 30 s of reads, one every 125 ms (exact in binary floating point)
        before = source.calls
        assert loader.get().username == "u1"  # the stale value, never an exception
        if source.calls != before:
            attempts_at.append(round(clock.now - start, 6))
        clock.advance(0.125)
    # Retries after 1, 2, 4, 8, 8, 8 seconds: doubling, capped, and in seconds (not ms, not minutes).
    assert attempts_at[:6] == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]
    stats = loader.stats()
    assert stats.stale and stats.consecutive_failures == len(attempts_at)
    assert stats.last_error == "ConnectionError"

    source.error = None
    source.text = secret("u2")
    clock.advance(8.0)
    assert loader.get().username == "u2"
    stats = loader.stats()
    assert not stats.stale and stats.consecutive_failures == 0 and stats.last_error is None


def test_cold_error_fails_fast_during_backoff(clock: Clock) -> None:
    source = FakeSource(error=ConnectionError("down"))
    loader = CredentialLoader(source, backoff_base=2.0)
    for _ in range(5):
        with pytest.raises(CredentialsUnavailable, match="none are cached") as info:
            loader.get()
        assert isinstance(info.value.__cause__, ConnectionError)
    assert source.calls == 1
    clock.advance(2.0)
    source.error = None
    assert loader.get().username == "u1"
    assert source.calls == 2


def test_refresh_fetches_now_and_keeps_the_old_value_on_error(clock: Clock) -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300)
    loader.get()
    source.text = secret("u2")
    assert loader.refresh().username == "u2"
    source.error = ConnectionError("down")
    with pytest.raises(CredentialsUnavailable):
        loader.refresh()
    assert loader.get().username == "u2"  # served stale until the backoff ends
    assert source.calls == 3


def test_invalidate_forgets_the_value(clock: Clock) -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300)
    loader.get()
    loader.invalidate()
    assert loader.peek() is None
    source.text = secret("u2")
    assert loader.get().username == "u2"
    loader.invalidate()
    source.error = ConnectionError("down")
    with pytest.raises(CredentialsUnavailable):
        loader.get()


def test_refresh_if_current_shares_one_fetch_and_is_throttled(clock: Clock) -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300, min_refresh_interval=1.0)
    first = loader.get()
    source.text = secret("u2")
    second = loader.refresh_if_current(first)  # right after the fetch: not throttled
    assert second.username == "u2" and source.calls == 2
    # Another caller that failed with the old value gets the new one without a call.
    assert loader.refresh_if_current(first) is second
    assert source.calls == 2
    # The new value failing too, right away: throttled, no second forced call within the interval.
    assert loader.refresh_if_current(second) is second
    assert source.calls == 2
    clock.advance(1.0)
    loader.refresh_if_current(second)
    assert source.calls == 3


def test_fallback_is_used_only_without_a_cached_value(clock: Clock) -> None:
    source = FakeSource(error=ConnectionError("down"))
    env = {"DATABASE_URL": "postgresql://local:pw@localhost/app"}
    loader = CredentialLoader(
        source, fallback=DatabaseUrlSource(environ=env, warn=True), backoff_base=1.0, backoff_cap=1.0
    )
    assert loader.get().username == "local"
    assert loader.stats().stale
    clock.advance(1.0)
    source.error = None
    assert loader.get().username == "u1"  # the store is back: its value replaces the fallback
    source.error = ConnectionError("down again")
    clock.advance(400)
    assert loader.get().username == "u1"  # warm now: stale, not the fallback


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"jitter": 2},
        {"backoff_base": 0},
        {"backoff_base": 10, "backoff_cap": 5},
        {"min_refresh_interval": -1},
    ],
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CredentialLoader(FakeSource(), **kwargs)  # type: ignore[arg-type]


def test_sixteen_cold_threads_make_one_call() -> None:
    source = FakeSource(delay=0.2)
    loader = CredentialLoader(source)
    barrier = threading.Barrier(16)
    results: list[str] = []

    def read() -> None:
        barrier.wait()
        results.append(loader.get().username)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["u1"] * 16
    assert source.calls == 1


def test_sixteen_cold_threads_make_one_call_when_it_fails() -> None:
    source = FakeSource(delay=0.2, error=ConnectionError("down"))
    loader = CredentialLoader(source, backoff_base=60)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def read() -> None:
        barrier.wait()
        try:
            loader.get()
        except CredentialsUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 16
    assert source.calls == 1


def test_expired_value_is_served_while_another_thread_refreshes(clock: Clock) -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=10)
    loader.get()
    clock.advance(11)
    source.text = secret("u2")
    source.delay = 0.5
    refresher = threading.Thread(target=loader.get)
    refresher.start()
    while source.calls < 2:
        time.sleep(0.001)
    assert loader.get().username == "u1"  # not blocked behind the refresh in flight
    refresher.join()
    assert loader.get().username == "u2"
    assert source.calls == 2
