"""One audit event per credential fetch (seed 001's ``credential_access_log``), at the logger
``rotator.client.audit``, event ``credential_access``, schema :data:`SCHEMA`.

Fields: ``access_type`` (``retrieve``), ``success``, ``error_class`` and ``error_code`` (a failure's exception
class and AWS/Vault error code, never its message), ``source`` (secretsmanager, ssm, vault, env),
``secret_arn`` (account id masked), ``version``, ``slot``, ``fallback`` (read from the fallback source),
``duration_ms``, ``host`` and ``pid`` (who accessed it). Never a value. Example (one line)::

    {"event": "credential_access", "logger": "rotator.client.audit", "audit_schema": 1, "access_type": "retrieve",
     "success": true, "error_class": null, "error_code": null, "source": "secretsmanager",
     "secret_arn": "arn:aws:secretsmanager:eu-west-1:****9012:secret:prod/db/slots-AbCdEf", "version": "6f1c...",
     "slot": "B", "fallback": false, "duration_ms": 12.3, "host": "ip-10-0-1-23", "pid": 7, "level": "info",
     "timestamp": "2026-12-04T15:00:00.123456Z"}
"""

from __future__ import annotations

import os
import socket
from typing import Any

import structlog

LOGGER = "rotator.client.audit"
EVENT = "credential_access"
SCHEMA = 1

audit_log: Any = structlog.get_logger(LOGGER)
_HOST = socket.gethostname()


def access_event(
    *,
    success: bool,
    source: str,
    secret_arn: str,
    duration_ms: float,
    version: str | None = None,
    slot: str | None = None,
    error: BaseException | None = None,
    error_code: str | None = None,
    fallback: bool = False,
) -> dict[str, Any]:
    return {
        "logger": LOGGER,
        "audit_schema": SCHEMA,
        "access_type": "retrieve",
        "success": success,
        "error_class": type(error).__name__ if error is not None else None,
        "error_code": error_code,
        "source": source,
        "secret_arn": secret_arn,
        "version": version,
        "slot": slot,
        "fallback": fallback,
        "duration_ms": round(duration_ms, 1),
        "host": _HOST,
        "pid": os.getpid(),
    }


def emit(event: dict[str, Any]) -> None:
    (audit_log.info if event["success"] else audit_log.warning)(EVENT, **event)
