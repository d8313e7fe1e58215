"""CloudWatch Embedded Metric Format (EMF) lines: metrics as log lines, no API call.

CloudWatch Logs extracts the metrics of any log event in this format (the awslogs driver of an ECS task and
Lambda send them as they are); elsewhere the line is plain JSON. Every line publishes each metric twice:
without dimensions (what the alarms of deploy/cloudformation/rotation.yaml watch: any database) and with one
dimension naming the secret (dashboards, finding which one).

The rotator (namespace ``Rotator``), one line per run:

- ``RotationSucceeded`` / ``RotationFailed`` (Count, 1 or 0; ``rotate`` only, not a dry run or ``status``)
- ``RotationDuration`` (Milliseconds; ``rotate`` only)
- ``CredentialAgeDays`` (None: the oldest known age of the credentials ``--max-age`` counts) and
  ``CredentialsOverdue`` (Count: older than ``--max-age`` or of unknown age); every command that observed them

The loader, ``rotator.client`` (namespace ``Rotator``), one line per fetch and at most one a minute otherwise:

- ``CredentialFetches``, ``CredentialFetchFailures``, ``CacheHits``, ``CacheMisses`` (Count, since the last line)
- ``CredentialFetchThrottled`` (Count: failed fetches the store refused as throttled, seed 000's "API
  throttling events")
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

NAMESPACE = "Rotator"
# AWS's throttling error codes: declared here, where rotator.client (no boto3) and rotator.aws both read them
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ThrottledException",
        "SlowDown",
    }
)
MAX_DIMENSION_VALUE = 1024  # CloudWatch's limit on a dimension value

Sink = Callable[[str], None]


def stream_sink(stream: TextIO | None = None) -> Sink:
    """Write each line to ``stream`` (default: the process's stderr at the time of writing), flushed."""

    def write(line: str) -> None:
        out = stream if stream is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    return write


def emf_line(
    metrics: Mapping[str, tuple[float, str]],
    *,
    dimension: tuple[str, str] | None = None,
    properties: Mapping[str, Any] | None = None,
    namespace: str = NAMESPACE,
    timestamp_ms: int | None = None,
) -> str:
    """One EMF document: ``metrics`` maps a name to (value, unit). ``dimension`` (name, value) adds a second
    dimension set to the dimensionless one; ``properties`` are extra, searchable fields (never metrics)."""
    dimension_sets: list[list[str]] = [[]]
    doc: dict[str, Any] = dict(properties or {})
    if dimension is not None:
        name, value = dimension
        dimension_sets.append([name])
        doc[name] = value[:MAX_DIMENSION_VALUE]
    doc["_aws"] = {
        "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "CloudWatchMetrics": [
            {
                "Namespace": namespace,
                "Dimensions": dimension_sets,
                "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
            }
        ],
    }
    for name, (number, _) in metrics.items():
        doc[name] = number
    return json.dumps(doc, separators=(",", ":"))


def rotation_metrics(report: dict[str, Any], *, command: str) -> dict[str, tuple[float, str]]:
    """The metrics of one run of the rotator, from its report (:meth:`rotator.report.Report.as_dict`)."""
    out: dict[str, tuple[float, str]] = {}
    if command == "rotate":
        ok = report.get("exit_code") == 0
        out["RotationSucceeded"] = (1.0 if ok else 0.0, "Count")
        out["RotationFailed"] = (0.0 if ok else 1.0, "Count")
        out["RotationDuration"] = (float(report.get("duration_ms") or 0.0), "Milliseconds")
    ages = report.get("ages") or {}
    credentials = ages.get("credentials") or {}
    known = [
        c["age_s"] for c in credentials.values() if c.get("counted", True) and isinstance(c.get("age_s"), int | float)
    ]
    if known:
        out["CredentialAgeDays"] = (round(max(0.0, max(known)) / 86400, 3), "None")
    if credentials:
        out["CredentialsOverdue"] = (float(len(ages.get("overdue") or ())), "Count")
    return out


class ClientMetrics:
    """The loader's counters, written as EMF lines through ``sink``: at each fetch (success or failure) and,
    when only cache hits happen, at most once every ``interval_s`` seconds. Thread-safe; cheap when idle."""

    def __init__(self, secret: str, *, sink: Sink | None = None, interval_s: float = 60.0) -> None:
        self.secret = secret
        self.sink = sink if sink is not None else stream_sink(sys.stdout)
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._counts = {
            "CredentialFetches": 0,
            "CredentialFetchFailures": 0,
            "CredentialFetchThrottled": 0,
            "CacheHits": 0,
            "CacheMisses": 0,
        }
        self._last = time.monotonic()

    def hit(self) -> None:
        self._count("CacheHits", flush=False)

    def miss(self) -> None:
        self._count("CacheMisses", flush=False)

    def fetched(self, *, ok: bool, throttled: bool = False) -> None:
        if throttled:
            self._count("CredentialFetchThrottled", flush=False)
        self._count("CredentialFetches" if ok else "CredentialFetchFailures", flush=True)

    def flush(self) -> None:
        with self._lock:
            line = self._take()
        if line is not None:
            self._write(line)

    def _count(self, name: str, *, flush: bool) -> None:
        line = None
        with self._lock:
            self._counts[name] += 1
            if flush or time.monotonic() - self._last >= self.interval_s:
                line = self._take()
        if line is not None:
            self._write(line)

    def _take(self) -> str | None:
        """The line for the counts so far, and reset them (under the lock); None when all are zero."""
        self._last = time.monotonic()
        if not any(self._counts.values()):
            return None
        counts = {name: (float(n), "Count") for name, n in self._counts.items()}
        for name in self._counts:
            self._counts[name] = 0
        return emf_line(counts, dimension=("Secret", self.secret))

    def _write(self, line: str) -> None:
        with contextlib.suppress(Exception):  # metrics never break a credential fetch
            self.sink(line)
