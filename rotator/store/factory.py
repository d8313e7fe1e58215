"""Open the secret store named by ``--store``: ``secretsmanager`` (default), ``ssm`` or ``ssm:<KMS key>``
(SSM Parameter Store SecureStrings), ``vault`` or ``vault:<KV v2 mount>`` (HashiCorp Vault / OpenBao), or
``file:/path/to/dir`` (local development)."""

from __future__ import annotations

from rotator.aws import AwsClients
from rotator.errors import BadInput
from rotator.store.base import SecretStore
from rotator.store.file import FileStore
from rotator.store.secretsmanager import SecretsManagerStore
from rotator.store.ssm import DEFAULT_KMS_KEY, SsmStore

STORE_CHOICES = "secretsmanager, ssm[:<KMS key>], vault[:<KV v2 mount>] or file:/path/to/dir"


def open_store(
    spec: str = "secretsmanager",
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    aws: AwsClients | None = None,
) -> SecretStore:
    """Pass ``aws`` to share its clients and API call counter with the rest of the run."""
    if spec in ("", "secretsmanager"):
        clients = aws if aws is not None else AwsClients(region=region, endpoint_url=endpoint_url)
        return SecretsManagerStore(clients.secretsmanager())
    if spec == "ssm" or spec.startswith("ssm:"):
        kms_key = spec.removeprefix("ssm").removeprefix(":") or DEFAULT_KMS_KEY
        clients = aws if aws is not None else AwsClients(region=region, endpoint_url=endpoint_url)
        return SsmStore(clients.client("ssm"), kms_key=kms_key)
    if spec == "vault" or spec.startswith("vault:"):
        from rotator.store.vault import VaultStore  # hvac is an optional extra: imported only when used

        return VaultStore.from_environment(mount=spec.removeprefix("vault").removeprefix(":") or "secret")
    if spec.startswith("file:"):
        directory = spec.removeprefix("file:")
        if directory.startswith("//"):  # file:///abs/dir
            directory = directory[2:]
        if not directory:
            raise BadInput("--store file: needs a directory, e.g. file:/var/lib/rotator/secrets")
        return FileStore(directory)
    raise BadInput(f"unknown --store {spec!r}: use {STORE_CHOICES}")
