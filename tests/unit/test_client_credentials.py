"""Secret formats: slot, plain, RDS (managed or not), configurable key names, DATABASE_URL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotator.client import DbCredentials, KeyNames, parse_database_url, parse_secret
from rotator.client.errors import CredentialFormatError

PASSWORD = "s3cr3t-Value_that-must-not-leak"


def slot_secret(active: str = "A", **top: Any) -> str:
    return json.dumps(
        {
            "active_slot": active,
            "A": {"username": "app_a", "password": PASSWORD + "A", "host": "db", "port": "5432", "dbname": "app"},
            "B": {"username": "app_b", "password": PASSWORD + "B", "host": "db", "port": 5432, "dbname": "app"},
            **top,
        }
    )


def test_slot_secret_follows_active_slot() -> None:
    a = parse_secret(slot_secret("A", engine="postgres"), version="v1")
    b = parse_secret(slot_secret("B", engine="postgres"))
    assert (a.username, a.password, a.slot, a.port, a.engine, a.version) == (
        "app_a",
        PASSWORD + "A",
        "A",
        5432,
        "postgres",
        "v1",
    )
    assert (b.username, b.slot) == ("app_b", "B")


def test_slot_secret_falls_back_to_top_level_keys() -> None:
    text = json.dumps(
        {
            "active_slot": "B",
            "host": "shared",
            "port": 3306,
            "engine": "mariadb",
            "B": {"username": "u", "password": "p"},
        }
    )
    creds = parse_secret(text)
    assert (creds.host, creds.port, creds.engine, creds.dbname) == ("shared", 3306, "mysql", None)


def test_plain_secret_with_seed_002_database_key() -> None:
    text = json.dumps(
        {
            "username": "pazpaz",
            "password": PASSWORD,
            "host": "prod-db.internal",
            "port": 5432,
            "database": "pazpaz",
            "ssl_cert_path": "/etc/ssl/certs/rds-ca-2019-root.pem",
        }
    )
    creds = parse_secret(text)
    assert (creds.username, creds.host, creds.port, creds.dbname, creds.slot) == (
        "pazpaz",
        "prod-db.internal",
        5432,
        "pazpaz",
        None,
    )
    assert creds.options == {"ssl_cert_path": "/etc/ssl/certs/rds-ca-2019-root.pem"}


def test_rds_secret_as_rds_writes_it() -> None:
    text = json.dumps(
        {
            "engine": "aurora-postgresql",
            "host": "c.cluster-x.eu-west-1.rds.amazonaws.com",
            "username": "master",
            "password": PASSWORD,
            "dbname": "app",
            "port": 5432,
            "dbClusterIdentifier": "c",
        }
    )
    creds = parse_secret(text)
    assert (creds.engine, creds.dbname, creds.port) == ("postgres", "app", 5432)
    assert creds.options == {"dbClusterIdentifier": "c"}


def test_rds_managed_master_secret_takes_the_rest_from_defaults() -> None:
    text = json.dumps({"username": "master", "password": PASSWORD})
    creds = parse_secret(text, defaults={"host": "db.internal", "dbname": "app", "engine": "mysql"})
    assert (creds.host, creds.port, creds.dbname, creds.engine) == ("db.internal", 3306, "app", "mysql")
    with pytest.raises(CredentialFormatError, match="host is missing"):
        parse_secret(text)


def test_key_names_are_configurable() -> None:
    text = json.dumps({"current": "x", "x": {"user": "u", "pass": "p", "server": "h", "db": "d"}})
    keys = KeyNames.of(active_slot="current", username="user", password="pass", host="server", dbname=["db"])
    creds = parse_secret(text, keys=keys)
    assert (creds.username, creds.password, creds.host, creds.dbname, creds.slot) == ("u", "p", "h", "d", "x")
    assert KeyNames.parse("username=user, dbname=db|database") == KeyNames.of(
        username="user", dbname=["db", "database"]
    )
    with pytest.raises(ValueError, match="unknown key field"):
        KeyNames.of(nope="x")
    with pytest.raises(ValueError, match="field=key"):
        KeyNames.parse("username")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PASSWORD, "not valid JSON"),
        (json.dumps([PASSWORD]), "not a JSON object"),
        (json.dumps({"password": PASSWORD, "host": "h"}), "username is missing"),
        (json.dumps({"username": "u", "password": "", "host": "h"}), "password is empty"),
        (json.dumps({"username": "u", "password": 5, "host": "h"}), "password must be a string"),
        (json.dumps({"username": "u", "password": PASSWORD, "host": "h", "port": "x" + PASSWORD}), "port number"),
        (json.dumps({"username": "u", "password": PASSWORD, "host": "h", "port": 70000}), "1-65535"),
        (json.dumps({"username": "u", "password": PASSWORD, "host": "h", "port": True}), "port number"),
        (json.dumps({"active_slot": "C", "A": {}}), "must name a slot"),
    ],
    ids=["not-json", "not-object", "no-user", "empty-pw", "pw-type", "port-text", "port-range", "port-bool", "slot"],
)
def test_errors_name_the_key_and_never_the_value(text: str, message: str) -> None:
    with pytest.raises(CredentialFormatError, match=message) as info:
        parse_secret(text)
    assert PASSWORD not in str(info.value)
    # No chained error either: json's decode error would carry the whole document.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_equality_ignores_version_and_repr_hides_the_password() -> None:
    one = parse_secret(slot_secret(), version="v1")
    two = parse_secret(slot_secret(), version="v2")
    assert one == two
    assert one.identity == ("app_a", "db", 5432, "app")
    assert PASSWORD not in repr(one)


def test_database_url() -> None:
    creds = parse_database_url("postgresql+asyncpg://pazpaz:p%40ss%3Aw%2Fd@localhost/pazpaz?sslmode=require")
    assert creds == DbCredentials("pazpaz", "p@ss:w/d", "localhost", 5432, "pazpaz", engine="postgres")
    assert creds.options == {"sslmode": "require"}
    assert creds.url is not None and creds.url.startswith("postgresql+asyncpg://")
    mysql = parse_database_url("mysql+pymysql://root@127.0.0.1:3307/")
    assert (mysql.engine, mysql.port, mysql.password, mysql.dbname) == ("mysql", 3307, "", None)


@pytest.mark.parametrize(
    "url",
    ["not a url", "postgresql://host/db", f"postgresql://u:{PASSWORD}@h:99999/db", "postgresql:///db"],
    ids=["not-url", "no-user", "bad-port", "no-host"],
)
def test_bad_database_url(url: str) -> None:
    with pytest.raises(CredentialFormatError) as info:
        parse_database_url(url)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("port", ["5432²", "٥٤٣٢", "5432 1", "+5432", ""])
def test_a_port_in_other_digits_is_refused(port: str) -> None:
    with pytest.raises(CredentialFormatError):
        parse_secret(json.dumps({"username": "u", "password": "p", "host": "h", "port": port, "dbname": "d"}))
