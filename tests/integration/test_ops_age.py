"""The age policy end to end (real database, moto): rotated_at written by the run, `status --max-age` exits
6 when a credential is overdue, `--rotate-after` heals but does not flip a young live slot, and a hostile or
future rotated_at is bad input with nothing changed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from rotator import age
from rotator.cli import main
from rotator.errors import ExitCode
from tests.harness import AwsEnv, DbEnv, strong_password
from tests.integration.rotation_env import Result, RotationEnv, make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    return make_env(db, aws, tmp_path)


def status(env: RotationEnv, *args: str, **extra: str) -> Result:
    result = CliRunner().invoke(main, ["status", *args], env=env.env(**extra), catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def rotated_at(data: dict[str, object], slot: str) -> datetime | None:
    value = data[slot].get("rotated_at") if slot != "admin" else data.get("rotated_at")  # type: ignore[attr-defined]
    return None if value is None else age.parse_timestamp(value, slot)


def test_each_new_password_is_stamped_and_status_reports_ages(env: RotationEnv) -> None:
    started = datetime.now(UTC).replace(microsecond=0)
    assert env.rotate().exit_code == 0
    cur, admin = env.secret(), env.admin()
    assert cur is not None and admin is not None
    # A got a fresh password at the end of the flip; B's was made before the rotator knew it (unknown age).
    assert started <= rotated_at(cur, "A") <= datetime.now(UTC)  # type: ignore[operator]
    assert rotated_at(cur, "B") is None
    assert started <= rotated_at(admin, "admin") <= datetime.now(UTC)  # type: ignore[operator]
    # status: B (live) has an unknown age, so it is overdue under any --max-age.
    first = status(env)
    assert first.exit_code == ExitCode.OVERDUE, first.stderr[-2000:]
    ages = first.report["ages"]
    assert first.report["outcome"] == "Overdue" and ages["overdue"] == ["slot B"]
    assert ages["credentials"]["slot B"] == {
        "rotated_at": None,
        "age_s": None,
        "age": "unknown",
        "live": True,
        "overdue": True,
    }
    assert env.rotate().exit_code == 0  # the second flip stamps B too
    fine = status(env)
    assert fine.exit_code == 0, fine.stderr[-2000:]
    assert fine.report["ages"]["overdue"] == [] and fine.report["ages"]["max_age"] == "90d"
    assert fine.report["ages"]["next_rotation_due"] == "every run"


def test_status_max_age_1s_on_a_fresh_rotation_exits_overdue(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    assert env.rotate().exit_code == 0  # every credential now has a known age
    before = env.state()
    time.sleep(1.2)
    result = status(env, "--max-age", "1s")
    assert result.exit_code == ExitCode.OVERDUE == 6
    assert set(result.report["ages"]["overdue"]) == {"slot A", "slot B", "admin"}
    assert "older than --max-age 1s" in result.report["error"]
    assert env.state() == before  # status reads only
    # --skip-admin: the admin is reported but not counted.
    skipped = status(env, "--max-age", "1s", "--skip-admin")
    assert "admin" not in skipped.report["ages"]["overdue"]
    assert skipped.report["ages"]["credentials"]["admin"]["counted"] is False
    # The env twin, and a bad value: one line naming the flag, exit 2.
    assert status(env, ROTATOR_MAX_AGE="1s").exit_code == ExitCode.OVERDUE
    bad = status(env, "--max-age", "90 days")
    assert bad.exit_code == ExitCode.BAD_INPUT and "--max-age" in bad.stderr


def test_rotate_after_heals_but_does_not_flip_a_young_live_slot(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    assert env.rotate().exit_code == 0  # A live, both stamped
    env.db.set_password_directly(env.user_b, strong_password())  # the standby drifted
    cur = env.secret()
    assert cur is not None and cur["active_slot"] == "A"
    result = env.rotate("--rotate-after", "30d")
    assert result.exit_code == 0, result.stderr[-2000:]
    report = result.report
    assert [s["step"] for s in report["steps"]] == ["set_password", "verify_login"]  # healed, not flipped
    assert any("younger than --rotate-after 30d" in n for n in report["notes"])
    assert env.secret() == cur and report["slots_after"]["active"] == "A"
    env.assert_consistent()
    # A daily schedule is cheap: a run with nothing to heal changes nothing at all.
    before = env.state()
    quiet = env.rotate(ROTATOR_ROTATE_AFTER="30d")
    assert quiet.exit_code == 0 and quiet.report["steps"] == [] and env.state() == before
    # Once the live slot is that old, the run flips.
    time.sleep(1.1)
    due = env.rotate("--rotate-after", "1s")
    assert due.exit_code == 0 and due.report["slots_after"]["active"] == "B"
    env.assert_consistent()


@pytest.mark.parametrize(
    "value",
    ["2025-01-02 03:04:05", 1733323500, "2025-01-02T03:04:05+02:00", "FUTURE"],
)
def test_a_hostile_rotated_at_is_bad_input_and_nothing_changes(env: RotationEnv, value: object) -> None:
    assert env.rotate().exit_code == 0
    cur = env.secret()
    assert cur is not None
    future = value == "FUTURE"
    if future:  # well formed, but it would hold every rotation off
        value = age.format_timestamp(datetime.now(UTC) + timedelta(days=365))
    cur["A"]["rotated_at"] = value
    env.put_current(cur)
    before = env.state()
    for result in (env.rotate(), env.rotate("--rotate-after", "30d"), status(env)):
        assert result.exit_code == ExitCode.BAD_INPUT, result.stderr[-2000:]
        error = result.report["error"]
        assert "A.rotated_at" in error and "fix" in error
        assert future or str(value) not in json.dumps(result.report)  # a malformed value is never echoed
    assert env.state() == before
