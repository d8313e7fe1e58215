"""The local file store: the same write-ahead protocol, atomic 0600 files, no temp file left behind."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from rotator import log
from rotator.errors import BadInput, RotatorError, SecretNotFound, StoreError
from rotator.store.base import CURRENT, PENDING
from rotator.store.factory import open_store
from rotator.store.file import FileStore
from rotator.store.secretsmanager import SecretsManagerStore
from tests.harness import strong_password
from tests.unit.unprivileged import run_unprivileged, shared_directory

SECRET = "dev/openemr/slots"
TOKEN = "3b0e2a4c-7a51-4a8e-9d7e-0f6c1d2b9a10"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    with shared_directory() as path:
        yield path


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "secrets")


def stages(store: FileStore, secret_id: str = SECRET) -> dict[str, list[str]]:
    document: dict[str, Any] = json.loads(store.path_for(secret_id).read_text())
    return {vid: sorted(v["stages"]) for vid, v in document["versions"].items()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_then_read(store: FileStore) -> None:
    version_id = store.create(SECRET, "first-value")
    versions = store.read(SECRET)
    assert versions.current.version_id == version_id
    assert versions.current.value == "first-value"
    assert versions.pending is None
    assert store.api_calls == 2
    assert store.path_for(SECRET).parent == store.directory  # "/" does not make subdirectories
    with pytest.raises(StoreError, match="already exists"):
        store.create(SECRET, "again")


def test_files_are_0600(store: FileStore) -> None:
    store.create(SECRET, "first-value")
    assert mode(store.path_for(SECRET)) == 0o600
    store.put_pending(SECRET, "second-value", TOKEN)
    assert mode(store.path_for(SECRET)) == 0o600
    assert mode(store.directory) == 0o700


def test_put_pending_writes_pending_and_keeps_current(store: FileStore) -> None:
    current_id = store.create(SECRET, "first-value")
    assert store.put_pending(SECRET, "second-value", TOKEN) == TOKEN
    assert stages(store) == {current_id: [CURRENT], TOKEN: [PENDING]}
    versions = store.read(SECRET)
    assert versions.current.value == "first-value"
    assert versions.pending is not None and versions.pending.value == "second-value"


def test_put_pending_is_idempotent_per_token(store: FileStore) -> None:
    store.create(SECRET, "first-value")
    store.put_pending(SECRET, "second-value", TOKEN)
    inode = store.path_for(SECRET).stat().st_ino
    store.put_pending(SECRET, "second-value", TOKEN)
    assert store.path_for(SECRET).stat().st_ino == inode  # not even rewritten
    assert len(stages(store)) == 2
    with pytest.raises(StoreError, match="new token") as raised:
        store.put_pending(SECRET, "third-value", TOKEN)
    assert "third-value" not in str(raised.value) and "second-value" not in str(raised.value)


def test_a_new_pending_replaces_the_old_one(store: FileStore) -> None:
    current_id = store.create(SECRET, "first-value")
    store.put_pending(SECRET, "second-value", TOKEN)
    store.put_pending(SECRET, "third-value", "another-token")
    assert stages(store) == {current_id: [CURRENT], "another-token": [PENDING]}


def test_promote_moves_current_and_clears_pending(store: FileStore) -> None:
    old_id = store.create(SECRET, "first-value")
    store.put_pending(SECRET, "second-value", TOKEN)
    store.promote(SECRET, TOKEN)
    assert stages(store) == {old_id: ["AWSPREVIOUS"], TOKEN: [CURRENT]}
    versions = store.read(SECRET)
    assert versions.current.value == "second-value"
    assert versions.pending is None


def test_second_promotion_does_nothing(store: FileStore) -> None:
    store.create(SECRET, "first-value")
    store.put_pending(SECRET, "second-value", TOKEN)
    store.promote(SECRET, TOKEN)
    before = stages(store)
    inode = store.path_for(SECRET).stat().st_ino
    store.promote(SECRET, TOKEN)
    assert stages(store) == before
    assert store.path_for(SECRET).stat().st_ino == inode


def test_promote_of_an_unknown_version_fails(store: FileStore) -> None:
    store.create(SECRET, "first-value")
    with pytest.raises(StoreError, match="no version"):
        store.promote(SECRET, "nope")


def test_discard_pending(store: FileStore) -> None:
    current_id = store.create(SECRET, "first-value")
    store.put_pending(SECRET, "second-value", TOKEN)
    store.discard_pending(SECRET)
    assert stages(store) == {current_id: [CURRENT]}  # the unlabelled version is dropped from disk
    assert "second-value" not in store.path_for(SECRET).read_text()
    store.discard_pending(SECRET)  # no-op
    assert store.read(SECRET).pending is None


def test_missing_secret(store: FileStore) -> None:
    with pytest.raises(SecretNotFound, match="missing") as raised:
        store.read("missing")
    assert "--store" in str(raised.value)
    with pytest.raises(SecretNotFound):
        store.put_pending("missing", "value", TOKEN)


def test_secret_ids_cannot_escape_the_directory(store: FileStore) -> None:
    for secret_id in ("..", "../../etc/passwd", "/abs", "a" * 600):
        path = store.path_for(secret_id)
        assert path.parent == store.directory
        assert len(path.name) < 255
    with pytest.raises(BadInput):
        store.path_for("")


def test_no_temp_file_is_left_when_the_rename_fails(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create(SECRET, "first-value")

    def failing_replace(*_: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(RotatorError, match="the old file is unchanged"):
        store.put_pending(SECRET, "second-value", TOKEN)
    monkeypatch.undo()

    assert os.listdir(store.directory) == [store.path_for(SECRET).name]
    assert store.read(SECRET).pending is None  # the old file is intact


def test_no_temp_file_is_left_when_the_write_fails(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create(SECRET, "first-value")

    def failing_fsync(_: int) -> None:
        raise OSError("no space left")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(RotatorError, match="the old file is unchanged"):
        store.put_pending(SECRET, "second-value", TOKEN)
    monkeypatch.undo()
    assert os.listdir(store.directory) == [store.path_for(SECRET).name]


def test_a_read_only_directory_is_bad_input_not_an_oserror(shared_dir: Path) -> None:
    """Really read-only: the store runs as a user that may not write the directory (root may write any)."""
    store = FileStore(shared_dir / "secrets")
    store.create(SECRET, "first-value")
    before = store.path_for(SECRET).read_bytes()
    store.directory.chmod(0o555)
    store.path_for(SECRET).chmod(0o644)  # readable by the unprivileged user, so the write is what fails

    out = run_unprivileged(lambda: store.put_pending(SECRET, "second-value", TOKEN))

    assert out.startswith("BadInput: cannot write "), out
    assert "--store file:<directory>" in out and "\n" not in out
    assert os.listdir(store.directory) == [store.path_for(SECRET).name]  # no temp file left
    assert store.path_for(SECRET).read_bytes() == before


def test_a_store_directory_that_cannot_exist_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    store = FileStore(tmp_path / "a-file" / "secrets")
    with pytest.raises(BadInput, match=r"cannot create the store directory .*: create it, or choose another --store"):
        store.create(SECRET, "first-value")


def test_a_store_directory_removed_under_the_store_is_bad_input(store: FileStore) -> None:
    store.create(SECRET, "first-value")
    versions = store._load(SECRET)
    os.unlink(store.path_for(SECRET))
    store.directory.rmdir()
    with pytest.raises(BadInput, match=r"directory .*secrets does not exist: create it, or fix --store file:"):
        store._write(SECRET, versions)


def test_a_corrupt_file_is_reported(store: FileStore) -> None:
    store.create(SECRET, "first-value")
    store.path_for(SECRET).write_text("{not json")
    with pytest.raises(StoreError, match="not a rotator file store document"):
        store.read(SECRET)


def test_no_password_reaches_the_logs(store: FileStore) -> None:
    first, second = strong_password(), strong_password()
    buf = io.StringIO()
    log.configure(json=True, level="debug", stream=buf)
    try:
        store.create(SECRET, first)
        store.put_pending(SECRET, second, TOKEN)
        versions = store.read(SECRET)
        logger = log.get_logger("test")
        logger.info("careless", current=versions.current.value, note=f"pending is {second}")
        try:
            store.put_pending(SECRET, strong_password(), TOKEN)
        except StoreError:
            logger.exception("refused")
        output = buf.getvalue()
    finally:
        structlog.reset_defaults()
    assert "[REDACTED]" in output and "refused" in output
    assert first not in output and second not in output


def test_open_store() -> None:
    assert isinstance(open_store("file:/tmp/rotator-secrets"), FileStore)
    file_store = open_store("file:///tmp/rotator-secrets")
    assert isinstance(file_store, FileStore) and file_store.directory == Path("/tmp/rotator-secrets")
    assert isinstance(open_store("secretsmanager", region="us-east-1"), SecretsManagerStore)
    with pytest.raises(BadInput, match="unknown --store"):
        open_store("hashicorp")
    with pytest.raises(BadInput):
        open_store("file:")
