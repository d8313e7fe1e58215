"""The drain on real servers: a consumer that keeps opening sessions with the old slot's credentials after the
flip holds the old slot's password change; at --drain-timeout the run fails, names it (client address,
application_name) and leaves that password alone, so the consumer never fails; a re-run after it moved
finishes. A stop signal cuts the wait short.

The PostgreSQL admin gets pg_read_all_stats here, as RDS's master user has it (through rds_superuser):
without it the server hides other roles' client addresses and times (the drain then watches new sessions
only, and says so)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import psycopg.sql
import pymysql
import pytest

from rotator.drain import QUIET
from tests.harness import AwsEnv, DbEnv, PgServer
from tests.integration.rotation_env import ROOT, RotationEnv, make_env
from tests.integration.test_rotate import assert_no_secret_in

pytestmark = pytest.mark.integration


def _env(db: DbEnv, aws: AwsEnv, tmp: Path) -> RotationEnv:
    if isinstance(db.server, PgServer):
        with db.server.connect() as conn:
            conn.execute(psycopg.sql.SQL("GRANT pg_read_all_stats TO {}").format(psycopg.sql.Identifier(db.admin_user)))
    env = make_env(db, aws, tmp)
    env.drain_quiet = f"{QUIET:g}"  # the product's default window: these tests are about it
    assert env.rotate().exit_code == 0  # A -> B: the next run leaves slot B
    return env


@contextmanager
def straggler(db: DbEnv, user: str, password: str, period: float = 0.1) -> Iterator[list[str]]:
    """A consumer nobody moved: every ``period`` seconds it opens a session with these credentials and serves a
    50 ms request on it. Yields its failures."""
    failures: list[str] = []
    stop = threading.Event()

    def connect_once() -> None:
        if db.engine == "postgres":
            with psycopg.connect(
                host=db.host, port=db.port, dbname=db.dbname, user=user, password=password,
                application_name="straggler", sslmode="disable", connect_timeout=5,
            ) as conn:  # fmt: skip
                conn.execute("SELECT pg_sleep(0.05)")
        else:
            conn = pymysql.connect(host=db.host, port=db.port, user=user, password=password, connect_timeout=5)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT SLEEP(0.05)")
            finally:
                conn.close()

    def loop() -> None:
        while not stop.is_set():
            try:
                connect_once()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            stop.wait(period)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield failures
    finally:
        stop.set()
        worker.join(timeout=10)


def test_a_consumer_left_on_the_old_slot_holds_its_password_and_is_named(
    db: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    env = _env(db, aws, tmp_path)
    cur = env.secret()
    assert cur is not None and cur["active_slot"] == "B"
    old = cur["B"]
    with straggler(db, old["username"], old["password"]) as failures:
        time.sleep(0.3)
        held = env.rotate(ROTATOR_DRAIN_TIMEOUT="2")
        assert held.exit_code == 1, (held.stderr[-2000:], failures[:3])
        report = held.report
        assert report["outcome"] == "StillInUse"
        drain = next(s for s in report["steps"] if s["step"] == "drain_slot")
        assert drain["slot"] == "B" and drain["outcome"] == "failed" and drain["timeout_s"] == 2
        assert "127.0.0.1" in report["error"] and "NOT changed" in report["error"]
        if db.engine == "postgres":
            assert 'application_name "straggler"' in report["error"]
        assert [s["outcome"] for s in report["steps"]][-1] == "pending"  # nothing after the drain ran
        assert db.login_works(old["username"], old["password"]), "the old slot's password changed"
        assert any('"drain_timeout"' in line for line in held.stderr.splitlines())
    assert failures == [], failures[:3]
    # Once the consumer is gone, a re-run finishes the (proven, not recorded) flip and rotates slot B.
    done = env.rotate()
    assert done.exit_code == 0, done.stderr[-2000:]
    env.assert_consistent()
    assert env.secret() is not None and env.secret()["active_slot"] == "A"  # type: ignore[index]
    assert_no_secret_in(env, held, done)


def test_a_consumer_that_connects_rarely_is_seen_with_a_longer_quiet_window(
    db: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    """Every 1.5 s is too rarely for the default quiet second (the drain can pass between two of its logins): a
    consumer like that needs --drain-quiet above its period, and then it holds the old password as one that
    connects every 0.1 s does with the default."""
    env = _env(db, aws, tmp_path)
    cur = env.secret()
    assert cur is not None and cur["active_slot"] == "B"
    old = cur["B"]
    with straggler(db, old["username"], old["password"], period=1.5) as failures:
        time.sleep(0.3)
        held = env.rotate(ROTATOR_DRAIN_TIMEOUT="5", ROTATOR_DRAIN_QUIET="2.5")
        assert held.exit_code == 1, (held.stderr[-2000:], failures[:3])
        assert held.report["outcome"] == "StillInUse"
        drain = next(s for s in held.report["steps"] if s["step"] == "drain_slot")
        assert (drain["outcome"], drain["timeout_s"], drain["quiet_s"]) == ("failed", 5, 2.5)
        assert db.login_works(old["username"], old["password"]), "the old slot's password changed"
    assert failures == [], failures[:3]


def test_a_quiet_window_longer_than_the_timeout_is_refused_before_anything(
    db: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    env = _env(db, aws, tmp_path)
    before = env.state()  # secret versions and labels, password hashes, the config file's bytes and mode
    refused = env.rotate(ROTATOR_DRAIN_TIMEOUT="2", ROTATOR_DRAIN_QUIET="3")
    assert refused.exit_code == 2
    assert "--drain-quiet 3 is longer than --drain-timeout 2" in refused.stderr
    assert env.state() == before


def test_a_stop_signal_ends_the_drain_and_changes_nothing_more(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> None:
    env = _env(db, aws, tmp_path)
    cur = env.secret()
    assert cur is not None
    old = cur["B"]
    with straggler(db, old["username"], old["password"]) as failures:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rotator.cli", "rotate"],
            env={**os.environ, **env.env(ROTATOR_DRAIN_TIMEOUT="120")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert proc.stderr is not None
        for line in proc.stderr:  # the JSON log: wait for the health check of the new slot to pass
            event = json.loads(line)
            if event.get("step") == "health_check" and event.get("outcome") == "ok":
                break
        time.sleep(1.0)  # inside the drain now
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10, "the drain did not stop on SIGTERM"
    assert proc.returncode == 1, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    drain = next(s for s in report["steps"] if s["step"] == "drain_slot")
    assert drain["outcome"] == "failed" and "SIGTERM" in drain["error"]
    assert report["outcome"] == "Interrupted"
    assert db.login_works(old["username"], old["password"])
    assert failures == []
