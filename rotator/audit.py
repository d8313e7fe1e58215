"""Audit events: one per run of the rotator, one per credential fetch of ``rotator.client``.

Both are structured log events at a stable logger name and schema, for a log pipeline to route (a
CloudWatch Logs subscription filter on ``{ $.logger = "rotator.audit" }``, a Fluent Bit match, ...):

- ``rotator.audit``, event ``rotation_audit`` (schema :data:`SCHEMA`): who ran it (the caller identity from
  STS GetCallerIdentity when the secrets are in AWS; the local user otherwise), what (the command, the plan
  and each step's outcome, the rollback), which slot (before and after), the health checks, durations, the
  credentials' ages and the outcome. See :func:`run_event`.
- ``rotator.client.audit``, event ``credential_access`` (seed 001's ``credential_access_log``): the access
  type, success or failure with the error class, the sanitized ARN, the version and slot; see
  :func:`rotator.client.audit.access_event`.

Never a secret value: the events are made of step kinds, slots, outcomes and scrubbed error lines, and go
through the same redaction as every log line; ARNs have their account id masked.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rotator import age
from rotator.aws import sanitize_arn
from rotator.errors import RotatorError
from rotator.log import get_logger

if TYPE_CHECKING:
    from rotator.aws import AwsClients
    from rotator.config import Settings
    from rotator.report import Report

LOGGER = "rotator.audit"
EVENT = "rotation_audit"
SCHEMA = 1

audit_log = get_logger(LOGGER)


def caller_identity(settings: Settings, aws: AwsClients | None) -> dict[str, Any]:
    """Who runs this: STS GetCallerIdentity when the run uses AWS (one call, no permission needed), else the
    local user (a file or Vault store with no ECS deployment never calls AWS for this). A failure is recorded,
    never raised."""
    if aws is not None and _uses_aws(settings):
        try:
            response = aws.edge("sts", max_attempts=2, backoff_max=1.0).call("GetCallerIdentity", what="the caller")
        except RotatorError as exc:
            return {"source": "sts", "error": type(exc).__name__}
        return {
            "source": "sts",
            "arn": sanitize_arn(str(response.get("Arn", ""))),
            "account": _masked(str(response.get("Account", ""))),
            "user_id": str(response.get("UserId", "")),
        }
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {"source": "local", "user": user, "uid": os.getuid() if hasattr(os, "getuid") else None}


def _uses_aws(settings: Settings) -> bool:
    store = settings.store
    return store in ("", "secretsmanager") or store == "ssm" or store.startswith("ssm:") or settings.deploy == "ecs"


def _masked(account: str) -> str:
    return "****" + account[-4:] if len(account) == 12 and account.isascii() and account.isdigit() else account


def _step(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record.get(k) for k in ("step", "slot", "outcome", "duration_ms")}
    if record.get("error"):
        out["error"] = record["error"]
    return out


def run_event(
    report: dict[str, Any],
    *,
    command: str,
    slot_secret: str,
    caller: dict[str, Any],
    started_at: datetime,
    finished_at: datetime,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The audit event of one run, from its report (:meth:`rotator.report.Report.as_dict`)."""
    steps = report.get("steps") or []
    health = [_step(s) for s in steps if s.get("step") == "health_check" and s.get("outcome") != "planned"]
    observed = report.get("observed") or {}
    ages = report.get("ages") or {}
    return {
        "logger": LOGGER,
        "audit_schema": SCHEMA,
        "run_id": run_id or str(uuid.uuid4()),
        "command": command,
        "caller": caller,
        "host": socket.gethostname(),
        "slot_secret_id": sanitize_arn(slot_secret),
        "engine": observed.get("engine"),
        "outcome": report.get("outcome"),
        "exit_code": report.get("exit_code"),
        "error": report.get("error"),
        "slots_before": report.get("slots_before"),
        "slots_after": report.get("slots_after"),
        "plan": [s.get("step") for s in steps],
        "steps": [_step(s) for s in steps],
        "rollback": [_step(s) for s in report.get("rollback") or []],
        "health": {"precheck": observed.get("health_precheck"), "checks": health},
        "ages": {
            name: {"rotated_at": c.get("rotated_at"), "age_s": c.get("age_s")}
            for name, c in (ages.get("credentials") or {}).items()
        },
        "overdue": ages.get("overdue"),
        "started_at": age.format_timestamp(started_at),
        "finished_at": age.format_timestamp(finished_at),
        "duration_ms": report.get("duration_ms"),
        "aws_api_calls": report.get("aws_api_calls"),
    }


def emit(event: dict[str, Any]) -> None:
    """Log the event at the audit logger (JSON with --log-json, one line; redacted like every line)."""
    audit_log.info(EVENT, **event)


_CALLERS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _cached_caller(settings: Settings, aws: AwsClients | None) -> dict[str, Any]:
    """One GetCallerIdentity per set of clients (a fleet's worker rotates many databases with one)."""
    if aws is None:
        return caller_identity(settings, aws)
    found = _CALLERS.get(aws)
    if found is None or "error" in found:
        found = _CALLERS[aws] = caller_identity(settings, aws)
    return found


def after_run(
    settings: Settings, aws: AwsClients | None, clock: Callable[[], datetime] = age.utc_now
) -> Callable[[Report], None]:
    """The hook a Rotation calls with its report: the audit event, then the metrics line (rotator.metrics)."""
    from rotator import log, metrics

    def hook(report: Report) -> None:
        data = report.as_dict()
        command = "dry_run" if settings.dry_run else "rotate"
        finished = clock()
        event = run_event(
            data,
            command=command,
            slot_secret=settings.slot_secret,
            caller=_cached_caller(settings, aws),
            started_at=finished - timedelta(milliseconds=report.duration_ms),
            finished_at=finished,
        )
        emit(event)
        if settings.metrics == "emf" or (settings.metrics == "auto" and log.is_json()):
            values = metrics.rotation_metrics(data, command=command)
            if values:
                line = metrics.emf_line(
                    values,
                    dimension=("SlotSecret", sanitize_arn(settings.slot_secret)),
                    properties={"run_id": event["run_id"], "outcome": report.outcome},
                )
                metrics.stream_sink()(line)

    return hook
