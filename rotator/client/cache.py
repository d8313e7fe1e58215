"""One cached value with a TTL, single-flight refresh, stale-on-error and capped exponential backoff.

All durations are in **seconds** (floats), measured on ``time.monotonic()``.

- Hot path: one attribute read of an immutable ``(value, expires_at)`` tuple and one clock comparison. No lock:
  the tuple is replaced whole, so a reader sees either the old pair or the new one.
- Expiry: ``ttl * (1 + jitter * U[0, 1))`` after the fetch completed, so fetches of one value are at least
  ``ttl`` apart and many processes started together spread out.
- Single flight: one lock per value. A cold read waits for the one fetch in flight; a read of an expired
  value while another thread refreshes it gets the expired value at once (stale-while-revalidate).
- Lifetimes: a value that comes with its own deadline (a Vault lease or token, see ``_lifetime_cap``) expires
  no later than that deadline, without jitter.
- Errors: after the n-th consecutive failure the next attempt waits ``min(cap, base * 2**(n-1) * (1 + jitter*U))``
  seconds. Meanwhile the last good value is served (stale-on-error) and no call is made; with no value, reads
  fail fast with the last error, or use the fallback when there is one.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_TTL = 300.0  # seconds a fetched value is served before the next fetch
DEFAULT_JITTER = 0.1  # each expiry is stretched by up to this fraction


def longest_cache_age(ttl: float = DEFAULT_TTL, jitter: float = DEFAULT_JITTER) -> float:
    """The longest a value is served after it was fetched (before its next refresh is due): how long, after a
    change of the stored value, a healthy reader may still use the previous one."""
    return ttl * (1.0 + jitter)


# Module-level so tests can replace the clock and the jitter source.
_now = time.monotonic
_random = random.random


@dataclass(frozen=True)
class CacheStats:
    fetches: int  # attempts, successful or not
    failures: int  # failed attempts, in total
    consecutive_failures: int
    stale: bool  # serving a value whose refresh failed
    last_error: str | None  # the exception's class name, never its message
    expires_in: float | None  # seconds until the next refresh, None when nothing is cached


class RefreshingValue(Generic[T]):
    """Subclasses implement :meth:`_load`, and may implement :meth:`_load_fallback`, :meth:`_on_failure` and
    :meth:`_unavailable`."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        jitter: float = DEFAULT_JITTER,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        min_refresh_interval: float = 1.0,
    ) -> None:
        if not ttl > 0:
            raise ValueError("ttl must be > 0 seconds")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be a fraction between 0 and 1")
        if not 0 < backoff_base <= backoff_cap:
            raise ValueError("backoff_base must be > 0 seconds and <= backoff_cap")
        if min_refresh_interval < 0:
            raise ValueError("min_refresh_interval must be >= 0 seconds")
        self.ttl = float(ttl)
        self.jitter = float(jitter)
        self.backoff_base = float(backoff_base)
        self.backoff_cap = float(backoff_cap)
        self.min_refresh_interval = float(min_refresh_interval)
        self._entry: tuple[T, float] | None = None
        self._lock = threading.Lock()
        self._fetches = 0
        self._failures = 0
        self._consecutive = 0
        self._retry_at = 0.0
        self._last_forced = -math.inf
        self._last_error: BaseException | None = None

    # ------------------------------------------------------------------ for subclasses

    def _load(self) -> T:
        raise NotImplementedError

    def _has_fallback(self) -> bool:
        return False

    def _load_fallback(self) -> T:
        raise NotImplementedError

    def _on_failure(self, exc: BaseException, retry_in: float, serving: str) -> None:
        """Called under the lock after a failed fetch; ``serving`` is "stale", "fallback" or "nothing"."""

    def _lifetime_cap(self) -> float | None:
        """Called under the lock right after a successful ``_load``: seconds the value may be used at most (a
        lease or token that must be renewed), or None to let the TTL alone decide."""
        return None

    def _before_forced_refresh(self) -> None:
        """Called under the lock before a refresh forced by :meth:`refresh_if_current` (the value was refused)."""

    def _unavailable(self, exc: BaseException) -> Exception:
        return RuntimeError("value unavailable")

    # ------------------------------------------------------------------ reads

    def get(self) -> T:
        """The cached value; fetches it when missing or expired. Never blocks on a refresh once warm."""
        entry = self._entry
        if entry is not None and _now() < entry[1]:
            return entry[0]
        return self._get_slow()

    def peek(self) -> T | None:
        """The cached value, expired or not, without fetching. None when nothing is cached."""
        entry = self._entry
        return entry[0] if entry is not None else None

    def _get_slow(self) -> T:
        entry = self._entry
        if entry is not None:
            if not self._lock.acquire(blocking=False):
                return entry[0]  # another thread is refreshing it: keep serving what we have
        else:
            self._lock.acquire()
        try:
            entry = self._entry
            if entry is not None and _now() < entry[1]:
                return entry[0]  # refreshed while we waited
            if entry is None and _now() < self._retry_at:
                assert self._last_error is not None
                raise self._unavailable(self._last_error) from self._last_error
            return self._refresh_locked(strict=False)
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ refresh and invalidate

    def refresh(self) -> T:
        """Fetch now, whatever the TTL and backoff. On failure the old value stays cached (and is served as
        stale) and the error is raised to the caller."""
        with self._lock:
            return self._refresh_locked(strict=True)

    def refresh_if_current(self, seen: T) -> T:
        """Refresh because ``seen`` turned out to be wrong (a login failed with it), unless that is already
        handled: the cache holds another value by now, the store is in backoff, or the previous refresh of this
        kind was less than ``min_refresh_interval`` seconds ago (a password that is simply wrong must not turn
        every login attempt into an API call). Concurrent callers share one fetch."""
        with self._lock:
            entry = self._entry
            now = _now()
            if entry is not None:
                if entry[0] is not seen:
                    return entry[0]
                if now < self._retry_at or now - self._last_forced < self.min_refresh_interval:
                    return entry[0]
            self._last_forced = now
            self._before_forced_refresh()
            return self._refresh_locked(strict=False)

    def invalidate(self) -> None:
        """Forget the value (seed 001's ``clear_cache``): the next read fetches and waits for it."""
        with self._lock:
            self._entry = None
            self._consecutive = 0
            self._retry_at = 0.0
            self._last_forced = -math.inf

    def stats(self) -> CacheStats:
        entry = self._entry
        return CacheStats(
            fetches=self._fetches,
            failures=self._failures,
            consecutive_failures=self._consecutive,
            stale=entry is not None and self._consecutive > 0,
            last_error=type(self._last_error).__name__ if self._last_error is not None else None,
            expires_in=max(0.0, entry[1] - _now()) if entry is not None else None,
        )

    # ------------------------------------------------------------------ internals

    def _backoff(self, failures: int) -> float:
        exponent = min(failures - 1, 60)  # 2**60 seconds is past any cap; keeps the float finite
        return min(self.backoff_cap, self.backoff_base * (2.0**exponent) * (1.0 + self.jitter * _random()))

    def _refresh_locked(self, *, strict: bool) -> T:
        self._fetches += 1
        try:
            value = self._load()
        except Exception as exc:
            return self._failed_locked(exc, strict=strict)
        self._consecutive = 0
        self._retry_at = 0.0
        self._last_error = None
        now = _now()
        expires_at = now + self.ttl * (1.0 + self.jitter * _random())
        cap = self._lifetime_cap()
        if cap is not None:
            expires_at = min(expires_at, now + max(0.0, cap))
        self._entry = (value, expires_at)
        return value

    def _failed_locked(self, exc: Exception, *, strict: bool) -> T:
        self._failures += 1
        self._consecutive += 1
        self._last_error = exc
        delay = self._backoff(self._consecutive)
        self._retry_at = _now() + delay
        entry = self._entry
        if entry is not None:
            # Serve the last good value until the retry is due; the hot path needs no extra check for that.
            self._entry = (entry[0], self._retry_at)
            self._on_failure(exc, delay, "stale")
            if strict:
                raise self._unavailable(exc) from exc
            return entry[0]
        if self._has_fallback():
            try:
                value = self._load_fallback()
            except Exception:
                self._on_failure(exc, delay, "nothing")
                raise self._unavailable(exc) from exc
            self._entry = (value, self._retry_at)
            self._on_failure(exc, delay, "fallback")
            if strict:
                raise self._unavailable(exc) from exc
            return value
        self._on_failure(exc, delay, "nothing")
        raise self._unavailable(exc) from exc
