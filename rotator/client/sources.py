"""Where credentials come from: Secrets Manager, SSM Parameter Store, or a DATABASE_URL variable (Vault and
OpenBao: :mod:`rotator.client.vault`).

A source only fetches the raw text; parsing and caching are the loader's. boto3 is imported when the first
client is made, so a process that only uses DATABASE_URL never loads it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rotator.client._log import log
from rotator.client.arn import parse_arn, sanitize_secret_arn_for_logging, source_kind
from rotator.client.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

SourceKind = Literal["secretsmanager", "ssm", "env", "vault"]


@dataclass(frozen=True)
class Fetched:
    text: str
    format: Literal["json", "url"]
    arn: str | None = None
    version: str | None = None
    # Seconds until this value (or what it was read with: a Vault token, a lease) must be refreshed; the cache
    # refreshes no later than that, whatever its TTL. None: the cache's TTL alone decides.
    valid_for: float | None = None


class Source(Protocol):
    @property
    def kind(self) -> SourceKind: ...

    @property
    def label(self) -> str:
        """What to call it in logs and errors: a name, or an ARN with the account id masked."""
        ...

    def fetch(self) -> Fetched: ...


def _default_config() -> Config:
    from botocore.config import Config

    # Short timeouts and few retries: a fetch runs while a caller waits for a connection, and a failed
    # refresh is retried by the cache's own backoff anyway.
    return Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 3, "mode": "standard"},
        user_agent_extra="rotator-client",
    )


class _AwsSource:
    service: str

    def __init__(
        self,
        ref: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        client: Any = None,
        config: Config | None = None,
    ) -> None:
        if not ref:
            raise ConfigurationError(f"empty {self.service} secret id: pass a name or an ARN")
        arn = parse_arn(ref)
        self.ref = ref
        # A secret named by ARN lives in the ARN's region, whatever the default region is.
        self.region = (arn.region if arn is not None and arn.region else None) or region
        self.endpoint_url = endpoint_url
        self._session = session
        self._config = config
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def label(self) -> str:
        return sanitize_secret_arn_for_logging(self.ref)

    def client(self) -> Any:
        client = self._client
        if client is None:
            with self._client_lock:  # boto3 sessions are not thread-safe; clients are once made
                if self._client is None:
                    import boto3

                    session = self._session or boto3.session.Session()
                    config = _default_config()
                    if self._config is not None:
                        config = config.merge(self._config)
                    self._client = session.client(
                        self.service,  # type: ignore[call-overload]
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        config=config,
                    )
                client = self._client
        return client


class SecretsManagerSource(_AwsSource):
    """A Secrets Manager secret, by name or ARN (``AWSCURRENT`` unless another stage is asked for)."""

    service = "secretsmanager"

    def __init__(self, ref: str, *, version_stage: str = "AWSCURRENT", **kwargs: Any) -> None:
        super().__init__(ref, **kwargs)
        self.version_stage = version_stage

    @property
    def kind(self) -> SourceKind:
        return "secretsmanager"

    def fetch(self) -> Fetched:
        response = self.client().get_secret_value(SecretId=self.ref, VersionStage=self.version_stage)
        text = response.get("SecretString")
        if text is None:
            text = bytes(response["SecretBinary"]).decode("utf-8")
        return Fetched(text=text, format="json", arn=response.get("ARN"), version=response.get("VersionId"))


class SsmParameterSource(_AwsSource):
    """An SSM Parameter Store parameter (a SecureString), by name or ARN; decrypted on read.

    An ARN is passed to GetParameter as it is: that is the only way to read a parameter shared from another
    account (seed 000 cut the name out of the ARN, which loses the account and breaks on names without ``/``).
    """

    service = "ssm"

    @property
    def kind(self) -> SourceKind:
        return "ssm"

    def fetch(self) -> Fetched:
        parameter = self.client().get_parameter(Name=self.ref, WithDecryption=True)["Parameter"]
        if parameter.get("Type") != "SecureString":
            log.warning("db_credentials_parameter_not_encrypted", arn=self.label, fix="store it as a SecureString")
        version = parameter.get("Version")
        return Fetched(
            text=parameter["Value"],
            format="json",
            arn=parameter.get("ARN"),
            version=str(version) if version is not None else None,
        )


class DatabaseUrlSource:
    """A ``DATABASE_URL``-style environment variable, read at each fetch.

    ``warn=True`` (the explicit fallback in staging/production) logs a warning every time it is used.
    """

    def __init__(self, var: str = "DATABASE_URL", *, environ: Mapping[str, str] | None = None, warn: bool = False):
        self.var = var
        self._environ = environ
        self.warn = warn

    @property
    def kind(self) -> SourceKind:
        return "env"

    @property
    def label(self) -> str:
        return f"env:{self.var}"

    def fetch(self) -> Fetched:
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(self.var)
        if not value:
            raise ConfigurationError(f"{self.var} is not set: set it to postgresql://user:password@host:port/dbname")
        if self.warn:
            log.warning(
                "db_credentials_env_fallback",
                source="env",
                var=self.var,
                note="using the environment variable instead of the secret store; enabled explicitly",
            )
        return Fetched(text=value, format="url")


def source_for(
    ref: str,
    *,
    kind: Literal["secretsmanager", "ssm"] | None = None,
    **kwargs: Any,
) -> SecretsManagerSource | SsmParameterSource:
    """Dispatch on the ARN (seed 000): a Secrets Manager or an SSM ARN picks its service; a plain name is a
    Secrets Manager secret unless ``kind="ssm"``."""
    try:
        from_arn = source_kind(ref)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if from_arn is not None and kind is not None and from_arn != kind:
        raise ConfigurationError(f"{sanitize_secret_arn_for_logging(ref)} is a {from_arn} ARN, not {kind}")
    chosen = from_arn or kind or "secretsmanager"
    if chosen == "ssm":
        return SsmParameterSource(ref, **kwargs)
    return SecretsManagerSource(ref, **kwargs)
