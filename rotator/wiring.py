"""Build a Rotation's adapters from Settings: the only place that knows which concrete classes to use."""

from __future__ import annotations

from collections.abc import Callable

from rotator import audit, health
from rotator.apply import AfterStep
from rotator.aws import AwsClients
from rotator.config import Settings, check_paths
from rotator.db import Engine, get_engine
from rotator.deploy import Deployer, make_deployer
from rotator.deploy.base import DeployProgress
from rotator.render import ConfigFile
from rotator.rotation import Adapters, Rotation
from rotator.store.factory import open_store


def build_deployer(
    settings: Settings, aws: AwsClients, *, progress: Callable[[DeployProgress], None] | None = None
) -> Deployer:
    """``progress``: shown while an ECS rollout is followed (a terminal display; logs get deploy_progress)."""
    if settings.deploy == "ecs":
        return make_deployer(
            "ecs",
            client=aws.client("ecs"),  # shared, so its calls are counted in the report
            cluster=settings.ecs_cluster,
            service=settings.ecs_service,
            timeout_s=settings.deploy_timeout,
            progress=progress,
        )
    if settings.deploy == "command":
        return make_deployer(
            "command",
            command=settings.deploy_command,
            timeout_s=settings.deploy_timeout,
            config_path=str(settings.config_path) if settings.config_path else None,
        )
    return make_deployer("none", grace_seconds=settings.grace)


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


def build_rotation(
    settings: Settings,
    *,
    deployer: Deployer | None = None,
    after_step: AfterStep | None = None,
    aws: AwsClients | None = None,
    progress: Callable[[DeployProgress], None] | None = None,
) -> tuple[Rotation, AwsClients]:
    """``deployer`` replaces the one the settings name (tests); ``after_step`` is called after each step.
    ``aws``: clients to reuse (a fleet worker's, one rotation at a time); the report counts this run's calls."""
    if aws is None:
        aws = AwsClients(region=settings.region, endpoint_url=settings.aws_endpoint_url)
    clients, calls_before = aws, aws.api_calls
    store = open_store(settings.store, aws=aws)

    def engine_for(name: str) -> Engine:
        return get_engine(name, mysql_user_host=settings.mysql_user_host, pg_owner_role=settings.pg_owner_role)

    def config_for(engine: str) -> ConfigFile | None:
        if settings.template is None or settings.config_path is None:
            return None
        return ConfigFile(
            settings.template,
            settings.config_path,
            settings.file_mode,
            settings.file_owner,
            extra={"db_scheme": "mysql" if engine == "mysql" else "postgresql"},
        )

    adapters = Adapters(
        store=store,
        engine_for=engine_for,
        config_for=config_for,
        deployer=deployer if deployer is not None else build_deployer(settings, aws, progress=progress),
        http_check=build_http_check(settings),
        # AWS calls are counted once, by botocore's event in AwsClients (the store's own count is by operation).
        api_calls=lambda: clients.api_calls - calls_before,
        store_operations=lambda: store.api_calls,
        check_inputs=lambda: check_paths(settings),
        after_run=audit.after_run(settings, aws),
    )
    return Rotation(settings, adapters, after_step=after_step), aws
