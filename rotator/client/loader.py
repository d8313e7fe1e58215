"""The credential loader: a source, a format, a cache, and a login that survives a rotation.

Create one loader per secret per process and share it (engines, pools and threads): the cache and its
single-flight refresh are per loader.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rotator.client import audit
from rotator.client import cache as _cache
from rotator.client._log import log
from rotator.client.arn import sanitize_secret_arn_for_logging
from rotator.client.cache import DEFAULT_JITTER, DEFAULT_TTL, RefreshingValue
from rotator.client.credentials import DbCredentials, KeyNames, parse_database_url, parse_secret
from rotator.client.errors import ConfigurationError, CredentialError, CredentialsUnavailable, is_auth_failure
from rotator.client.sources import DatabaseUrlSource, Source, source_for
from rotator.metrics import THROTTLING_CODES, ClientMetrics

if TYPE_CHECKING:
    from rotator.client.vault import VaultSession

C = TypeVar("C")


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)  # botocore.exceptions.ClientError
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class CredentialLoader(RefreshingValue[DbCredentials]):
    """Database credentials from one source, cached.

    ``get()`` is the hot path (see :mod:`rotator.client.cache` for the TTL, single-flight and backoff rules;
    every duration is in seconds). ``connect(factory)`` logs in and, when the login fails on its credentials,
    refreshes once and retries.
    """

    def __init__(
        self,
        source: Source,
        *,
        keys: KeyNames | None = None,
        defaults: Mapping[str, Any] | None = None,
        fallback: Source | None = None,
        ttl: float = DEFAULT_TTL,
        jitter: float = DEFAULT_JITTER,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        min_refresh_interval: float = 1.0,
        metrics: ClientMetrics | Literal["emf"] | None = None,
    ) -> None:
        super().__init__(
            ttl=ttl,
            jitter=jitter,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            min_refresh_interval=min_refresh_interval,
        )
        self.source = source
        self.fallback = fallback
        self.keys = keys or KeyNames()
        self.defaults = dict(defaults or {})
        if isinstance(metrics, str):
            if metrics != "emf":
                raise ConfigurationError('metrics must be "emf", a ClientMetrics or None')
            metrics = ClientMetrics(sanitize_secret_arn_for_logging(source.label))
        self.metrics: ClientMetrics | None = metrics or None
        if self.metrics is not None:
            self.get = self._get_counted  # type: ignore[method-assign]
        self._valid_for: float | None = None

    def __repr__(self) -> str:
        return f"CredentialLoader({self.source.kind}:{self.source.label}, ttl={self.ttl}s)"

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_secret(
        cls,
        ref: str,
        *,
        kind: Literal["secretsmanager", "ssm"] | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: Any = None,
        client: Any = None,
        config: Any = None,
        **options: Any,
    ) -> CredentialLoader:
        """A Secrets Manager secret or an SSM SecureString parameter, by name or ARN. An ARN picks its service
        and region; a name is a Secrets Manager secret unless ``kind="ssm"``. ``endpoint_url`` points at moto or
        LocalStack. ``options`` go to the constructor (ttl, keys, defaults, fallback...)."""
        source = source_for(
            ref,
            kind=kind,
            region=region,
            endpoint_url=endpoint_url,
            session=session,
            client=client,
            config=config,
        )
        return cls(source, **options)

    @classmethod
    def from_secrets_manager(cls, ref: str, **kwargs: Any) -> CredentialLoader:
        return cls.from_secret(ref, kind="secretsmanager", **kwargs)

    @classmethod
    def from_ssm(cls, ref: str, **kwargs: Any) -> CredentialLoader:
        return cls.from_secret(ref, kind="ssm", **kwargs)

    @classmethod
    def from_vault_kv(
        cls,
        path: str,
        *,
        mount: str = "secret",
        field: str | None = None,
        session: VaultSession | None = None,
        **options: Any,
    ) -> CredentialLoader:
        """A KV v2 secret in Vault or OpenBao (a slot secret or a plain one). Without ``session`` one is made from
        ``VAULT_ADDR`` and ``VAULT_TOKEN``. ``options`` go to the constructor (ttl, keys, defaults...)."""
        from rotator.client.vault import VaultKvSource, VaultSession

        return cls(VaultKvSource(session or VaultSession(), path, mount=mount, field=field), **options)

    @classmethod
    def from_vault_database(
        cls,
        role: str,
        *,
        static: bool,
        mount: str = "database",
        session: VaultSession | None = None,
        **options: Any,
    ) -> CredentialLoader:
        """The database secrets engine: ``static-creds/<role>`` (``static=True``) or ``creds/<role>`` (dynamic,
        leased: renewed, and re-issued before its max TTL). Vault gives only username and password: pass
        ``defaults={"host": ..., "port": ..., "dbname": ..., "engine": ...}``."""
        from rotator.client.vault import VaultDatabaseSource, VaultSession

        return cls(VaultDatabaseSource(session or VaultSession(), role, static=static, mount=mount), **options)

    @classmethod
    def from_database_url(
        cls, var: str = "DATABASE_URL", *, environ: Mapping[str, str] | None = None, **options: Any
    ) -> CredentialLoader:
        return cls(DatabaseUrlSource(var, environ=environ), **options)

    # ------------------------------------------------------------------ fetching (called under the cache lock)

    def _fetch_from(self, source: Source) -> DbCredentials:
        started = time.perf_counter()
        fallback = source is not self.source
        try:
            fetched = source.fetch()
            self._valid_for = fetched.valid_for
            if fetched.format == "url":
                creds = parse_database_url(fetched.text, what=source.label)
            else:
                creds = parse_secret(
                    fetched.text, keys=self.keys, defaults=self.defaults, version=fetched.version, what=source.label
                )
        except Exception as exc:
            self._audit(source, started, fallback=fallback, error=exc)
            raise
        arn = sanitize_secret_arn_for_logging(fetched.arn) if fetched.arn else source.label
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "db_credentials_fetched",
            source=source.kind,
            arn=arn,
            version=fetched.version,
            slot=creds.slot,
            duration_ms=duration_ms,
        )
        self._audit(source, started, fallback=fallback, arn=arn, version=fetched.version, slot=creds.slot)
        return creds

    def _audit(
        self,
        source: Source,
        started: float,
        *,
        fallback: bool,
        arn: str | None = None,
        version: str | None = None,
        slot: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        """The fetch's audit event (rotator.client.audit) and its metrics (when enabled); never raises."""
        try:
            audit.emit(
                audit.access_event(
                    success=error is None,
                    source=source.kind,
                    secret_arn=arn or source.label,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    version=version,
                    slot=slot,
                    error=error,
                    error_code=_error_code(error) if error is not None else None,
                    fallback=fallback,
                )
            )
            if self.metrics is not None:
                code = _error_code(error) if error is not None else None
                self.metrics.fetched(ok=error is None, throttled=code in THROTTLING_CODES)
        except Exception:  # auditing never breaks a fetch
            log.warning("db_credentials_audit_failed", error=type(error).__name__ if error else None)

    def _get_counted(self) -> DbCredentials:
        """:meth:`get` when metrics are on: counts cache hits and misses (installed per instance, so the
        uncounted hot path stays as it is)."""
        entry = self._entry
        if entry is not None and _cache._now() < entry[1]:
            self.metrics.hit()  # type: ignore[union-attr]
            return entry[0]
        self.metrics.miss()  # type: ignore[union-attr]
        return self._get_slow()

    def _load(self) -> DbCredentials:
        return self._fetch_from(self.source)

    def _lifetime_cap(self) -> float | None:
        valid_for, self._valid_for = self._valid_for, None
        return valid_for

    def _before_forced_refresh(self) -> None:
        discard = getattr(self.source, "discard", None)  # a leased credential: issue a new one, do not renew it
        if callable(discard):
            discard()

    def _has_fallback(self) -> bool:
        return self.fallback is not None

    def _load_fallback(self) -> DbCredentials:
        assert self.fallback is not None
        return self._fetch_from(self.fallback)

    def _on_failure(self, exc: BaseException, retry_in: float, serving: str) -> None:
        log.warning(
            "db_credentials_fetch_failed",
            source=self.source.kind,
            arn=self.source.label,
            error=type(exc).__name__,
            error_code=_error_code(exc),
            retry_in_s=round(retry_in, 3),
            serving=serving,
        )

    def _unavailable(self, exc: BaseException) -> Exception:
        where = f"cannot read database credentials from {self.source.kind} {self.source.label}"
        if isinstance(exc, CredentialError):  # our own messages name the fix and never carry a value
            return CredentialsUnavailable(f"{where} and none are cached: {exc}")
        code = _error_code(exc) or type(exc).__name__
        hint = getattr(self.source, "hint", None) or (
            "check the secret id, the region, the network and the IAM "
            "policy (secretsmanager:GetSecretValue or ssm:GetParameter, and kms:Decrypt)"
        )
        return CredentialsUnavailable(f"{where} ({code}) and none are cached: {hint}")

    # ------------------------------------------------------------------ logging in

    def _after_auth_failure(self, used: DbCredentials, exc: BaseException) -> DbCredentials | None:
        """The credentials to retry with, or None when a retry cannot help."""
        try:
            fresh = self.refresh_if_current(used)
        except CredentialError as refresh_error:
            log.warning("db_credentials_auth_failed", slot=used.slot, retry=False, reason=type(refresh_error).__name__)
            return None
        if fresh == used:
            log.warning("db_credentials_auth_failed", slot=used.slot, retry=False, reason="secret unchanged")
            return None
        log.info(
            "db_credentials_auth_failed",
            slot=used.slot,
            retry=True,
            new_slot=fresh.slot,
            error=type(exc).__name__,
        )
        return fresh

    def connect_with_credentials(self, factory: Callable[[DbCredentials], C]) -> tuple[C, DbCredentials]:
        """Like :meth:`connect`, and also return the credentials the connection was made with."""
        creds = self.get()
        try:
            return factory(creds), creds
        except Exception as exc:
            if not is_auth_failure(exc):
                raise
            fresh = self._after_auth_failure(creds, exc)
            if fresh is None:
                raise
        return factory(fresh), fresh

    def connect(self, factory: Callable[[DbCredentials], C]) -> C:
        """``factory(credentials)`` opens a connection. When it fails with an authentication error (MySQL 1045,
        SQLSTATE 28000 / 28P01, PgBouncer 08P01) the credentials are refreshed once, and if they changed, the
        factory is called again with them. Any other error, or a second failure, goes to the caller as it is."""
        return self.connect_with_credentials(factory)[0]

    async def connect_async(self, factory: Callable[[DbCredentials], Awaitable[C]]) -> C:
        """:meth:`connect` for asyncio drivers (asyncpg, aiomysql). A refresh is a blocking call of a few ms."""
        creds = self.get()
        try:
            return await factory(creds)
        except Exception as exc:
            if not is_auth_failure(exc):
                raise
            fresh = self._after_auth_failure(creds, exc)
            if fresh is None:
                raise
        return await factory(fresh)

    def creator(self, factory: Callable[[DbCredentials], C]) -> Callable[[], C]:
        """A zero-argument connection function (SQLAlchemy's ``creator=``, or any pool's)."""
        return lambda: self.connect(factory)
