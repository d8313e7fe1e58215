"""rotator.metrics: EMF documents CloudWatch accepts (the shape its specification requires), the rotator's
metrics from a report, and the loader's counters (rotator.client)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotator import metrics
from rotator.client import cache
from rotator.client.loader import CredentialLoader
from rotator.client.sources import DatabaseUrlSource


def assert_valid_emf(doc: dict[str, Any]) -> None:
    """The EMF specification's rules: _aws.Timestamp in ms, one or more CloudWatchMetrics directives, each
    dimension and metric a top-level member, metric values numbers, at most 30 dimensions per set."""
    aws = doc["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
    for directive in aws["CloudWatchMetrics"]:
        assert directive["Namespace"] and isinstance(directive["Namespace"], str)
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str)
        for metric in directive["Metrics"]:
            assert isinstance(doc[metric["Name"]], int | float) and not isinstance(doc[metric["Name"]], bool)
            assert metric["Unit"] in ("Count", "Milliseconds", "Seconds", "None")


def test_an_emf_line_has_a_dimensionless_set_for_alarms_and_one_per_secret() -> None:
    line = metrics.emf_line(
        {"RotationFailed": (1.0, "Count"), "RotationDuration": (12.5, "Milliseconds")},
        dimension=("SlotSecret", "prod/db/slots"),
        properties={"run_id": "r1"},
        timestamp_ms=1_764_000_000_000,
    )
    assert "\n" not in line
    doc = json.loads(line)
    assert_valid_emf(doc)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[], ["SlotSecret"]]
    assert (doc["RotationFailed"], doc["SlotSecret"], doc["run_id"]) == (1.0, "prod/db/slots", "r1")


REPORT = {
    "exit_code": 0,
    "duration_ms": 321.0,
    "ages": {
        "credentials": {
            "slot A": {"age_s": 86400.0 * 10},
            "slot B": {"age_s": 86400.0 * 91},
            "admin": {"age_s": None, "counted": False},
        },
        "overdue": ["slot B"],
    },
}


def test_rotation_metrics() -> None:
    m = metrics.rotation_metrics(REPORT, command="rotate")
    assert m == {
        "RotationSucceeded": (1.0, "Count"),
        "RotationFailed": (0.0, "Count"),
        "RotationDuration": (321.0, "Milliseconds"),
        "CredentialAgeDays": (91.0, "None"),
        "CredentialsOverdue": (1.0, "Count"),
    }
    failed = metrics.rotation_metrics({**REPORT, "exit_code": 4}, command="rotate")
    assert failed["RotationFailed"] == (1.0, "Count") and failed["RotationSucceeded"] == (0.0, "Count")
    # A dry run or status is no rotation: ages only.
    assert set(metrics.rotation_metrics(REPORT, command="dry_run")) == {"CredentialAgeDays", "CredentialsOverdue"}
    assert metrics.rotation_metrics({"exit_code": 2, "ages": {}}, command="dry_run") == {}


def test_client_counters_flush_at_each_fetch_and_at_most_once_an_interval_for_hits() -> None:
    lines: list[str] = []
    m = metrics.ClientMetrics("prod/db/slots", sink=lines.append, interval_s=3600)
    m.miss()
    m.fetched(ok=True)
    assert len(lines) == 1
    for _ in range(50):
        m.hit()
    assert len(lines) == 1  # hits alone wait for the interval
    m.fetched(ok=False)
    docs = [json.loads(line) for line in lines]
    for doc in docs:
        assert_valid_emf(doc)
    assert [(d["CredentialFetches"], d["CredentialFetchFailures"], d["CacheHits"], d["CacheMisses"]) for d in docs] == [
        (1, 0, 0, 1),
        (0, 1, 50, 0),
    ]
    m.flush()
    assert len(lines) == 2  # nothing new: no empty line


def test_the_loader_counts_hits_and_misses_and_audits_each_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    from structlog.testing import capture_logs

    clock = [1000.0]
    monkeypatch.setattr(cache, "_now", lambda: clock[0])
    lines: list[str] = []
    environ = {"DATABASE_URL": "postgresql://app:s3cr3t-pass-word@db:5432/app"}
    loader = CredentialLoader(
        DatabaseUrlSource(environ=environ),
        ttl=60,
        jitter=0,
        metrics=metrics.ClientMetrics("env:DATABASE_URL", sink=lines.append, interval_s=3600),
    )
    with capture_logs() as events:
        for _ in range(5):
            loader.get()
        clock[0] += 61  # expired: a refresh
        loader.get()
        environ.clear()  # the next fetch fails
        clock[0] += 61
        loader.get()  # stale value served
    counts = [
        (d["CredentialFetches"], d["CredentialFetchFailures"], d["CacheHits"], d["CacheMisses"])
        for d in map(json.loads, lines)
    ]
    assert counts == [(1, 0, 0, 1), (1, 0, 4, 1), (0, 1, 0, 1)]
    audits = [e for e in events if e.get("logger") == "rotator.client.audit"]
    assert [(e["event"], e["success"], e["error_class"]) for e in audits] == [
        ("credential_access", True, None),
        ("credential_access", True, None),
        ("credential_access", False, "ConfigurationError"),
    ]
    assert all(e["access_type"] == "retrieve" and e["audit_schema"] == 1 and e["source"] == "env" for e in audits)
    assert "s3cr3t-pass-word" not in repr(events) + "".join(lines)


def test_throttling_codes_are_the_aws_edges_and_are_counted() -> None:
    from rotator import aws

    assert aws.THROTTLING_CODES is metrics.THROTTLING_CODES
    lines: list[str] = []
    m = metrics.ClientMetrics("s", sink=lines.append)
    m.fetched(ok=False, throttled=True)
    doc = json.loads(lines[0])
    assert (doc["CredentialFetchThrottled"], doc["CredentialFetchFailures"]) == (1, 1)


def test_without_metrics_the_hot_path_is_the_plain_one() -> None:
    loader = CredentialLoader(DatabaseUrlSource(environ={"DATABASE_URL": "postgresql://a:b@h/d"}))
    assert loader.get.__func__ is cache.RefreshingValue.get  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="emf"):
        CredentialLoader(DatabaseUrlSource(), metrics="prometheus")  # type: ignore[arg-type]
