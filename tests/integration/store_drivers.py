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
from tests.openbao import OpenBao

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


# ------------------------------------------------------------------------------------------- SSM Parameter Store


@dataclass
class SsmDriver:
    """Parameters in seed 000's layout ``/rcm/{env}/{org}/...``; the pending value in ``<name>.pending``."""

    aws: AwsEnv
    kind: str = "ssm"

    def __post_init__(self) -> None:
        self.names: list[str] = []

    @property
    def ssm(self) -> Any:
        return self.aws.client("ssm")

    def env(self) -> dict[str, str]:
        return {
            "ROTATOR_STORE": "ssm",
            "ROTATOR_AWS_ENDPOINT_URL": self.aws.endpoint_url,
            "ROTATOR_REGION": self.aws.region,
        }

    def create(self, suffix: str, value: str) -> str:
        name = f"/rcm/test/{self.aws.prefix}/{suffix}"
        self.ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        self.names += [name, name + ".pending"]
        return name

    def read(self, secret_id: str, stage: str = CURRENT) -> str | None:
        """AWSCURRENT is what a plain GetParameter returns: the latest version."""
        name = secret_id if stage == CURRENT else secret_id + ".pending"
        try:
            value: str = self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        if stage == PENDING and value == self.read(secret_id):
            return None  # an interrupted promotion: the store reads it as no pending too
        return value

    def put_current(self, secret_id: str, value: str) -> None:
        self.ssm.put_parameter(Name=secret_id, Value=value, Type="SecureString", Overwrite=True)

    def put_pending(self, secret_id: str, value: str) -> None:
        self.ssm.put_parameter(
            Name=secret_id + ".pending",
            Value=value,
            Type="SecureString",
            Overwrite=True,
            Description=f"rotator pending {uuid.uuid4()}",
        )

    def _history(self, name: str) -> list[dict[str, Any]]:
        try:
            history: list[dict[str, Any]] = self.ssm.get_parameter_history(Name=name, WithDecryption=True)["Parameters"]
        except self.ssm.exceptions.ParameterNotFound:
            return []
        return history

    def fingerprint(self, secret_id: str) -> object:
        return [
            [(p["Version"], p["Type"], p.get("KeyId"), p.get("Description"), p["Value"]) for p in self._history(n)]
            for n in (secret_id, secret_id + ".pending")
        ]

    def values(self, secret_id: str) -> list[str]:
        return [p["Value"] for n in (secret_id, secret_id + ".pending") for p in self._history(n)]

    def cleanup(self) -> None:
        for name in self.names:
            try:
                self.ssm.delete_parameter(Name=name)
            except self.ssm.exceptions.ParameterNotFound:
                pass


# ------------------------------------------------------------------------------------------- Vault / OpenBao KV v2


@dataclass
class VaultDriver:
    """KV v2 on the OpenBao dev server's ``secret/`` mount; the pending value in ``<path>.pending``."""

    bao: OpenBao
    prefix: str
    mount: str = "secret"
    kind: str = "vault"

    def __post_init__(self) -> None:
        self.paths: list[str] = []

    @property
    def kv(self) -> Any:
        return self.bao.client().secrets.kv.v2

    def env(self) -> dict[str, str]:
        return {"ROTATOR_STORE": f"vault:{self.mount}", **self.bao.env()}

    def create(self, suffix: str, value: str) -> str:
        path = f"rotator/{self.prefix}/{suffix}"
        self.kv.create_or_update_secret(path=path, secret=json.loads(value), mount_point=self.mount)
        self.paths += [path, path + ".pending"]
        return path

    def _latest(self, path: str) -> dict[str, Any] | None:
        import hvac

        try:
            data: dict[str, Any] = self.kv.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=True
            )["data"]["data"]
        except hvac.exceptions.InvalidPath:
            return None
        return data

    def read(self, secret_id: str, stage: str = CURRENT) -> str | None:
        """AWSCURRENT is what `vault kv get <path>` returns: the latest version."""
        current = self._latest(secret_id)
        if stage == CURRENT:
            return None if current is None else json.dumps(current)
        sibling = self._latest(secret_id + ".pending")
        if sibling is None or sibling["document"] == current:
            return None  # none, or an interrupted promotion (the store reads it as no pending too)
        return json.dumps(sibling["document"])

    def put_current(self, secret_id: str, value: str) -> None:
        self.kv.create_or_update_secret(path=secret_id, secret=json.loads(value), mount_point=self.mount)

    def put_pending(self, secret_id: str, value: str) -> None:
        self.kv.create_or_update_secret(
            path=secret_id + ".pending",
            secret={"token": str(uuid.uuid4()), "document": json.loads(value)},
            mount_point=self.mount,
        )

    def _versions(self, path: str) -> list[tuple[int, dict[str, Any] | None]]:
        import hvac

        try:
            metadata = self.kv.read_secret_metadata(path=path, mount_point=self.mount)["data"]
        except hvac.exceptions.InvalidPath:
            return []
        out = []
        for number in sorted(int(n) for n in metadata["versions"]):
            response = self.kv.read_secret_version(
                path=path, version=number, mount_point=self.mount, raise_on_deleted_version=False
            )
            out.append((number, response["data"]["data"]))
        return out

    def fingerprint(self, secret_id: str) -> object:
        return [self._versions(p) for p in (secret_id, secret_id + ".pending")]

    def values(self, secret_id: str) -> list[str]:
        out = [json.dumps(doc) for _, doc in self._versions(secret_id) if doc is not None]
        out += [json.dumps(doc["document"]) for _, doc in self._versions(secret_id + ".pending") if doc is not None]
        return out

    def cleanup(self) -> None:
        import hvac

        for path in self.paths:
            try:
                self.kv.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                pass
