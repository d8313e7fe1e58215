"""click commands: parse flags (each with a ROTATOR_* env twin), build Settings, call the core, map errors
to exit codes. No rotation logic lives here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from rotator import age, log, notify, present
from rotator.config import CLI_ONLY, OUTPUT, SETTINGS, Settings, Spec, settings_from_options
from rotator.errors import BadInput, RotatorError
from rotator.fleet_cli import fleet

F = Callable[..., Any]

_SPECS = {spec.name: spec for spec in (*SETTINGS, *CLI_ONLY)}


def _opt(*names: str, env: str | list[str], **kw: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=env, show_envvar=True, **kw)


def setting_option(name: str, **overrides: Any) -> Callable[[F], F]:
    """The click option of a declared setting: its flag, env twins, help and default, as text. Values are
    parsed by the declaration, not by click, so a bad one is one BadInput line naming the flag."""
    return _option(_SPECS[name], **overrides)


def _option(spec: Spec, **overrides: Any) -> Callable[[F], F]:
    kw: dict[str, Any] = {"envvar": list(spec.envvars), "show_envvar": True, "help": spec.help}
    if spec.is_flag:
        kw.update(is_flag=True, default=False)
    else:
        kw.update(default=spec.default_text, show_default=spec.default_text is not None, metavar=spec.metavar)
    kw.update(overrides)
    return click.option(spec.flag, spec.name, **kw)


def rotation_options(f: F, *, exclude: tuple[str, ...] = ()) -> F:
    for spec in reversed((*SETTINGS, *CLI_ONLY)):
        if spec.name not in exclude:
            f = _option(spec)(f)
    return f


def build_settings(kw: dict[str, Any], *, dry_run: bool) -> Settings:
    """Settings from the options of rotate/status/check (``log_json`` and ``output`` are the CLI's own)."""
    options = {k: v for k, v in kw.items() if k not in {spec.name for spec in CLI_ONLY}}
    return settings_from_options({**options, "dry_run": dry_run})


def _run(kw: dict[str, Any], *, dry_run: bool, status: bool = False) -> int:
    log.configure(json=bool(kw.get("log_json")))
    try:
        as_table = _wants_table(kw)
        settings = build_settings(kw, dry_run=dry_run)
        from rotator.wiring import build_rotation

        # Tests inject an after-step callback through click's context object (the crash-safety test's SIGKILL).
        context = click.get_current_context(silent=True)
        after_step = (context.find_root().obj or {}).get("after_step") if context is not None else None
        # On a terminal, a long ECS rollout shows its progress (stderr); logs get deploy_progress events.
        progress = None if kw.get("log_json") or not sys.stderr.isatty() else present.TerminalProgress(sys.stderr)
        rotation, aws = build_rotation(settings, after_step=after_step, progress=progress)
    except RotatorError as exc:
        return _fail(exc)
    report = rotation.run()
    if status:
        age.apply_max_age(report)
    elif not dry_run:
        notify.notify_run(settings, report, aws)
    if report.exit_code:
        log.get_logger("rotator").error(
            "failed", outcome=report.outcome, exit_code=report.exit_code, error=report.error
        )
    # The report goes to stdout, scrubbed like every log line: JSON (the last line) for scripts and ECS, a
    # readable summary and plan on a terminal (--output).
    _show(as_table, report.as_dict(), present.report_text)
    return report.exit_code


def _wants_table(kw: dict[str, Any]) -> bool:
    return present.wants_table(OUTPUT.parse(kw.get(OUTPUT.name) or "auto", OUTPUT.flag), sys.stdout)


def _show(as_table: bool, report: dict[str, Any], as_text: Callable[[dict[str, Any]], str]) -> None:
    if as_table:
        click.echo(log.scrub(as_text(report)))
    else:
        click.echo(log.scrub(json.dumps(report)))


def _check(kw: dict[str, Any]) -> int:
    log.configure(json=bool(kw.get("log_json")))
    try:
        as_table = _wants_table(kw)
        settings = build_settings(kw, dry_run=True)
        from rotator.check import run_checks
        from rotator.wiring import build_rotation

        rotation, aws = build_rotation(settings)
    except RotatorError as exc:
        return _fail(exc)
    report = run_checks(rotation, aws)
    _show(as_table, report.as_dict(), present.check_text)
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
    5 failed and NOT restored, or needs a human; 6 (status) a credential is older than --max-age.
    """


@main.command()
@rotation_options
def rotate(dry_run: bool, **kw: Any) -> None:
    """Rotate: heal, flip the app to the standby slot, prove it healthy, rotate the old slot and the admin."""
    sys.exit(_run(kw, dry_run=dry_run))


@main.command()
@functools.partial(rotation_options, exclude=("dry_run", "notify_topic", "notify_webhook", "notify_on"))
def status(**kw: Any) -> None:
    """Print what is observed, each credential's age, and what `rotate` would do (reads only).

    Exits 6 when a credential is older than --max-age (or of unknown age)."""
    sys.exit(_run(kw, dry_run=True, status=True))


@main.command()
@functools.partial(rotation_options, exclude=("dry_run",))
def check(**kw: Any) -> None:
    """Pre-flight from here, changing nothing: secrets, TLS, admin rights, names, template, config path, ECS
    service, health URL. Exit 0 when every check passes, 2 when one fails (each row names the fix)."""
    sys.exit(_check(kw))


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
@setting_option("region")
@setting_option("aws_endpoint_url")
@_opt("--timeout", env="ROTATOR_LAUNCH_TIMEOUT", type=float, default=3600.0, help="Seconds to wait for the task.")
@click.option("--no-wait", is_flag=True, help="Return once the task is started.")
@click.option(
    "--check", "preflight", is_flag=True, help="Run `rotator check` in the task (its network path), not rotate."
)
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
            subcommand="check" if kw["preflight"] else "rotate",
            wait=not kw["no_wait"],
            timeout_s=kw["timeout"],
            print_line=click.echo,
        )
    except RotatorError as exc:
        code = _fail(exc)
    sys.exit(code)


@main.command("iam-policy")
@setting_option("slot_secret", required=True)
@setting_option("admin_secret", required=True)
@setting_option("live_secret")
@setting_option("region", required=True)
@_opt("--account-id", env="ROTATOR_ACCOUNT_ID", required=True, help="12-digit AWS account id.")
@setting_option("ecs_cluster")
@setting_option("ecs_service")
@_opt("--kms-key-arn", env="ROTATOR_KMS_KEY_ARN", help="Customer-managed key of the secrets, if any.")
@setting_option("notify_topic")
@setting_option("store")
def iam_policy(**kw: Any) -> None:
    """Print the least-privilege IAM policy of the rotation task (the same statements as deploy/)."""
    from rotator import iam

    store = kw["store"] or "secretsmanager"
    kms_key = kw["kms_key_arn"]
    if store.startswith("ssm:") and store.removeprefix("ssm:").startswith("arn:") and not kms_key:
        kms_key = store.removeprefix("ssm:")  # --store ssm:<key ARN>: the key to grant
    try:
        policy = iam.build_policy(
            store="ssm" if store.startswith("ssm") else store,
            region=kw["region"],
            account_id=kw["account_id"],
            slot_secret_arn=kw["slot_secret"],
            admin_secret_arn=kw["admin_secret"],
            live_secret_arn=kw["live_secret"],
            cluster_name=kw["ecs_cluster"],
            service_name=kw["ecs_service"],
            kms_key_arn=kms_key,
            notify_topic_arn=kw["notify_topic"],
        )
    except RotatorError as exc:
        sys.exit(_fail(exc))
    click.echo(iam.to_json(policy))


@main.command("vault-policy")
@setting_option("slot_secret", required=True)
@setting_option("admin_secret", required=True)
@setting_option("live_secret")
@setting_option("store", default="vault")
def vault_policy(**kw: Any) -> None:
    """Print the least-privilege Vault/OpenBao policy (HCL) of the rotation task for --store vault[:MOUNT]."""
    from rotator.store.vault import DEFAULT_MOUNT, policy_hcl

    store = kw["store"] or "vault"
    if store != "vault" and not store.startswith("vault:"):
        sys.exit(_fail(BadInput(f"vault-policy is for --store vault[:MOUNT], not {store}")))
    try:
        mount = store.removeprefix("vault").removeprefix(":") or DEFAULT_MOUNT
        secrets = (kw["slot_secret"], kw["admin_secret"], *((kw["live_secret"],) if kw["live_secret"] else ()))
        click.echo(policy_hcl(mount, *secrets), nl=False)
    except RotatorError as exc:
        sys.exit(_fail(exc))


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """A real rotation under load on this machine: embedded PostgreSQL, moto, an app behind a front.

    `rotator demo --help` lists its options (rotations, instances, --postgres-dsn, --mysql-dsn, ...)."""
    from rotator.demo.runner import main as demo_main

    sys.exit(demo_main(list(args)))


main.add_command(fleet)

if __name__ == "__main__":
    # `python -m rotator.cli`: run the module proper. rotator.adopt_cli imports rotator.cli, which this __main__
    # copy is not: importing adopt_cli from here would load rotator.cli a second time and find adopt_cli half-made.
    from rotator.cli import main as _main

    _main()
else:
    from rotator.adopt_cli import adopt  # (it builds its options from this module's setting_option)

    main.add_command(adopt)
