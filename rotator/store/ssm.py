"""The write-ahead store on SSM Parameter Store: the parameter holds AWSCURRENT, a sibling holds AWSPENDING.

Layout, for a secret id ``/rcm/prod/org-1/db/slots`` (a parameter name, or its ARN):

- ``/rcm/prod/org-1/db/slots``: a SecureString (KMS key ``--store ssm:<key>``, default ``alias/aws/ssm``)
  whose **latest version is always the current value**. Every plain reader (``aws ssm get-parameter``,
  ``rotator.client``, ECS ``valueFrom``, ``{{resolve:ssm-secure:...}}``) reads the latest version, so it can
  only ever see a value whose passwords are live.
- ``/rcm/prod/org-1/db/slots.pending``: the pending value, when there is one: a SecureString with the same
  key whose Description names the write's token (``rotator pending <token>``), set in the same PutParameter
  as the value, so value and token are durable together.

Why not labels on the parameter's versions: any PutParameter makes a new *latest* version, which every
plain reader would read; a pending value written there would hand apps passwords the database does not yet
accept. Labels cannot hold AWSCURRENT/AWSPENDING anyway (a label may not begin with ``aws`` or ``ssm``), and a
label on the oldest of the 100 kept versions makes PutParameter fail (ParameterMaxVersionLimitExceeded).

The protocol:

- ``read``: GetParameter on both (2 calls). A pending value equal to the current one is a promotion that
  was interrupted before the sibling was deleted: it reads as "no pending", as in Secrets Manager.
- ``put_pending``: one PutParameter (Overwrite) on the sibling. The same token again with the same value
  writes nothing when this store knows it; another value under a known token is refused.
- ``promote``: PutParameter of the pending value on the parameter (one write: the new current, atomically),
  then DeleteParameter of the sibling. A crash between the two leaves the sibling equal to the current value
  (read as no pending); the next write or discard replaces or deletes it. SSM has no check-and-set: the run
  lock keeps other rotator runs out, and the store checks that its write became exactly the next version.
- ``discard_pending``: DeleteParameter of the sibling (ParameterNotFound is success).

Version ids: the parameter's version number for the current value, the token for the pending one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rotator.aws import AwsEdge, sanitize_arn
from rotator.errors import SecretNotFound, StoreError
from rotator.log import get_logger, register_secret
from rotator.store.base import SecretVersions, Version

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

log = get_logger(__name__)

DEFAULT_KMS_KEY = "alias/aws/ssm"
PENDING_SUFFIX = ".pending"
DESCRIPTION_PREFIX = "rotator pending "
NOT_FOUND = "ParameterNotFound"


def parameter_name(secret_id: str) -> str:
    """The parameter's name: ``secret_id`` itself, or the name in an SSM parameter ARN.

    ``arn:aws:ssm:us-east-1:123456789012:parameter/rcm/prod/x`` is ``/rcm/prod/x``; ``...:parameter/x`` is ``x``.
    """
    if not secret_id.startswith("arn:"):
        return secret_id
    parts = secret_id.split(":", 5)
    if len(parts) != 6 or parts[2] != "ssm" or not parts[5].startswith("parameter/"):
        raise StoreError(f"{sanitize_arn(secret_id)} is not an SSM parameter ARN: pass the parameter's name or ARN")
    rest = parts[5].removeprefix("parameter")
    return rest if rest.count("/") > 1 else rest.lstrip("/")


def pending_name(secret_id: str) -> str:
    return parameter_name(secret_id) + PENDING_SUFFIX


@dataclass
class _Known:
    """What this store knows of a secret from its own reads and writes (the run lock makes it the only writer)."""

    current: Version | None = None
    sibling: Version | None = None  # what the .pending parameter holds (may equal current: see module doc)
    sibling_known: bool = False


class SsmStore:
    """:class:`~rotator.store.base.SecretStore` on SSM Parameter Store, every call through the one AWS edge."""

    def __init__(
        self,
        client: SSMClient | Any,
        *,
        kms_key: str = DEFAULT_KMS_KEY,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._edge = AwsEdge(
            client, "ssm", max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max, sleep=sleep
        )
        self.kms_key = kms_key or DEFAULT_KMS_KEY
        self._known: dict[str, _Known] = {}
        self._seen: dict[tuple[str, str], str] = {}  # (name, token) -> value, to refuse a reused token
        self.calls: Counter[str] = Counter()

    @property
    def api_calls(self) -> int:
        return sum(self.calls.values())

    # -- the protocol --------------------------------------------------------------------------------------

    def read(self, secret_id: str) -> SecretVersions:
        name = parameter_name(secret_id)
        current = self._get_current(name)
        sibling = self._get_sibling(name)
        pending = sibling if sibling is not None and sibling.value != current.value else None
        return SecretVersions(secret_id=secret_id, current=current, pending=pending)

    def put_pending(self, secret_id: str, value: str, token: str) -> str:
        register_secret(value)
        name = parameter_name(secret_id)
        if self._seen.get((name, token), value) != value:
            raise _token_reused(name, token)
        known = self._known.setdefault(name, _Known())
        if known.sibling_known and known.sibling is not None and known.sibling.version_id == token:
            return token  # the same write again: nothing to do
        self._call(
            "PutParameter",
            name,
            Name=name + PENDING_SUFFIX,
            Value=value,
            Type="SecureString",
            KeyId=self.kms_key,
            Overwrite=True,
            Description=f"{DESCRIPTION_PREFIX}{token}",
        )
        self._seen[(name, token)] = value
        known.sibling, known.sibling_known = Version(token, value), True
        log.debug("store.put_pending", secret_id=sanitize_arn(secret_id), version_id=token)
        return token

    def promote(self, secret_id: str, version_id: str) -> None:
        name = parameter_name(secret_id)
        known = self._known.setdefault(name, _Known())
        sibling = known.sibling if known.sibling_known else self._get_sibling(name)
        current = known.current or self._get_current(name)
        if sibling is None or sibling.version_id != version_id:
            value = self._seen.get((name, version_id))
            if value is not None and self._get_current(name).value == value:
                return  # promoted already (by this store, or by a run that crashed before deleting the sibling)
            raise StoreError(f"parameter {name} has no pending version {version_id} to promote: read it again")
        if current.value != sibling.value:
            response = self._call(
                "PutParameter",
                name,
                Name=name,
                Value=sibling.value,
                Type="SecureString",
                KeyId=self.kms_key,
                Overwrite=True,
            )
            written = str(response.get("Version", ""))
            expected = str(int(current.version_id) + 1) if current.version_id.isdigit() else written
            if written != expected:
                log.warning(
                    "store.concurrent_writer",
                    secret_id=sanitize_arn(secret_id),
                    expected_version=expected,
                    written_version=written,
                    note="another writer changed the parameter between this run's read and its promotion",
                )
            known.current = Version(written, sibling.value)
        self._delete_sibling(name)
        log.debug("store.promote", secret_id=sanitize_arn(secret_id), version_id=version_id)

    def discard_pending(self, secret_id: str) -> None:
        name = parameter_name(secret_id)
        known = self._known.get(name)
        if known is not None and known.sibling_known and known.sibling is None:
            return
        self._delete_sibling(name)

    # -- parameters -------------------------------------------------------------------------------------------

    def _get_current(self, name: str) -> Version:
        try:
            response = self._call("GetParameter", name, allow=(NOT_FOUND,), Name=name, WithDecryption=True)
        except ClientError:
            raise SecretNotFound(
                f"SSM parameter {name} not found: check the secret id (--slot-secret/--admin-secret), "
                "the region (AWS_REGION) and --store ssm"
            ) from None
        parameter = response["Parameter"]
        if parameter.get("Type") != "SecureString":
            log.warning("store.parameter_not_encrypted", parameter=name, fix="the next promotion writes a SecureString")
        version = Version(str(parameter["Version"]), _value(parameter, name))
        self._known.setdefault(name, _Known()).current = version
        return version

    def _get_sibling(self, name: str) -> Version | None:
        """The pending parameter's latest version: its value, and the token its Description names."""
        sibling_name = name + PENDING_SUFFIX
        found: dict[str, Any] | None = None
        params: dict[str, Any] = {"Name": sibling_name, "WithDecryption": True, "MaxResults": 50}
        try:
            while True:
                response = self._call("GetParameterHistory", name, allow=(NOT_FOUND,), **params)
                history: Sequence[dict[str, Any]] = response.get("Parameters") or ()
                if history:
                    found = max(history, key=lambda p: int(p.get("Version", 0)))
                if not response.get("NextToken"):
                    break
                params["NextToken"] = response["NextToken"]
        except ClientError:
            found = None
        sibling: Version | None = None
        if found is not None:
            description = str(found.get("Description") or "")
            token = description.removeprefix(DESCRIPTION_PREFIX) if description.startswith(DESCRIPTION_PREFIX) else ""
            sibling = Version(token or f"pending-{found.get('Version')}", _value(found, sibling_name))
            self._seen[(name, sibling.version_id)] = sibling.value
        known = self._known.setdefault(name, _Known())
        known.sibling, known.sibling_known = sibling, True
        return sibling

    def _delete_sibling(self, name: str) -> None:
        try:
            self._call("DeleteParameter", name, allow=(NOT_FOUND,), Name=name + PENDING_SUFFIX)
        except ClientError:
            pass  # deleted already (a retried call whose first attempt did succeed, or nothing was pending)
        known = self._known.setdefault(name, _Known())
        known.sibling, known.sibling_known = None, True

    def _call(self, operation: str, name: str, *, allow: Sequence[str] = (), **params: Any) -> dict[str, Any]:
        self.calls[operation] += 1
        return self._edge.call(
            operation,
            what=f"parameter {params.get('Name', name)}",
            allow=allow,
            fix="check the parameter name, the region, and the KMS key (--store ssm:<key id or alias>)",
            **params,
        )


def _value(parameter: dict[str, Any], name: str) -> str:
    value = parameter.get("Value")
    if not isinstance(value, str):
        raise StoreError(f"SSM parameter {name} has no value")
    register_secret(value)
    return value


def _token_reused(name: str, token: str) -> StoreError:
    return StoreError(
        f"token {token} already names a pending version of parameter {name} with another value: "
        "use a new token for a new value"
    )
