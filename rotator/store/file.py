"""The write-ahead store in local JSON files, for development: same protocol as Secrets Manager.

One file per secret, ``<quoted secret id>.json``, mode 0600, holding the labelled versions::

    {"secret_id": "dev/db", "versions": {"<version id>": {"value": "...", "stages": ["AWSCURRENT"]}}}

Every write goes through :func:`rotator.atomic.write_atomic` (temp file in the same directory, fsync, rename,
fsync of the directory), so a crash leaves the old file or the new one, never half of one, and no temp file;
a failed write is a RotatorError naming the fix, never a raw OSError. Versions that lose their last
label are dropped, so old passwords do not pile up on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rotator.atomic import write_atomic
from rotator.errors import BadInput, SecretNotFound, StoreError
from rotator.log import register_secret
from rotator.store.base import CURRENT, PENDING, SecretVersions, Version

PREVIOUS = "AWSPREVIOUS"
FILE_MODE = 0o600
_MAX_NAME = 200
_SETTING = "--store file:<directory>"


class FileStore:
    """:class:`~rotator.store.base.SecretStore` in ``directory``; ``api_calls`` counts operations."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._operations = 0

    @property
    def api_calls(self) -> int:
        return self._operations

    def path_for(self, secret_id: str) -> Path:
        if not secret_id:
            raise BadInput("empty secret id: pass --slot-secret/--admin-secret")
        name = quote(secret_id, safe="")  # reversible and unique; "/" and ".." cannot escape the directory
        if len(name) > _MAX_NAME:
            name = name[:_MAX_NAME] + "-" + hashlib.sha256(secret_id.encode()).hexdigest()[:16]
        return self.directory / f"{name}.json"

    # -- bootstrapping ------------------------------------------------------------------------------------

    def create(self, secret_id: str, value: str, token: str | None = None) -> str:
        """Create a secret with ``value`` as its AWSCURRENT version; returns the version id (``token`` when given)."""
        self._operations += 1
        register_secret(value)
        path = self.path_for(secret_id)
        try:
            exists = path.exists()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(
                f"cannot create the store directory {self.directory}: {exc.strerror or type(exc).__name__}: "
                f"create it, or choose another {_SETTING}"
            ) from None
        if exists:
            raise StoreError(f"secret {secret_id} already exists in {self.directory}: pick another name")
        version_id = token or str(uuid.uuid4())
        self._write(secret_id, {version_id: {"value": value, "stages": [CURRENT]}})
        return version_id

    # -- the protocol ------------------------------------------------------------------------------------

    def read(self, secret_id: str) -> SecretVersions:
        self._operations += 1
        versions = self._load(secret_id)
        current_id = _holder(versions, CURRENT)
        if current_id is None:
            raise StoreError(
                f"secret {secret_id} in {self.path_for(secret_id)} has no AWSCURRENT version: fix the file"
            )
        current = Version(current_id, versions[current_id]["value"])
        pending_id = _holder(versions, PENDING)
        pending = Version(pending_id, versions[pending_id]["value"]) if pending_id not in (None, current_id) else None
        return SecretVersions(secret_id=secret_id, current=current, pending=pending)

    def put_pending(self, secret_id: str, value: str, token: str) -> str:
        self._operations += 1
        register_secret(value)
        versions = self._load(secret_id)
        existing = versions.get(token)
        if existing is not None:
            if existing["value"] != value:
                raise StoreError(
                    f"token {token} already names a version of secret {secret_id} with another value: "
                    "use a new token for a new value"
                )
            if PENDING in existing["stages"] or CURRENT in existing["stages"]:
                return token  # the same write again: nothing to do
        else:
            versions[token] = {"value": value, "stages": []}
        _move(versions, PENDING, token)
        self._write(secret_id, versions)
        return token

    def promote(self, secret_id: str, version_id: str) -> None:
        self._operations += 1
        versions = self._load(secret_id)
        target = versions.get(version_id)
        if target is None:
            raise StoreError(f"secret {secret_id} has no version {version_id} to promote: read it again")
        changed = False
        current_id = _holder(versions, CURRENT)
        if current_id != version_id:
            _move(versions, CURRENT, version_id)
            if current_id is not None:
                _move(versions, PREVIOUS, current_id)
            changed = True
        if PENDING in target["stages"]:
            target["stages"].remove(PENDING)
            changed = True
        if changed:
            self._write(secret_id, versions)

    def discard_pending(self, secret_id: str) -> None:
        self._operations += 1
        versions = self._load(secret_id)
        pending_id = _holder(versions, PENDING)
        if pending_id is not None:
            versions[pending_id]["stages"].remove(PENDING)
            self._write(secret_id, versions)

    # -- files --------------------------------------------------------------------------------------------

    def _load(self, secret_id: str) -> dict[str, dict[str, Any]]:
        path = self.path_for(secret_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretNotFound(
                f"secret {secret_id} not found in {self.directory}: check the secret id and --store file:<dir>"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}: check its permissions") from None
        try:
            document = json.loads(text)
            versions: dict[str, dict[str, Any]] = document["versions"]
            for version in versions.values():
                if not isinstance(version["value"], str) or not isinstance(version["stages"], list):
                    raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(f"{path} is not a rotator file store document: fix or remove it") from None
        register_secret(*(v["value"] for v in versions.values()))
        return versions

    def _write(self, secret_id: str, versions: dict[str, dict[str, Any]]) -> None:
        kept = {vid: v for vid, v in versions.items() if v["stages"]}
        data = json.dumps({"secret_id": secret_id, "versions": kept}, indent=2).encode() + b"\n"
        write_atomic(self.path_for(secret_id), data, mode=FILE_MODE, setting=_SETTING)


def _holder(versions: dict[str, dict[str, Any]], stage: str) -> str | None:
    return next((vid for vid, v in versions.items() if stage in v["stages"]), None)


def _move(versions: dict[str, dict[str, Any]], stage: str, to_version: str) -> None:
    """Attach ``stage`` to ``to_version``, removing it from any other version (labels are unique)."""
    for vid, version in versions.items():
        if stage in version["stages"] and vid != to_version:
            version["stages"].remove(stage)
    if stage not in versions[to_version]["stages"]:
        versions[to_version]["stages"].append(stage)
