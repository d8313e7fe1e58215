"""The write-ahead store on AWS Secrets Manager: staging labels carry the protocol.

API calls per operation (logical calls; tenacity retries are not counted again):

- ``read``: 2 (GetSecretValue AWSCURRENT, then DescribeSecret); +1 GetSecretValue AWSPENDING only when
  DescribeSecret's stage map puts AWSPENDING on a version other than the current one whose value this store has
  not seen; all of it again when another run moved a label between the calls. ``read_many`` reads several
  secrets at once, each as ``read`` does.
- ``put_pending``: 1 (PutSecretValue); +1 GetSecretValue when AWS answers ResourceExists (verify the value);
  +1 UpdateSecretVersionStage (and a DescribeSecret if nothing is known) to re-label a discarded version.
- ``promote``: 2 after ``read``/``put_pending`` (move AWSCURRENT, remove AWSPENDING); +1 DescribeSecret when
  the store knows nothing of the secret yet; 0 when the version is already current without AWSPENDING.
- ``discard_pending``: 1 when a pending version is known, 0 when none; +1 DescribeSecret when nothing known.

The store remembers which versions hold AWSCURRENT and AWSPENDING from its own reads and writes, which saves
a DescribeSecret per label change. That assumes it is the only writer of the labels while it lives (the
run lock guarantees it); should the memory be stale anyway, AWS refuses the label move
(InvalidParameterException), and the store re-reads the labels once and tries again.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rotator.aws import AwsEdge, map_client_error, sanitize_arn
from rotator.errors import SecretFormatError, StoreError
from rotator.log import get_logger, register_secret
from rotator.parallel import together
from rotator.store.base import CURRENT, PENDING, SecretVersions, Version

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = get_logger(__name__)


SNAPSHOT_READS = 3  # reads of a secret whose labels keep moving before its latest answer is taken as it is


@dataclass
class _Labels:
    """Which version holds each label, as far as this store knows."""

    current: str | None
    pending: str | None  # may equal current (a promotion interrupted between its two calls)


class SecretsManagerStore:
    """:class:`~rotator.store.base.SecretStore` on Secrets Manager.

    Give it a client built by :class:`rotator.aws.AwsClients` (botocore retries off): every call goes through
    the one AWS edge (:class:`rotator.aws.AwsEdge`), which retries throttling, 5xx and connection errors up to
    ``max_attempts`` attempts per call, with jittered exponential backoff (``backoff_base`` doubling up to
    ``backoff_max`` seconds), and maps every other failure to one line.
    """

    def __init__(
        self,
        client: SecretsManagerClient | Any,
        *,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._edge = AwsEdge(
            client,
            "secretsmanager",
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            sleep=sleep,
        )
        self._labels: dict[str, _Labels] = {}
        # Values this store has read or written, by (secret, version): a reused token with another value is
        # refused before any call. AWS refuses it too, but moto silently overwrites a pending version.
        self._seen: dict[tuple[str, str], str] = {}
        self.calls: Counter[str] = Counter()  # operation name -> logical calls
        self._calls_lock = threading.Lock()  # reads run in threads (read, read_many)

    @property
    def api_calls(self) -> int:
        with self._calls_lock:
            return sum(self.calls.values())

    # -- bootstrapping ------------------------------------------------------------------------------------

    def create(self, secret_id: str, value: str, token: str) -> str:
        """Create the secret ``secret_id`` (a name) with ``value`` as AWSCURRENT; idempotent per token (a retry of
        the same request is not an error). Returns the version id."""
        register_secret(value)
        response = self._call("CreateSecret", secret_id, Name=secret_id, SecretString=value, ClientRequestToken=token)
        version_id = str(response.get("VersionId") or token)
        self._seen[(secret_id, version_id)] = value
        log.debug("store.create", secret_id=sanitize_arn(secret_id), version_id=version_id)
        return version_id

    # -- the protocol --------------------------------------------------------------------------------------

    def read(self, secret_id: str) -> SecretVersions:
        """GetSecretValue AWSCURRENT, then DescribeSecret (the labels, the owning service). Every read, the one
        under the lock included, reads AWSCURRENT's value itself, never from DescribeSecret's labels alone (they
        are not documented to be as fresh as GetSecretValue's).

        A read is one snapshot: when another run moves a label between these calls (DescribeSecret puts AWSCURRENT
        on another version than GetSecretValue returned, or AWSPENDING is gone by the time it is read), the secret
        is read again, up to SNAPSHOT_READS times. A mixed answer (an old AWSCURRENT with no AWSPENDING, while the
        server already has the new password) would make a run that lost a race conclude that no admin password
        logs in (exit 5)."""
        for _ in range(SNAPSHOT_READS):
            current = self._get(secret_id, CURRENT)
            versions, moved = self._versions(
                secret_id, current, self._call("DescribeSecret", secret_id, SecretId=secret_id)
            )
            if not moved:
                break
            log.info("store.secret_moved", secret_id=sanitize_arn(secret_id), detail="read again")
        return versions

    def read_many(self, *secret_ids: str) -> list[SecretVersions]:
        """:meth:`read` of each secret, the secrets at once (one thread-safe client); the first failure in the
        order given is raised, once every read has ended."""
        return together(*(functools.partial(self.read, secret_id) for secret_id in secret_ids))

    def _versions(
        self, secret_id: str, current: dict[str, Any], described: Mapping[str, Any]
    ) -> tuple[SecretVersions, bool]:
        """The versions from AWSCURRENT's value and DescribeSecret's answer, and whether a label moved between the
        calls. AWSPENDING's value is read only when it labels another version, not known."""
        stages_by_version: Mapping[str, Sequence[str]] = described.get("VersionIdsToStages") or {}
        current_version = self._version(secret_id, current)
        listed_current = [v for v, stages in stages_by_version.items() if CURRENT in stages]
        moved = bool(listed_current) and listed_current != [current_version.version_id]
        labels = _Labels(current=current_version.version_id, pending=None)
        pending_version: Version | None = None
        if PENDING in current.get("VersionStages", ()):
            labels.pending = current_version.version_id
        elif any(PENDING in stages for stages in stages_by_version.values()):
            pending = self._known(secret_id, stages_by_version, PENDING)
            if pending is None:
                listed_pending = [v for v, stages in stages_by_version.items() if PENDING in stages]
                try:
                    pending = self._get(secret_id, PENDING, allow=("ResourceNotFoundException",))
                except ClientError:  # ResourceNotFound: the label moved away since DescribeSecret
                    pending, moved = None, True
                if pending is not None and [str(pending.get("VersionId"))] != listed_pending:
                    moved = True
            if pending is not None:
                pending_version = self._version(secret_id, pending)
                labels.pending = pending_version.version_id
                if pending_version.version_id == current_version.version_id:
                    pending_version = None
        self._labels[secret_id] = labels
        owner = described.get("OwningService")
        versions = SecretVersions(
            secret_id=secret_id,
            current=current_version,
            pending=pending_version,
            owning_service=owner if isinstance(owner, str) and owner else None,
        )
        return versions, moved

    def _get(self, secret_id: str, stage: str, *, allow: Sequence[str] = ()) -> dict[str, Any]:
        return self._call("GetSecretValue", secret_id, allow=allow, SecretId=secret_id, VersionStage=stage)

    def _known(
        self, secret_id: str, stages_by_version: Mapping[str, Sequence[str]], stage: str
    ) -> dict[str, Any] | None:
        """GetSecretValue's answer for the version holding ``stage``, made from a value this store has already read
        or written; None when it has not."""
        for version_id, stages in stages_by_version.items():
            if stage in stages:
                value = self._seen.get((secret_id, version_id))
                if value is None:
                    return None
                return {"VersionId": version_id, "SecretString": value, "VersionStages": list(stages)}
        return None

    def put_pending(self, secret_id: str, value: str, token: str) -> str:
        register_secret(value)
        if self._seen.get((secret_id, token), value) != value:
            raise _token_reused(secret_id, token)
        try:
            response = self._call(
                "PutSecretValue",
                secret_id,
                allow=("ResourceExistsException",),
                SecretId=secret_id,
                ClientRequestToken=token,
                SecretString=value,
                VersionStages=[PENDING],
            )
        except ClientError:
            # AWS answers ResourceExists when the token's version exists and was not created by this exact
            # request. Same value: it is our earlier write. Another value: the token was reused, a bug.
            response = self._call("GetSecretValue", secret_id, SecretId=secret_id, VersionId=token)
            if response.get("SecretString") != value:
                raise _token_reused(secret_id, token) from None
        version_id = str(response.get("VersionId") or token)
        self._seen[(secret_id, version_id)] = value
        stages = list(response.get("VersionStages") or ())
        known = self._labels.get(secret_id)
        if PENDING in stages or CURRENT in stages:
            if known is not None:
                if PENDING in stages:
                    known.pending = version_id
                if CURRENT in stages:
                    known.current = version_id
        else:
            # The version exists from an earlier call but has lost its label (e.g. discarded): label it again.
            self._with_fresh_labels_on_conflict(
                secret_id, lambda labels: self._move_pending_to(secret_id, version_id, labels)
            )
        log.debug("store.put_pending", secret_id=sanitize_arn(secret_id), version_id=version_id)
        return version_id

    def promote(self, secret_id: str, version_id: str) -> None:
        self._with_fresh_labels_on_conflict(secret_id, lambda labels: self._promote(secret_id, version_id, labels))
        log.debug("store.promote", secret_id=sanitize_arn(secret_id), version_id=version_id)

    def discard_pending(self, secret_id: str) -> None:
        self._with_fresh_labels_on_conflict(secret_id, lambda labels: self._discard(secret_id, labels))

    # -- label moves ----------------------------------------------------------------------------------------

    def _promote(self, secret_id: str, version_id: str, labels: _Labels) -> None:
        # AWSCURRENT moves first: a crash between the two calls leaves AWSPENDING on the current version,
        # which reads as "no pending". The other order would leave the new password on an unlabelled version.
        if labels.current != version_id:
            params: dict[str, Any] = {"MoveToVersionId": version_id}
            if labels.current is not None:
                params["RemoveFromVersionId"] = labels.current
            self._call("UpdateSecretVersionStage", secret_id, SecretId=secret_id, VersionStage=CURRENT, **params)
            labels.current = version_id
        if labels.pending == version_id:
            self._call(
                "UpdateSecretVersionStage",
                secret_id,
                SecretId=secret_id,
                VersionStage=PENDING,
                RemoveFromVersionId=version_id,
            )
            labels.pending = None

    def _discard(self, secret_id: str, labels: _Labels) -> None:
        if labels.pending is None:
            return
        self._call(
            "UpdateSecretVersionStage",
            secret_id,
            SecretId=secret_id,
            VersionStage=PENDING,
            RemoveFromVersionId=labels.pending,
        )
        labels.pending = None

    def _move_pending_to(self, secret_id: str, version_id: str, labels: _Labels) -> None:
        if labels.pending == version_id:
            return
        params: dict[str, Any] = {"MoveToVersionId": version_id}
        if labels.pending is not None:
            params["RemoveFromVersionId"] = labels.pending
        self._call("UpdateSecretVersionStage", secret_id, SecretId=secret_id, VersionStage=PENDING, **params)
        labels.pending = version_id

    def _with_fresh_labels_on_conflict(self, secret_id: str, change: Callable[[_Labels], None]) -> None:
        """Run ``change`` with the labels this store knows (else described); on a refused move, re-read once.

        AWS refuses a move whose RemoveFromVersionId no longer holds the label (InvalidParameterException):
        stale memory, or a retried call whose first attempt did succeed. The re-read makes both converge.
        """
        labels = self._labels.get(secret_id)
        if labels is not None:
            try:
                change(labels)
                return
            except ClientError:
                log.info("store.labels_refreshed", secret_id=sanitize_arn(secret_id))
        labels = self._describe(secret_id)
        try:
            change(labels)
        except ClientError as exc:
            raise map_client_error(exc, _what(secret_id), service="secretsmanager") from exc

    def _describe(self, secret_id: str) -> _Labels:
        response = self._call("DescribeSecret", secret_id, SecretId=secret_id)
        labels = _Labels(current=None, pending=None)
        stages_by_version: Mapping[str, Sequence[str]] = response.get("VersionIdsToStages") or {}
        for version_id, stages in stages_by_version.items():
            if CURRENT in stages:
                labels.current = version_id
            if PENDING in stages:
                labels.pending = version_id
        self._labels[secret_id] = labels
        return labels

    # -- calls ------------------------------------------------------------------------------------------------

    def _call(self, operation: str, secret_id: str, *, allow: Sequence[str] = (), **params: Any) -> dict[str, Any]:
        """One logical AWS call through the edge (retried, errors mapped), counted once. Error codes the
        caller ``allow``s are re-raised as ClientError; a refused label move always is, for the caller to heal.
        """
        with self._calls_lock:
            self.calls[operation] += 1
        allowed = set(allow)
        if operation == "UpdateSecretVersionStage":
            allowed.add("InvalidParameterException")
        return self._edge.call(operation, what=_what(secret_id), allow=allowed, **params)

    def _version(self, secret_id: str, response: Mapping[str, Any]) -> Version:
        value = response.get("SecretString")
        if not isinstance(value, str):
            raise SecretFormatError(
                f"secret {sanitize_arn(secret_id)} holds binary data: store the JSON document as SecretString"
            )
        register_secret(value)
        version = Version(version_id=str(response["VersionId"]), value=value)
        self._seen[(secret_id, version.version_id)] = value
        return version


def _token_reused(secret_id: str, token: str) -> StoreError:
    return StoreError(
        f"token {token} already names a version of secret {sanitize_arn(secret_id)} with another value: "
        "use a new token for a new value"
    )


def _what(secret_id: str) -> str:
    return f"secret {secret_id}"
