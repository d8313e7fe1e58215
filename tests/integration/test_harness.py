"""The harness itself: a wrong password is refused *as a wrong password* on both engines (so every login check
in the suite means something), and AWS is the moto server, reached even by clients given no endpoint."""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import boto3
import psycopg
import pymysql
import pytest

from tests.harness import AwsEnv, DbEnv, PgServer, strong_password


def refusal(db: DbEnv, user: str, password: str) -> str | None:
    """None when the login works, else the server's reason; a connection that never reached the
    authentication step fails the test (it would make "refused" meaningless)."""
    server = db.server
    try:
        if isinstance(server, PgServer):
            psycopg.connect(
                host=db.host, port=db.port, user=user, password=password, dbname=db.dbname, sslmode="disable"
            ).close()
        else:
            pymysql.connect(host=db.host, port=db.port, user=user, password=password, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        # With an empty password libpq gives up itself, once the server has asked for one (trust never asks).
        reasons = ("password authentication failed", "no password supplied")
        assert any(r in str(exc) for r in reasons), f"not an authentication failure: {exc}"
        return "28P01"
    except pymysql.err.OperationalError as exc:
        assert exc.args[0] == 1045, f"not an authentication failure: {exc}"
        return "1045"
    return None


def create_login(db: DbEnv, password: str) -> str:
    user = db.user("probe")
    if isinstance(db.server, PgServer):
        with db.server.connect() as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(user), psycopg.sql.Literal(password)
                )
            )
            conn.execute(
                psycopg.sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    psycopg.sql.Identifier(db.dbname), psycopg.sql.Identifier(user)
                )
            )
    else:
        my = db.server.connect()
        try:
            with my.cursor() as cur:
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        finally:
            my.close()
    return user


@pytest.mark.parametrize("who", ["admin", "a new login"])
def test_a_wrong_password_is_refused_as_such(db: DbEnv, who: str) -> None:
    if who == "admin":
        user, password = db.admin_user, db.admin_password
    else:
        password = strong_password()
        user = create_login(db, password)
    assert refusal(db, user, password) is None
    assert refusal(db, user, password + "x") is not None
    assert refusal(db, user, password[:-1]) is not None
    assert refusal(db, user, "") is not None
    assert db.login_works(user, password) and not db.login_works(user, password + "x")


def test_postgres_checks_passwords_with_scram(pg: DbEnv) -> None:
    """The first pg_hba rule a non-superuser meets on loopback asks for scram-sha-256, and passwords are
    stored as SCRAM verifiers: not trust, not md5."""
    assert isinstance(pg.server, PgServer)
    with pg.server.connect() as conn:
        rules = conn.execute(
            "SELECT user_name, auth_method FROM pg_hba_file_rules "
            "WHERE type = 'host' AND address = '127.0.0.1' AND error IS NULL ORDER BY line_number"
        ).fetchall()
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (pg.admin_user,)).fetchone()
    first = next(method for users, method in rules if "all" in users or pg.admin_user in users)
    assert first == "scram-sha-256", rules
    assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")


def test_moto_answers_on_the_harness_url(aws: AwsEnv) -> None:
    parts = urlsplit(aws.endpoint_url)
    assert parts.hostname == "127.0.0.1" and parts.port
    request = urllib.request.Request(  # noqa: S310 - the loopback moto server
        aws.endpoint_url + "/",
        data=json.dumps({}).encode(),
        headers={
            "X-Amz-Target": "secretsmanager.ListSecrets",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/secretsmanager/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body: dict[str, Any] = json.load(response)
    assert response.status == 200 and "SecretList" in body


def test_a_client_given_no_endpoint_reaches_moto(aws: AwsEnv) -> None:
    """The rotator (and the `rotator` command in a subprocess) builds its clients without an endpoint: the
    harness's AWS_ENDPOINT_URL must send them to moto, never to real AWS."""
    value = json.dumps({"probe": strong_password()})
    arn = aws.create_secret("probe", value)
    plain = boto3.Session(region_name=aws.region).client("secretsmanager")
    assert plain.get_secret_value(SecretId=arn)["SecretString"] == value
    assert plain.meta.endpoint_url == aws.endpoint_url
