"""ARN parsing, dispatch on the ARN (seed 000) and the account-id mask for logs (seed 001)."""

from __future__ import annotations

import pytest

from rotator.client import sanitize_secret_arn_for_logging, source_for
from rotator.client.arn import parse_arn, source_kind
from rotator.client.errors import ConfigurationError
from rotator.client.sources import SecretsManagerSource, SsmParameterSource

SM_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db-AbCdEf"
SSM_ARN = "arn:aws:ssm:us-east-2:123456789012:parameter/rcm/prod/db"


def test_parse_arn() -> None:
    arn = parse_arn(SM_ARN)
    assert arn is not None
    assert (arn.partition, arn.service, arn.region, arn.account) == (
        "aws",
        "secretsmanager",
        "eu-west-1",
        "123456789012",
    )
    assert arn.resource == "secret:prod/app/db-AbCdEf"
    assert str(arn) == SM_ARN
    assert parse_arn("prod/app/db") is None
    assert parse_arn("arn:aws:ssm") is None


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        (SM_ARN, "secretsmanager"),
        (SSM_ARN, "ssm"),
        ("arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/x", "ssm"),
        ("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x-AbCdEf", "secretsmanager"),
        ("prod/app/db", None),
        ("/rcm/prod/db", None),
    ],
)
def test_source_kind(ref: str, kind: str | None) -> None:
    assert source_kind(ref) == kind


@pytest.mark.parametrize(
    "ref",
    ["arn:aws:s3:::bucket/key", "arn:aws:ssm:us-east-1:123456789012:document/x"],
)
def test_other_arns_are_refused_with_the_account_masked(ref: str) -> None:
    with pytest.raises(ValueError, match="unsupported ARN") as info:
        source_kind(ref)
    assert "123456789012" not in str(info.value)
    with pytest.raises(ConfigurationError):
        source_for(ref)


def test_dispatch_builds_the_right_source_in_the_arns_region() -> None:
    sm = source_for(SM_ARN, region="us-east-1")
    assert isinstance(sm, SecretsManagerSource)
    assert sm.region == "eu-west-1"  # the ARN's region wins
    ssm = source_for(SSM_ARN)
    assert isinstance(ssm, SsmParameterSource)
    assert ssm.region == "us-east-2"
    assert ssm.ref == SSM_ARN  # passed whole: GetParameter takes ARNs, and needs them across accounts
    assert isinstance(source_for("prod/app/db"), SecretsManagerSource)
    named = source_for("/rcm/prod/db", kind="ssm", region="us-east-1")
    assert isinstance(named, SsmParameterSource)
    assert named.region == "us-east-1"
    with pytest.raises(ConfigurationError, match="is a ssm ARN"):
        source_for(SSM_ARN, kind="secretsmanager")


def test_sanitize_masks_the_account_id() -> None:
    assert sanitize_secret_arn_for_logging(SM_ARN) == (
        "arn:aws:secretsmanager:eu-west-1:************:secret:prod/app/db-AbCdEf"
    )
    assert sanitize_secret_arn_for_logging(SSM_ARN) == "arn:aws:ssm:us-east-2:************:parameter/rcm/prod/db"


def test_sanitize_leaves_names_alone_but_masks_stray_account_ids() -> None:
    assert sanitize_secret_arn_for_logging("prod/app/db") == "prod/app/db"
    assert "123456789012" not in sanitize_secret_arn_for_logging("arn:aws:secretsmanager:123456789012")
    assert sanitize_secret_arn_for_logging("arn:aws:s3:::bucket") == "arn:aws:s3:::bucket"
