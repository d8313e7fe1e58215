"""The drain: after the flip is proven, wait until the old slot's user is no longer in use, before its password
changes under whoever still uses it.

"In use" means *opening new sessions*: a session of that user the server shows (PostgreSQL ``pg_stat_activity``,
MySQL/MariaDB ``information_schema.PROCESSLIST``) that was not there at the previous look, or whose start is after
it. The first look is the reference (the flip, as proven); then a look every ``SAMPLE`` seconds. The old slot is
drained once ``QUIET`` seconds pass with no new session. Sessions already open, idle or busy (a pool's
connections, a PgBouncer's server connections), do not hold the drain: a password change does not end a session,
so they keep working; only a new login with the old password would fail, and that is what the drain watches for.
(Counting statements on open sessions would hold the drain forever for any app with a long-lived pool.)

At the timeout the old slot is still in use: the run fails (exit 1) and the old slot keeps its password, so
whoever is on it keeps working; the report names them (client address, application name). Proceeding would
break them at the password change: the zero-downtime choice is to stop and say who.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rotator.db.base import SessionInfo, UserSessions

QUIET = 1.0  # seconds without a new session of the user that count as drained
# Seconds between looks: the server lists only open sessions, so a session that opens and closes between two
# looks is not seen; frequent looks (each a read of a few rows) see a consumer that connects often (a pool, a
# PgBouncer, an app serving requests) within the quiet second; one that connects rarely and briefly may be
# missed.
SAMPLE = 0.02


@dataclass(frozen=True)
class DrainResult:
    drained: bool
    seconds: float
    in_use: tuple[SessionInfo, ...]  # drained: every session seen in use since the flip; else the latest ones
    hidden: bool = False  # the server hid when some sessions were active: only new sessions could be seen

    def who(self, limit: int = 5) -> str:
        """``10.0.0.7 (application_name "billing") x3, local``: addresses and application names, no more."""
        seen: dict[str, int] = {}
        for s in self.in_use:
            label = s.client.rsplit(":", 1)[0] if ":" in s.client else s.client
            label += f' (application_name "{s.application}")' if s.application else ""
            seen[label] = seen.get(label, 0) + 1
        parts = [f"{label} x{n}" if n > 1 else label for label, n in list(seen.items())[:limit]]
        if len(seen) > limit:
            parts.append(f"and {len(seen) - limit} more")
        return ", ".join(parts)


def _opened_since(s: SessionInfo, since: float, known: set[int]) -> bool:
    return s.id not in known or (s.started is not None and s.started >= since)


def wait_for_drain(
    read: Callable[[], UserSessions],
    timeout: float,
    *,
    quiet: float = QUIET,
    sample: float = SAMPLE,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DrainResult:
    """Look at the user's sessions until ``quiet`` seconds pass with none in use, or ``timeout`` runs out."""
    t0 = last_busy = clock()
    first = read()
    since, known = first.now, {s.id for s in first.sessions}
    seen: dict[int, SessionInfo] = {}
    recent: dict[int, tuple[float, SessionInfo]] = {}
    hidden = any(s.last_active is None for s in first.sessions)
    while True:
        sleep(sample)
        look = read()
        now = clock()
        busy = [s for s in look.sessions if _opened_since(s, since, known)]
        known |= {s.id for s in look.sessions}
        hidden = hidden or any(s.last_active is None for s in look.sessions)
        seen.update((s.id, s) for s in busy)
        recent.update((s.id, (now, s)) for s in busy)
        if busy:
            last_busy = now
        if now - last_busy >= quiet:
            return DrainResult(True, now - t0, tuple(seen.values()), hidden)
        if now - t0 >= timeout:
            latest = tuple(s for at, s in recent.values() if now - at < quiet)
            return DrainResult(False, now - t0, latest, hidden)
        since = look.now
