"""The live secret's model (rotator.live): parse, what it may name, rewrite keeping the app's own keys."""

from __future__ import annotations

import json

import pytest

from rotator.errors import BadInput, SecretFormatError
from rotator.live import LiveSecret, slot_of
from rotator.secrets import AdminSecret, Credentials, SlotSecret

SECRET = SlotSecret(
    active_slot="A",
    a=Credentials("app_a", "pw-a", "db.example.com", 5432, "app"),
    b=Credentials("app_b", "pw-b", "db.example.com", 5432, "app"),
)
ADMIN = AdminSecret("master", "pw-admin")


def test_an_empty_secret_names_nobody_and_is_filled() -> None:
    live = LiveSecret.parse("{}")
    assert live.username == "" and slot_of(live, SECRET, ADMIN, "postgres", what="live") is None
    data = json.loads(live.pointing_at(SECRET.b, "postgres").to_json())
    assert data == {
        "engine": "postgres",
        "host": "db.example.com",
        "port": 5432,
        "username": "app_b",
        "password": "pw-b",
        "dbname": "app",
        "database": "app",
    }


def test_the_apps_own_keys_engine_spelling_and_port_type_are_kept() -> None:
    text = json.dumps(
        {"engine": "aurora-postgresql", "port": "5432", "username": "app_a", "password": "old", "database": "app",
         "ssl_cert_path": "/etc/ssl/rds.pem", "pool": {"size": 5}}
    )  # fmt: skip
    live = LiveSecret.parse(text)
    assert live.dbname == "app" and slot_of(live, SECRET, ADMIN, "postgres", what="live") == "A"
    data = json.loads(live.pointing_at(SECRET.b, "postgres").to_json())
    assert data["engine"] == "aurora-postgresql" and data["port"] == "5432"
    assert data["ssl_cert_path"] == "/etc/ssl/rds.pem" and data["pool"] == {"size": 5}
    assert (data["username"], data["password"], data["dbname"], data["database"]) == ("app_b", "pw-b", "app", "app")
    # Another engine's name is replaced by ours only when it is the same engine: else it is refused.
    with pytest.raises(BadInput, match="says engine"):
        slot_of(LiveSecret.parse('{"engine": "mysql"}'), SECRET, ADMIN, "postgres", what="live")


def test_a_host_the_app_connects_to_is_kept_and_only_filled_when_missing() -> None:
    """An app behind RDS Proxy or PgBouncer: its endpoint is its own; the password and user follow the flip."""
    proxied = LiveSecret.parse(
        json.dumps({"host": "app.proxy-abc.eu-west-1.rds.amazonaws.com", "port": 6432, "username": "app_a"})
    )
    data = json.loads(proxied.pointing_at(SECRET.b, "postgres").to_json())
    assert (data["host"], data["port"], data["username"], data["password"]) == (
        "app.proxy-abc.eu-west-1.rds.amazonaws.com", 6432, "app_b", "pw-b"
    )  # fmt: skip
    host_only = json.loads(
        LiveSecret.parse('{"host": "pgbouncer.internal"}').pointing_at(SECRET.b, "postgres").to_json()
    )
    assert (host_only["host"], host_only["port"]) == ("pgbouncer.internal", 5432)
    assert proxied.pointing_at(SECRET.b, "postgres").owned() == (
        proxied.pointing_at(SECRET.b, "postgres").pointing_at(SECRET.b, "postgres").owned()
    ), "a kept host must not count as drift (it would be rewritten every run)"


def test_exact_compares_only_what_the_rotator_owns() -> None:
    live = LiveSecret.parse(
        json.dumps({**json.loads(LiveSecret().pointing_at(SECRET.a, "postgres").to_json()), "x": 1})
    )
    assert live.owned() == live.pointing_at(SECRET.a, "postgres").owned()
    assert live.owned() != live.pointing_at(SECRET.b, "postgres").owned()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (SECRET.to_json(), "is a slot secret"),
        ('{"username": 5}', "username must be a string"),
        ('{"password": "a\\u0000b"}', "NUL"),
        ('{"port": "http"}', "port must be a number"),
        ("[]", "not a JSON object"),
    ],
)
def test_bad_shapes_are_refused_without_the_value(text: str, words: str) -> None:
    with pytest.raises(SecretFormatError, match=words) as caught:
        LiveSecret.parse(text)
    assert "pw-a" not in str(caught.value)


@pytest.mark.parametrize(("user", "words"), [("master", "names the admin user"), ("stranger", "neither slot user")])
def test_what_the_rotator_does_not_own_is_refused(user: str, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        slot_of(LiveSecret(username=user, password="x"), SECRET, ADMIN, "postgres", what="the live secret")
