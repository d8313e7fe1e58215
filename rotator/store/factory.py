"""Open the secret store named by ``--store``: ``secretsmanager`` (default) or ``file:/path/to/dir``."""

from __future__ import annotations

from rotator.aws import AwsClients
from rotator.errors import BadInput
from rotator.store.base import SecretStore
from rotator.store.file import FileStore
from rotator.store.secretsmanager import SecretsManagerStore


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
    if spec.startswith("file:"):
        directory = spec.removeprefix("file:")
        if directory.startswith("//"):  # file:///abs/dir
            directory = directory[2:]
        if not directory:
            raise BadInput("--store file: needs a directory, e.g. file:/var/lib/rotator/secrets")
        return FileStore(directory)
    raise BadInput(f"unknown --store {spec!r}: use secretsmanager or file:/path/to/dir")
