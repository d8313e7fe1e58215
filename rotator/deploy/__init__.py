"""How the app picks up a new config: an ECS rolling deployment, the operator's shell command, or nothing
(apps that load their credentials with the client library)."""

from __future__ import annotations

from typing import Any

from rotator.deploy.base import Deployer, DeploymentState, DeployStatus
from rotator.errors import BadInput

__all__ = ["DeployStatus", "Deployer", "DeploymentState", "make_deployer"]

KINDS = ("ecs", "command", "none")


def make_deployer(kind: str, **settings: Any) -> Deployer:
    """Build a deployer from settings.

    - ``ecs``: ``cluster``, ``service``; optional ``client`` (a boto3 ECS client; else one is made from
      ``region`` and ``endpoint_url``), ``timeout_s``, ``poll_s``, ``log``.
    - ``command``: ``command``; optional ``timeout_s``, ``env``, ``config_path``, ``cwd``, ``log``.
    - ``none``: optional ``grace_seconds``, ``log``.
    """
    try:
        if kind == "ecs":
            from rotator.deploy.ecs import EcsDeployer

            client = settings.pop("client", None)
            region = settings.pop("region", None)
            endpoint_url = settings.pop("endpoint_url", None)
            if client is None:
                from rotator.aws import AwsClients

                # botocore retries off: the deployer's AWS edge owns every retry.
                client = AwsClients(region=region, endpoint_url=endpoint_url).client("ecs")
            return EcsDeployer(client, **settings)
        if kind == "command":
            from rotator.deploy.command import CommandDeployer

            return CommandDeployer(**settings)
        if kind == "none":
            from rotator.deploy.none import NoneDeployer

            return NoneDeployer(**settings)
    except TypeError as exc:
        raise BadInput(f"--deploy {kind}: bad settings ({exc})") from None
    raise BadInput(f"--deploy {kind!r} is not one of {', '.join(KINDS)}")
