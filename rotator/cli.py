"""click commands: parse flags (each with a ROTATOR_* env twin), build Settings, call the core, map errors
to exit codes. No rotation logic lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rotator import log
from rotator.config import Settings, parse_mode, parse_owner
from rotator.errors import RotatorError
from rotator.passwords import PasswordPolicy

F = Callable[..., Any]


def _opt(*names: str, env: str | list[str], **kw: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=env, show_envvar=True, **kw)


def _flag(name: str, env: str, help: str) -> Callable[[F], F]:
    return click.option(name, envvar=env, is_flag=True, default=False, show_envvar=True, help=help)


ROTATION_OPTIONS: list[Callable[[F], F]] = [
    _opt("--slot-secret", env="ROTATOR_SLOT_SECRET", help="Slot secret name or ARN (A/B slots)."),
    _opt("--admin-secret", env="ROTATOR_ADMIN_SECRET", help="Admin secret name or ARN."),
    _opt("--engine", env="ROTATOR_ENGINE", type=click.Choice(["mysql", "postgres"]), help="Else from the secret."),
    _opt("--region", env=["ROTATOR_REGION", "AWS_REGION"], help="AWS region."),
    _opt("--aws-endpoint-url", env="ROTATOR_AWS_ENDPOINT_URL", help="AWS endpoint (moto, LocalStack)."),
    _opt("--store", env="ROTATOR_STORE", default="secretsmanager", help="secretsmanager, or file:/dir for dev."),
    _opt("--template", env="ROTATOR_TEMPLATE", type=click.Path(path_type=Path), help="jinja2 config template."),
    _opt("--config-path", env="ROTATOR_CONFIG_PATH", type=click.Path(path_type=Path), help="Rendered config file."),
    _opt("--file-mode", env="ROTATOR_FILE_MODE", default="0644", help="Octal mode of the rendered config."),
    _opt("--file-owner", env="ROTATOR_FILE_OWNER", help="uid:gid of the rendered config (needs root or that uid)."),
    _flag("--fix-permissions", "ROTATOR_FIX_PERMISSIONS", "Set the config's mode and owner."),
    _opt("--deploy", env="ROTATOR_DEPLOY", type=click.Choice(["ecs", "command", "none"]), default="none"),
    _opt("--ecs-cluster", env="ROTATOR_ECS_CLUSTER"),
    _opt("--ecs-service", env="ROTATOR_ECS_SERVICE"),
    _opt("--deploy-command", env="ROTATOR_DEPLOY_COMMAND", help="Shell command that rolls the app."),
    _opt("--deploy-timeout", env="ROTATOR_DEPLOY_TIMEOUT", type=float, default=1800.0, help="Seconds."),
    _opt("--grace-seconds", env="ROTATOR_GRACE_SECONDS", type=float, default=0.0, help="--deploy none: wait."),
    _opt("--health-url", env="ROTATOR_HEALTH_URL", help="HTTP URL that must answer an accepted status."),
    _opt("--health-statuses", env="ROTATOR_HEALTH_STATUSES", default="200-399", help="e.g. 200-299,301"),
    _flag("--health-insecure", "ROTATOR_HEALTH_INSECURE", "Do not verify the health URL's TLS certificate."),
    _opt("--health-attempts", env="ROTATOR_HEALTH_ATTEMPTS", type=int, default=5),
    _opt("--health-interval", env="ROTATOR_HEALTH_INTERVAL", type=float, default=2.0, help="Seconds."),
    _opt(
        "--db-tls",
        env="ROTATOR_DB_TLS",
        type=click.Choice(["disable", "require", "verify-ca", "verify-full"]),
        default="require",
    ),
    _opt("--db-ca-bundle", env="ROTATOR_DB_CA_BUNDLE", type=click.Path(dir_okay=False)),
    _opt("--mysql-user-host", env="ROTATOR_MYSQL_USER_HOST", default="%", help="Host part of MySQL slot users."),
    _opt("--pg-owner-role", env="ROTATOR_PG_OWNER_ROLE", help="Shared NOLOGIN owner role (default <db>_owner)."),
    _opt("--password-length", env="ROTATOR_PASSWORD_LENGTH", type=int, default=32),
    _opt("--lock-name", env="ROTATOR_LOCK_NAME", help="Advisory lock name (default from host and database)."),
    _flag("--log-json", "ROTATOR_LOG_JSON", "JSON log lines."),
    _flag("--sync-db-users", "ROTATOR_SYNC_DB_USERS", "Heal the database users only; no flip."),
    _flag("--skip-admin", "ROTATOR_SKIP_ADMIN", "Do not rotate the admin password."),
]


def rotation_options(f: F) -> F:
    for option in reversed(ROTATION_OPTIONS):
        f = option(f)
    return f


def build_settings(kw: dict[str, Any], *, dry_run: bool) -> Settings:
    return Settings(
        slot_secret=kw["slot_secret"] or "",
        admin_secret=kw["admin_secret"] or "",
        engine=kw["engine"],
        region=kw["region"],
        aws_endpoint_url=kw["aws_endpoint_url"],
        store=kw["store"],
        template=kw["template"],
        config_path=kw["config_path"],
        file_mode=parse_mode(kw["file_mode"]),
        file_owner=parse_owner(kw["file_owner"]),
        fix_permissions=kw["fix_permissions"],
        deploy=kw["deploy"],
        ecs_cluster=kw["ecs_cluster"],
        ecs_service=kw["ecs_service"],
        deploy_command=kw["deploy_command"],
        deploy_timeout=kw["deploy_timeout"],
        grace_seconds=kw["grace_seconds"],
        health_url=kw["health_url"],
        health_statuses=kw["health_statuses"],
        health_insecure=kw["health_insecure"],
        health_attempts=kw["health_attempts"],
        health_interval=kw["health_interval"],
        db_tls=kw["db_tls"],
        db_ca_bundle=kw["db_ca_bundle"],
        mysql_user_host=kw["mysql_user_host"],
        pg_owner_role=kw["pg_owner_role"],
        password_policy=PasswordPolicy(length=kw["password_length"]),
        dry_run=dry_run,
        log_json=kw["log_json"],
        sync_db_users=kw["sync_db_users"],
        skip_admin=kw["skip_admin"],
        lock_name=kw["lock_name"],
    )


def _run(kw: dict[str, Any], *, dry_run: bool) -> int:
    log.configure(json=bool(kw.get("log_json")))
    try:
        settings = build_settings(kw, dry_run=dry_run)
        from rotator.wiring import build_rotation

        rotation, _ = build_rotation(settings)
    except RotatorError as exc:
        return _fail(exc)
    report = rotation.run()
    if report.exit_code:
        log.get_logger("rotator").error(
            "failed", outcome=report.outcome, exit_code=report.exit_code, error=report.error
        )
    # The report is the last line on stdout, always JSON, scrubbed like every log line.
    click.echo(log.scrub(json.dumps(report.as_dict())))
    return report.exit_code


def _fail(exc: RotatorError) -> int:
    click.echo(f"rotator: {log.scrub(str(exc))}", err=True)
    return int(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rotator")
def main() -> None:
    """Zero-downtime blue/green rotation of database credentials.

    Exit codes: 0 done or nothing to do; 1 failed (a re-run heals); 2 bad input (nothing changed);
    3 locked by another run (nothing changed); 4 failed and rolled back (the app is healthy on the old slot);
    5 failed and NOT restored, or needs a human.
    """


@main.command()
@rotation_options
@_flag("--dry-run", "ROTATOR_DRY_RUN", "Print the plan with reasons; change nothing.")
def rotate(dry_run: bool, **kw: Any) -> None:
    """Rotate: heal, flip the app to the standby slot, prove it healthy, rotate the old slot and the admin."""
    sys.exit(_run(kw, dry_run=dry_run))


@main.command()
@rotation_options
def status(**kw: Any) -> None:
    """Print what is observed and what `rotate` would do (reads only)."""
    sys.exit(_run(kw, dry_run=True))


def _split(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


@main.command(context_settings={"ignore_unknown_options": True})
@_opt("--stack-name", env="ROTATOR_STACK_NAME", help="CloudFormation stack whose outputs name what is missing.")
@_opt("--cluster", env="ROTATOR_LAUNCH_CLUSTER", help="ECS cluster (else output ClusterName).")
@_opt("--task-definition", env="ROTATOR_TASK_DEFINITION", help="Else output RotationTaskDefinitionArn.")
@_opt("--subnets", env="ROTATOR_SUBNETS", help="Comma-separated subnet ids (else output SubnetIds).")
@_opt("--security-groups", env="ROTATOR_SECURITY_GROUPS", help="Comma-separated ids (else SecurityGroupIds).")
@_opt("--log-group", env="ROTATOR_LOG_GROUP", help="CloudWatch log group (else output RotationLogGroup).")
@_opt("--container-name", env="ROTATOR_CONTAINER_NAME", default="rotator")
@click.option("--assign-public-ip/--no-assign-public-ip", default=None, help="Default: the stack's AssignPublicIp.")
@_opt("--region", env=["ROTATOR_REGION", "AWS_REGION"])
@_opt("--aws-endpoint-url", env="ROTATOR_AWS_ENDPOINT_URL")
@_opt("--timeout", env="ROTATOR_LAUNCH_TIMEOUT", type=float, default=3600.0, help="Seconds to wait for the task.")
@click.option("--no-wait", is_flag=True, help="Return once the task is started.")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def launch(overrides: tuple[str, ...], **kw: Any) -> None:
    """Run the rotation as a one-off ECS task, wait for it, print its logs, exit with its exit code.

    Extra arguments (--dry-run, --sync-db-users, --fix-permissions, --no-json) are passed to the task."""
    from rotator.aws import AwsClients
    from rotator.launch import launch as run_launch

    log.configure(json=False)
    aws = AwsClients(region=kw["region"], endpoint_url=kw["aws_endpoint_url"])
    try:
        code = run_launch(
            aws.client("ecs"),
            aws.client("logs"),
            aws.client("cloudformation"),
            stack_name=kw["stack_name"],
            cluster=kw["cluster"],
            task_definition=kw["task_definition"],
            subnets=_split(kw["subnets"]),
            security_groups=_split(kw["security_groups"]),
            assign_public_ip=kw["assign_public_ip"],
            log_group=kw["log_group"],
            container_name=kw["container_name"],
            overrides=list(overrides),
            wait=not kw["no_wait"],
            timeout_s=kw["timeout"],
            print_line=click.echo,
        )
    except RotatorError as exc:
        code = _fail(exc)
    sys.exit(code)


@main.command("iam-policy")
@_opt("--slot-secret", env="ROTATOR_SLOT_SECRET", required=True, help="Slot secret name or ARN.")
@_opt("--admin-secret", env="ROTATOR_ADMIN_SECRET", required=True, help="Admin secret name or ARN.")
@_opt("--region", env=["ROTATOR_REGION", "AWS_REGION"], required=True)
@_opt("--account-id", env="ROTATOR_ACCOUNT_ID", required=True, help="12-digit AWS account id.")
@_opt("--ecs-cluster", env="ROTATOR_ECS_CLUSTER", help="With --deploy ecs: the one cluster.")
@_opt("--ecs-service", env="ROTATOR_ECS_SERVICE", help="With --deploy ecs: the one service.")
@_opt("--kms-key-arn", env="ROTATOR_KMS_KEY_ARN", help="Customer-managed key of the secrets, if any.")
def iam_policy(**kw: Any) -> None:
    """Print the least-privilege IAM policy of the rotation task (the same statements as deploy/)."""
    from rotator import iam

    try:
        policy = iam.build_policy(
            region=kw["region"],
            account_id=kw["account_id"],
            slot_secret_arn=kw["slot_secret"],
            admin_secret_arn=kw["admin_secret"],
            cluster_name=kw["ecs_cluster"],
            service_name=kw["ecs_service"],
            kms_key_arn=kw["kms_key_arn"],
        )
    except RotatorError as exc:
        sys.exit(_fail(exc))
    click.echo(iam.to_json(policy))


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """A real rotation under load on this machine: embedded PostgreSQL, moto, an app behind a front.

    `rotator demo --help` lists its options (rotations, instances, --postgres-dsn, --mysql-dsn, ...)."""
    from rotator.demo.runner import main as demo_main

    sys.exit(demo_main(list(args)))


if __name__ == "__main__":
    main()
