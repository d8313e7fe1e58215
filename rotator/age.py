"""Credential age: when each password last changed, and the age policy (``--rotate-after``, ``--max-age``).

Where the time is recorded: each slot of the slot secret and the admin secret carry an optional
``"rotated_at": "2026-12-04T14:45:00Z"`` (UTC, ISO 8601, whole or fractional seconds), set by the run that
generates the password, in the very write that stores it (no extra API call). A secret without it (seed
003's format, or a password adopted from the config) has an *unknown* age: a flip gated by
``--rotate-after`` happens, and ``status`` counts it as overdue. Readers that do not know the key ignore
it (``rotator.client`` keeps it out of every connection argument).

This module is pure except :func:`utc_now`, the clock the CLI injects: the planner gets ``now`` in the
World and computes ages with :func:`age_s`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotator.errors import BadInput, ExitCode, SecretFormatError

ROTATED_AT = "rotated_at"
FUTURE_SKEW_S = 300.0  # a timestamp this far ahead of our clock is clock skew; further is bad input
MAX_DURATION_S = 10 * 365 * 86400.0  # a policy longer than ten years is a typo
DEFAULT_MAX_AGE_S = 90 * 86400.0  # HIPAA (seeds 000-002): rotate every 90 days

if TYPE_CHECKING:
    from rotator.config import Settings
    from rotator.plan import World
    from rotator.report import Report

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:[0-9]{1,9}[wdhms])+")
_PART = re.compile(r"([0-9]{1,9})([wdhms])")
# ASCII digits only, UTC only: "2026-12-04T14:45:00Z", "...:00.123456Z", "...:00+00:00".
_TIMESTAMP = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<f>[0-9]{1,6}))?(?:Z|\+00:00)"
)


def utc_now() -> datetime:
    """The real clock, injected at the edge (rotator.wiring); everything else takes ``now`` as a value."""
    return datetime.now(UTC)


def parse_duration(value: Any, label: str) -> float:
    """``30d``, ``12h``, ``1d12h``, ``90m``, ``45s``, ``2w`` (ASCII digits, units w d h m s), or a number of
    seconds (a TOML value, or this parser's own output). > 0 and at most ten years."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        seconds = float(sum(int(n) * _UNITS[u] for n, u in _PART.findall(value.strip())))
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        shown = repr(value) if isinstance(value, str | int | float) else f"(a {type(value).__name__})"
        raise BadInput(f"{label} {shown} is not a duration: use e.g. 30d, 12h, 1d12h, 90m or 45s")
    if seconds > MAX_DURATION_S:
        raise BadInput(f"{label} is more than ten years: use at most 3650d")
    return seconds


def optional_duration(value: Any, label: str) -> float | None:
    return None if value is None or value == "" else parse_duration(value, label)


def format_duration(seconds: float) -> str:
    """``2592000`` -> ``30d``; ``90061`` -> ``1d1h1m1s``; the largest units first, zero parts left out."""
    rest = max(0, round(seconds))
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def parse_timestamp(value: Any, where: str) -> datetime:
    """A ``rotated_at`` value, strictly: a UTC ISO 8601 string as this module writes it. Anything else (another
    type, a time zone other than UTC, non-ASCII digits, an impossible date) is a SecretFormatError naming
    ``where`` and never echoing the value."""
    fix = f'{where}.{ROTATED_AT} must be a UTC time like "2026-12-04T14:45:00Z": fix it or remove the key'
    if not isinstance(value, str):
        raise SecretFormatError(fix)
    found = _TIMESTAMP.fullmatch(value)
    if found is None:
        raise SecretFormatError(fix)
    g = found.groupdict()
    try:
        return datetime(
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            int(g["h"]),
            int(g["mi"]),
            int(g["s"]),
            int((g["f"] or "0").ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:  # month 13, February 30th, hour 24...
        raise SecretFormatError(fix) from None


def format_timestamp(when: datetime) -> str:
    """UTC, whole seconds, ``Z``: what :func:`parse_timestamp` reads back."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def optional_timestamp(data: dict[str, Any], where: str) -> datetime | None:
    """The ``rotated_at`` of a parsed JSON object, None when absent."""
    return parse_timestamp(data[ROTATED_AT], where) if ROTATED_AT in data else None


def age_s(rotated_at: datetime | None, now: datetime | None) -> float | None:
    """Seconds since ``rotated_at``; None when either is unknown."""
    if rotated_at is None or now is None:
        return None
    return (now - rotated_at).total_seconds()


def in_future(rotated_at: datetime | None, now: datetime | None) -> bool:
    """Recorded further ahead of ``now`` than clock skew explains: a forged or broken timestamp, which would
    otherwise hold a rotation off for ever."""
    age = age_s(rotated_at, now)
    return age is not None and age < -FUTURE_SKEW_S


def due(age: float | None, rotate_after_s: float | None) -> bool:
    """Whether a credential of this age is due for rotation: always without a policy or a known age."""
    return rotate_after_s is None or age is None or age >= rotate_after_s


@dataclass(frozen=True)
class CredentialAge:
    """One credential's age as ``status`` reports it."""

    name: str  # "slot A", "slot B", "admin"
    rotated_at: datetime | None
    age_s: float | None
    live: bool = False  # the slot the app uses
    counted: bool = True  # taken into account by --max-age (not the admin with --skip-admin)

    def overdue(self, max_age_s: float) -> bool:
        return self.counted and (self.age_s is None or self.age_s > max_age_s)

    def as_dict(self, max_age_s: float) -> dict[str, Any]:
        return {
            "rotated_at": format_timestamp(self.rotated_at) if self.rotated_at else None,
            "age_s": round(self.age_s, 1) if self.age_s is not None else None,
            "age": format_duration(self.age_s) if self.age_s is not None else "unknown",
            "live": self.live,
            "overdue": self.overdue(max_age_s),
            **({} if self.counted else {"counted": False}),
        }


@dataclass(frozen=True)
class AgePolicy:
    """The ages of one database's three credentials against the policy, as of ``now``."""

    now: datetime
    credentials: tuple[CredentialAge, ...]
    max_age_s: float
    rotate_after_s: float | None

    @property
    def overdue(self) -> tuple[CredentialAge, ...]:
        return tuple(c for c in self.credentials if c.overdue(self.max_age_s))

    def next_due(self) -> datetime | None:
        """When the next flip is due under ``--rotate-after``: the live slot's rotated_at plus the interval;
        ``now`` when it is due already or its age is unknown; None without ``--rotate-after`` (every run
        flips)."""
        if self.rotate_after_s is None:
            return None
        live = next((c for c in self.credentials if c.live), None)
        if live is None or live.rotated_at is None or live.age_s is None or live.age_s >= self.rotate_after_s:
            return self.now
        return datetime.fromtimestamp(live.rotated_at.timestamp() + self.rotate_after_s, UTC)

    def as_dict(self) -> dict[str, Any]:
        nxt = self.next_due()
        return {
            "now": format_timestamp(self.now),
            "max_age": format_duration(self.max_age_s),
            "rotate_after": format_duration(self.rotate_after_s) if self.rotate_after_s is not None else None,
            "credentials": {c.name: c.as_dict(self.max_age_s) for c in self.credentials},
            "overdue": [c.name for c in self.overdue],
            "next_rotation_due": format_timestamp(nxt) if nxt is not None else "every run",
            "last_slot_password_change": _last(self.credentials),
        }


def _last(credentials: tuple[CredentialAge, ...]) -> str | None:
    """The newest slot password's time: a completed flip ends by giving the old slot a fresh one (so do a
    bootstrap and the healing of a slot no password works for)."""
    times = [c.rotated_at for c in credentials if c.name.startswith("slot") and c.rotated_at is not None]
    return format_timestamp(max(times)) if times else None


def policy_of(world: World, settings: Settings) -> AgePolicy:
    """The three credentials' ages as observed (the live slot: where the config points when it logs in,
    else the secret's active slot)."""
    now = world.now if world.now is not None else utc_now()
    live = world.config_slot if world.config_works else world.secret.active_slot
    creds = [
        CredentialAge(
            f"slot {slot}",
            world.secret.slot(slot).rotated_at,
            age_s(world.secret.slot(slot).rotated_at, now),
            live=slot == live,
        )
        for slot in ("A", "B")
    ]
    creds.append(
        CredentialAge(
            "admin", world.admin.rotated_at, age_s(world.admin.rotated_at, now), counted=not settings.skip_admin
        )
    )
    return AgePolicy(
        now=now, credentials=tuple(creds), max_age_s=settings.max_age, rotate_after_s=settings.rotate_after
    )


OVERDUE_OUTCOME = "Overdue"


def apply_max_age(report: Report) -> None:
    """``status``'s verdict: a run that succeeded but found a credential older than --max-age (or of unknown
    age) exits with :attr:`ExitCode.OVERDUE`, for a monitoring job."""
    overdue = report.ages.get("overdue") if report.ages else None
    if report.exit_code == 0 and overdue:
        report.outcome = OVERDUE_OUTCOME
        report.exit_code = int(ExitCode.OVERDUE)
        report.error = (
            f"{', '.join(overdue)} older than --max-age {report.ages.get('max_age')} (or of unknown age): "
            "run rotator rotate, and check why scheduled runs did not"
        )
