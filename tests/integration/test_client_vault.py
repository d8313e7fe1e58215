"""The loader's Vault sources against a real OpenBao server, on real PostgreSQL and MariaDB.

KV v2 (a slot secret that follows ``active_slot``, a plain secret), the database secrets engine's static role
followed across ``rotate-role``, dynamic credentials renewed and re-issued before their max TTL, a refused
login that re-issues once, token renewal and AppRole re-login. Every log line and error is scanned for the
passwords and tokens the test saw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest
import structlog.testing

from rotator.client import CredentialLoader, DbCredentials, is_auth_failure, psycopg_kwargs, pymysql_kwargs
from rotator.client.vault import VaultSession
from tests.harness import DbEnv, new_name, strong_password
from tests.openbao import OpenBao, VaultDatabase

pytestmark = pytest.mark.integration


def open_connection(creds: DbCredentials) -> Any:
    if creds.engine == "postgres":
        return psycopg.connect(**psycopg_kwargs(creds, sslmode="disable", connect_timeout=5))
    return pymysql.connect(**pymysql_kwargs(creds, connect_timeout=5))


def whoami(loader: CredentialLoader) -> str:
    conn = loader.connect(open_connection)
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user" if loader.get().engine == "postgres" else "SELECT CURRENT_USER()")
        row = cur.fetchone()
        return str(row[0]).split("@")[0]
    finally:
        conn.close()


def db_defaults(db: DbEnv) -> dict[str, Any]:
    return {"host": db.host, "port": db.port, "dbname": db.dbname, "engine": db.engine}


@pytest.fixture
def audit() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        yield logs


def assert_never_logged(logs: list[dict[str, Any]], *values: str) -> None:
    text = repr(logs)
    for value in values:
        assert value and value not in text


def kv_put(bao: OpenBao, path: str, data: dict[str, Any]) -> None:
    bao.client().secrets.kv.v2.create_or_update_secret(path=path, secret=data)


def slot_secret(db: DbEnv, active: str, users: dict[str, tuple[str, str]]) -> dict[str, Any]:
    secret: dict[str, Any] = {"active_slot": active, "engine": db.engine}
    for slot, (user, password) in users.items():
        secret[slot] = {"username": user, "password": password, "host": db.host, "port": db.port, "dbname": db.dbname}
    return secret


def grant_db(db: DbEnv, user: str) -> None:
    if db.engine == "mysql":
        db.execute(f"GRANT SELECT ON `{db.dbname}`.* TO %s@'%%'", (user,))


# ---------------------------------------------------------------- KV v2


def test_kv_slot_secret_follows_active_slot(openbao: OpenBao, db: DbEnv, audit: list[dict[str, Any]]) -> None:
    users = {slot: (db.user(f"slot{slot.lower()}"), strong_password()) for slot in "AB"}
    for user, password in users.values():
        db.create_plain_user(user, password)
        grant_db(db, user)
    path = f"{new_name('app')}/db"
    kv_put(openbao, path, slot_secret(db, "A", users))
    loader = CredentialLoader.from_vault_kv(path, session=VaultSession(openbao.addr, token=openbao.token), ttl=300)
    creds = loader.get()
    assert (creds.slot, creds.username, creds.version) == ("A", users["A"][0], "1")
    assert whoami(loader) == users["A"][0]

    # A rotation: B becomes active, then A's password changes. Within the TTL, the refused login refreshes once.
    kv_put(openbao, path, slot_secret(db, "B", users))
    new_a = strong_password()
    db.set_password_directly(users["A"][0], new_a)
    assert whoami(loader) == users["B"][0]
    assert loader.get().version == "2"
    assert any(e["event"] == "db_credentials_auth_failed" and e.get("retry") for e in audit)
    fetched = [e for e in audit if e["event"] == "db_credentials_fetched"]
    assert [e["source"] for e in fetched] == ["vault", "vault"]
    assert fetched[0]["arn"] == f"vault:secret/data/{path}"
    assert_never_logged(audit, openbao.token, new_a, *(p for _, p in users.values()))


def test_kv_plain_secret_as_object_as_field_and_with_defaults(openbao: OpenBao, db: DbEnv) -> None:
    user, password = db.user("plain"), strong_password()
    db.create_plain_user(user, password)
    grant_db(db, user)
    session = VaultSession(openbao.addr, token=openbao.token)
    plain = {"username": user, "password": password, **db_defaults(db)}
    base = new_name("app")
    kv_put(openbao, f"{base}/plain", plain)
    kv_put(openbao, f"{base}/field", {"value": json.dumps(plain), "other": "x"})
    # seed 004: `vault kv put secret/database/postgres username=... password=...`
    kv_put(openbao, f"{base}/seed004", {"username": user, "password": password})
    loaders = [
        CredentialLoader.from_vault_kv(f"{base}/plain", session=session),
        CredentialLoader.from_vault_kv(f"{base}/field", field="value", session=session),
        CredentialLoader.from_vault_kv(f"{base}/seed004", session=session, defaults=db_defaults(db)),
    ]
    for loader in loaders:
        assert loader.get().slot is None
        assert whoami(loader) == user


def test_kv_from_environment(openbao: OpenBao, db: DbEnv) -> None:
    from rotator.client import from_environment

    user, password = db.user("envkv"), strong_password()
    db.create_plain_user(user, password)
    grant_db(db, user)
    path = f"{new_name('app')}/db"
    kv_put(openbao, path, slot_secret(db, "B", {"A": ("nobody", "x"), "B": (user, password)}))
    environ = {"ENVIRONMENT": "production", "ROTATOR_CLIENT_VAULT_PATH": path, **openbao.env()}
    loader = from_environment(environ=environ)
    assert whoami(loader) == user and loader.get().slot == "B"


def test_kv_missing_secret_names_the_path_never_a_value(openbao: OpenBao) -> None:
    loader = CredentialLoader.from_vault_kv("no/such/secret", session=VaultSession(openbao.addr, token=openbao.token))
    with pytest.raises(Exception) as info:
        loader.get()
    message = str(info.value)
    assert "vault:secret/data/no/such/secret" in message and "InvalidPath" in message
    assert openbao.token not in message


# ---------------------------------------------------------------- database secrets engine: static role


def test_static_role_followed_across_rotate_role(
    vault_db: VaultDatabase, db: DbEnv, audit: list[dict[str, Any]]
) -> None:
    user = db.user("static")
    db.create_plain_user(user, strong_password())
    grant_db(db, user)
    role = vault_db.static_role(user)
    loader = CredentialLoader.from_vault_database(
        role,
        static=True,
        mount=vault_db.mount,
        session=VaultSession(vault_db.bao.addr, token=vault_db.bao.token),
        defaults=db_defaults(db),
        ttl=300,
        min_refresh_interval=0,
    )
    seen = [loader.get().password]
    assert whoami(loader) == user
    for _ in range(3):
        vault_db.rotate_static(role)  # `bao write -f <mount>/rotate-role/<role>`: the password changes in place
        assert not db.login_works(user, seen[-1])
        assert whoami(loader) == user  # the refused login refreshed once, with no error to the caller
        seen.append(loader.get().password)
    assert len(set(seen)) == 4
    assert sum(e["event"] == "db_credentials_auth_failed" and e.get("retry") is True for e in audit) == 3
    assert_never_logged(audit, *seen, vault_db.bao.token)


def test_static_role_is_read_again_after_its_scheduled_rotation(vault_db: VaultDatabase, db: DbEnv) -> None:
    user = db.user("sched")
    db.create_plain_user(user, strong_password())
    role = vault_db.static_role(user, rotation_period="10s")
    loader = CredentialLoader.from_vault_database(
        role, static=True, mount=vault_db.mount, session=VaultSession(vault_db.bao.addr, token=vault_db.bao.token),
        defaults=db_defaults(db), ttl=300,
    )  # fmt: skip
    loader.get()
    expires_in = loader.stats().expires_in
    assert expires_in is not None and expires_in <= 11.5  # the next rotation + 1 s, not the 300 s TTL


# ---------------------------------------------------------------- database secrets engine: dynamic credentials


def dynamic_loader(vault_db: VaultDatabase, db: DbEnv, role: str, **options: Any) -> CredentialLoader:
    return CredentialLoader.from_vault_database(
        role,
        static=False,
        mount=vault_db.mount,
        session=VaultSession(vault_db.bao.addr, token=vault_db.bao.token),
        defaults=db_defaults(db),
        ttl=300,
        **options,
    )


def test_dynamic_lease_renewal_keeps_the_login_past_its_first_expiry(
    vault_db: VaultDatabase, db: DbEnv, audit: list[dict[str, Any]]
) -> None:
    role = vault_db.dynamic_role(default_ttl="6s", max_ttl="1h")
    loader = dynamic_loader(vault_db, db, role)
    # The control: the same role's credentials, never renewed, stop working when their lease ends.
    control = vault_db.client().secrets.database.generate_credentials(name=role, mount_point=vault_db.mount)["data"]
    started = time.monotonic()
    creds = loader.get()
    expires_in = loader.stats().expires_in
    assert expires_in is not None and expires_in <= 4.1  # renewal is due at 2/3 of the lease, not at the 300 s TTL
    while time.monotonic() - started < 8.0:
        assert loader.get() == creds  # renewed, not replaced
        time.sleep(0.25)
    assert db.login_works(creds.username, creds.password)
    assert not db.login_works(control["username"], control["password"])
    assert sum(e["event"] == "vault_lease_renewed" for e in audit) >= 1
    assert [e["event"] for e in audit].count("vault_credentials_issued") == 1
    assert_never_logged(audit, creds.password, vault_db.bao.token)


def test_dynamic_credentials_are_reissued_before_max_ttl(
    vault_db: VaultDatabase, db: DbEnv, audit: list[dict[str, Any]]
) -> None:
    role = vault_db.dynamic_role(default_ttl="4s", max_ttl="8s")
    loader = dynamic_loader(vault_db, db, role)
    users: list[str] = []
    started = time.monotonic()
    while time.monotonic() - started < 10.0:
        user = whoami(loader)  # never fails: new credentials arrive before the old lease ends
        if not users or users[-1] != user:
            users.append(user)
        time.sleep(0.2)
    assert len(users) >= 2
    assert all(u.startswith(db.prefix) for u in users)
    assert not any(e["event"] == "db_credentials_auth_failed" for e in audit)
    assert any(e["event"] == "vault_lease_renewed" and e["max_ttl_near"] for e in audit)


def test_dynamic_refused_login_reissues_once(vault_db: VaultDatabase, db: DbEnv) -> None:
    role = vault_db.dynamic_role()
    loader = dynamic_loader(vault_db, db, role, min_refresh_interval=0)
    first = loader.get()
    assert whoami(loader) == first.username
    # Revoked behind the loader's back: the user is dropped; the lease looks fine to the loader.
    vault_db.client().sys.revoke_prefix(prefix=f"{vault_db.mount}/creds/{role}")
    assert not db.login_works(first.username, first.password)
    assert whoami(loader) == loader.get().username != first.username

    # A login that keeps failing is retried once only, and the driver's own error reaches the caller.
    calls: list[str] = []

    def wrong_password(creds: DbCredentials) -> Any:
        calls.append(creds.username)
        return open_connection(DbCredentials(**{**creds.__dict__, "password": "wrong"}))

    with pytest.raises(Exception) as info:
        loader.connect(wrong_password)
    assert is_auth_failure(info.value)
    assert len(calls) == 2 and calls[0] != calls[1]  # the retry used newly issued credentials


# ---------------------------------------------------------------- the token


READ_ALL = 'path "*" { capabilities = ["read", "update"] }'


NO_DB = {"host": "127.0.0.1", "port": 5432, "dbname": "app", "engine": "postgres"}  # read, never connected to


def test_token_is_renewed_before_it_expires(openbao: OpenBao, audit: list[dict[str, Any]]) -> None:
    root = openbao.client()
    policy = new_name("reader")
    root.sys.create_or_update_policy(name=policy, policy=READ_ALL)
    token = root.auth.token.create(policies=[policy], ttl="6s", explicit_max_ttl="1h", renewable=True)["auth"][
        "client_token"
    ]
    control = root.auth.token.create(policies=[policy], ttl="6s", renewable=True)["auth"]["client_token"]
    path = f"{new_name('app')}/db"
    kv_put(openbao, path, {"username": "u", "password": "p", **NO_DB})
    loader = CredentialLoader.from_vault_kv(path, session=VaultSession(openbao.addr, token=token), ttl=300)
    started = time.monotonic()
    loader.get()
    expires_in = loader.stats().expires_in
    assert expires_in is not None and expires_in <= 4.1
    while time.monotonic() - started < 7.5:
        loader.get()
        time.sleep(0.25)
    assert loader.refresh().username == "u"  # the token outlived its first 6 s
    assert openbao.client(token=control).is_authenticated() is False
    assert any(e["event"] == "vault_token_renewed" for e in audit)
    assert_never_logged(audit, token, openbao.token)


def test_approle_logs_in_again_at_max_ttl_and_when_refused(openbao: OpenBao, audit: list[dict[str, Any]]) -> None:
    root = openbao.client()
    policy, mount = new_name("reader"), new_name("approle")
    root.sys.create_or_update_policy(name=policy, policy=READ_ALL)
    root.sys.enable_auth_method(method_type="approle", path=mount)
    try:
        root.auth.approle.create_or_update_approle(
            role_name="app", token_policies=[policy], token_ttl="2s", token_max_ttl="3s", mount_point=mount
        )
        role_id = root.auth.approle.read_role_id(role_name="app", mount_point=mount)["data"]["role_id"]
        secret_id = root.auth.approle.generate_secret_id(role_name="app", mount_point=mount)["data"]["secret_id"]
        path = f"{new_name('app')}/db"
        kv_put(openbao, path, {"username": "u", "password": "p", **NO_DB})
        session = VaultSession(openbao.addr, role_id=role_id, secret_id=secret_id, approle_mount=mount)
        loader = CredentialLoader.from_vault_kv(path, session=session, ttl=300)
        started = time.monotonic()
        while time.monotonic() - started < 5.0:
            assert loader.get().username == "u"
            time.sleep(0.2)
        logins = [e for e in audit if e["event"] == "vault_login"]
        assert len(logins) >= 2  # past the 3 s max TTL: a new login, before the old token expired

        # Revoked behind the session's back: Vault answers 403 and the session logs in once more.
        root.auth.token.revoke(token=session.client().token)
        assert loader.refresh().username == "u"
        assert any(e["event"] == "vault_token_refused" for e in audit)
        assert_never_logged(audit, secret_id, openbao.token, session.client().token)
    finally:
        root.sys.disable_auth_method(path=mount)


def test_a_token_that_cannot_be_renewed_does_not_turn_reads_into_calls(
    openbao: OpenBao, audit: list[dict[str, Any]]
) -> None:
    root = openbao.client()
    policy = new_name("reader")
    root.sys.create_or_update_policy(name=policy, policy=READ_ALL)
    token = root.auth.token.create(policies=[policy], ttl="3s", renewable=False)["auth"]["client_token"]
    path = f"{new_name('app')}/db"
    kv_put(openbao, path, {"username": "u", "password": "p", **NO_DB})
    loader = CredentialLoader.from_vault_kv(path, session=VaultSession(openbao.addr, token=token), ttl=300)
    loader.get()
    time.sleep(2.2)  # past the renewal point of a token that cannot be renewed
    for _ in range(50):
        loader.get()
    assert loader.stats().fetches == 2  # one refresh at the renewal point, then the cache's own TTL again
    assert [e["event"] for e in audit].count("vault_token_expiring") == 1
