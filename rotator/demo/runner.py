"""`rotator demo`: bring the stack up, run the rotations under load with live progress, print the report.

    python -m rotator.demo [--rotations 3] [--instances 2] [--load-threads 4] [--show-rollback]
                           [--postgres-dsn DSN | --mysql-dsn DSN] [--app config|live-secret] [--json] [--verbose]

Exit code 0 when every rotation ended as expected and not one request failed; 1 otherwise; 2 for bad
options or a set-up that could not be made; 130 when interrupted (everything started is stopped first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, TextIO

from rotator import log
from rotator.demo.load import Window
from rotator.demo.rotations import Event, RotationRun
from rotator.demo.stack import APPS, DemoConfig, DemoStack

OUTCOME_OK = 0
OUTCOME_ROLLED_BACK = 4


@dataclass
class RotationResult:
    label: str
    expected_exit: int
    run: RotationRun
    load: Window
    config_slot_after: str | None

    @property
    def as_expected(self) -> bool:
        return self.run.exit_code == self.expected_exit and bool(self.run.report)

    def as_dict(self) -> dict[str, Any]:
        report = self.run.report
        return {
            "label": self.label,
            "exit_code": self.run.exit_code,
            "expected_exit": self.expected_exit,
            "outcome": report.get("outcome"),
            "slots_before": report.get("slots_before"),
            "slots_after": report.get("slots_after"),
            "config_slot_after": self.config_slot_after,
            "wall_ms": round(self.run.wall_ms, 1),
            "aws_api_calls": report.get("aws_api_calls"),
            "requests": {"served": self.load.served, "failed": self.load.failed, "p99_ms": round(self.load.p99_ms, 1)},
            "steps": [
                {
                    "step": s.step,
                    "slot": s.slot,
                    "outcome": s.outcome,
                    "start_ms": round(s.start_ms, 1),
                    "duration_ms": s.duration_ms,
                }
                for s in self.run.steps
            ],
        }


@dataclass
class DemoResult:
    server: str = ""
    rotations: list[RotationResult] = field(default_factory=list)
    total: Window = field(default_factory=lambda: Window(0, 0, 0.0, 0.0, 0.0))
    load_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    slots_logging_in: dict[str, bool] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)

    @property
    def during_rotations(self) -> Window:
        served = sum(r.load.served for r in self.rotations)
        failed = sum(r.load.failed for r in self.rotations)
        return Window(served, failed, 0.0, 0.0, 0.0)

    @property
    def ok(self) -> bool:
        return (
            all(r.as_expected for r in self.rotations)
            and self.total.failed == 0
            and self.total.served > 0
            and all(self.slots_logging_in.values())
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "demo_report",
            "ok": self.ok,
            "server": self.server,
            "rotations": [r.as_dict() for r in self.rotations],
            "requests": {
                "served": self.total.served,
                "failed": self.total.failed,
                "during_rotations": self.during_rotations.served,
                "load_seconds": round(self.load_seconds, 2),
                "p50_ms": round(self.total.p50_ms, 2),
                "p99_ms": round(self.total.p99_ms, 2),
            },
            "failures": self.failures,
            "slots_logging_in": self.slots_logging_in,
            "cleaned": self.cleaned,
        }


class Printer:
    """Live progress lines. Rotation events arrive on the watcher thread, hence the lock."""

    def __init__(self, out: TextIO, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self._lock = threading.Lock()

    def line(self, text: str = "") -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def event(self, offset_ms: float, e: Event) -> None:
        at = f"+{offset_ms / 1000:5.2f} s"
        kind = e.get("event")
        if self.verbose:
            self.line(f"    {at}  {json.dumps(e)}")
            return
        if kind == "observed":
            active, config, live = e.get("active_slot"), e.get("config_slot"), e.get("live_secret")
            if isinstance(live, dict):
                self.line(f"    {at}  observed: secret on slot {active}, live secret on slot {live.get('slot')}")
            else:
                self.line(f"    {at}  observed: secret on slot {active}, config on slot {config}")
        elif kind == "step":
            slot = e.get("slot") or "-"
            ms = e.get("duration_ms", 0)
            self.line(f"    {at}  {e.get('step', '?'):<22} {slot:<2} {e.get('outcome', '?'):<7} {ms:>8.1f} ms")
        elif kind == "deploy_output":
            self.line(f"             | {e.get('line', '')}")
        elif kind == "health_check":
            self.line(f"             health: {e.get('check')} {e.get('outcome')}: {e.get('detail')}")
        elif kind == "rollback":
            self.line(f"    {at}  ROLLBACK to slot {e.get('to_slot')} (failed at {e.get('failed_step')})")
        elif kind in ("failed", "note"):
            self.line(f"    {at}  {kind}: {e.get('error') or e.get('note')}")
        elif kind == "output" and e.get("line"):
            self.line(f"             {e['line']}")


def _n(value: int) -> str:
    return f"{value:,}"


def _window_text(w: Window) -> str:
    return f"{_n(w.served)} served, {_n(w.failed)} failed (p50 {w.p50_ms:.1f} ms, p99 {w.p99_ms:.1f} ms)"


def _slots(value: Any) -> str:
    if not isinstance(value, dict):
        return "?"
    if "live" in value:  # --app live-secret: no config file, the live secret is the app's source
        return f"{value.get('active')}/{value.get('live')}"
    return f"{value.get('active')}/{value.get('config')}"


def _rotate(stack: DemoStack, p: Printer, label: str, expected_exit: int) -> RotationResult:
    run = stack.rotate(p.event)
    load = stack.load.window(run.started, run.ended)
    result = RotationResult(label, expected_exit, run, load, stack.config_slot())
    report = run.report
    verdict = "as expected" if result.as_expected else f"NOT as expected (wanted exit {expected_exit})"
    p.line(
        f"  done in {run.wall_ms / 1000:.2f} s: exit {run.exit_code} "
        f"({report.get('outcome', 'no report')}, {verdict}); "
        f"slots (secret/{'live' if stack.live_arn else 'config'}) "
        f"{_slots(report.get('slots_before'))} -> {_slots(report.get('slots_after'))}; "
        f"{report.get('aws_api_calls', '?')} Secrets Manager calls"
    )
    p.line(f"  requests while it ran: {_window_text(load)}")
    return result


def _print_report(p: Printer, result: DemoResult, stack: DemoStack) -> None:
    p.line()
    p.line("report")
    p.line(
        f"  {'rotation':<12} {'outcome':<11} {'exit':>4}  {'slots':<10} {'wall':>8}  {'SM calls':>8}  "
        f"{'served':>8}  {'failed':>6}  {'p99':>8}"
    )
    for r in result.rotations:
        rep = r.run.report
        slots = f"{_slots(rep.get('slots_before'))}->{_slots(rep.get('slots_after'))}"
        p.line(
            f"  {r.label:<12} {rep.get('outcome', '?'):<11} {r.run.exit_code:>4}  {slots:<10} "
            f"{r.run.wall_ms / 1000:>6.2f} s  {rep.get('aws_api_calls', '?'):>8}  {_n(r.load.served):>8}  "
            f"{_n(r.load.failed):>6}  {r.load.p99_ms:>5.1f} ms"
        )
    source = "live secret names" if stack.live_arn is not None else "deployed config uses"
    p.line(f"  (slots: secret's active slot / slot the {source}, before -> after)")
    for r in result.rotations:
        p.line()
        p.line(f"  timeline of rotation {r.label} (ms from the start of `rotator rotate`; requests during each step)")
        p.line(f"    {'step':<24} {'slot':<4} {'outcome':<7} {'start':>8} {'duration':>9}  {'served':>7} {'failed':>6}")
        first = r.run.steps[0].start_ms if r.run.steps else r.run.wall_ms
        rows: list[tuple[str, str, str, float, float]] = [("start-up + observe", "", "", 0.0, first)]
        rows += [(s.step, s.slot or "", s.outcome, s.start_ms, s.duration_ms) for s in r.run.steps]
        for step, slot, outcome, start, duration in rows:
            w = stack.load.window(r.run.at(start), r.run.at(start + duration))
            p.line(
                f"    {step:<24} {slot:<4} {outcome:<7} {start:>8.1f} {duration:>9.1f}  {_n(w.served):>7} {w.failed:>6}"
            )
    p.line()
    calls = [r.run.report.get("aws_api_calls", 0) or 0 for r in result.rotations]
    per = "/".join(str(c) for c in calls)
    setup = 3 if stack.live_arn is not None else 2  # creating the secrets
    p.line(f"  Secrets Manager: {sum(calls)} API calls by {len(calls)} rotations ({per}); {setup} more at set-up")
    dr = result.during_rotations
    p.line(
        f"  requests: {_n(result.total.served)} served, {_n(result.total.failed)} failed in "
        f"{result.load_seconds:.1f} s of load ({_n(dr.served)} served while a rotation ran); "
        f"p50 {result.total.p50_ms:.1f} ms, p99 {result.total.p99_ms:.1f} ms"
    )
    if result.failures:
        p.line(f"  first failures: {'; '.join(result.failures)}")
    logins = ", ".join(f"{s} {'logs in' if ok else 'DOES NOT log in'}" for s, ok in result.slots_logging_in.items())
    p.line(f"  slot users with the secret's current passwords: {logins}")


def run_demo(config: DemoConfig, out: TextIO | None = None, *, verbose: bool = False, as_json: bool = False) -> int:
    result = demo(config, out, verbose=verbose, as_json=as_json)
    return 0 if result.ok else 1


def demo(config: DemoConfig, out: TextIO | None = None, *, verbose: bool = False, as_json: bool = False) -> DemoResult:
    """Run the whole demo; the result says what happened (``result.ok``: all as expected, 0 failed)."""
    p = Printer(out or sys.stdout, verbose)
    result = DemoResult()
    p.line("rotator demo: rotate a database's credentials while an app serves, and count every request")
    p.line()
    p.line("setting up")
    stack = DemoStack(config, p.line)
    with stack:
        result.server = stack.db.server_description
        time.sleep(config.warmup_s)
        warm = stack.load.window(0.0, time.monotonic())
        p.line(f"  warm-up   {config.warmup_s:g} s: {_window_text(warm)}")
        plan: list[tuple[str, int]] = [(str(i), OUTCOME_OK) for i in range(1, config.rotations + 1)]
        if config.show_rollback:
            plan.append(("rollback", OUTCOME_ROLLED_BACK))
        for label, expected in plan:
            live = stack.active_slot()
            p.line()
            if label == "rollback":
                standby = "B" if live == "A" else "A"
                stack.fleet.unhealthy_slot = standby
                p.line(
                    f"rotation with a deliberately failing health check: instances report unhealthy on slot "
                    f"{standby}, so the flip must roll back to {live} (exit 4) without failing a request"
                )
            else:
                how = "--deploy command --live-secret" if config.app == "live-secret" else "--deploy command"
                p.line(f"rotation {label} of {config.rotations}: `rotator rotate {how}`, slot {live} live")
            try:
                result.rotations.append(_rotate(stack, p, label, expected))
            finally:
                stack.fleet.unhealthy_slot = None
        time.sleep(0.5)  # a moment of load after the last rotation: still serving
        stack.load.stop()
        result.total = stack.load.totals()
        result.load_seconds = stack.load.stopped_at - stack.load.started_at
        result.failures = stack.load.failures()
        result.slots_logging_in = {slot: stack.slot_logs_in(slot) for slot in ("A", "B")}
        if stack.live_arn is not None:
            result.slots_logging_in["live secret"] = stack.live_logs_in()
        _print_report(p, result, stack)
    result.cleaned = stack.cleaned
    p.line()
    p.line(f"cleaned up: {', '.join(stack.cleaned)}")
    if result.ok:
        n = len(result.rotations)
        p.line(
            f"RESULT: {n} rotation{'s' if n != 1 else ''} as expected, {_n(result.total.served)} requests served, "
            "0 failed: nobody noticed."
        )
    else:
        p.line(f"RESULT: FAILED: {_n(result.total.failed)} failed requests, or a rotation did not end as expected")
    if as_json:
        p.line(json.dumps(result.as_dict()))
    return result


# ---------------------------------------------------------------- command line


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rotator demo",
        description="Rotate a real database's credentials while a demo app serves under load; print the report.",
    )
    ap.add_argument("--rotations", type=int, default=_env_int("ROTATOR_DEMO_ROTATIONS", 3))
    ap.add_argument("--instances", type=int, default=_env_int("ROTATOR_DEMO_INSTANCES", 2))
    ap.add_argument("--load-threads", type=int, default=_env_int("ROTATOR_DEMO_LOAD_THREADS", 4))
    ap.add_argument("--postgres-dsn", default=os.environ.get("ROTATOR_DEMO_POSTGRES_DSN") or None)
    ap.add_argument("--mysql-dsn", default=os.environ.get("ROTATOR_DEMO_MYSQL_DSN") or None)
    ap.add_argument("--show-rollback", action="store_true", default=_env_flag("ROTATOR_DEMO_SHOW_ROLLBACK"))
    ap.add_argument(
        "--app",
        choices=APPS,
        default=os.environ.get("ROTATOR_DEMO_APP") or "config",
        help="config: instances read a rendered config file; live-secret: they read the live secret once at "
        "start (seed 002's get_database_credentials, as on ECS with valueFrom)",
    )
    ap.add_argument("--json", action="store_true", default=_env_flag("ROTATOR_DEMO_JSON"))
    ap.add_argument("--verbose", action="store_true", default=_env_flag("ROTATOR_DEMO_VERBOSE"))
    return ap


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the stack's clean-up


def run_command(
    *,
    rotations: int = 3,
    instances: int = 2,
    load_threads: int = 4,
    postgres_dsn: str | None = None,
    mysql_dsn: str | None = None,
    show_rollback: bool = False,
    app: str = "config",
    json: bool = False,
    verbose: bool = False,
) -> int:
    """The `rotator demo` command: its options by name (the click command passes ``**kw``), its exit code."""
    try:
        config = DemoConfig(
            rotations=rotations,
            instances=instances,
            load_threads=load_threads,
            postgres_dsn=postgres_dsn or None,
            mysql_dsn=mysql_dsn or None,
            show_rollback=show_rollback,
            app=app,
        )
    except ValueError as exc:
        print(f"rotator demo: {exc}", file=sys.stderr)
        return 2
    log.configure(level="warning")  # the rotator's own modules, used here to set up users and render
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_demo(config, verbose=verbose, as_json=json)
    except KeyboardInterrupt:
        print("rotator demo: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        print(f"rotator demo: failed: {type(exc).__name__}: {log.scrub(str(exc))}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run_command(**vars(parser().parse_args(argv)))
