"""boto3 clients from one session, one retry policy, an API call counter, and AWS error translation.

Retry policy: **tenacity owns every retry.** botocore is configured with ``total_max_attempts=1`` (no
retries of its own), and :func:`aws_retrying` retries throttling, 5xx and connection errors with jittered
exponential backoff, a bounded number of times. One layer means the worst case is exactly
``max_attempts`` HTTP requests per logical call, never botocore's attempts times ours, and every retry is
logged.

Counting: :class:`AwsClients` counts the botocore ``before-call`` event, i.e. every API call botocore makes.
As botocore never retries, that is also every HTTP request sent; a call retried by tenacity counts once per
attempt (what the AWS quota sees). The stores count logical operations (retries excluded) separately.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from rotator.errors import BadInput, RotatorError, SecretNotFound, StoreError
from rotator.log import get_logger, scrub

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = get_logger(__name__)

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ThrottledException",
        "SlowDown",
    }
)
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
BAD_CREDENTIALS_CODES = frozenset(
    {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException", "ExpiredToken"}
)
NOT_FOUND_HINT = (
    "check the secret id (--slot-secret/ROTATOR_SLOT_SECRET or --admin-secret/ROTATOR_ADMIN_SECRET) "
    "and the region (AWS_REGION)"
)

_ARN_ACCOUNT = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)(\d{8})(\d{4})(?=:)")
_DENIED_ACTION = re.compile(r"perform:\s*([a-z0-9-]+:[A-Za-z0-9*]+)")
_MAX_MESSAGE = 300


def sanitize_arn(text: str) -> str:
    """Mask the account id in every ARN in ``text``, keeping its last four digits.

    ``arn:aws:secretsmanager:us-east-1:123456785678:secret:name-AbCdEf`` becomes
    ``arn:aws:secretsmanager:us-east-1:****5678:secret:name-AbCdEf``. Text without an ARN is unchanged.
    """
    return _ARN_ACCOUNT.sub(r"\1****\3", text)


def _one_line(text: str) -> str:
    cleaned = " ".join(sanitize_arn(scrub(text)).split())
    return cleaned if len(cleaned) <= _MAX_MESSAGE else cleaned[: _MAX_MESSAGE - 3] + "..."


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx and connection trouble: worth another try. Any other 4xx is final."""
    if isinstance(exc, ClientError):
        return error_code(exc) in THROTTLING_CODES or _http_status(exc) >= 500
    if isinstance(exc, SSLError):  # a certificate problem does not heal by waiting
        return False
    # A read timeout may hide a write that succeeded; every caller's writes are idempotent or re-checked.
    return isinstance(exc, BotoConnectionError | ConnectionClosedError | ReadTimeoutError)


def aws_retrying(
    *,
    max_attempts: int = 5,
    backoff_base: float = 0.5,
    backoff_max: float = 8.0,
    sleep: Callable[[float], None] | None = None,
    operation: str = "",
) -> Retrying:
    """The one retry policy for AWS calls: jittered exponential backoff, bounded, retryable errors only."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "aws.retry",
            operation=operation,
            attempt=state.attempt_number,
            error=error_code(exc) if exc is not None and error_code(exc) else type(exc).__name__,
            wait_s=round(state.upcoming_sleep, 3),
        )

    kwargs: dict[str, Any] = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Retrying(
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=wait_random_exponential(multiplier=backoff_base, max=backoff_max),
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=True,
        **kwargs,
    )


def map_client_error(exc: BaseException, what: str, *, service: str | None = None) -> RotatorError:
    """Translate a botocore error about ``what`` (e.g. "secret prod/db") into a one-line RotatorError.

    The message names the problem and the fix. It never carries a secret value: AWS messages are scrubbed
    of every registered secret and account ids in ARNs are masked.
    """
    what = sanitize_arn(what)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        op = exc.operation_name or "call"
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code == "ResourceNotFoundException":
            return SecretNotFound(_one_line(f"{what} not found: {NOT_FOUND_HINT}"))
        if code in ACCESS_DENIED_CODES:
            found = _DENIED_ACTION.search(message)
            action = found.group(1) if found else (f"{service}:{op}" if service else op)
            return StoreError(
                _one_line(f"access denied: missing IAM permission {action} on {what}: grant it to the rotator's role")
            )
        if code in BAD_CREDENTIALS_CODES:
            return StoreError(
                _one_line(f"AWS rejected the credentials ({code}) calling {op} on {what}: refresh or fix them")
            )
        if code == "DecryptionFailure":
            return StoreError(_one_line(f"cannot decrypt {what}: grant kms:Decrypt on the secret's KMS key"))
        if code == "InvalidRequestException" and "delet" in message.lower():
            return StoreError(
                _one_line(f"{what} is scheduled for deletion: restore it (aws secretsmanager restore-secret) first")
            )
        if code in THROTTLING_CODES:
            return StoreError(_one_line(f"{op} on {what} is still throttled after retries: try again later"))
        if _http_status(exc) >= 500:
            return StoreError(_one_line(f"AWS failed {op} on {what} ({code}) after retries: try again later"))
        return StoreError(_one_line(f"{op} on {what} failed: {code}: {message}"))
    if isinstance(exc, NoRegionError):
        return BadInput("no AWS region: pass --region or set AWS_REGION")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return StoreError(
            _one_line(f"no usable AWS credentials for {what}: use a task/instance role, AWS_PROFILE or AWS_* vars")
        )
    if isinstance(exc, BotoConnectionError | ConnectionClosedError | ReadTimeoutError):
        return StoreError(
            _one_line(
                f"cannot reach AWS for {what} ({type(exc).__name__}: {exc}): check the network, VPC endpoints, "
                "the region and AWS_ENDPOINT_URL"
            )
        )
    if isinstance(exc, BotoCoreError):
        return StoreError(_one_line(f"AWS call for {what} failed: {type(exc).__name__}: {exc}"))
    return StoreError(_one_line(f"AWS call for {what} failed: {type(exc).__name__}"))


class AwsClients:
    """boto3 clients from one session, one config, and one API call counter.

    ``endpoint_url=None`` leaves endpoint resolution to boto3, which honours ``AWS_ENDPOINT_URL`` (and the
    per-service ``AWS_ENDPOINT_URL_<SERVICE>``), so moto and LocalStack work from the environment too.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.session = session if session is not None else boto3.Session(region_name=region)
        self.region = region
        self.endpoint_url = endpoint_url
        self.config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},  # tenacity retries; see module docstring
        )
        self.calls: Counter[str] = Counter()  # "service.Operation" -> botocore calls
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @property
    def api_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def client(self, service: str) -> Any:
        """One cached client per service, counted."""
        with self._lock:
            existing = self._clients.get(service)
        if existing is not None:
            return existing
        created = self.session.client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=self.config,
        )
        created.meta.events.register("before-call", self._count)
        with self._lock:
            return self._clients.setdefault(service, created)

    def secretsmanager(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self.client("secretsmanager")
        return client

    def _count(self, model: Any = None, **_: Any) -> None:
        name = f"{model.service_model.service_name}.{model.name}" if model is not None else "unknown"
        with self._lock:
            self.calls[name] += 1
