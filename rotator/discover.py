"""Find a fleet's databases in Secrets Manager: slot secrets by tag (``rotator:managed=true``) or name prefix.

Each slot secret found is one database, named by the secret's name. Its settings are the fleet file's
``[defaults]`` under the secret's own ``rotator:<setting>`` tags (``rotator:admin-secret``,
``rotator:engine``, ``rotator:lock-name``, ``rotator:skip-admin`` = ``true`` ...): the same setting names as a
fleet table, with dashes. A secret that some database names as its admin secret is never taken for a slot
secret (prefix discovery lists both when they share a prefix).

Or SSM Parameter Store under a path (seed 000's ``/rcm/{env}/{org}/...``): every parameter below it carrying the
tag (``rotator:managed=true``, by default) is a slot secret on the ``ssm`` store, with the same per-parameter
``rotator:<setting>`` tags. The stores' ``.pending`` siblings and admin secrets named by a database are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rotator.aws import AwsClients
from rotator.errors import BadInput
from rotator.store.ssm import PENDING_SUFFIX

TAG_PREFIX = "rotator:"
MANAGED_TAG = "rotator:managed"


@dataclass(frozen=True)
class Found:
    name: str
    arn: str
    settings: dict[str, Any]  # from the secret's rotator:<setting> tags


def parse_tag(spec: str) -> tuple[str, str | None]:
    """``key=value`` or ``key`` (any value)."""
    key, sep, value = spec.partition("=")
    if not key.strip():
        raise BadInput(f"--discover-tag {spec!r}: give KEY=VALUE (e.g. rotator:managed=true) or KEY")
    return key.strip(), value.strip() if sep else None


def _list(aws: AwsClients, filters: list[dict[str, Any]]) -> Iterator[Mapping[str, Any]]:
    edge = aws.edge("secretsmanager")
    token: str | None = None
    while True:
        params: dict[str, Any] = {"Filters": filters, "MaxResults": 100}
        if token:
            params["NextToken"] = token
        page = edge.call(
            "ListSecrets",
            what="the secrets to discover",
            fix="grant secretsmanager:ListSecrets to the fleet's role",
            refused=BadInput,
            **params,
        )
        yield from page.get("SecretList", ())
        token = page.get("NextToken")
        if not token:
            return


def discover(
    aws: AwsClients, *, tag: str | None = None, prefix: str | None = None, defaults: Mapping[str, Any] | None = None
) -> list[Found]:
    """Slot secrets carrying ``tag`` (``key=value`` or ``key``) and/or whose name starts with ``prefix``."""
    if not tag and not prefix:
        raise BadInput("nothing to discover: pass --discover-tag KEY=VALUE or --discover-prefix PREFIX")
    filters: list[dict[str, Any]] = []
    key, value = parse_tag(tag) if tag else (None, None)
    if key is not None:
        filters.append({"Key": "tag-key", "Values": [key]})
    if prefix:
        filters.append({"Key": "name", "Values": [prefix]})
    found: list[Found] = []
    for secret in _list(aws, filters):
        name, arn = str(secret.get("Name", "")), str(secret.get("ARN", ""))
        tags = {str(t.get("Key")): str(t.get("Value", "")) for t in secret.get("Tags") or ()}
        # ListSecrets matches tag keys and values separately, and names by words: check exactly here.
        if prefix and not name.startswith(prefix):
            continue
        if key is not None and (key not in tags or (value is not None and tags[key] != value)):
            continue
        settings = {
            k.removeprefix(TAG_PREFIX): v
            for k, v in tags.items()
            if k.startswith(TAG_PREFIX) and k not in (MANAGED_TAG, key)
        }
        found.append(Found(name=name, arn=arn, settings={**settings, "slot_secret": arn}))
    return _without_admins(found, defaults)


def discover_ssm(
    aws: AwsClients, *, path: str, tag: str | None = None, defaults: Mapping[str, Any] | None = None
) -> list[Found]:
    """Slot secrets in SSM Parameter Store below ``path`` with ``tag`` (default ``rotator:managed=true``)."""
    if not path.startswith("/"):
        raise BadInput(f"--discover-ssm-path {path!r}: give an absolute path such as /rcm/prod/")
    key, value = parse_tag(tag or f"{MANAGED_TAG}=true")
    edge = aws.edge("ssm")
    filters: list[dict[str, Any]] = [{"Key": "Path", "Option": "Recursive", "Values": [path.rstrip("/") or "/"]}]
    filters.append({"Key": f"tag:{key}", **({"Values": [value]} if value is not None else {})})
    names: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"ParameterFilters": filters, "MaxResults": 50}
        if token:
            params["NextToken"] = token
        page = edge.call(
            "DescribeParameters",
            what=f"the parameters under {path}",
            fix="grant ssm:DescribeParameters to the fleet's role",
            refused=BadInput,
            **params,
        )
        names += [str(p["Name"]) for p in page.get("Parameters", ()) if not str(p["Name"]).endswith(PENDING_SUFFIX)]
        token = page.get("NextToken")
        if not token:
            break
    found = []
    for name in names:
        listed = edge.call(
            "ListTagsForResource",
            what=f"the tags of parameter {name}",
            fix="grant ssm:ListTagsForResource to the fleet's role",
            refused=BadInput,
            ResourceType="Parameter",
            ResourceId=name,
        )
        tags = {str(t.get("Key")): str(t.get("Value", "")) for t in listed.get("TagList") or ()}
        if key not in tags or (value is not None and tags[key] != value):
            continue  # DescribeParameters matched the tag's key and value separately
        settings = {
            k.removeprefix(TAG_PREFIX): v
            for k, v in tags.items()
            if k.startswith(TAG_PREFIX) and k not in (MANAGED_TAG, key)
        }
        found.append(Found(name=name, arn=name, settings={"store": "ssm", **settings, "slot_secret": name}))
    return _without_admins(found, defaults)


def _without_admins(found: list[Found], defaults: Mapping[str, Any] | None) -> list[Found]:
    admins = {str(f.settings.get("admin-secret") or f.settings.get("admin_secret") or "") for f in found}
    admins.add(str((defaults or {}).get("admin_secret") or (defaults or {}).get("admin-secret") or ""))
    admins.discard("")
    return sorted((f for f in found if f.name not in admins and f.arn not in admins), key=lambda f: f.name)
