"""The central promise, end to end on the demo's set-up: rotations under load fail not one request.

A real database, Secrets Manager on moto, the `rotator rotate` command in a subprocess with the `command`
deployer doing a rolling restart of real app processes behind a round-robin front, and a load generator
counting every request. The first test is `rotator demo` itself, on its embedded PostgreSQL.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from rotator.demo.runner import demo
from rotator.demo.stack import DemoConfig, DemoStack
from tests.harness import MySqlServer, PgServer, unavailable

pytestmark = pytest.mark.integration

MIN_REQUESTS = 2000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_rotates_three_times_with_zero_failed_requests() -> None:
    out = io.StringIO()
    result = demo(DemoConfig(rotations=3), out)
    text = out.getvalue()

    assert result.ok, text[-4000:]
    assert [r.run.exit_code for r in result.rotations] == [0, 0, 0], text[-4000:]
    slots = [(r.run.report["slots_before"]["active"], r.run.report["slots_after"]["active"]) for r in result.rotations]
    assert slots == [("A", "B"), ("B", "A"), ("A", "B")]
    assert [r.config_slot_after for r in result.rotations] == ["B", "A", "B"]
    assert result.during_rotations.served >= MIN_REQUESTS, text[-4000:]
    assert result.total.failed == 0 and result.during_rotations.failed == 0, result.failures
    assert result.slots_logging_in == {"A": True, "B": True}
    assert all(0 < (r.run.report["aws_api_calls"] or 0) for r in result.rotations)
    assert "RESULT: 3 rotations as expected" in text and ", 0 failed" in text
    assert "a wrong password is refused" in text  # the embedded server's scram-sha-256 was proven
    # It cleaned up everything it started: the temp dir (with the PostgreSQL data), the processes.
    tmp = next(line.split("removed ")[1].split(",")[0] for line in text.splitlines() if "removed /" in line)
    assert not Path(tmp).exists()
    assert "stopped the embedded PostgreSQL" in result.cleaned


def _dsn(request: pytest.FixtureRequest, engine: str) -> str:
    if engine == "mysql":
        mysql: MySqlServer | None = request.getfixturevalue("mysql_server")
        if mysql is None:
            unavailable("MySQL/MariaDB", "set ROTATOR_TEST_MYSQL_DSN=mysql://root@127.0.0.1:3306/")
        assert mysql is not None
        return f"mysql://{mysql.user}:{mysql.password}@{mysql.host}:{mysql.port}/"
    pg: PgServer | None = request.getfixturevalue("pg_server")  # the harness enforces scram-sha-256 on it
    if pg is None:
        unavailable("PostgreSQL", "set ROTATOR_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/postgres")
    assert pg is not None
    auth = f"{pg.superuser}:{pg.superpassword}" if pg.superpassword else pg.superuser
    return f"postgresql://{auth}@{pg.host}:{pg.port}/postgres"


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
def test_failing_health_check_rolls_back_with_zero_failed_requests(request: pytest.FixtureRequest, engine: str) -> None:
    dsn = _dsn(request, engine)
    config = DemoConfig(
        mysql_dsn=dsn if engine == "mysql" else None, postgres_dsn=dsn if engine == "postgres" else None
    )
    lines: list[str] = []
    with DemoStack(config, lines.append) as stack:
        runs: list[Any] = []
        first = stack.rotate()
        runs.append(first)
        assert first.exit_code == 0, first.events[-5:]
        assert stack.active_slot() == "B" and stack.config_slot() == "B"

        # Instances now report unhealthy on slot A: the flip to A must fail its health check and roll back.
        stack.fleet.unhealthy_slot = "A"
        failed = stack.rotate()
        stack.fleet.unhealthy_slot = None
        runs.append(failed)
        report = failed.report
        assert failed.exit_code == 4, report
        assert report["outcome"] == "RolledBack"
        assert [s["step"] for s in report["steps"] if s["outcome"] == "failed"] == ["health_check"]
        assert any(e.get("event") == "rollback" for _, e in failed.events)
        # The config is restored, the live slot untouched, and both slots still log in.
        assert stack.config_slot() == "B" and stack.active_slot() == "B"
        assert report["slots_after"] == {"active": "B", "config": "B"}
        assert stack.slot_logs_in("A") and stack.slot_logs_in("B")
        # Every instance was restarted three times (flip, failed flip, rollback) and serves again.
        assert all(inst.ready and inst.restarts == 3 for inst in stack.fleet.instances)

        # Healthy again: the next rotation goes through.
        again = stack.rotate()
        runs.append(again)
        assert again.exit_code == 0, again.report
        assert stack.active_slot() == "A" and stack.config_slot() == "A"

        windows = [stack.load.window(r.started, r.ended) for r in runs]
        stack.load.stop()
        total = stack.load.totals()
        failures = stack.load.failures()
        pids = [inst.proc.pid for inst in stack.fleet.instances if inst.proc]
        tmp = stack.tmp
    assert windows[1].served > 0 and windows[1].failed == 0, failures
    assert sum(w.served for w in windows) >= MIN_REQUESTS, windows
    assert total.failed == 0, failures
    assert not tmp.exists() and not any(_alive(pid) for pid in pids)
