"""ARNs: parse, tell Secrets Manager from SSM Parameter Store, and mask the account id for logs."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACCOUNT_RUN = re.compile(r"(?<!\d)\d{12}(?!\d)")


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def parse_arn(value: str) -> Arn | None:
    """``arn:partition:service:region:account:resource``, or None when ``value`` is not an ARN."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2] or not parts[5]:
        return None
    return Arn(parts[1], parts[2], parts[3], parts[4], parts[5])


def source_kind(ref: str) -> str | None:
    """``"secretsmanager"`` or ``"ssm"`` for an ARN of either (any partition), None for a plain name.

    Raises ValueError for an ARN of another service, or an SSM ARN that is not a parameter.
    """
    arn = parse_arn(ref)
    if arn is None:
        return None
    if arn.service == "secretsmanager" and arn.resource.startswith("secret:"):
        return "secretsmanager"
    if arn.service == "ssm" and arn.resource.startswith("parameter/"):
        return "ssm"
    raise ValueError(
        f"unsupported ARN {sanitize_secret_arn_for_logging(ref)}: "
        "use a Secrets Manager secret ARN or an SSM parameter ARN"
    )


def sanitize_secret_arn_for_logging(arn: str) -> str:
    """The ARN with its account id masked (seed 001). A plain name is returned as is.

    Anything that looks like an account id (12 digits) in a value that does not parse as an ARN is
    masked too, so a half-pasted ARN cannot leak one either.
    """
    parsed = parse_arn(arn)
    if parsed is None:
        return _ACCOUNT_RUN.sub("*" * 12, arn)
    account = "*" * 12 if parsed.account else ""
    return str(
        Arn(parsed.partition, parsed.service, parsed.region, account, _ACCOUNT_RUN.sub("*" * 12, parsed.resource))
    )
