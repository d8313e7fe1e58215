"""The write-ahead protocol (rotator.store.base) on every store, each on its real server: Secrets Manager and
SSM on moto, Vault KV v2 on OpenBao, the file store on disk. The driver reads what a plain client of the store
reads, so "a pending value is never what a plain reader gets" is checked store by store."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import structlog

from rotator import log
from rotator.errors import SecretNotFound, StoreError
from rotator.store.base import SecretStore
from rotator.store.factory import open_store
from rotator.store.file import FileStore
from tests.harness import strong_password
from tests.integration.store_drivers import PENDING, FileDriver, StoreDriver

pytestmark = pytest.mark.integration


def open_for(driver: StoreDriver) -> SecretStore:
    """A fresh rotator store on the driver's store, configured as a run would be: from the environment."""
    if isinstance(driver, FileDriver):
        return FileStore(driver.directory)
    env = driver.env()
    if driver.kind == "vault":
        from rotator.store.vault import VaultStore

        return VaultStore.from_environment(mount=env["ROTATOR_STORE"].split(":", 1)[1], environ=env)
    return open_store(
        env.get("ROTATOR_STORE", "secretsmanager"),
        region=env["ROTATOR_REGION"],
        endpoint_url=env["ROTATOR_AWS_ENDPOINT_URL"],
    )


def doc(password: str | None = None) -> str:
    return json.dumps({"active_slot": "A", "A": {"username": "app_a", "password": password or strong_password()}})


def same(a: str | None, b: str | None) -> bool:
    """Equal documents (Vault returns a JSON object's keys in its own order)."""
    return a is not None and b is not None and json.loads(a) == json.loads(b)


@pytest.fixture
def secret(store_driver: StoreDriver) -> tuple[str, str]:
    value = doc()
    return store_driver.create(f"proto_{uuid.uuid4().hex[:6]}", value), value


def test_read_returns_current_and_no_pending(store_driver: StoreDriver, secret: tuple[str, str]) -> None:
    sid, value = secret
    versions = open_for(store_driver).read(sid)
    assert same(versions.current.value, value)
    assert versions.pending is None


def test_pending_is_durable_and_never_what_a_plain_reader_gets(
    store_driver: StoreDriver, secret: tuple[str, str]
) -> None:
    sid, value = secret
    store = open_for(store_driver)
    store.read(sid)
    new, token = doc(), str(uuid.uuid4())
    assert store.put_pending(sid, new, token) == token
    assert same(store_driver.read(sid), value), "a plain reader sees the pending value"
    assert same(store_driver.read(sid, PENDING), new)
    versions = open_for(store_driver).read(sid)  # another process (a re-run) sees it
    assert same(versions.current.value, value)
    assert versions.pending is not None and versions.pending.version_id == token
    assert same(versions.pending.value, new)


def test_put_pending_is_idempotent_per_token_and_refuses_a_reused_token(
    store_driver: StoreDriver, secret: tuple[str, str]
) -> None:
    sid, _ = secret
    store = open_for(store_driver)
    store.read(sid)
    first, second, token = doc(), doc(), str(uuid.uuid4())
    store.put_pending(sid, first, token)
    before = store_driver.fingerprint(sid)
    store.put_pending(sid, first, token)
    assert store_driver.fingerprint(sid) == before
    with pytest.raises(StoreError) as raised:
        store.put_pending(sid, second, token)
    other = open_for(store_driver)
    other.read(sid)
    with pytest.raises(StoreError):
        other.put_pending(sid, second, token)
    assert "new token" in str(raised.value)
    assert json.loads(first)["A"]["password"] not in str(raised.value)
    assert json.loads(second)["A"]["password"] not in str(raised.value)
    assert same(store_driver.read(sid, PENDING), first)


def test_promote_moves_current_and_clears_pending_once(store_driver: StoreDriver, secret: tuple[str, str]) -> None:
    sid, _ = secret
    store = open_for(store_driver)
    store.read(sid)
    new, token = doc(), str(uuid.uuid4())
    store.put_pending(sid, new, token)
    store.promote(sid, token)
    assert same(store_driver.read(sid), new)
    assert store_driver.read(sid, PENDING) is None
    after = store_driver.fingerprint(sid)
    store.promote(sid, token)  # a second call does nothing
    assert store_driver.fingerprint(sid) == after
    versions = open_for(store_driver).read(sid)
    assert same(versions.current.value, new) and versions.pending is None


def test_promote_by_a_fresh_store_after_a_crash(store_driver: StoreDriver, secret: tuple[str, str]) -> None:
    """The run that wrote the pending value died; the next one reads, then promotes what it read."""
    sid, _ = secret
    writer = open_for(store_driver)
    writer.read(sid)
    new = doc()
    writer.put_pending(sid, new, str(uuid.uuid4()))
    healer = open_for(store_driver)
    pending = healer.read(sid).pending
    assert pending is not None
    healer.promote(sid, pending.version_id)
    assert same(store_driver.read(sid), new) and store_driver.read(sid, PENDING) is None


def test_discard_pending_then_write_again(store_driver: StoreDriver, secret: tuple[str, str]) -> None:
    sid, value = secret
    store = open_for(store_driver)
    store.read(sid)
    store.discard_pending(sid)  # nothing pending: nothing to do
    new, token = doc(), str(uuid.uuid4())
    store.put_pending(sid, new, token)
    open_for(store_driver).discard_pending(sid)
    assert store_driver.read(sid, PENDING) is None and same(store_driver.read(sid), value)
    healer = open_for(store_driver)
    assert healer.read(sid).pending is None
    again = doc()
    healer.put_pending(sid, again, str(uuid.uuid4()))
    assert same(store_driver.read(sid, PENDING), again)


def test_a_leftover_pending_planted_by_hand_is_read(store_driver: StoreDriver, secret: tuple[str, str]) -> None:
    """The layout each store documents: a pending value written by another tool is the store's pending."""
    sid, value = secret
    new = doc()
    store_driver.put_pending(sid, new)
    versions = open_for(store_driver).read(sid)
    assert same(versions.current.value, value)
    assert versions.pending is not None and same(versions.pending.value, new)


@pytest.mark.parametrize("store_driver", ["ssm", "vault"], indirect=True)
def test_interrupted_promotion_reads_as_no_pending_and_is_tidied(
    store_driver: StoreDriver, secret: tuple[str, str]
) -> None:
    """SSM and Vault: the crash came after the new current was written, before the pending was deleted.
    (Secrets Manager's interrupted promotion: tests/integration/test_store.py.)"""
    sid, _ = secret
    store = open_for(store_driver)
    store.read(sid)
    new, token = doc(), str(uuid.uuid4())
    store.put_pending(sid, new, token)
    store_driver.put_current(sid, new)  # the promotion's first write, then the crash
    fresh = open_for(store_driver)
    versions = fresh.read(sid)
    assert same(versions.current.value, new) and versions.pending is None
    before = store_driver.fingerprint(sid)
    fresh.discard_pending(sid)  # the next run tidies the leftover: the current value stays as it is
    after = store_driver.fingerprint(sid)
    assert after[0] == before[0] and after[1] == []  # type: ignore[index]
    assert same(fresh.read(sid).current.value, new)


def test_missing_secret_is_secret_not_found(store_driver: StoreDriver) -> None:
    with pytest.raises(SecretNotFound) as raised:
        open_for(store_driver).read(f"rotator/missing-{uuid.uuid4().hex[:8]}")
    assert "missing-" in str(raised.value) and "\n" not in str(raised.value)


def test_no_value_reaches_the_logs(store_driver: StoreDriver, secret: tuple[str, str]) -> None:
    sid, value = secret
    buf = io.StringIO()
    log.configure(json=True, level="debug", stream=buf)
    try:
        store = open_for(store_driver)
        store.read(sid)
        new_password = strong_password()
        token = str(uuid.uuid4())
        store.put_pending(sid, doc(new_password), token)
        store.promote(sid, token)
        output = buf.getvalue()
    finally:
        structlog.reset_defaults()
    assert new_password not in output
    assert json.loads(value)["A"]["password"] not in output
