"""Build a Rotation's adapters from Settings: the only place that knows which concrete classes to use."""

from __future__ import annotations

from rotator import health
from rotator.aws import AwsClients
from rotator.config import Settings
from rotator.db import Engine, get_engine
from rotator.deploy import Deployer, make_deployer
from rotator.rotation import Rotation
from rotator.store.factory import open_store


def build_deployer(settings: Settings, aws: AwsClients) -> Deployer:
    if settings.deploy == "ecs":
        return make_deployer(
            "ecs",
            client=aws.client("ecs"),  # shared, so its calls are counted in the report
            cluster=settings.ecs_cluster,
            service=settings.ecs_service,
            timeout_s=settings.deploy_timeout,
        )
    if settings.deploy == "command":
        return make_deployer(
            "command",
            command=settings.deploy_command,
            timeout_s=settings.deploy_timeout,
            config_path=str(settings.config_path) if settings.config_path else None,
        )
    return make_deployer("none", grace_seconds=settings.grace_seconds)


def build_http_check(settings: Settings) -> health.HttpCheck | None:
    if not settings.health_url:
        return None
    return health.HttpCheck(
        settings.health_url,
        accepted_statuses=health.parse_statuses(settings.health_statuses),
        verify_tls=not settings.health_insecure,
        attempts=settings.health_attempts,
        interval_s=settings.health_interval,
    )


def build_rotation(settings: Settings) -> tuple[Rotation, AwsClients]:
    aws = AwsClients(region=settings.region, endpoint_url=settings.aws_endpoint_url)
    store = open_store(settings.store, aws=aws)

    def engine_for(name: str) -> Engine:
        return get_engine(name, mysql_user_host=settings.mysql_user_host, pg_owner_role=settings.pg_owner_role)

    counted_by_store = not settings.store.startswith("secretsmanager")
    rotation = Rotation(
        settings,
        store,
        engine_for,
        build_deployer(settings, aws),
        api_calls=lambda: aws.api_calls + (store.api_calls if counted_by_store else 0),
        http_check=build_http_check(settings),
    )
    return rotation, aws
