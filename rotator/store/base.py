"""The write-ahead secret store protocol.

``AWSCURRENT`` is the truth. A new value is first written as an ``AWSPENDING`` version (idempotent per
token), the database is changed, and only then the pending version is promoted: ``AWSCURRENT`` moves to
it and ``AWSPENDING`` is removed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"


@dataclass(frozen=True)
class Version:
    version_id: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class SecretVersions:
    """A secret's current value, and its pending value when one exists on a version other than current."""

    secret_id: str
    current: Version
    pending: Version | None = None
    # The AWS service that owns the secret and rotates it (Secrets Manager's OwningService, e.g. "rds" for an RDS
    # managed master password): the rotator reads it and never writes it. None: ours, or a store without owners.
    owning_service: str | None = None


class SecretStore(Protocol):
    @property
    def api_calls(self) -> int:
        """How many remote calls this store has made (for the run report)."""
        ...

    def read(self, secret_id: str) -> SecretVersions:
        """AWSCURRENT, plus AWSPENDING when it labels a different version. Raises SecretNotFound."""
        ...

    def put_pending(self, secret_id: str, value: str, token: str) -> str:
        """Store ``value`` as a new version labelled AWSPENDING; idempotent per token. Returns the version id."""
        ...

    def promote(self, secret_id: str, version_id: str) -> None:
        """Move AWSCURRENT to ``version_id`` and remove AWSPENDING from it. A second call does nothing."""
        ...

    def discard_pending(self, secret_id: str) -> None:
        """Remove the AWSPENDING label from whichever version has it (no-op when none)."""
        ...


def read_many(store: SecretStore, *secret_ids: str) -> list[SecretVersions]:
    """:meth:`SecretStore.read` of each secret, in order. A store whose reads are safe to run at once (Secrets
    Manager: one thread-safe client) offers ``read_many`` and reads them concurrently; others read one by one."""
    concurrent = getattr(store, "read_many", None)
    if concurrent is not None:
        result: list[SecretVersions] = concurrent(*secret_ids)
        return result
    return [store.read(secret_id) for secret_id in secret_ids]
