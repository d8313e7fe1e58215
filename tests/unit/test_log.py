"""Redaction: every registered secret value and every password/secret/token-named key is blanked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from rotator import log
from rotator.passwords import PasswordPolicy


def capture() -> io.StringIO:
    buf = io.StringIO()
    log.configure(json=True, stream=buf, level="debug")
    return buf


def test_registered_values_never_reach_the_output(caplog: pytest.LogCaptureFixture) -> None:
    pw = PasswordPolicy().generate()
    log.register_secret(pw)
    buf = capture()
    logger = log.get_logger("t")
    logger.info("plain", detail=f"connect as app with {pw}", nested={"list": [pw, {"x": pw}]})
    try:
        raise RuntimeError(f"login failed for {pw}")
    except RuntimeError:
        logger.exception("boom")
    logging.getLogger("thirdparty").warning("driver said %s", pw)
    out = buf.getvalue()
    assert pw not in out and pw not in caplog.text
    assert out.count(log.REDACTED) >= 4  # detail, the two nested values, the formatted exception
    assert "driver said [REDACTED]" in caplog.text + out


def test_sensitive_keys_are_blanked_but_ids_are_not() -> None:
    buf = capture()
    log.get_logger("t").info(
        "keys", password="p-1", db_password="p-2", client_secret="p-3", token="p-4", slot_secret_id="arn:x"
    )
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert [line[k] for k in ("password", "db_password", "client_secret", "token")] == [log.REDACTED] * 4
    assert line["slot_secret_id"] == "arn:x"


def test_longest_secret_wins_when_one_contains_another() -> None:
    log.register_secret("abcd-1234", "abcd-1234-efgh")
    assert log.scrub("x abcd-1234-efgh y") == f"x {log.REDACTED} y"
