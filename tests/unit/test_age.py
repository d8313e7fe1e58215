"""rotator.age: durations and timestamps parsed strictly, rotated_at carried by the secrets (and ignored by
rotator.client), the status policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rotator import age
from rotator.client.credentials import parse_secret
from rotator.config import Settings
from rotator.errors import BadInput, ExitCode, SecretFormatError
from rotator.report import Report
from rotator.secrets import AdminSecret, SlotSecret

SEED_003 = {
    "active_slot": "A",
    "A": {"username": "openemr_a", "password": "pw-a-0123456789", "host": "db", "port": "3306", "dbname": "openemr"},
    "B": {"username": "openemr_b", "password": "pw-b-0123456789", "host": "db", "port": "3306", "dbname": "openemr"},
}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("1d12h", 129600), ("90m", 5400), ("45s", 45), ("2w", 1209600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert age.parse_duration(text, "--rotate-after") == seconds
    assert age.parse_duration(age.format_duration(seconds), "x") == seconds  # round trip
    assert age.parse_duration(seconds, "x") == seconds  # idempotent on its own output


@pytest.mark.parametrize(
    "bad", ["", "30", "30 d", "30D", "-1d", "0s", "1.5d", "٣d", "3²d", "1y", "d", True, None, [], "1d 2h", "inf", 0]
)
def test_bad_durations_are_one_line_naming_the_flag(bad: object) -> None:
    with pytest.raises(BadInput, match=r"^--rotate-after .*(use e\.g\. 30d|ten years)"):
        age.parse_duration(bad, "--rotate-after")


def test_a_duration_over_ten_years_is_refused() -> None:
    with pytest.raises(BadInput, match="ten years"):
        age.parse_duration("3651d", "--max-age")


def test_settings_carry_the_policy() -> None:
    s = Settings(slot_secret="s", admin_secret="a", rotate_after="30d", max_age="1s")
    assert (s.rotate_after, s.max_age) == (30 * 86400, 1)
    assert Settings(slot_secret="s", admin_secret="a").max_age == 90 * 86400
    with pytest.raises(BadInput, match="--max-age"):
        Settings(slot_secret="s", admin_secret="a", max_age="ninety days")


@pytest.mark.parametrize(
    "good",
    ["2026-12-04T14:45:00Z", "2026-12-04T14:45:00.5Z", "2026-12-04T14:45:00.123456Z", "2026-12-04T14:45:00+00:00"],
)
def test_timestamps(good: str) -> None:
    when = age.parse_timestamp(good, "slot A")
    assert when.tzinfo is UTC and when.year == 2026
    assert age.parse_timestamp(age.format_timestamp(when), "x") == when.replace(microsecond=0)


HOSTILE = [
    "2025-01-02 14:45:00Z",
    "2025-01-02T14:45:00",
    "2025-01-02T14:45:00+02:00",
    "2025-13-04T14:45:00Z",
    "2025-02-30T14:45:00Z",
    "2025-01-02T24:00:00Z",
    "\uff12\uff10\uff12\uff15-01-02T14:45:00Z"  # fullwidth digits,
    "2025-01-02T14:45:00.1234567Z",
    "2025-01-02T14:45:00Z\n",
    "x" * 10_000,
    1733323500,
    None,
    ["2025-01-02T14:45:00Z"],
]


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_hostile_rotated_at_is_bad_input_never_echoed(bad: object) -> None:
    data = json.loads(json.dumps(SEED_003))
    data["B"]["rotated_at"] = bad
    with pytest.raises(SecretFormatError) as caught:
        SlotSecret.parse(json.dumps(data))
    message = str(caught.value)
    assert "B.rotated_at" in message and "2026-12-04T14:45:00Z" in message  # the fix, never the value
    assert (not isinstance(bad, str) or bad not in message) and "\n" not in message
    with pytest.raises(SecretFormatError, match=r"admin secret\.rotated_at"):
        AdminSecret.parse(json.dumps({"username": "admin", "password": "pw-admin-0123", "rotated_at": bad}))


def test_seed_003_without_rotated_at_parses_and_round_trips_unchanged() -> None:
    s = SlotSecret.parse(json.dumps(SEED_003))
    assert s.a.rotated_at is None and s.b.rotated_at is None
    assert json.loads(s.to_json()) == SEED_003


def test_rotated_at_is_written_per_slot_and_kept_by_old_readers() -> None:
    when = datetime(2026, 12, 4, 14, 45, 7, 999, tzinfo=UTC)
    s = SlotSecret.parse(json.dumps(SEED_003)).with_password("B", "pw-b-new-0123456789", when)
    data = json.loads(s.to_json())
    assert data["B"]["rotated_at"] == "2026-12-04T14:45:07Z" and "rotated_at" not in data["A"]
    again = SlotSecret.parse(s.to_json())
    assert again.b.rotated_at == when.replace(microsecond=0)
    # A new password without a time (an adopted one) has an unknown age, never the old password's time.
    assert again.with_password("B", "adopted-0123456789").b.rotated_at is None
    # rotator.client reads the slot and keeps rotated_at out of the login (it is no connection option that
    # a driver would get, and not part of equality).
    creds = parse_secret(s.with_active("B").to_json())
    assert (creds.slot, creds.username, creds.password) == ("B", "openemr_b", "pw-b-new-0123456789")
    assert creds == parse_secret(
        SlotSecret.parse(json.dumps(SEED_003)).with_active("B").with_password("B", "pw-b-new-0123456789").to_json()
    )


def test_admin_rotated_at_round_trips() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    admin = AdminSecret.parse('{"username": "admin", "password": "pw-admin-0123"}').with_password("new-pw-0123", when)
    assert json.loads(admin.to_json())["rotated_at"] == "2026-01-02T03:04:05Z"
    assert AdminSecret.parse(admin.to_json()).rotated_at == when


def _policy(ages: dict[str, float | None], *, rotate_after: float | None = None) -> age.AgePolicy:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    creds = tuple(
        age.CredentialAge(
            name,
            None if days is None else now - timedelta(days=days),
            None if days is None else days * 86400,
            live=name == "slot A",
        )
        for name, days in ages.items()
    )
    return age.AgePolicy(now=now, credentials=creds, max_age_s=90 * 86400, rotate_after_s=rotate_after)


def test_policy_overdue_and_next_due() -> None:
    fine = _policy({"slot A": 40, "slot B": 10, "admin": 10}, rotate_after=30 * 86400)
    assert fine.overdue == () and fine.as_dict()["next_rotation_due"] == "2026-12-04T00:00:00Z"  # due now
    young = _policy({"slot A": 10, "slot B": 10, "admin": 10}, rotate_after=30 * 86400)
    assert young.as_dict()["next_rotation_due"] == "2026-12-24T00:00:00Z"
    assert _policy({"slot A": 10, "slot B": 10, "admin": 10}).as_dict()["next_rotation_due"] == "every run"
    old = _policy({"slot A": 91, "slot B": 1, "admin": None})
    assert [c.name for c in old.overdue] == ["slot A", "admin"]
    d = old.as_dict()
    assert d["overdue"] == ["slot A", "admin"] and d["credentials"]["admin"]["age"] == "unknown"
    assert d["credentials"]["slot A"]["age"] == "91d" and d["max_age"] == "90d"


def test_status_verdict_is_its_own_exit_code() -> None:
    report = Report(dry_run=True, ages=_policy({"slot A": 91, "slot B": 1, "admin": 1}).as_dict())
    age.apply_max_age(report)
    assert (report.exit_code, report.outcome) == (ExitCode.OVERDUE, "Overdue") and "slot A" in (report.error or "")
    fine = Report(dry_run=True, ages=_policy({"slot A": 1, "slot B": 1, "admin": 1}).as_dict())
    age.apply_max_age(fine)
    assert fine.exit_code == 0
    failed = Report(dry_run=True, exit_code=3, outcome="Locked", ages={"overdue": ["slot A"]})
    age.apply_max_age(failed)
    assert failed.exit_code == 3  # a failed status run keeps its own code
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
