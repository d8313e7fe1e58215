"""One rotation as a user runs it: the real ``rotator rotate`` command in a subprocess, watched live.

Its environment is built from scratch (the ROTATOR_* twins of the flags, the moto endpoint, dummy AWS
credentials), so nothing of the caller's own AWS or rotator settings can leak in. The JSON log lines on its
stderr are handed to a callback as they come (with the time they arrived); the JSON report is the last line
on its stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

Event = dict[str, Any]


@dataclass(frozen=True)
class StepTiming:
    step: str
    slot: str | None
    outcome: str
    duration_ms: float
    end_ms: float  # when it was logged, from the start of the rotation command
    reason: str = ""

    @property
    def start_ms(self) -> float:
        return max(0.0, self.end_ms - self.duration_ms)


@dataclass
class RotationRun:
    exit_code: int
    report: dict[str, Any]
    steps: list[StepTiming]
    started: float  # time.monotonic()
    ended: float
    events: list[tuple[float, Event]] = field(default_factory=list)

    @property
    def wall_ms(self) -> float:
        return (self.ended - self.started) * 1000

    def at(self, offset_ms: float) -> float:
        """The monotonic time of an offset into this run."""
        return self.started + offset_ms / 1000


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AWS_"))}
    return {**keep, **extra}


def run_rotation(
    settings: Mapping[str, str],
    on_event: Callable[[float, Event], None] | None = None,
    timeout: float = 300.0,
    args: tuple[str, ...] = (),
) -> RotationRun:
    env = clean_environment({**settings, "ROTATOR_LOG_JSON": "1"})
    started, started_wall = time.monotonic(), time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator.cli", "rotate", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    events: list[tuple[float, Event]] = []
    assert proc.stdout is not None and proc.stderr is not None

    def watch(stream: IO[bytes]) -> None:
        for raw in stream:
            offset = (time.monotonic() - started) * 1000
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "output", "line": line}
            if not isinstance(event, dict):
                event = {"event": "output", "line": line}
            offset = _logged_at(event, started_wall, offset)
            events.append((offset, event))
            if on_event is not None:
                on_event(offset, event)

    stdout: list[bytes] = []
    readers = [
        threading.Thread(target=watch, args=(proc.stderr,), daemon=True),
        threading.Thread(target=lambda: stdout.append(proc.stdout.read() if proc.stdout else b""), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for reader in readers:
        reader.join(timeout=5)
    ended = time.monotonic()
    report: dict[str, Any] = {}
    for line in reversed(b"".join(stdout).decode("utf-8", "replace").splitlines()):
        if line.startswith('{"event": "rotation_report"'):
            report = json.loads(line)
            break
    return RotationRun(proc.returncode, report, _timings(events, report), started, ended, events)


def _logged_at(event: Event, started_wall: float, fallback: float) -> float:
    """The event's own timestamp (structlog's, UTC) as an offset from the start; else when it arrived."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return fallback
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return fallback
    return (when - started_wall) * 1000


def _timings(events: list[tuple[float, Event]], report: dict[str, Any]) -> list[StepTiming]:
    """The report's steps (authoritative durations), each placed in time by its log line."""
    arrivals = [offset for offset, e in events if e.get("event") == "step"]
    out = []
    for k, step in enumerate(report.get("steps", [])):
        if step.get("outcome") == "pending":
            continue
        end = arrivals[k] if k < len(arrivals) else (arrivals[-1] if arrivals else 0.0)
        out.append(
            StepTiming(
                step=step["step"],
                slot=step.get("slot"),
                outcome=step["outcome"],
                duration_ms=float(step.get("duration_ms", 0.0)),
                end_ms=end,
                reason=step.get("reason", ""),
            )
        )
    return out
