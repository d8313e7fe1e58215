"""The Vault KV v2 store on a real OpenBao server: check-and-set promotion, the layout `vault kv get` and the
loader rely on, AppRole from files under the policy `rotator vault-policy` prints (a whole rotation with
nothing more), and one-line errors that never carry a token (the generic protocol tests run on every store
in test_store_protocol.py; the rotation suite runs on Vault in test_rotate.py)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rotator.cli import main
from rotator.client import CredentialLoader
from rotator.client.vault import VaultSession
from rotator.errors import BadInput, ExitCode, SecretFormatError, StoreError
from rotator.store.vault import VaultStore
from tests.harness import AwsEnv, DbEnv, new_name, strong_password
from tests.integration.rotation_env import ROOT, make_env
from tests.integration.store_drivers import VaultDriver
from tests.openbao import OpenBao

pytestmark = pytest.mark.integration


def slots(password: str, active: str = "A") -> dict[str, Any]:
    creds = {"username": "app_a", "password": password, "host": "db", "port": "5432", "dbname": "app"}
    return {"active_slot": active, "engine": "postgres", "A": creds, "B": dict(creds, username="app_b")}


@pytest.fixture
def kv(openbao: OpenBao) -> Iterator[VaultDriver]:
    driver = VaultDriver(openbao, prefix=new_name("rt"))
    yield driver
    driver.cleanup()


def store_for(bao: OpenBao, **environ: str) -> VaultStore:
    return VaultStore.from_environment(environ={**bao.env(), **environ})


def test_promotion_is_check_and_set(kv: VaultDriver) -> None:
    """Another writer changes the path between this run's read and its promotion: Vault refuses the write,
    the other writer's value stays current, and the pending value is still there for the next run."""
    path = kv.create("slots", json.dumps(slots(strong_password())))
    store = store_for(kv.bao)
    store.read(path)
    token = str(uuid.uuid4())
    store.put_pending(path, json.dumps(slots(strong_password(), "B")), token)
    theirs = slots(strong_password())
    kv.put_current(path, json.dumps(theirs))
    with pytest.raises(StoreError, match="changed since this run read it"):
        store.promote(path, token)
    assert json.loads(kv.read(path) or "") == theirs
    fresh = store_for(kv.bao).read(path)
    assert fresh.pending is not None and fresh.pending.version_id == token


def test_a_lost_answer_to_the_promotion_is_recognised(kv: VaultDriver) -> None:
    """The cas write succeeded but its answer was lost: the retry (same cas) is refused; the store re-reads and
    finds its own value, and does not write it again."""
    path = kv.create("slots", json.dumps(slots(strong_password())))
    store = store_for(kv.bao)
    store.read(path)
    token, new = str(uuid.uuid4()), slots(strong_password(), "B")
    store.put_pending(path, json.dumps(new), token)
    kv.put_current(path, json.dumps(new))  # the write that "succeeded"; this store still believes version 1
    store.promote(path, token)
    assert [n for n, _ in kv._versions(path)] == [1, 2]
    assert kv.read(path, "AWSPENDING") is None and kv._versions(path + ".pending") == []


def test_the_loader_and_vault_kv_get_read_the_current_value(kv: VaultDriver) -> None:
    first = slots(strong_password())
    path = kv.create("slots", json.dumps(first))
    session = VaultSession(kv.bao.addr, token=kv.bao.token)
    loader = CredentialLoader.from_vault_kv(path, session=session)
    store = store_for(kv.bao)
    store.read(path)
    token = str(uuid.uuid4())
    store.put_pending(path, json.dumps(slots(strong_password(), "B")), token)
    assert loader.get().password == first["A"]["password"]
    bao = _bao_binary()
    shown = subprocess.run(
        [bao, "kv", "get", "-format=json", f"secret/{path}"],
        env={"PATH": os.environ["PATH"], "HOME": str(ROOT), **kv.bao.env()},  # token by environment only
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(shown.stdout)["data"]["data"] == first
    store.promote(path, token)
    assert CredentialLoader.from_vault_kv(path, session=session).get().slot == "B"


def _bao_binary() -> str:
    from tests.openbao import bao_binary

    binary = bao_binary()
    assert binary is not None
    return binary


def test_a_value_that_is_not_a_json_object_is_refused(kv: VaultDriver) -> None:
    path = kv.create("slots", json.dumps(slots(strong_password())))
    store = store_for(kv.bao)
    with pytest.raises(SecretFormatError, match="JSON object"):
        store.put_pending(path, '"just a string"', str(uuid.uuid4()))
    assert kv._versions(path + ".pending") == []


def test_settings_problems_are_one_line_and_never_echo_a_token(kv: VaultDriver, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="VAULT_ADDR"):
        VaultStore.from_environment(environ={"VAULT_TOKEN": "x"})
    with pytest.raises(BadInput, match="VAULT_TOKEN"):
        VaultStore.from_environment(environ={"VAULT_ADDR": kv.bao.addr})
    with pytest.raises(BadInput, match="both VAULT_ROLE_ID and VAULT_SECRET_ID"):
        VaultStore.from_environment(environ={"VAULT_ADDR": kv.bao.addr, "VAULT_ROLE_ID": "r"})
    with pytest.raises(BadInput, match="VAULT_SECRET_ID_FILE"):
        VaultStore.from_environment(
            environ={"VAULT_ADDR": kv.bao.addr, "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID_FILE": str(tmp_path / "nope")}
        )
    wrong = "tok-" + uuid.uuid4().hex
    path = kv.create("slots", json.dumps(slots(strong_password())))
    with pytest.raises(StoreError) as raised:
        store_for(kv.bao, VAULT_TOKEN=wrong).read(path)
    assert wrong not in str(raised.value) and kv.bao.token not in str(raised.value)
    down = VaultStore.from_environment(environ={"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": wrong})
    down.max_attempts, down.sleep = 2, lambda _: None
    with pytest.raises(StoreError, match=r"cannot reach Vault.*VAULT_ADDR") as unreachable:
        down.read(path)
    assert wrong not in str(unreachable.value)


def test_rotate_refuses_vault_without_credentials_and_changes_nothing(kv: VaultDriver) -> None:
    path = kv.create("slots", json.dumps(slots(strong_password())))
    before = kv.fingerprint(path)
    env = {"ROTATOR_STORE": "vault", "ROTATOR_SLOT_SECRET": path, "ROTATOR_ADMIN_SECRET": path}
    result = CliRunner().invoke(main, ["rotate"], env={**env, "VAULT_ADDR": kv.bao.addr, "VAULT_TOKEN": ""})
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "VAULT_TOKEN" in result.output + (result.stderr or "")
    assert kv.fingerprint(path) == before


def test_vault_policy_is_enough_for_a_rotation_with_approle_from_files(
    db: DbEnv, aws: AwsEnv, openbao: OpenBao, tmp_path: Path
) -> None:
    """The policy `rotator vault-policy` prints, attached to an AppRole whose role id and secret id are files:
    the real `rotator rotate` converges twice, and the same token can read nothing else."""
    driver = VaultDriver(openbao, prefix=new_name("rt"))
    try:
        env = make_env(db, aws, tmp_path, store=driver)
        printed = CliRunner().invoke(
            main, ["vault-policy", "--slot-secret", env.slot_arn, "--admin-secret", env.admin_arn]
        )
        assert printed.exit_code == 0, printed.output
        client = openbao.client()
        policy, approle = new_name("rotator"), new_name("approle")
        client.sys.create_or_update_policy(name=policy, policy=printed.output)
        client.sys.enable_auth_method(method_type="approle", path=approle)
        try:
            client.auth.approle.create_or_update_approle(
                role_name="rotator", token_policies=[policy], token_ttl="10m", mount_point=approle
            )
            role_id = client.auth.approle.read_role_id(role_name="rotator", mount_point=approle)["data"]["role_id"]
            secret_id = client.auth.approle.generate_secret_id(role_name="rotator", mount_point=approle)["data"][
                "secret_id"
            ]
            (tmp_path / "role-id").write_text(role_id + "\n")
            (tmp_path / "secret-id").write_text(secret_id + "\n")
            approle_env = {
                "VAULT_TOKEN": "",
                "VAULT_ROLE_ID_FILE": str(tmp_path / "role-id"),
                "VAULT_SECRET_ID_FILE": str(tmp_path / "secret-id"),
                "VAULT_APPROLE_MOUNT": approle,
            }
            for _ in range(2):
                result = env.rotate_subprocess(**approle_env)
                assert result.exit_code == 0, result.stderr[-2000:]
                assert secret_id not in result.stdout + result.stderr
                env.assert_consistent()
            # Least privilege: the AppRole's token reads nothing else in the mount.
            other = driver.create("other", json.dumps(slots(strong_password())))
            login = client.auth.approle.login(
                role_id=role_id, secret_id=secret_id, use_token=False, mount_point=approle
            )
            with pytest.raises(StoreError, match="vault-policy"):
                VaultStore(VaultSession(openbao.addr, token=login["auth"]["client_token"])).read(other)
        finally:
            client.sys.disable_auth_method(path=approle)
            client.sys.delete_policy(name=policy)
    finally:
        driver.cleanup()
