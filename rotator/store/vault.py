"""The write-ahead store on HashiCorp Vault / OpenBao KV v2: the path holds AWSCURRENT, a sibling AWSPENDING.

Layout, for ``--store vault:secret`` (the KV v2 mount; ``vault`` alone means ``secret``) and a secret id
``rotator/prod/slots`` (a path inside the mount):

- ``secret/rotator/prod/slots``: the secret document (the slot or admin JSON object) as the KV data. Its
  **latest version is always the current value**, so ``vault kv get secret/rotator/prod/slots``, the
  loader (``rotator.client`` Vault source), Vault Agent templates and External Secrets all read a value whose
  passwords are live. Older versions are KV v2's own history (``max_versions`` of the mount or path).
- ``secret/rotator/prod/slots.pending``: the pending value, when there is one, as
  ``{"token": "<write token>", "document": {...}}``: value and token in one write, durable together.

Why not the path's own versions with ``custom_metadata`` naming current and pending: a KV v2 read without a
version returns the newest version, so a pending value written as a new version would be read by every
plain client before its passwords exist in the database; and a metadata write is a second request, so the
label could never move atomically with a value.

The protocol:

- ``read``: read both (2 requests). A pending document equal to the current one is a promotion interrupted
  before the sibling was deleted: it reads as "no pending", as in Secrets Manager.
- ``put_pending``: one write of the sibling (with ``cas`` when the store knows the sibling's version).
- ``promote``: one write of the pending document to the path **with check-and-set** (``cas`` = the version
  this run read): Vault refuses it if anyone wrote the path since, so the new current replaces exactly the
  value the run planned against, atomically. Then the sibling's metadata is deleted (all its versions: no
  pending passwords linger). A crash in between leaves the sibling equal to the current value (no pending);
  a refused ``cas`` whose earlier attempt did succeed (a lost answer) is recognised by re-reading.
- ``discard_pending``: delete the sibling's metadata and versions (absent is success).

Version ids: the KV version number for the current value, the token for the pending one.

Authentication (never on the command line): ``VAULT_ADDR``; ``VAULT_TOKEN`` or ``VAULT_TOKEN_FILE``, or
AppRole with ``VAULT_ROLE_ID`` / ``VAULT_ROLE_ID_FILE`` and ``VAULT_SECRET_ID`` / ``VAULT_SECRET_ID_FILE``
(``VAULT_APPROLE_MOUNT``, default ``approle``); ``VAULT_NAMESPACE`` and ``VAULT_CACERT`` as for the vault CLI.
The session (token renewal, AppRole login again on 403) is :class:`rotator.client.vault.VaultSession`.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from rotator.errors import BadInput, SecretFormatError, SecretNotFound, StoreError
from rotator.log import get_logger, register_secret, scrub
from rotator.store.base import SecretVersions, Version

log = get_logger(__name__)

DEFAULT_MOUNT = "secret"
PENDING_SUFFIX = ".pending"
INSTALL_HINT = "--store vault needs hvac: pip install 'rotator[vault]'"
_MAX_MESSAGE = 300
_MOUNT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_PATH = _MOUNT


@dataclass
class _Sibling:
    token: str
    document: dict[str, Any]
    version: int


@dataclass
class _Known:
    current: tuple[int, dict[str, Any]] | None = None
    sibling: _Sibling | None = None
    sibling_known: bool = False
    sibling_version: int = 0  # the sibling's KV version (0: absent), for its cas


def _secret_from(environ: Mapping[str, str], name: str) -> str | None:
    """``NAME`` or the contents of the file ``NAME_FILE`` (trailing newline dropped)."""
    value = environ.get(name)
    path = environ.get(f"{name}_FILE")
    if value and path:
        raise BadInput(f"both {name} and {name}_FILE are set: keep one")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise BadInput(f"cannot read {name}_FILE {path}: {exc.strerror}: fix the path or its permissions") from None
    return value or None


class VaultStore:
    """:class:`~rotator.store.base.SecretStore` on a KV v2 mount, every request retried on 5xx, 429 and network
    errors (jittered exponential backoff) and mapped to one line on failure."""

    def __init__(
        self,
        session: Any,
        *,
        mount: str = DEFAULT_MOUNT,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.session = session  # a rotator.client.vault.VaultSession
        self.mount = mount.strip("/") or DEFAULT_MOUNT
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self._known: dict[str, _Known] = {}
        self._seen: dict[tuple[str, str], str] = {}  # (path, token) -> canonical document
        self.calls: Counter[str] = Counter()

    @classmethod
    def from_environment(cls, *, mount: str = DEFAULT_MOUNT, environ: Mapping[str, str] | None = None) -> VaultStore:
        environ = os.environ if environ is None else environ
        try:
            from rotator.client.errors import ConfigurationError
            from rotator.client.vault import VaultSession
        except ImportError:  # pragma: no cover - rotator.client is part of the package
            raise BadInput(INSTALL_HINT) from None
        if not environ.get("VAULT_ADDR"):
            raise BadInput("--store vault needs VAULT_ADDR (like https://vault.example:8200)")
        role_id = _secret_from(environ, "VAULT_ROLE_ID")
        secret_id = _secret_from(environ, "VAULT_SECRET_ID")
        token = _secret_from(environ, "VAULT_TOKEN")
        if (role_id is None) != (secret_id is None):
            raise BadInput("AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID (or their _FILE twins)")
        if role_id is None and token is None:
            raise BadInput(
                "--store vault needs credentials: VAULT_TOKEN (or VAULT_TOKEN_FILE), or AppRole with "
                "VAULT_ROLE_ID and VAULT_SECRET_ID (or their _FILE twins)"
            )
        try:
            import hvac  # noqa: F401
        except ImportError:
            raise BadInput(INSTALL_HINT) from None
        try:
            session = VaultSession(
                environ["VAULT_ADDR"],
                token=None if role_id else token,
                role_id=role_id,
                secret_id=secret_id,
                approle_mount=environ.get("VAULT_APPROLE_MOUNT") or "approle",
                environ=environ,
            )
        except ConfigurationError as exc:
            raise BadInput(str(exc)) from None
        if secret_id:
            register_secret(secret_id)
        if token:
            register_secret(token)
        return cls(session, mount=mount)

    @property
    def api_calls(self) -> int:
        return sum(self.calls.values())

    # -- the protocol --------------------------------------------------------------------------------------

    def read(self, secret_id: str) -> SecretVersions:
        path = _path(secret_id)
        version, document = self._read_current(path)
        sibling = self._read_sibling(path)
        current = Version(str(version), _text(document))
        pending = None
        if sibling is not None and _canonical(sibling.document) != _canonical(document):
            pending = Version(sibling.token, _text(sibling.document))
        return SecretVersions(secret_id=secret_id, current=current, pending=pending)

    def put_pending(self, secret_id: str, value: str, token: str) -> str:
        register_secret(value)
        path = _path(secret_id)
        document = _document(value, path)
        canonical = _canonical(document)
        if self._seen.get((path, token), canonical) != canonical:
            raise _token_reused(path, token)
        known = self._known.setdefault(path, _Known())
        if known.sibling_known and known.sibling is not None and known.sibling.token == token:
            return token
        cas = known.sibling_version if known.sibling_known else None
        response = self._call(
            "write",
            path + PENDING_SUFFIX,
            lambda kv: kv.create_or_update_secret(
                path=path + PENDING_SUFFIX,
                secret={"token": token, "document": document},
                cas=cas,
                mount_point=self.mount,
            ),
        )
        version = int((response or {}).get("data", {}).get("version") or 0)
        self._seen[(path, token)] = canonical
        known.sibling, known.sibling_known, known.sibling_version = _Sibling(token, document, version), True, version
        log.debug("store.put_pending", secret_id=secret_id, version_id=token)
        return token

    def promote(self, secret_id: str, version_id: str) -> None:
        path = _path(secret_id)
        known = self._known.setdefault(path, _Known())
        sibling = known.sibling if known.sibling_known else self._read_sibling(path)
        current = known.current or self._read_current(path)
        if sibling is None or sibling.token != version_id:
            seen = self._seen.get((path, version_id))
            if seen is not None and _canonical(self._read_current(path)[1]) == seen:
                return  # promoted already
            raise StoreError(f"Vault secret {self._where(path)} has no pending version {version_id}: read it again")
        if _canonical(current[1]) != _canonical(sibling.document):
            self._write_current(path, current[0], sibling.document)
        self._delete_sibling(path)
        log.debug("store.promote", secret_id=secret_id, version_id=version_id)

    def discard_pending(self, secret_id: str) -> None:
        path = _path(secret_id)
        known = self._known.get(path)
        if known is not None and known.sibling_known and known.sibling is None and known.sibling_version == 0:
            return
        self._delete_sibling(path)

    # -- KV v2 --------------------------------------------------------------------------------------------------

    def _read_current(self, path: str) -> tuple[int, dict[str, Any]]:
        hvac = _hvac()
        try:
            response = self._call(
                "read",
                path,
                lambda kv: kv.read_secret_version(path=path, mount_point=self.mount, raise_on_deleted_version=False),
                allow=(hvac.exceptions.InvalidPath,),
            )
        except hvac.exceptions.InvalidPath:
            raise SecretNotFound(
                f"Vault secret {self._where(path)} not found: check the secret id (--slot-secret/--admin-secret, "
                "a path inside the mount), the mount (--store vault:<mount>) and VAULT_ADDR"
            ) from None
        data = response.get("data") or {}
        document, metadata = data.get("data"), data.get("metadata") or {}
        if document is None:
            raise StoreError(
                f"the latest version of Vault secret {self._where(path)} is deleted: undelete it "
                "(vault kv undelete) or write the secret again"
            )
        if not isinstance(document, dict):
            raise SecretFormatError(f"Vault secret {self._where(path)} does not hold a JSON object")
        version = int(metadata.get("version") or 0)
        register_secret(_text(document))
        self._known.setdefault(path, _Known()).current = (version, document)
        return version, document

    def _read_sibling(self, path: str) -> _Sibling | None:
        hvac = _hvac()
        sibling_path = path + PENDING_SUFFIX
        known = self._known.setdefault(path, _Known())
        try:
            response = self._call(
                "read",
                sibling_path,
                lambda kv: kv.read_secret_version(
                    path=sibling_path, mount_point=self.mount, raise_on_deleted_version=False
                ),
                allow=(hvac.exceptions.InvalidPath,),
            )
        except hvac.exceptions.InvalidPath:
            known.sibling, known.sibling_known, known.sibling_version = None, True, 0
            return None
        data = response.get("data") or {}
        version = int((data.get("metadata") or {}).get("version") or 0)
        body = data.get("data")
        sibling: _Sibling | None = None
        if isinstance(body, dict) and isinstance(body.get("document"), dict):
            sibling = _Sibling(str(body.get("token") or f"pending-{version}"), body["document"], version)
            register_secret(_text(sibling.document))
            self._seen[(path, sibling.token)] = _canonical(sibling.document)
        elif body is not None:
            raise StoreError(
                f"Vault secret {self._where(sibling_path)} is not a rotator pending version: delete it "
                f"(vault kv metadata delete {self.mount}/{sibling_path})"
            )
        known.sibling, known.sibling_known, known.sibling_version = sibling, True, version
        return sibling

    def _write_current(self, path: str, version: int, document: dict[str, Any]) -> None:
        hvac = _hvac()
        known = self._known.setdefault(path, _Known())
        try:
            response = self._call(
                "write",
                path,
                lambda kv: kv.create_or_update_secret(path=path, secret=document, cas=version, mount_point=self.mount),
                allow=(hvac.exceptions.InvalidRequest,),
            )
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" not in str(exc):
                raise self._error("write", path, exc) from None
            # Refused by cas: the path moved since this run read it. Our own earlier attempt (a lost answer)?
            now, current = self._read_current(path)
            if _canonical(current) == _canonical(document):
                return
            raise StoreError(
                f"Vault secret {self._where(path)} changed since this run read it (version {now}, expected "
                f"{version}): nothing was promoted; run the rotation again"
            ) from None
        written = int((response or {}).get("data", {}).get("version") or version + 1)
        known.current = (written, document)

    def _delete_sibling(self, path: str) -> None:
        hvac = _hvac()
        sibling_path = path + PENDING_SUFFIX
        try:
            self._call(
                "delete",
                sibling_path,
                lambda kv: kv.delete_metadata_and_all_versions(path=sibling_path, mount_point=self.mount),
                allow=(hvac.exceptions.InvalidPath,),
            )
        except hvac.exceptions.InvalidPath:
            pass
        known = self._known.setdefault(path, _Known())
        known.sibling, known.sibling_known, known.sibling_version = None, True, 0

    # -- requests -----------------------------------------------------------------------------------------------

    def _where(self, path: str) -> str:
        return f"{self.mount}/{path}"

    def _call(
        self, operation: str, path: str, fn: Callable[[Any], Any], *, allow: tuple[type[BaseException], ...] = ()
    ) -> Any:
        """One logical request (counted once), retried on 5xx, 429 and connection errors; other failures are
        one-line StoreErrors, except the exception classes the caller ``allow``s."""
        self.calls[operation] += 1
        kwargs: dict[str, Any] = {}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max),
            retry=retry_if_exception(_retryable),
            before_sleep=lambda state: log.warning(
                "vault.retry",
                operation=operation,
                path=self._where(path),
                attempt=state.attempt_number,
                error=type(state.outcome.exception()).__name__ if state.outcome else "",
            ),
            reraise=True,
            **kwargs,
        )
        try:
            return retrying(lambda: self.session.call(lambda client: fn(client.secrets.kv.v2)))
        except allow:
            raise
        except Exception as exc:
            raise self._error(operation, path, exc) from None

    def _error(self, operation: str, path: str, exc: BaseException) -> StoreError:
        hvac = _hvac()
        where = self._where(path)
        detail = _detail(exc)
        if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
            capability = {"read": "read", "write": "create/update", "delete": "delete"}.get(operation, operation)
            kind = "metadata" if operation == "delete" else "data"
            return StoreError(
                _one_line(
                    f"Vault denied {operation} on {where} ({detail}): the token needs {capability} on "
                    f"{self.mount}/{kind}/{path} (rotator vault-policy prints the policy), or is expired"
                )
            )
        if isinstance(exc, hvac.exceptions.VaultError) and not _retryable(exc):
            return StoreError(_one_line(f"Vault refused {operation} on {where} ({type(exc).__name__}: {detail})"))
        if isinstance(exc, hvac.exceptions.VaultError):
            return StoreError(
                _one_line(f"Vault {operation} on {where} failed after retries ({type(exc).__name__}): try again later")
            )
        return StoreError(
            _one_line(
                f"cannot reach Vault for {operation} on {where} ({type(exc).__name__}): check VAULT_ADDR, the "
                "network and VAULT_CACERT"
            )
        )


def policy_hcl(mount: str, *secret_ids: str) -> str:
    """The least-privilege policy of the rotation task: read and check-and-set write each secret's path, write
    and delete its ``.pending`` sibling. Token lookup-self and renew-self come from Vault's ``default`` policy."""
    mount = mount.strip("/") or DEFAULT_MOUNT
    if not _MOUNT.match(mount):
        raise BadInput(f"KV mount {mount!r} is not a Vault mount path: use letters, digits and -_./")
    lines = [f"# rotator: the rotation task's policy on KV v2 mount {mount} (rotator vault-policy)"]
    for secret_id in dict.fromkeys(secret_ids):
        path = _path(secret_id)
        if not _PATH.match(path):
            raise BadInput(f"secret path {path!r} has characters a policy path cannot hold: use letters, digits, -_./")
        lines += [
            f'path "{mount}/data/{path}" {{',
            '  capabilities = ["read", "update"]',
            "}",
            f'path "{mount}/data/{path}{PENDING_SUFFIX}" {{',
            '  capabilities = ["create", "read", "update"]',
            "}",
            f'path "{mount}/metadata/{path}{PENDING_SUFFIX}" {{',
            '  capabilities = ["delete"]',
            "}",
        ]
    return "\n".join(lines) + "\n"


def _hvac() -> Any:
    try:
        import hvac
    except ImportError:
        raise BadInput(INSTALL_HINT) from None
    return hvac


def _retryable(exc: BaseException) -> bool:
    import requests

    hvac = _hvac()
    if isinstance(exc, hvac.exceptions.RateLimitExceeded | hvac.exceptions.InternalServerError):
        return True
    if isinstance(exc, hvac.exceptions.BadGateway | hvac.exceptions.VaultDown):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _detail(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)
    return type(exc).__name__


def _one_line(text: str) -> str:
    cleaned = " ".join(scrub(text).split())
    return cleaned if len(cleaned) <= _MAX_MESSAGE else cleaned[: _MAX_MESSAGE - 3] + "..."


def _path(secret_id: str) -> str:
    path = secret_id.strip("/")
    if not path:
        raise BadInput("empty Vault secret path: pass --slot-secret/--admin-secret as a path in the KV mount")
    return path


def _document(value: str, path: str) -> dict[str, Any]:
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretFormatError(f"Vault secret {path}: KV v2 holds a JSON object; the value is not one")
    return document


def _canonical(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _text(document: Mapping[str, Any]) -> str:
    return json.dumps(document)


def _token_reused(path: str, token: str) -> StoreError:
    return StoreError(
        f"token {token} already names a pending version of Vault secret {path} with another value: "
        "use a new token for a new value"
    )
