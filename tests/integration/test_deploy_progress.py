"""Progress of a long ECS rollout: at a steady pace on a terminal (a real pseudo-terminal for the CLI), as
periodic deploy_progress log events otherwise. UpdateService/DescribeServices go to the moto server; moto
never moves a rollout, so the long one replays states through the ScriptedEcs wrapper of test_deploy_health
(real moto calls underneath), on a fake clock that advances only when the deployer sleeps."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.deploy.base import DeployProgress
from rotator.deploy.ecs import EcsDeployer
from rotator.errors import DeployError
from rotator.present import TerminalProgress, progress_text
from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import ROOT, make_env
from tests.integration.test_deploy_health import ScriptedEcs, _dep

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def deployer_for(
    ecs: tuple[Any, str, str], script: list[Any], shown: list[DeployProgress]
) -> tuple[EcsDeployer, FakeClock]:
    client, cluster, service = ecs
    clock = FakeClock()
    deployer = EcsDeployer(
        ScriptedEcs(client, script),  # type: ignore[arg-type]
        cluster,
        service,
        timeout_s=600,
        poll_s=15,
        clock=clock,
        sleep=clock.sleep,
        progress=shown.append,
        progress_s=5,
    )
    return deployer, clock


def test_a_long_rollout_shows_progress_at_a_steady_pace(ecs: tuple[Any, str, str]) -> None:
    shown: list[DeployProgress] = []
    deployer, _ = deployer_for(
        ecs,
        [
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS", running=0), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS", running=1), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
            lambda ours: [_dep(ours, "PRIMARY", "COMPLETED", running=2)],
        ],
        shown,
    )
    with capture_logs() as logs:
        deployer.deploy("flip to slot B")
    # Every 5 s between the 15 s polls, then the end: the counts move when a poll sees them move.
    assert [p.elapsed_s for p in shown] == [5, 10, 15, 20, 25, 30, 30]
    assert [(p.running, p.desired, p.pending) for p in shown] == [(0, 2, 2)] * 3 + [(1, 2, 1)] * 3 + [(2, 2, 0)]
    assert [p.rollout for p in shown] == ["IN_PROGRESS"] * 6 + ["COMPLETED"]
    assert [p.final for p in shown] == [False] * 6 + [True]
    assert len({p.deployment for p in shown}) == 1
    # Without a terminal: one deploy_progress event per poll, with the time elapsed.
    events = [e for e in logs if e["event"] == "deploy_progress"]
    assert [e["elapsed_s"] for e in events] == [0, 15, 30]


def test_a_failed_rollout_shows_its_last_state(ecs: tuple[Any, str, str]) -> None:
    shown: list[DeployProgress] = []
    deployer, _ = deployer_for(
        ecs,
        [
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS", running=0)],
            lambda ours: [_dep(ours, "PRIMARY", "FAILED", "tasks failed to start", running=0)],
        ],
        shown,
    )
    with pytest.raises(DeployError, match="tasks failed to start"):
        deployer.deploy("flip")
    assert shown[-1].final and shown[-1].rollout == "FAILED" and shown[-1].elapsed_s == 15


def test_a_broken_display_never_fails_the_deployment(ecs: tuple[Any, str, str]) -> None:
    def broken(_: DeployProgress) -> None:
        raise OSError("terminal gone")

    client, cluster, service = ecs
    clock = FakeClock()
    deployer = EcsDeployer(
        ScriptedEcs(client, [lambda ours: [_dep(ours, "PRIMARY", "COMPLETED", running=2)]]),  # type: ignore[arg-type]
        cluster,
        service,
        clock=clock,
        sleep=clock.sleep,
        progress=broken,
    )
    deployer.deploy("flip")


def test_the_terminal_line() -> None:
    out = io.StringIO()
    clock = FakeClock()
    display = TerminalProgress(out, every_s=5, clock=clock)
    p = DeployProgress("ecs-svc/42", "PRIMARY", "IN_PROGRESS", running=1, desired=2, pending=1, elapsed_s=65)
    display(p)
    display(p)  # too soon: not shown again
    clock.sleep(5)
    display(DeployProgress("ecs-svc/42", "PRIMARY", "COMPLETED", 2, 2, 0, elapsed_s=70, final=True))
    assert out.getvalue().splitlines() == [
        "deploying ecs-svc/42: IN_PROGRESS, running 1/2, pending 1, 1m 5s",
        "deploying ecs-svc/42: COMPLETED, running 2/2, pending 0, 1m 10s",
    ]
    assert progress_text(p) == out.getvalue().splitlines()[0]


def test_rotate_on_a_terminal_shows_the_rollout(
    db: DbEnv, aws: AwsEnv, tmp_path: Path, ecs: tuple[Any, str, str]
) -> None:
    """The real command, stdout and stderr on a pseudo-terminal: the rollout's progress line is shown; with
    stderr a pipe and --log-json, the deploy_progress events carry the time elapsed instead."""
    _, cluster, service = ecs
    env = make_env(db, aws, tmp_path)
    flags = ["--deploy", "ecs", "--ecs-cluster", cluster, "--ecs-service", service]
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator.cli", "rotate", *flags],
        env={**os.environ, **env.env(ROTATOR_LOG_JSON="", COLUMNS="120")},
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        cwd=ROOT,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([primary], [], [], 0.5)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(primary)
    text = b"".join(chunks).decode()
    assert proc.wait(timeout=30) == 0, text
    assert "deploying ecs-svc/" in text and "running 0/0" in text, text
    assert "done: ok" in text

    piped = subprocess.run(
        [sys.executable, "-m", "rotator.cli", "rotate", *flags],
        env={**os.environ, **env.env()},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert piped.returncode == 0, piped.stderr
    assert "deploying ecs-svc/" not in piped.stderr + piped.stdout
    events = [json.loads(line) for line in piped.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "deploy_progress" and "elapsed_s" in e for e in events)
    assert json.loads(piped.stdout.splitlines()[-1])["event"] == "rotation_report"
