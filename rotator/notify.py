"""Notifications to people: a short, secret-free summary to an SNS topic and/or a Slack-compatible webhook.

``rotator rotate --notify-topic ARN --notify-webhook URL --notify-on failure,success`` sends one summary per
run (failures only by default). Reuse for other runs (a fleet sends one message per fleet run)::

    notifier = Notifier.from_settings(settings, aws)          # or Notifier(topic_arn=..., webhook_url=..., ...)
    if notifier is not None and notifier.wants(ok=False):
        notifier.send(Summary(title="rotator fleet: 2 of 40 databases failed", ok=False, lines=(...)))

A notification never changes a run's outcome: :meth:`Notifier.send` never raises; a failure is logged
(``notify_failed``, with the error class, never the webhook URL, which is itself a secret) and returned.
The summary carries no secret: it is made of outcomes, slots, step kinds and the run's error line, which is
scrubbed of every registered secret like every log line, and ARNs have their account id masked.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rotator.errors import BadInput, RotatorError
from rotator.log import get_logger, register_secret, scrub

if TYPE_CHECKING:
    from rotator.aws import AwsClients
    from rotator.config import Settings
    from rotator.report import Report

log = get_logger("rotator")

OUTCOMES = ("failure", "success")
WEBHOOK_TIMEOUT_S = 5.0
_TOPIC = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?")
_SUBJECT_MAX = 100  # SNS: ASCII, no line breaks, at most 100 characters


# ---------------------------------------------------------------- settings parsers


def parse_topic_arn(value: Any, label: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TOPIC.fullmatch(value.strip()):
        raise BadInput(f"{label} is not an SNS topic ARN: use arn:aws:sns:REGION:ACCOUNT:TOPIC")
    return value.strip()


def parse_webhook_url(value: Any, label: str) -> str | None:
    """An http(s) URL with a host. Never echoed: a Slack webhook's path is its secret."""
    if value is None or value == "":
        return None
    bad = BadInput(f"{label} is not an http(s) URL with a host: use e.g. https://hooks.slack.com/services/...")
    if not isinstance(value, str) or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise bad
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise bad
    register_secret(value)
    return value


def parse_outcomes(value: Any, label: str) -> str:
    """``failure``, ``success`` or both, comma-separated; normalized to ``failure,success`` order."""
    if isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        items = []
    if not items or any(item not in OUTCOMES for item in items):
        raise BadInput(f"{label} must list failure, success or both (comma-separated): use e.g. success,failure")
    return ",".join(o for o in OUTCOMES if o in items)


# ---------------------------------------------------------------- the summary


@dataclass(frozen=True)
class Summary:
    """What people are told: a title (the SNS subject, the Slack headline) and a few lines of facts."""

    title: str
    ok: bool
    lines: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)  # machine-readable facts (SNS message attributes)

    def text(self) -> str:
        return scrub("\n".join((self.title, *self.lines)))

    def subject(self) -> str:
        ascii_title = scrub(self.title).encode("ascii", "replace").decode("ascii")
        one_line = " ".join(ascii_title.split())
        return one_line if len(one_line) <= _SUBJECT_MAX else one_line[: _SUBJECT_MAX - 3] + "..."

    def slack(self) -> dict[str, Any]:
        """Slack's incoming-webhook payload (``text`` is all a compatible receiver needs)."""
        return {"text": self.text()}


def summary_of_report(report: Report, *, slot_secret: str, command: str = "rotate") -> Summary:
    """One run's summary from its report: outcome, slots before and after, the failed step, the error line."""
    from rotator.aws import sanitize_arn

    ok = report.exit_code == 0
    what = sanitize_arn(slot_secret)
    verdict = "succeeded" if ok else f"FAILED ({report.outcome}, exit {report.exit_code})"
    title = f"rotator {command} {what}: {verdict}"
    before, after = report.slots_before, report.slots_after
    lines = [f"active slot: {before.get('active', '?')} -> {after.get('active', before.get('active', '?'))}"]
    ran = [s for s in report.steps if s.outcome != "pending"]
    failed = [s for s in report.steps if s.outcome == "failed"]
    if failed:
        lines.append(f"failed step: {failed[0].description.get('step')}")
    if report.rollback and any(s.outcome != "planned" for s in report.rollback):
        lines.append("rollback: " + ", ".join(f"{s.description.get('step')} {s.outcome}" for s in report.rollback))
    if report.error:
        lines.append(f"error: {report.error}")
    lines.append(f"{len(ran)} of {len(report.steps)} steps ran in {report.duration_ms / 1000:.1f} s")
    for note in report.notes[:3]:
        lines.append(f"note: {note}")
    fields = {"outcome": report.outcome, "exit_code": report.exit_code, "slot_secret": what}
    return Summary(title=sanitize_arn(title), ok=ok, lines=tuple(sanitize_arn(line) for line in lines), fields=fields)


# ---------------------------------------------------------------- sending


class Notifier:
    """Sends a :class:`Summary` to an SNS topic and/or a webhook, for the outcomes asked for."""

    def __init__(
        self,
        *,
        topic_arn: str | None = None,
        webhook_url: str | None = None,
        on: Sequence[str] = ("failure",),
        aws: AwsClients | None = None,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
    ) -> None:
        if topic_arn is not None and aws is None:
            raise ValueError("an SNS topic needs AwsClients")
        self.topic_arn = topic_arn
        self.webhook_url = parse_webhook_url(webhook_url, "the webhook URL")
        self.on = frozenset(on)
        self.aws = aws
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None) -> Notifier | None:
        """The notifier the settings ask for, or None when they name no topic and no webhook."""
        if not settings.notify_topic and not settings.notify_webhook:
            return None
        return cls(
            topic_arn=settings.notify_topic,
            webhook_url=settings.notify_webhook,
            on=settings.notify_on.split(","),
            aws=aws,
        )

    def wants(self, *, ok: bool) -> bool:
        return ("success" if ok else "failure") in self.on

    def send(self, summary: Summary) -> list[str]:
        """Send to every target. Never raises; returns (and logs) what failed, one line per target."""
        failures: list[str] = []
        if self.topic_arn is not None:
            failures += self._try("sns", lambda: self._publish(summary))
        if self.webhook_url is not None:
            failures += self._try("webhook", lambda: self._post(summary))
        return failures

    def notify(self, summary: Summary) -> list[str]:
        """:meth:`send` when the summary's outcome is one asked for; else nothing."""
        return self.send(summary) if self.wants(ok=summary.ok) else []

    def _try(self, target: str, send: Any) -> list[str]:
        try:
            send()
        except Exception as exc:  # a notification never changes the run's outcome
            detail = scrub(str(exc)) if isinstance(exc, RotatorError) else type(exc).__name__
            log.warning("notify_failed", target=target, error=type(exc).__name__, detail=detail)
            return [f"{target}: {detail}"]
        log.info("notified", target=target)
        return []

    def _publish(self, summary: Summary) -> None:
        assert self.aws is not None and self.topic_arn is not None
        from rotator.aws import sanitize_arn

        self.aws.call(
            "sns",
            "Publish",
            what=f"topic {sanitize_arn(self.topic_arn)}",
            fix="check --notify-topic and that the role may sns:Publish to it",
            TopicArn=self.topic_arn,
            Subject=summary.subject(),
            Message=summary.text(),
            MessageAttributes={
                "outcome": {"DataType": "String", "StringValue": "success" if summary.ok else "failure"}
            },
        )

    def _post(self, summary: Summary) -> None:
        assert self.webhook_url is not None
        request = urllib.request.Request(  # noqa: S310 (parse_webhook_url() allows http and https only)
            self.webhook_url,
            data=json.dumps(summary.slack()).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                response.read(1024)
        except urllib.error.HTTPError as exc:
            raise RotatorError(f"the webhook answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RotatorError(f"the webhook is unreachable ({type(reason).__name__})") from None


def notify_run(settings: Settings, report: Report, aws: AwsClients | None) -> list[str]:
    """After ``rotator rotate``: the run's summary to the targets the settings name, when its outcome is one
    asked for. Never raises."""
    try:
        notifier = Notifier.from_settings(settings, aws)
        if notifier is None:
            return []
        return notifier.notify(summary_of_report(report, slot_secret=settings.slot_secret))
    except Exception as exc:  # never change the outcome
        log.warning("notify_failed", target="all", error=type(exc).__name__)
        return [type(exc).__name__]
