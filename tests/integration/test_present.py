"""The readable face: `status` and `rotate --dry-run` print a summary and the plan as a table when stdout is a
terminal (a real pseudo-terminal here), and the JSON report as before when it is a pipe or with --output json."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import ROOT, RotationEnv, make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    made = make_env(db, aws, tmp_path)
    for _ in range(2):  # a deployed config; both slots with a known age (status exits 6 on an unknown one)
        assert made.rotate().exit_code == 0
    return made


def run_on_terminal(env: RotationEnv, *args: str, **extra: str) -> tuple[int, str, str]:
    """The real command with stdout on a pseudo-terminal (stderr a pipe): (exit code, terminal text, stderr)."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator.cli", *args],
        env={**os.environ, **env.env(ROTATOR_LOG_JSON="", COLUMNS="120", **extra)},
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(primary)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode().replace("\r\n", "\n"), stderr


def run_piped(env: RotationEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotator.cli", *args],
        env={**os.environ, **env.env()},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def assert_no_secret(env: RotationEnv, text: str) -> None:
    env.remember()
    for password in env.seen_passwords | {env.db.admin_password}:
        assert password not in text, "a password leaked"


@pytest.mark.parametrize("command", [("status",), ("rotate", "--dry-run")])
def test_a_terminal_gets_the_world_and_the_plan_as_tables(env: RotationEnv, command: tuple[str, ...]) -> None:
    before = env.state()
    code, out, err = run_on_terminal(env, *command)
    assert code == 0, out + err
    assert '"event": "rotation_report"' not in out, "JSON on a terminal"
    lines = out.splitlines()
    assert lines[0].startswith(f"engine {env.db.engine}: active slot A, the config points at slot A"), out
    assert any(line.split()[:4] == ["slot", "role", "user", "exists"] for line in lines), out
    assert any(line.startswith("A     active") for line in lines), out
    assert "next rotation due:" in out and "overdue: none" in out
    assert "plan (nothing was changed):" in out
    assert any(line.split()[:4] == ["#", "step", "slot", "reason"] for line in lines), out
    assert "publish_config" in out or "render_config" in out or "write_config" in out, out
    assert "rollback (would undo a failed flip, in this order):" in out
    assert lines[-1].startswith("dry run: ok"), out
    assert env.state() == before
    assert_no_secret(env, out + err)


@pytest.mark.parametrize("command", [("status",), ("rotate", "--dry-run")])
def test_a_pipe_gets_the_json_report_as_before(env: RotationEnv, command: tuple[str, ...]) -> None:
    proc = run_piped(env, *command)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["event"] == "rotation_report" and report["dry_run"] is True
    assert [s["outcome"] for s in report["steps"]] == ["planned"] * len(report["steps"]) and report["steps"]
    assert "plan (nothing was changed)" not in proc.stdout


def test_output_json_on_a_terminal_and_output_table_in_a_pipe(env: RotationEnv) -> None:
    code, out, err = run_on_terminal(env, "status", "--output", "json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["event"] == "rotation_report"
    proc = run_piped(env, "status", "--output", "table")
    assert proc.returncode == 0 and "plan (nothing was changed):" in proc.stdout
    proc = run_piped(env, "status", "--output", "yaml")
    assert proc.returncode == 2 and "--output" in proc.stderr


def test_a_real_rotation_on_a_terminal_shows_each_steps_outcome(env: RotationEnv) -> None:
    code, out, err = run_on_terminal(env, "rotate")
    assert code == 0, out + err
    assert any(line.split()[:5] == ["#", "step", "slot", "outcome", "reason"] for line in out.splitlines()), out
    assert out.splitlines()[-1].startswith("done: ok")
    assert env.secret()["active_slot"] == "B"  # type: ignore[index]
    assert_no_secret(env, out + err)


def test_check_on_a_terminal_is_a_table_and_in_a_pipe_json(env: RotationEnv) -> None:
    code, out, err = run_on_terminal(env, "check")
    assert code == 0, out + err
    assert out.splitlines()[0].split() == ["check", "result", "detail"], out
    assert out.splitlines()[-1].startswith("All checks passed")
    proc = run_piped(env, "check")
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1])["event"] == "check_report"
    assert_no_secret(env, out + err + proc.stdout + proc.stderr)
