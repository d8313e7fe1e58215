"""Audit events, EMF metric lines and notifications of real runs (real database, moto for Secrets Manager,
STS, SNS and SQS, a real HTTP server on loopback for the webhook)."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.errors import ExitCode
from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import Result, RotationEnv, make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    return make_env(db, aws, tmp_path)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def no_secret_in(env: RotationEnv, *texts: str) -> None:
    env.remember()
    for text in texts:
        for password in env.seen_passwords:
            assert password not in text, "a password leaked"


AUDIT_KEYS = {
    "event",
    "logger",
    "audit_schema",
    "run_id",
    "command",
    "caller",
    "host",
    "slot_secret_id",
    "engine",
    "outcome",
    "exit_code",
    "error",
    "slots_before",
    "slots_after",
    "plan",
    "steps",
    "rollback",
    "health",
    "ages",
    "overdue",
    "started_at",
    "finished_at",
    "duration_ms",
    "aws_api_calls",
    "level",
    "timestamp",
}


def test_one_audit_event_and_one_metrics_line_per_run(env: RotationEnv) -> None:
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    lines = json_lines(result.stderr)
    audits = [e for e in lines if e.get("logger") == "rotator.audit"]
    assert len(audits) == 1
    event = audits[0]
    assert set(event) == AUDIT_KEYS and event["event"] == "rotation_audit" and event["audit_schema"] == 1
    assert event["command"] == "rotate" and event["outcome"] == "ok" and event["exit_code"] == 0
    # Who: STS GetCallerIdentity on moto (the account id masked).
    assert event["caller"]["source"] == "sts" and event["caller"]["account"] == "****9012"
    assert event["caller"]["arn"].startswith("arn:aws:") and "123456789012" not in json.dumps(event)
    assert event["slots_before"]["active"] == "A" and event["slots_after"]["active"] == "B"
    assert event["plan"] == [s["step"] for s in event["steps"]] and "render_config" in event["plan"]
    assert all(s["outcome"] == "ok" and isinstance(s["duration_ms"], float) for s in event["steps"])
    assert [c["outcome"] for c in event["health"]["checks"]] == ["ok"] and event["health"]["precheck"] is None
    assert event["ages"]["slot A"]["rotated_at"] and event["started_at"] <= event["finished_at"]
    # The metrics line: valid EMF, read by CloudWatch from the task's log stream.
    emf = [e for e in lines if "_aws" in e]
    assert len(emf) == 1
    doc = emf[0]
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Rotator" and directive["Dimensions"] == [[], ["SlotSecret"]]
    assert {m["Name"] for m in directive["Metrics"]} == {
        "RotationSucceeded",
        "RotationFailed",
        "RotationDuration",
        "CredentialAgeDays",
        "CredentialsOverdue",
    }
    assert (doc["RotationSucceeded"], doc["RotationFailed"], doc["run_id"]) == (1.0, 0.0, event["run_id"])
    no_secret_in(env, result.stdout, result.stderr)


def test_a_failed_run_is_audited_and_counted_as_failed(env: RotationEnv) -> None:
    result = env.rotate(ROTATOR_SLOT_SECRET=f"{env.aws.prefix}/no-such-secret")
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = json_lines(result.stderr)
    (event,) = [e for e in lines if e.get("logger") == "rotator.audit"]
    assert event["outcome"] == "SecretNotFound" and event["exit_code"] == 2 and "not found" in event["error"]
    (doc,) = [e for e in lines if "_aws" in e]
    assert doc["RotationFailed"] == 1.0 and "CredentialAgeDays" not in doc


def test_metrics_follow_the_setting(env: RotationEnv) -> None:
    off = env.rotate(ROTATOR_METRICS="none")
    assert off.exit_code == 0 and not [e for e in json_lines(off.stderr) if "_aws" in e]
    console = env.rotate(ROTATOR_LOG_JSON="", ROTATOR_METRICS="auto")  # a person at a console: no EMF noise
    assert console.exit_code == 0 and '"_aws"' not in console.stderr
    assert "rotation_audit" in console.stderr  # the audit event is still written
    forced = env.rotate(ROTATOR_LOG_JSON="", ROTATOR_METRICS="emf")
    assert forced.exit_code == 0 and '"_aws"' in forced.stderr


# ------------------------------------------------------------------ notifications


class Webhook:
    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                assert self.headers.get("Content-Type") == "application/json"
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/{uuid.uuid4().hex}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def topic(aws: AwsEnv) -> Iterator[tuple[str, str]]:
    """An SNS topic with an SQS queue subscribed (raw delivery off: the SNS envelope, as email/Slack bridges get)."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    name = f"{aws.prefix.replace('/', '-')}-ops-{uuid.uuid4().hex[:8]}"
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    yield topic_arn, queue_url
    sns.delete_topic(TopicArn=topic_arn)
    sqs.delete_queue(QueueUrl=queue_url)


def messages(aws: AwsEnv, queue_url: str) -> list[dict[str, Any]]:
    got = aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def test_failures_are_notified_by_default_success_only_when_asked(
    env: RotationEnv, topic: tuple[str, str], webhook: Webhook
) -> None:
    topic_arn, queue_url = topic
    notify = {"ROTATOR_NOTIFY_TOPIC": topic_arn, "ROTATOR_NOTIFY_WEBHOOK": webhook.url}
    ok = env.rotate(**notify)
    assert ok.exit_code == 0
    assert messages(env.aws, queue_url) == [] and webhook.bodies == []  # on failure only, by default
    ok = env.rotate("--notify-on", "success,failure", **notify)
    assert ok.exit_code == 0
    (sns_message,) = messages(env.aws, queue_url)
    assert sns_message["Subject"].startswith("rotator rotate ") and sns_message["Subject"].endswith("succeeded")
    assert "active slot: B -> A" in sns_message["Message"]
    assert sns_message["MessageAttributes"]["outcome"]["Value"] == "success"
    (slack,) = webhook.bodies
    assert set(slack) == {"text"} and slack["text"] == sns_message["Message"]
    failed = env.rotate(ROTATOR_SLOT_SECRET=f"{env.aws.prefix}/no-such-secret", **notify)
    assert failed.exit_code == ExitCode.BAD_INPUT  # the notification does not change the outcome
    (sns_message,) = messages(env.aws, queue_url)
    assert "FAILED (SecretNotFound, exit 2)" in sns_message["Subject"]
    assert "error: " in sns_message["Message"] and "not found" in sns_message["Message"]
    assert len(webhook.bodies) == 2 and "FAILED" in webhook.bodies[1]["text"]
    no_secret_in(env, json.dumps(webhook.bodies), sns_message["Message"], ok.stderr, failed.stderr)
    assert webhook.url not in ok.stderr + failed.stderr  # the webhook URL is itself a secret


def test_a_failed_notification_never_changes_the_outcome(env: RotationEnv, aws: AwsEnv) -> None:
    refused = Webhook(status=500)
    try:
        missing_topic = f"arn:aws:sns:{aws.region}:123456789012:no-such-topic-{uuid.uuid4().hex[:8]}"
        result = env.rotate(
            "--notify-on",
            "success",
            ROTATOR_NOTIFY_TOPIC=missing_topic,
            ROTATOR_NOTIFY_WEBHOOK=refused.url,
        )
        assert result.exit_code == 0 and result.report["outcome"] == "ok"
        failures = [e for e in json_lines(result.stderr) if e.get("event") == "notify_failed"]
        assert {e["target"] for e in failures} == {"sns", "webhook"}
        assert any("HTTP 500" in e["detail"] for e in failures)
        unreachable = env.rotate(
            "--notify-on", "success", ROTATOR_NOTIFY_WEBHOOK="http://127.0.0.1:9/hook-" + uuid.uuid4().hex
        )
        assert unreachable.exit_code == 0
        assert any(e.get("event") == "notify_failed" for e in json_lines(unreachable.stderr))
        env.assert_consistent()
    finally:
        refused.close()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROTATOR_NOTIFY_TOPIC", "arn:aws:sqs:eu-west-1:123456789012:q"),
        ("ROTATOR_NOTIFY_WEBHOOK", "ftp://hooks.example.com/x"),
        ("ROTATOR_NOTIFY_ON", "always"),
    ],
)
def test_bad_notify_settings_are_bad_input_and_change_nothing(env: RotationEnv, variable: str, value: str) -> None:
    before = env.state()
    result: Result = env.rotate(**{variable: value})
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--notify-" in result.stderr
    assert env.state() == before
