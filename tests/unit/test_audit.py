"""rotator.audit: the run event's schema from a report, and who the caller is without AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rotator import audit
from rotator.config import Settings

REPORT = {
    "outcome": "RolledBack",
    "exit_code": 4,
    "error": "the flip failed at health_check (...); rolled back",
    "slots_before": {"active": "A", "config": "A"},
    "slots_after": {"active": "A", "config": "A"},
    "observed": {"engine": "mysql", "health_precheck": None},
    "steps": [
        {"step": "render_config", "slot": "B", "reason": "r", "outcome": "ok", "duration_ms": 3.0},
        {"step": "health_check", "slot": "B", "reason": "r", "outcome": "failed", "duration_ms": 9.0, "error": "500"},
        {"step": "write_slot_pending", "slot": None, "reason": "r", "outcome": "pending", "duration_ms": 0.0},
    ],
    "rollback": [{"step": "restore_config", "slot": None, "reason": "r", "outcome": "ok", "duration_ms": 1.0}],
    "ages": {"credentials": {"slot A": {"rotated_at": "2026-12-01T00:00:00Z", "age_s": 10.0}}, "overdue": []},
    "duration_ms": 20.0,
    "aws_api_calls": 9,
}


def test_run_event_schema() -> None:
    event = audit.run_event(
        REPORT,
        command="rotate",
        slot_secret="arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
        caller={"source": "local", "user": "ops", "uid": 1000},
        started_at=datetime(2026, 12, 4, 15, 0, tzinfo=UTC),
        finished_at=datetime(2026, 12, 4, 15, 0, 1, tzinfo=UTC),
        run_id="r1",
    )
    assert event["logger"] == "rotator.audit" and event["audit_schema"] == 1 and event["run_id"] == "r1"
    assert event["slot_secret_id"] == "arn:aws:secretsmanager:eu-west-1:****9012:secret:prod/db-AbCdEf"
    assert event["plan"] == ["render_config", "health_check", "write_slot_pending"]
    assert event["steps"][1] == {
        "step": "health_check",
        "slot": "B",
        "outcome": "failed",
        "duration_ms": 9.0,
        "error": "500",
    }
    assert event["health"] == {"precheck": None, "checks": [event["steps"][1]]}
    assert event["rollback"] == [{"step": "restore_config", "slot": None, "outcome": "ok", "duration_ms": 1.0}]
    assert (event["started_at"], event["finished_at"]) == ("2026-12-04T15:00:00Z", "2026-12-04T15:00:01Z")
    assert event["ages"] == {"slot A": {"rotated_at": "2026-12-01T00:00:00Z", "age_s": 10.0}}
    json.dumps(event)  # JSON-able as it is


def test_without_aws_the_caller_is_the_local_user() -> None:
    settings = Settings(slot_secret="s", admin_secret="a", store="file:/tmp/x")
    assert audit.caller_identity(settings, None)["source"] == "local"
    vault = Settings(slot_secret="s", admin_secret="a", store="vault")
    assert not audit._uses_aws(vault)
    assert audit._uses_aws(Settings(slot_secret="s", admin_secret="a", store="ssm"))
    assert audit._uses_aws(Settings(slot_secret="s", admin_secret="a"))
