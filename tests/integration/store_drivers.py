"""One small driver per secret store, so the rotation suite and the protocol tests run on every store.

A driver is the *test's* view of a store: it creates the secrets, reads what a plain client of that store
reads (``aws secretsmanager get-secret-value``, ``aws ssm get-parameter``, ``vault kv get``, the JSON file),
plants drift and leftover pending versions by hand as a crashed run or a person would, and fingerprints
everything a run could change. It talks to the store's API directly, never through rotator.store, so the
layout each store documents is checked independently of the code that writes it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.harness import AwsEnv

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"


class StoreDriver(Protocol):
    kind: str  # "secretsmanager" | "ssm" | "vault" | "file"

    def env(self) -> dict[str, str]:
        """ROTATOR_* (and VAULT_*) variables that point a run at this store."""
        ...

    def create(self, suffix: str, value: str) -> str:
        """A new secret holding ``value`` as its current version; returns the id the rotator is given."""
        ...

    def read(self, secret_id: str, stage: str = CURRENT) -> str | None:
        """The current (or pending) value as a plain client of the store reads it; None when there is none."""
        ...

    def put_current(self, secret_id: str, value: str) -> None:
        """Replace the current value by hand (drift)."""
        ...

    def put_pending(self, secret_id: str, value: str) -> None:
        """Leave a pending version behind, as a run that crashed after writing it would."""
        ...

    def fingerprint(self, secret_id: str) -> object:
        """Versions and labels (or their equivalent): equal before and after a run that changed nothing."""
        ...

    def values(self, secret_id: str) -> list[str]:
        """Every value the store still holds for the secret (current, pending, history)."""
        ...


# ------------------------------------------------------------------------------------------- Secrets Manager


@dataclass
class SecretsManagerDriver:
    aws: AwsEnv
    kind: str = "secretsmanager"

    @property
    def sm(self) -> Any:
        return self.aws.client("secretsmanager")

    def env(self) -> dict[str, str]:
        return {"ROTATOR_AWS_ENDPOINT_URL": self.aws.endpoint_url, "ROTATOR_REGION": self.aws.region}

    def create(self, suffix: str, value: str) -> str:
        return self.aws.create_secret(suffix, value)

    def read(self, secret_id: str, stage: str = CURRENT) -> str | None:
        try:
            value: str = self.sm.get_secret_value(SecretId=secret_id, VersionStage=stage)["SecretString"]
        except self.sm.exceptions.ResourceNotFoundException:
            return None
        return value

    def put_current(self, secret_id: str, value: str) -> None:
        """moto's plain put_secret_value can leave AWSCURRENT on two versions after a label move, so move the
        label explicitly, as real AWS would."""
        old = next(v for v, st in self.stages(secret_id).items() if CURRENT in st)
        new = self.sm.put_secret_value(SecretId=secret_id, SecretString=value, VersionStages=["TEST"])["VersionId"]
        self.sm.update_secret_version_stage(
            SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=new, RemoveFromVersionId=old
        )
        self.sm.update_secret_version_stage(SecretId=secret_id, VersionStage="TEST", RemoveFromVersionId=new)

    def put_pending(self, secret_id: str, value: str) -> None:
        self.sm.put_secret_value(SecretId=secret_id, SecretString=value, VersionStages=[PENDING])

    def stages(self, secret_id: str) -> dict[str, list[str]]:
        described = self.sm.describe_secret(SecretId=secret_id)
        return {k: sorted(v) for k, v in described["VersionIdsToStages"].items()}

    def fingerprint(self, secret_id: str) -> object:
        return self.stages(secret_id)

    def values(self, secret_id: str) -> list[str]:
        versions = self.sm.list_secret_version_ids(SecretId=secret_id, IncludeDeprecated=True)["Versions"]
        return [
            self.sm.get_secret_value(SecretId=secret_id, VersionId=v["VersionId"])["SecretString"] for v in versions
        ]


# ------------------------------------------------------------------------------------------- file store


@dataclass
class FileDriver:
    directory: Path
    kind: str = "file"

    def env(self) -> dict[str, str]:
        return {"ROTATOR_STORE": f"file:{self.directory}"}

    def _path(self, secret_id: str) -> Path:
        from urllib.parse import quote

        return self.directory / f"{quote(secret_id, safe='')}.json"

    def _load(self, secret_id: str) -> dict[str, dict[str, Any]]:
        versions: dict[str, dict[str, Any]] = json.loads(self._path(secret_id).read_text())["versions"]
        return versions

    def _save(self, secret_id: str, versions: dict[str, dict[str, Any]]) -> None:
        path = self._path(secret_id)
        path.write_text(json.dumps({"secret_id": secret_id, "versions": versions}, indent=2) + "\n")
        path.chmod(0o600)

    def create(self, suffix: str, value: str) -> str:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret_id = f"rt/{suffix}"
        self._save(secret_id, {str(uuid.uuid4()): {"value": value, "stages": [CURRENT]}})
        return secret_id

    def read(self, secret_id: str, stage: str = CURRENT) -> str | None:
        for version in self._load(secret_id).values():
            if stage in version["stages"]:
                value: str = version["value"]
                return value
        return None

    def _add(self, secret_id: str, value: str, stage: str) -> None:
        versions = self._load(secret_id)
        for version in versions.values():
            if stage in version["stages"]:
                version["stages"].remove(stage)
        versions[str(uuid.uuid4())] = {"value": value, "stages": [stage]}
        self._save(secret_id, {k: v for k, v in versions.items() if v["stages"]})

    def put_current(self, secret_id: str, value: str) -> None:
        self._add(secret_id, value, CURRENT)

    def put_pending(self, secret_id: str, value: str) -> None:
        self._add(secret_id, value, PENDING)

    def fingerprint(self, secret_id: str) -> object:
        path = self._path(secret_id)
        return path.read_bytes(), path.stat().st_mode

    def values(self, secret_id: str) -> list[str]:
        return [v["value"] for v in self._load(secret_id).values()]
