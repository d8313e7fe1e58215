"""The one AWS error mapping: every failure class becomes one line naming the operation, the resource and the
fix, with a documented exit code; no traceback, no secret, account ids masked.

The botocore exceptions are built here as botocore builds them from an answer (no network is needed to map).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    UnknownServiceError,
)

from rotator import log
from rotator.aws import AwsClients, is_retryable, map_client_error
from rotator.errors import BadInput, DeployError, ExitCode, RotatorError, SecretNotFound, StoreError

SECRET = "hunter2-Secret-Value-9f3a"
ACCOUNT = "123456789012"
ARN = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/app/web"


def client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


# (case, exception, service, what, fix, refused, failed, class expected, words the line must hold)
CASES: list[
    tuple[
        str, BaseException, str, str, str | None, type[RotatorError], type[RotatorError], type[RotatorError], list[str]
    ]
] = [
    (
        "ecs-denied",
        client_error(
            "AccessDeniedException",
            f"User: arn:aws:sts::{ACCOUNT}:assumed-role/task/x is not authorized to perform: ecs:UpdateService "
            f"on resource: {ARN} {SECRET}",
            "UpdateService",
        ),
        "ecs",
        f"service {ARN}",
        None,
        DeployError,
        DeployError,
        DeployError,
        ["ECS UpdateService", "IAM permission ecs:UpdateService", "grant it", "****9012"],
    ),
    (
        "ecs-service-not-found",
        client_error("ServiceNotFoundException", "Service not found.", "UpdateService"),
        "ecs",
        "service app/web",
        "check --ecs-cluster, --ecs-service and the region (AWS_REGION)",
        DeployError,
        DeployError,
        DeployError,
        ["ECS UpdateService", "service app/web does not exist", "check --ecs-cluster"],
    ),
    (
        "ecs-throttled",
        client_error("ThrottlingException", "Rate exceeded", "DescribeServices"),
        "ecs",
        "service app/web",
        None,
        DeployError,
        DeployError,
        DeployError,
        ["ECS DescribeServices", "service app/web", "throttled after retries (5 attempts)", "try again later"],
    ),
    (
        "ecs-server-exception-without-status",
        ClientError({"Error": {"Code": "ServerException", "Message": "oops"}}, "DescribeServices"),
        "ecs",
        "service app/web",
        None,
        DeployError,
        DeployError,
        DeployError,
        ["ECS DescribeServices", "failed 5 times in a row (ServerException)", "try again later"],
    ),
    (
        "cfn-stack-missing",
        client_error("ValidationError", "Stack with id prod does not exist", "DescribeStacks"),
        "cloudformation",
        "stack 'prod'",
        "check --stack-name and --region",
        BadInput,
        RotatorError,
        BadInput,
        ["CloudFormation DescribeStacks", "stack 'prod' does not exist", "check --stack-name"],
    ),
    (
        "cfn-503",
        client_error("ServiceUnavailable", "Service Unavailable", "DescribeStacks", status=503),
        "cloudformation",
        "stack 'prod'",
        "check --stack-name and --region",
        BadInput,
        RotatorError,
        RotatorError,
        ["CloudFormation DescribeStacks", "stack 'prod'", "HTTP 503", "try again later"],
    ),
    (
        "logs-validation",
        client_error("InvalidParameterException", f"bad token {SECRET}\nsecond line", "GetLogEvents"),
        "logs",
        "log stream rotator/x in /g",
        "check --log-group",
        RotatorError,
        RotatorError,
        RotatorError,
        [
            "CloudWatch Logs GetLogEvents",
            "log stream rotator/x in /g",
            "refused (InvalidParameterException)",
            "check --log-group",
        ],
    ),
    (
        "sts-expired-token",
        client_error("ExpiredToken", "The security token included in the request is expired", "GetCallerIdentity"),
        "sts",
        "the caller",
        None,
        BadInput,
        RotatorError,
        BadInput,
        ["STS GetCallerIdentity", "the caller", "refresh or fix them"],
    ),
    (
        "secret-not-found",
        client_error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.", "GetSecretValue"),
        "secretsmanager",
        "secret prod/db",
        None,
        StoreError,
        StoreError,
        SecretNotFound,
        ["Secrets Manager GetSecretValue", "secret prod/db not found", "--slot-secret", "AWS_REGION"],
    ),
    (
        "secret-kms",
        client_error("DecryptionFailure", "denied by KMS", "GetSecretValue"),
        "secretsmanager",
        "secret prod/db",
        None,
        StoreError,
        StoreError,
        StoreError,
        ["secret prod/db", "kms:Decrypt"],
    ),
    (
        "connection",
        EndpointConnectionError(endpoint_url="https://ecs.us-east-1.amazonaws.com/"),
        "ecs",
        "task t",
        None,
        RotatorError,
        RotatorError,
        RotatorError,
        ["ECS RunTask", "task t", "cannot reach AWS", "AWS_ENDPOINT_URL"],
    ),
    (
        "read-timeout",
        ReadTimeoutError(endpoint_url="https://logs.us-east-1.amazonaws.com/"),
        "logs",
        "log stream s",
        None,
        RotatorError,
        RotatorError,
        RotatorError,
        ["CloudWatch Logs RunTask", "cannot reach AWS", "check the network"],
    ),
    (
        "no-credentials",
        NoCredentialsError(),
        "ecs",
        "service app/web",
        None,
        DeployError,
        DeployError,
        DeployError,
        ["ECS RunTask", "no usable AWS credentials", "AWS_PROFILE"],
    ),
    (
        "param-validation",
        ParamValidationError(report="Invalid length for parameter cluster, value: 0"),
        "ecs",
        "service /web",
        "check --ecs-cluster",
        DeployError,
        DeployError,
        DeployError,
        ["ECS RunTask", "invalid request", "check --ecs-cluster"],
    ),
    (
        "other-botocore",
        UnknownServiceError(service_name="nope", known_service_names="ecs"),
        "ecs",
        "service app/web",
        None,
        DeployError,
        DeployError,
        DeployError,
        ["ECS RunTask", "service app/web", "UnknownServiceError"],
    ),
    (
        "not-botocore",
        ValueError(f"boom {SECRET}"),
        "ecs",
        "service app/web",
        None,
        DeployError,
        DeployError,
        DeployError,
        ["ECS RunTask", "service app/web", "ValueError"],
    ),
]


@pytest.mark.parametrize(
    ("exc", "service", "what", "fix", "refused", "failed", "expected", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_failure_is_one_line_naming_the_operation_the_resource_and_the_fix(
    exc: BaseException,
    service: str,
    what: str,
    fix: str | None,
    refused: type[RotatorError],
    failed: type[RotatorError],
    expected: type[RotatorError],
    words: list[str],
) -> None:
    log.register_secret(SECRET)
    operation = exc.operation_name if isinstance(exc, ClientError) else "RunTask"
    error = map_client_error(
        exc, what, service=service, operation=operation, fix=fix, attempts=5, refused=refused, failed=failed
    )
    assert type(error) is expected
    assert error.exit_code in set(ExitCode)
    text = str(error)
    assert "\n" not in text and "Traceback" not in text and len(text) <= 400
    assert SECRET not in text and ACCOUNT not in text
    for word in words:
        assert word in text, text


def test_no_region_is_bad_input_when_a_client_is_made(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(BadInput) as raised:
        AwsClients().client("ecs")
    assert raised.value.exit_code == ExitCode.BAD_INPUT
    assert str(raised.value) == "no AWS region: pass --region or set AWS_REGION"


def test_an_unknown_profile_is_bad_input_when_a_client_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    clients = AwsClients(region="us-east-1")  # the CLI builds this outside its error handling: it must not raise
    with pytest.raises(BadInput, match=r"^the AWS configuration is unusable \(ProfileNotFound: .*no-such-profile"):
        clients.client("ecs")


def test_the_fix_survives_a_long_aws_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fix comes before AWS's own words, so that cutting a long line to length never cuts the fix."""
    # The process-wide secret registry is not this test's subject: an earlier test in the same run may have
    # registered a value made of x's, which would blank the whole message before it is cut.
    from rotator import log

    monkeypatch.setattr(log, "_secrets", set())
    monkeypatch.setattr(log, "_ordered", ())
    monkeypatch.setattr(log, "_by_prefix", {})
    exc = client_error("ClientException", "x" * 2000, "RunTask")
    text = str(map_client_error(exc, "task definition td", service="ecs", fix="check --task-definition"))
    assert "check --task-definition" in text and text.endswith("...")


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (client_error("ThrottlingException", "", "UpdateService"), True),
        (client_error("Throttling", "", "DescribeStacks"), True),
        (client_error("ServiceUnavailable", "", "DescribeStacks", status=503), True),
        (ClientError({"Error": {"Code": "ServerException", "Message": ""}}, "DescribeServices"), True),
        (EndpointConnectionError(endpoint_url="https://x"), True),
        (ConnectTimeoutError(endpoint_url="https://x"), True),
        (client_error("AccessDeniedException", "", "UpdateService"), False),
        (client_error("ClusterNotFoundException", "", "UpdateService"), False),
        (NoCredentialsError(), False),
    ],
)
def test_retryable_is_throttling_5xx_and_the_network_only(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry
