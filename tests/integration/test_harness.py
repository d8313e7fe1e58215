"""The harness itself: passwords are really checked, on both engines."""

from __future__ import annotations

from tests.harness import DbEnv


def test_wrong_password_is_refused(db: DbEnv) -> None:
    assert db.login_works(db.admin_user, db.admin_password)
    assert not db.login_works(db.admin_user, db.admin_password + "x")
    assert not db.login_works(db.admin_user, "")


def test_moto_server_is_real_http(aws) -> None:  # type: ignore[no-untyped-def]
    arn = aws.create_secret("probe", '{"k": "v"}')
    value = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    assert value == '{"k": "v"}'
    assert aws.endpoint_url.startswith("http://127.0.0.1:")
