"""The readable face's renderers are pure: dicts in, text out."""

from __future__ import annotations

import io

from rotator.present import check_text, report_text, table, wants_table


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_means_a_table_on_a_terminal_only() -> None:
    assert wants_table("auto", Tty()) and not wants_table("auto", io.StringIO())
    assert wants_table("table", io.StringIO()) and not wants_table("json", Tty())


def test_the_last_column_wraps_under_itself() -> None:
    text = table(("a", "b"), [("x", "word " * 30)], width=60)
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert all(len(line) <= 60 for line in lines)
    assert len(lines) > 3 and all(line.startswith("   word") for line in lines[3:])


def test_check_text_says_what_next() -> None:
    ok = {"checks": [{"check": "slot secret", "status": "ok", "detail": "fine"}], "failed": []}
    assert check_text(ok).splitlines()[-1].startswith("All checks passed: next, `rotator rotate --dry-run`")
    bad = {"checks": [{"check": "database TLS", "status": "FAIL", "detail": "no TLS"}], "failed": ["database TLS"]}
    text = check_text(bad)
    assert "database TLS  FAIL" in text and "1 check(s) failed: database TLS" in text


def _report(**extra: object) -> dict[str, object]:
    return {
        "dry_run": True,
        "outcome": "ok",
        "exit_code": 0,
        "observed": {
            "engine": "mysql",
            "active_slot": "A",
            "config_slot": "A",
            "config_present": True,
            "pending_slot_version": True,
            "pending_admin_version": False,
            "admin_login": "current",
            "deployment": "stable",
            "slots": {
                "A": {"exists": True, "current_password_logs_in": True, "marked": True},
                "B": {"exists": False},
            },
            "live_secret": {"slot": "A", "pending_version": False, "exact": False},
        },
        "steps": [{"step": "create_user", "slot": "B", "reason": "slot B's user is missing: create it"}],
        "rollback": [{"step": "restore_config", "slot": None, "reason": "put the config back on slot A"}],
        "notes": ["a note"],
        **extra,
    }


def test_the_world_and_the_plan() -> None:
    text = report_text(_report())
    assert text.startswith("engine mysql: active slot A, the config points at slot A")
    assert "pending versions: slot secret yes, admin secret no" in text
    assert "live secret: names slot A (differs from the slot secret: rotate rewrites it)" in text
    assert "B     standby  no           missing" in text
    assert "1  create_user  B     slot B's user is missing: create it" in text
    assert "rollback (would undo a failed flip, in this order):" in text
    assert "note: a note" in text
    assert text.splitlines()[-1] == "dry run: ok; run without --dry-run to apply"


def test_ages_when_the_report_has_them() -> None:
    ages = {
        "credentials": {
            "slot A": {"age": "3d 2h", "overdue": False},
            "slot B": {"age": "unknown", "overdue": True},
            "admin": {"age": "91d", "overdue": True},
        },
        "overdue": ["slot B", "admin"],
        "next_rotation_due": "2026-12-05T00:00:00Z",
        "max_age": "90d",
        "rotate_after": "30d",
    }
    text = report_text(_report(ages=ages))
    header = next(line for line in text.splitlines() if line.startswith("slot  role"))
    assert header.split() == ["slot", "role", "user", "exists", "logs", "in", "age", "notes"]
    assert "unknown OVERDUE" in text and "(age 91d OVERDUE)" in text
    assert "next rotation due: 2026-12-05T00:00:00Z; --max-age 90d, overdue: slot B, admin; --rotate-after 30d" in text


def test_a_failed_run_ends_with_its_error() -> None:
    text = report_text(_report(dry_run=False, outcome="RolledBack", exit_code=4, error="health failed", steps=[]))
    assert text.splitlines()[-1] == "RolledBack (exit 4): health failed"
