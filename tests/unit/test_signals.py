"""Stop signals: raised inside a long wait, never inside a block held against them (starting a child process)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rotator.deploy import command as command_module
from rotator.deploy.command import CommandDeployer
from rotator.signals import Interrupted, StopSignal, held


def test_a_signal_in_a_long_wait_is_raised_there() -> None:
    with StopSignal().installed() as stop, pytest.raises(Interrupted, match="SIGTERM"), stop.interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # not reached: the handler raises at once
        pytest.fail("the signal was not raised in the wait")


def test_a_signal_inside_a_held_block_is_raised_at_its_end() -> None:
    reached_end = False
    with StopSignal().installed() as stop, pytest.raises(Interrupted, match="SIGTERM"), stop.interruptible():
        with held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached_end = True
        pytest.fail("the held signal was not raised at the end of the block")
    assert reached_end


def test_held_outside_a_wait_only_records_the_signal() -> None:
    with StopSignal().installed() as stop:
        with held():
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested == "SIGTERM"


def test_a_signal_while_the_deploy_command_starts_stops_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM lands while ``subprocess.Popen`` returns: the command must not run on, orphaned."""
    pidfile = tmp_path / "pid"
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> Any:
        proc = real_popen(*args, **kwargs)
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():  # the shell is running the command
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, before Popen's caller holds proc
        return proc

    monkeypatch.setattr(command_module.subprocess, "Popen", popen_then_signal)
    deployer = CommandDeployer(f"echo $$ > {pidfile}; exec sleep 30", timeout_s=60)
    with StopSignal().installed() as stop, pytest.raises(Interrupted), stop.interruptible():
        deployer.deploy("test", slot="B")
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
