"""A fleet: many databases rotated in one run, each under its own lock, each with its own outcome.

The members come from a TOML settings file (``[defaults]`` plus one table per database, each holding the
settings ``rotate`` takes) or from discovery (:mod:`rotator.discover`). Each member is the ordinary in-process
rotation that :func:`rotator.wiring.build_rotation` makes; the fleet only schedules them on worker threads,
isolates their failures and sums them up.

Shared state, and why it is safe on threads:

- Signals: only the main thread may install handlers. The fleet installs one (:class:`StopSignal`); a stop
  starts no new database and is passed on to every running rotation's own ``StopSignal``, which its applier
  reads between steps (long waits in a worker are not cut short: they end at their own timeout).
- Logging: structlog is configured once, before the threads start; each worker binds ``database=<name>`` in
  its own context. The secret registry of :mod:`rotator.log` is locked and indexed for thousands of values.
- AWS: one boto3 session for the whole fleet (its service models loaded once), clients made one at a time
  under a lock, one set of clients per worker thread (boto3 clients are thread-safe; sessions are not).
- Shared admin secrets: databases on one server often share the admin (the RDS master). Rotating it from two
  databases at once would interleave two write-ahead protocols on one secret, which no per-database lock
  covers. So within a fleet run the admin of such a group is rotated once, by the group's last member, and
  only after every other member of the group has finished; the others run with ``skip_admin``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import tomllib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from rotator.config import Settings, settings_from_mapping
from rotator.errors import BadInput, ExitCode, RotatorError
from rotator.log import get_logger, scrub
from rotator.report import Report
from rotator.signals import StopSignal

log = get_logger("rotator.fleet")

DEFAULTS_TABLE = "defaults"

# The fleet's exit code is its worst member's, in this order (most urgent first):
#   5 needs a human: a database may be left NOT restored; nothing else can heal it.
#   1 failed: something may be half-done (a pending version); a re-run heals it, so re-run soon.
#   4 rolled back: the flip failed but the app is healthy on its old slot; the cause needs a look, no harm done.
#   2 bad input: nothing was changed; a setting or a secret needs fixing before this database can rotate.
#   6 overdue (status only): nothing failed, but a credential is past --max-age; rotate it soon.
#   3 locked: nothing was changed; another run holds this database and will report it itself.
#   0 done.
SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.NEEDS_HUMAN,
    ExitCode.FAILED,
    ExitCode.ROLLED_BACK,
    ExitCode.BAD_INPUT,
    ExitCode.OVERDUE,
    ExitCode.LOCKED,
    ExitCode.OK,
)
_RANK = {int(code): rank for rank, code in enumerate(SEVERITY)}


def worst(codes: Iterable[int]) -> int:
    """The most urgent exit code of ``codes`` (see SEVERITY); 0 for none. An unknown code counts as 1."""
    ranked = [code if code in _RANK else int(ExitCode.FAILED) for code in codes]
    return min(ranked, key=lambda code: _RANK[code], default=int(ExitCode.OK))


@dataclass(frozen=True)
class Member:
    """One database of the fleet: its settings, or why they were refused (that member exits 2, alone)."""

    name: str
    settings: Settings | None
    error: str | None = None
    # This member rotates its group's shared admin secret, after ``after`` (the group's other members) finish.
    after: tuple[str, ...] = ()
    note: str | None = None


def member(name: str, table: Mapping[str, Any], defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> Member:
    try:
        settings = settings_from_mapping(table, defaults=defaults)
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
    except BadInput as exc:
        return Member(name, None, error=f"{exc}")
    return Member(name, settings)


def _env_value(name: str, value: Any) -> str | bool:
    if isinstance(value, bool):
        return value
    if name == "file_mode" and isinstance(value, int):
        return f"{value:04o}"  # TOML 0o640 is the integer 416: the flag takes octal text
    return str(value)


def export_items(fleet: tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One item per database for the Step Functions fleet: its settings as the ROTATOR_* environment of its
    task (defaults merged in). Each database's settings are checked, and checked to read back the same from
    that environment, so a value the environment cannot carry is bad input here, not a failed task later."""
    defaults, tables = fleet
    items = []
    for name, table in tables.items():
        try:
            settings = settings_from_mapping(table, defaults=defaults)
        except BadInput as exc:
            raise BadInput(f"database {name!r}: {exc}") from None
        merged = {str(k).replace("-", "_"): v for k, v in {**defaults, **table}.items()}
        values = {k: _env_value(k, v) for k, v in merged.items()}
        if settings_from_mapping(values) != settings:
            raise BadInput(
                f"database {name!r}: a setting does not survive the trip through the environment: write it as a string"
            )
        env = [
            {"Name": f"ROTATOR_{k.upper()}", "Value": ("true" if v else "false") if isinstance(v, bool) else v}
            for k, v in values.items()
        ]
        items.append({"name": name, "environment": env})
    return items


def load_file(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``[defaults]`` and the database tables of a fleet file, in file order. Structure errors are bad input
    for the whole fleet; a table's bad settings are that database's alone (see :func:`member`)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"fleet file {path} does not exist: check --file (ROTATOR_FLEET_FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"fleet file {path} cannot be read ({type(exc).__name__}): check its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"fleet file {path} is not valid TOML ({exc}): fix it") from None
    defaults = data.pop(DEFAULTS_TABLE, {})
    if not isinstance(defaults, dict):
        raise BadInput(f"fleet file {path}: [{DEFAULTS_TABLE}] must be a table of setting = value")
    tables: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise BadInput(
                f"fleet file {path}: top-level key {name!r} is not a table: put shared settings under "
                f"[{DEFAULTS_TABLE}] and each database's under [its-name]"
            )
        tables[name] = table
    return defaults, tables


Identify = Callable[[Settings, str], str]
"""A secret's one identity in its store (a Secrets Manager name, partial or full ARN: the full ARN), so that
two databases naming one secret differently are known to share it."""


def as_written(_settings: Settings, secret: str) -> str:
    return secret


def _group_key(settings: Settings, secret: str, identify: Identify) -> tuple[str, str | None, str | None, str]:
    return settings.store, settings.region, settings.aws_endpoint_url, identify(settings, secret)


def arrange(members: list[Member], identify: Identify = as_written) -> list[Member]:
    """Refuse a slot secret named twice (two runs would fight over one lock); give each shared admin secret
    one rotation per run, by the group's last member, ordered after the rest of its group (module docstring).
    Names are compared by ``identify``: the same secret by name in one table and by ARN in another is one."""
    seen: dict[tuple[Any, ...], str] = {}
    for m in members:
        if m.settings is None:
            continue
        key = _group_key(m.settings, m.settings.slot_secret, identify)
        if key in seen:
            raise BadInput(
                f"databases {seen[key]!r} and {m.name!r} name the same slot secret {m.settings.slot_secret}: "
                "keep one table per database. Nothing was changed"
            )
        seen[key] = m.name
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, m in enumerate(members):
        if m.settings is not None:
            groups.setdefault(_group_key(m.settings, m.settings.admin_secret, identify), []).append(i)
    out = list(members)
    for indexes in groups.values():
        rotating = [i for i in indexes if not _settings(members[i]).skip_admin]
        if len(indexes) < 2 or not rotating:
            continue
        chosen = rotating[-1]
        for i in rotating[:-1]:
            out[i] = dataclasses.replace(
                members[i],
                settings=dataclasses.replace(_settings(members[i]), skip_admin=True),
                note=f"shared admin secret: rotated once, by {members[chosen].name!r}",
            )
        others = tuple(members[i].name for i in indexes if i != chosen)
        out[chosen] = dataclasses.replace(
            members[chosen], after=others, note=f"rotates the admin secret shared with {len(others)} other(s), last"
        )
    return out


def _settings(m: Member) -> Settings:
    assert m.settings is not None
    return m.settings


@dataclass
class Result:
    name: str
    outcome: str
    exit_code: int
    duration_ms: float = 0.0
    slots_before: dict[str, Any] = field(default_factory=dict)
    slots_after: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None
    report: dict[str, Any] | None = None

    @classmethod
    def of(cls, name: str, report: Report, note: str | None) -> Result:
        return cls(
            name=name,
            outcome=report.outcome,
            exit_code=report.exit_code,
            duration_ms=round(report.duration_ms, 1),
            slots_before=report.slots_before,
            slots_after=report.slots_after,
            error=report.error,
            note=note,
            report=report.as_dict(),
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "database": self.name,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "slots_before": self.slots_before,
            "slots_after": self.slots_after,
            "duration_ms": self.duration_ms,
        }
        if self.report is not None:
            out["steps"] = len(self.report["steps"])
            out["aws_api_calls"] = self.report["aws_api_calls"]
        if self.error:
            out["error"] = self.error
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class FleetReport:
    dry_run: bool
    concurrency: int
    results: list[Result] = field(default_factory=list)
    duration_ms: float = 0.0
    interrupted: str | None = None

    @property
    def exit_code(self) -> int:
        return worst(r.exit_code for r in self.results)

    def as_dict(self, *, full: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": "fleet_report",
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "concurrency": self.concurrency,
            "databases_total": len(self.results),
            "outcomes": dict(Counter(r.outcome for r in self.results)),
            "duration_ms": round(self.duration_ms, 1),
            "interrupted": self.interrupted,
            "databases": [r.summary() for r in self.results],
        }
        if full:
            out["reports"] = {r.name: r.report for r in self.results if r.report is not None}
        return out


RunOne = Callable[[Settings, StopSignal], Report]
"""Runs one database's rotation to its report (never raises a RotatorError: the report carries it)."""


class Fleet:
    def __init__(
        self,
        members: list[Member],
        run_one: RunOne,
        *,
        concurrency: int,
        dry_run: bool,
        identify: Identify = as_written,
    ) -> None:
        if concurrency < 1:
            raise BadInput(f"--concurrency {concurrency}: give 1 or more")
        self.members = arrange(members, identify)
        self.run_one = run_one
        self.concurrency = concurrency
        self.dry_run = dry_run

    def run(self) -> FleetReport:
        started = time.monotonic()
        report = FleetReport(dry_run=self.dry_run, concurrency=self.concurrency)
        by_name = {m.name: m for m in self.members}
        waiting = {m.name: set(m.after) for m in self.members if m.after}
        ready = deque(m for m in self.members if not m.after)
        results: dict[str, Result] = {}
        stops: dict[str, StopSignal] = {}
        with (
            StopSignal().installed() as fleet_stop,
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rotator-fleet") as pool,
        ):
            running: dict[Future[Result], str] = {}
            while ready or running:
                while ready and len(running) < self.concurrency and not fleet_stop.requested:
                    m = ready.popleft()
                    stops[m.name] = StopSignal()
                    running[pool.submit(self._one, m, stops[m.name])] = m.name
                if fleet_stop.requested:
                    report.interrupted = fleet_stop.requested
                    for name in running.values():
                        stops[name].requested = stops[name].requested or fleet_stop.requested
                    ready.clear()
                    if not running:
                        break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    results[name] = future.result()
                    for after_name, pending in list(waiting.items()):
                        pending.discard(name)
                        if not pending:
                            del waiting[after_name]
                            ready.append(by_name[after_name])
        for m in self.members:
            report.results.append(
                results.get(m.name)
                or Result(
                    m.name,
                    "NotStarted",
                    int(ExitCode.FAILED),
                    error=f"not started: the fleet was stopped by {report.interrupted}; re-run",
                    note=m.note,
                )
            )
        report.duration_ms = (time.monotonic() - started) * 1000
        return report

    def _one(self, m: Member, stop: StopSignal) -> Result:
        started = time.monotonic()
        structlog.contextvars.bind_contextvars(database=m.name)
        try:
            if m.settings is None:
                return Result(m.name, "BadInput", int(ExitCode.BAD_INPUT), error=m.error, note=m.note)
            return Result.of(m.name, self.run_one(m.settings, stop), m.note)
        except RotatorError as exc:
            error = scrub(str(exc))
            return Result(m.name, type(exc).__name__, int(exc.exit_code), error=error, note=m.note)
        except Exception as exc:  # one database's bug never ends the fleet, nor leaves with a raw traceback
            log.exception("fleet_member_error")
            return Result(
                m.name, "UnexpectedError", int(ExitCode.FAILED), error=f"{type(exc).__name__}: {scrub(str(exc))}"
            )
        finally:
            elapsed = (time.monotonic() - started) * 1000
            log.info("fleet_member_done", duration_ms=round(elapsed, 1))
            structlog.contextvars.unbind_contextvars("database")


def secret_identity() -> Identify:
    """:data:`Identify` against the stores: a Secrets Manager secret's ARN from DescribeSecret (once per name);
    any other store's id as written (an SSM parameter, a Vault path and a file have one spelling each). A secret
    that cannot be described keeps its name: its database fails on its own when it runs."""
    from rotator.aws import AwsClients

    clients: dict[tuple[str | None, str | None], AwsClients] = {}
    known: dict[tuple[str | None, str | None, str], str] = {}

    def identify(settings: Settings, secret: str) -> str:
        if settings.store != "secretsmanager":
            return secret
        key = (settings.region, settings.aws_endpoint_url, secret)
        if key not in known:
            where = key[:2]
            aws = clients.get(where) or clients.setdefault(where, AwsClients(region=where[0], endpoint_url=where[1]))
            try:
                described = aws.call("secretsmanager", "DescribeSecret", what="the secret", SecretId=secret)
                known[key] = str(described["ARN"])
            except RotatorError:
                known[key] = secret
        return known[key]

    return identify


def rotation_runner(*, after_step: Any = None, mode: str = "rotate") -> RunOne:
    """The real runner: :func:`rotator.wiring.build_rotation`, with AWS clients per worker thread made from one
    shared boto3 session (module docstring). ``mode``: ``rotate`` (or its dry run), ``status`` (a dry run judged
    by --max-age, exit 6 when overdue) or ``check`` (``rotator check``'s pre-flight, as a report)."""
    from rotator.aws import AwsClients
    from rotator.wiring import build_rotation

    session_lock = threading.RLock()
    holder = AwsClients()  # owns the shared session (made on first use, its errors mapped like a run's)
    local = threading.local()

    class SharedClients(AwsClients):
        @property
        def session(self) -> Any:
            with session_lock:
                return holder.session

        def client(self, service: str) -> Any:
            with session_lock:
                return super().client(service)

    def run_one(settings: Settings, stop: StopSignal) -> Report:
        key = (settings.region, settings.aws_endpoint_url)
        clients: dict[tuple[str | None, str | None], AwsClients] = local.__dict__.setdefault("clients", {})
        aws = clients.get(key)
        if aws is None:
            aws = clients[key] = SharedClients(region=settings.region, endpoint_url=settings.aws_endpoint_url)
        rotation, _ = build_rotation(settings, aws=aws, after_step=after_step)
        if mode == "check":
            return _checked(rotation, aws)
        report = rotation.run(stop)
        if mode == "status":
            from rotator import age

            age.apply_max_age(report)
        return report

    return run_one


def _checked(rotation: Any, aws: Any) -> Report:
    """``rotator check`` of one database, as a run report: exit 0 or 2, the first failed check as the error."""
    from rotator.check import run_checks

    checked = run_checks(rotation, aws)
    report = Report(dry_run=True, outcome="ok" if checked.ok else "CheckFailed", exit_code=checked.exit_code)
    failed = [r for r in checked.results if r.status == "FAIL"]
    if failed:
        report.error = "; ".join(f"{r.check}: {r.detail}" for r in failed)
    report.observed = {"checks": checked.as_dict()["checks"]}
    report.aws_api_calls, report.duration_ms = checked.aws_api_calls, checked.duration_ms
    return report


def summary(report: FleetReport, *, command: str = "rotate") -> Any:
    """One notification for the whole fleet run (rotator.notify's Summary): the counts, then each database
    that did not succeed with its exit code and error."""
    from rotator.notify import Summary

    ok = report.exit_code == 0
    counts = ", ".join(f"{n} {outcome}" for outcome, n in Counter(r.outcome for r in report.results).items())
    verdict = "succeeded" if ok else f"FAILED (exit {report.exit_code})"
    title = f"rotator fleet {command}: {len(report.results)} databases: {verdict}"
    lines = [counts, f"in {report.duration_ms / 1000:.1f} s at concurrency {report.concurrency}"]
    for r in report.results:
        if r.exit_code:
            lines.append(f"{r.name}: {r.outcome}, exit {r.exit_code}: {r.error or ''}".rstrip(": "))
    fields = {"outcome": "ok" if ok else "failed", "exit_code": report.exit_code, "databases": len(report.results)}
    return Summary(title=title, ok=ok, lines=tuple(lines[:50]), fields=fields)


# ---------------------------------------------------------------- the summary table


def _slots(r: Result) -> str:
    before, after = r.slots_before.get("active"), r.slots_after.get("active")
    if before is None:
        return "-"
    return f"{before}→{after}" if after else f"{before}→?"


def table(report: FleetReport, *, width: int = 60) -> str:
    """One line per database (database, outcome, exit code, slots before→after, duration), then the total."""
    rows = [("DATABASE", "OUTCOME", "EXIT", "SLOTS", "SECONDS", "DETAIL")]
    for r in report.results:
        detail = r.error or r.note or ""
        if len(detail) > width:
            detail = detail[: width - 1] + "…"
        rows.append((r.name, r.outcome, str(r.exit_code), _slots(r), f"{r.duration_ms / 1000:.2f}", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    ]
    counts = ", ".join(f"{n} {outcome}" for outcome, n in Counter(r.outcome for r in report.results).items())
    mode = "dry run, " if report.dry_run else ""
    stopped = f", stopped by {report.interrupted}" if report.interrupted else ""
    lines.append(
        f"{len(report.results)} databases ({mode}{counts}) in {report.duration_ms / 1000:.1f} s at concurrency "
        f"{report.concurrency}{stopped}: exit {report.exit_code}"
    )
    return "\n".join(lines)
