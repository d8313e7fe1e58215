"""The one AWS edge: boto3 clients from one session, one retry policy, one error mapping, a call counter.

Every AWS call the rotator and ``rotator launch`` make goes through :meth:`AwsEdge.call` (or
:meth:`AwsClients.call`): the call is retried by :func:`aws_retrying` and a failure leaves as one
:class:`~rotator.errors.RotatorError` made by :func:`map_client_error`, never as a botocore exception.

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
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from rotator.errors import BadInput, RotatorError, SecretNotFound, StoreError
from rotator.log import get_logger, scrub
from rotator.metrics import THROTTLING_CODES

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = get_logger(__name__)

# Server-side failures by code, for answers that lack the HTTP status (ECS says ServerException).
SERVER_ERROR_CODES = frozenset(
    {
        "ServerException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceErrorException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
BAD_CREDENTIALS_CODES = frozenset(
    {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException", "ExpiredToken"}
)
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        "ServiceNotActiveException",
        "ParameterNotFound",
        "StackNotFoundException",
    }
)
NOT_FOUND_HINT = (
    "check the secret id (--slot-secret/ROTATOR_SLOT_SECRET or --admin-secret/ROTATOR_ADMIN_SECRET) "
    "and the region (AWS_REGION)"
)
SERVICE_TITLES = {
    "secretsmanager": "Secrets Manager",
    "ecs": "ECS",
    "logs": "CloudWatch Logs",
    "cloudformation": "CloudFormation",
    "sts": "STS",
    "ssm": "SSM",
}
DEFAULT_MAX_ATTEMPTS = 5
NO_REGION = "no AWS region: pass --region or set AWS_REGION"

_ARN_ACCOUNT = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)(\d{8})(\d{4})(?=:)")
_DENIED_ACTION = re.compile(r"perform:\s*([a-z0-9-]+:[A-Za-z0-9*]+)")
_MAX_MESSAGE = 400


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


def _is_server_error(exc: ClientError) -> bool:
    return _http_status(exc) >= 500 or error_code(exc) in SERVER_ERROR_CODES


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx and connection trouble: worth another try. Any other 4xx is final."""
    if isinstance(exc, ClientError):
        return error_code(exc) in THROTTLING_CODES or _is_server_error(exc)
    if isinstance(exc, SSLError):  # a certificate problem does not heal by waiting
        return False
    # A read timeout may hide a write that succeeded; every caller's writes are idempotent or re-checked.
    return isinstance(exc, BotoConnectionError | ConnectionClosedError | ReadTimeoutError)


def aws_retrying(
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff_base: float = 0.5,
    backoff_max: float = 8.0,
    sleep: Callable[[float], object] | None = None,
    operation: str = "",
    service: str = "",
) -> Retrying:
    """The one retry policy for AWS calls: jittered exponential backoff, bounded, retryable errors only."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "aws.retry",
            service=service,
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


def map_client_error(
    exc: BaseException,
    what: str,
    *,
    service: str | None = None,
    operation: str | None = None,
    fix: str | None = None,
    attempts: int | None = None,
    refused: type[RotatorError] = StoreError,
    failed: type[RotatorError] = StoreError,
) -> RotatorError:
    """Translate a botocore error about ``what`` (e.g. "secret prod/db") into a one-line RotatorError.

    The message names the operation, the resource and the fix. ``fix`` says how to correct a refused
    request (a name not found, an invalid parameter); ``refused`` is the class for a request that no retry
    can heal (not found, denied, invalid), ``failed`` for one that failed after ``attempts`` tries
    (throttled, 5xx, network). A Secrets Manager secret not found is :class:`SecretNotFound` (bad input).

    It never carries a secret value: AWS messages are scrubbed of every registered secret and account ids in
    ARNs are masked.
    """
    what = sanitize_arn(what)
    op = operation or (exc.operation_name if isinstance(exc, ClientError) else "") or "call"
    label = f"{SERVICE_TITLES.get(service or '', service or 'AWS')} {op}".strip()
    tries = f"{attempts} times in a row" if attempts and attempts > 1 else "after retries"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        secretsmanager = service in (None, "secretsmanager")
        not_found = code in NOT_FOUND_CODES or (code.startswith("Validation") and "does not exist" in message)
        if not_found and secretsmanager:
            return SecretNotFound(_one_line(f"{label}: {what} not found ({code}): {fix or NOT_FOUND_HINT}"))
        if not_found:
            hint = fix or "check the name and the region (AWS_REGION)"
            said = f"; AWS said: {message}" if message else ""
            return refused(_one_line(f"{label}: {what} does not exist ({code}): {hint}{said}"))
        if code in ACCESS_DENIED_CODES:
            found = _DENIED_ACTION.search(message)
            action = found.group(1) if found else (f"{service}:{op}" if service else op)
            return refused(
                _one_line(
                    f"access denied: {label} on {what} needs IAM permission {action}: grant it to the role "
                    "making the call (rotator iam-policy prints the least-privilege policy)"
                )
            )
        if code in BAD_CREDENTIALS_CODES:
            return refused(
                _one_line(f"AWS rejected the credentials ({code}) calling {label} on {what}: refresh or fix them")
            )
        if code == "DecryptionFailure":
            return refused(_one_line(f"cannot decrypt {what}: grant kms:Decrypt on the secret's KMS key"))
        if code == "InvalidRequestException" and "delet" in message.lower():
            return refused(
                _one_line(f"{what} is scheduled for deletion: restore it (aws secretsmanager restore-secret) first")
            )
        if code in THROTTLING_CODES:
            counted = f" ({attempts} attempts)" if attempts and attempts > 1 else ""
            return failed(_one_line(f"{label} on {what} is still throttled after retries{counted}: try again later"))
        if _is_server_error(exc):
            status = f", HTTP {_http_status(exc)}" if _http_status(exc) else ""
            return failed(
                _one_line(f"{label} on {what} failed {tries} ({code}{status}): AWS is failing; try again later")
            )
        hint = f": {fix}" if fix else ""
        return refused(_one_line(f"{label} on {what} refused ({code}){hint}; AWS said: {message}"))
    if isinstance(exc, NoRegionError):
        return BadInput(NO_REGION)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return refused(
            _one_line(
                f"no usable AWS credentials for {label} on {what}: use a task/instance role, AWS_PROFILE or AWS_* vars"
            )
        )
    if isinstance(exc, BotoConnectionError | ConnectionClosedError | ReadTimeoutError):
        return failed(
            _one_line(
                f"cannot reach AWS for {label} on {what} ({tries}): check the network, VPC endpoints, the region "
                f"and AWS_ENDPOINT_URL; {type(exc).__name__}: {exc}"
            )
        )
    if isinstance(exc, ParamValidationError):
        hint = f": {fix}" if fix else ""
        return refused(_one_line(f"{label} on {what}: invalid request{hint}; botocore said: {exc}"))
    if isinstance(exc, BotoCoreError):
        return failed(_one_line(f"AWS call {label} on {what} failed: {type(exc).__name__}: {exc}"))
    return failed(_one_line(f"AWS call {label} on {what} failed: {type(exc).__name__}"))


def snake_case(operation: str) -> str:
    """``UpdateSecretVersionStage`` -> ``update_secret_version_stage`` (the boto3 method name)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


class AwsEdge:
    """One AWS client behind the one retry policy and the one error mapping.

    ``call("UpdateService", what="ECS service c/s", cluster="c", service="s")`` calls the client's
    ``update_service``, retried by :func:`aws_retrying`; any botocore failure leaves as the RotatorError of
    :func:`map_client_error` (``refused``/``failed`` classes and ``fix`` as given here or per call), except
    error codes the caller ``allow``s, which are re-raised as the ClientError for the caller to handle.
    The client may be anything with boto3's method names (tests wrap real moto clients).
    """

    def __init__(
        self,
        client: Any,
        service: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], object] | None = None,
        refused: type[RotatorError] = StoreError,
        failed: type[RotatorError] = StoreError,
    ) -> None:
        self.client = client
        self.service = service
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.refused = refused
        self.failed = failed

    @classmethod
    def of(cls, client_or_edge: Any, service: str, **settings: Any) -> AwsEdge:
        """``client_or_edge`` itself when it is an edge already, else an edge over the client."""
        if isinstance(client_or_edge, AwsEdge):
            return client_or_edge
        return cls(client_or_edge, service, **settings)

    def call(
        self,
        operation: str,
        /,
        *,
        what: str,
        allow: Collection[str] = (),
        fix: str | None = None,
        refused: type[RotatorError] | None = None,
        failed: type[RotatorError] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        method = getattr(self.client, snake_case(operation))
        attempts = 0

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            response: dict[str, Any] = method(**params)
            return response

        retrying = aws_retrying(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            sleep=self.sleep,
            operation=operation,
            service=self.service,
        )
        try:
            return retrying(attempt)
        except ClientError as exc:
            if error_code(exc) in allow:
                raise
            raise self._map(exc, operation, what, fix, attempts, refused, failed) from None
        except BotoCoreError as exc:
            raise self._map(exc, operation, what, fix, attempts, refused, failed) from None

    def _map(
        self,
        exc: BaseException,
        operation: str,
        what: str,
        fix: str | None,
        attempts: int,
        refused: type[RotatorError] | None,
        failed: type[RotatorError] | None,
    ) -> RotatorError:
        return map_client_error(
            exc,
            what,
            service=self.service,
            operation=operation,
            fix=fix,
            attempts=attempts,
            refused=refused or self.refused,
            failed=failed or self.failed,
        )


class AwsClients:
    """botocore clients (what boto3's are) from one session, one config, and one API call counter. boto3 itself
    is not imported: it adds nothing the rotator uses to these clients, and costs a command ~70 ms of imports.

    ``endpoint_url=None`` leaves endpoint resolution to boto3, which honours ``AWS_ENDPOINT_URL`` (and the
    per-service ``AWS_ENDPOINT_URL_<SERVICE>``), so moto and LocalStack work from the environment too.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: botocore.session.Session | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self._session = session
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

    @property
    def session(self) -> botocore.session.Session:
        """Made on first use, so that a bad AWS_PROFILE is a BadInput from :meth:`client`, not a crash here."""
        if self._session is None:
            try:
                self._session = botocore.session.get_session()
            except BotoCoreError as exc:
                raise _setup_error(exc) from None
        return self._session

    def client(self, service: str) -> Any:
        """One cached client per service, counted. No region anywhere is bad input."""
        with self._lock:
            existing = self._clients.get(service)
        if existing is not None:
            return existing
        try:
            created = self.session.create_client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=self.config,
            )
        except BotoCoreError as exc:
            raise _setup_error(exc) from None
        created.meta.events.register("before-call", self._count)
        with self._lock:
            return self._clients.setdefault(service, created)

    def edge(self, service: str, **settings: Any) -> AwsEdge:
        """The service's client behind the one retry policy and error mapping (settings: see AwsEdge)."""
        return AwsEdge(self.client(service), service, **settings)

    def call(self, service: str, operation: str, /, *, what: str, **kwargs: Any) -> dict[str, Any]:
        """One AWS call through the edge: ``call("sts", "GetCallerIdentity", what="the caller")``."""
        return self.edge(service).call(operation, what=what, **kwargs)

    def secretsmanager(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self.client("secretsmanager")
        return client

    def _count(self, model: Any = None, **_: Any) -> None:
        name = f"{model.service_model.service_name}.{model.name}" if model is not None else "unknown"
        with self._lock:
            self.calls[name] += 1


def _setup_error(exc: BotoCoreError) -> BadInput:
    """A session or client that cannot be made: the AWS configuration is wrong (region, profile, config file)."""
    if isinstance(exc, NoRegionError):
        return BadInput(NO_REGION)
    return BadInput(
        _one_line(f"the AWS configuration is unusable ({type(exc).__name__}: {exc}): fix AWS_PROFILE or ~/.aws/config")
    )
