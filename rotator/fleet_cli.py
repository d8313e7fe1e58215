"""``rotator fleet rotate|status``: the click side of :mod:`rotator.fleet`. Parses, builds members, prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rotator import log
from rotator.errors import BadInput, ExitCode, RotatorError

F = Callable[..., Any]


def _fleet_options(f: F) -> F:
    options = [
        click.option(
            "--file",
            "fleet_file",
            envvar="ROTATOR_FLEET_FILE",
            show_envvar=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="TOML: [defaults] plus one [table] per database, each with the settings `rotate` takes. "
            "With --discover-*, only its [defaults] are used.",
        ),
        click.option(
            "--discover-tag",
            envvar="ROTATOR_FLEET_DISCOVER_TAG",
            show_envvar=True,
            metavar="KEY[=VALUE]",
            help="Slot secrets in Secrets Manager with this tag, e.g. rotator:managed=true.",
        ),
        click.option(
            "--discover-prefix",
            envvar="ROTATOR_FLEET_DISCOVER_PREFIX",
            show_envvar=True,
            metavar="PREFIX",
            help="Slot secrets whose name starts with PREFIX (admin secrets named by a database are skipped).",
        ),
        click.option(
            "--discover-ssm-path",
            envvar="ROTATOR_FLEET_DISCOVER_SSM_PATH",
            show_envvar=True,
            metavar="PATH",
            help="Slot secrets in SSM Parameter Store below PATH (e.g. /rcm/prod/) tagged --discover-tag "
            "(default rotator:managed=true); they use --store ssm.",
        ),
        click.option(
            "--only",
            envvar="ROTATOR_FLEET_ONLY",
            show_envvar=True,
            metavar="NAME,...",
            help="Run only these databases of the fleet.",
        ),
        click.option(
            "--concurrency",
            envvar="ROTATOR_FLEET_CONCURRENCY",
            show_envvar=True,
            type=click.IntRange(1, 256),
            default=4,
            show_default=True,
            help="Databases rotated at once (threads).",
        ),
        click.option(
            "--region",
            envvar=["ROTATOR_REGION", "AWS_REGION"],
            show_envvar=True,
            help="AWS region for discovery, and every database's default.",
        ),
        click.option(
            "--aws-endpoint-url",
            envvar="ROTATOR_AWS_ENDPOINT_URL",
            show_envvar=True,
            metavar="URL",
            help="AWS endpoint (moto, LocalStack) for discovery, and every database's default.",
        ),
        click.option(
            "--report-file",
            envvar="ROTATOR_FLEET_REPORT_FILE",
            show_envvar=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="Also write the full JSON report (every database's rotation report) to this file.",
        ),
        click.option("--log-json", envvar="ROTATOR_LOG_JSON", show_envvar=True, is_flag=True, help="JSON log lines."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group()
def fleet() -> None:
    """Many databases in one run: each under its own lock, one summary, the worst exit code.

    Exit code order, most urgent first: 5 > 1 > 4 > 2 > 6 > 3 > 0 (see docs/running.md)."""


@fleet.command("rotate")
@_fleet_options
@click.option("--dry-run", is_flag=True, envvar="ROTATOR_DRY_RUN", help="Plan every database; change nothing.")
def rotate_cmd(dry_run: bool, **kw: Any) -> None:
    """Rotate every database of the fleet."""
    sys.exit(_run(kw, dry_run=dry_run))


@fleet.command("status")
@_fleet_options
def status_cmd(**kw: Any) -> None:
    """What every database of the fleet looks like and what `fleet rotate` would do (reads only); exit 6
    when a database's credentials are past --max-age."""
    sys.exit(_run(kw, dry_run=True, mode="status"))


@fleet.command("check")
@_fleet_options
def check_cmd(**kw: Any) -> None:
    """`rotator check` on every database of the fleet (changes nothing): exit 0, or 2 naming each failure."""
    sys.exit(_run(kw, dry_run=True, mode="check"))


def _notifier(members: list[Any]) -> Any:
    """One message per fleet run, to the notify_* targets of the first database's settings (put them in
    [defaults]); the members never notify on their own."""
    from rotator.aws import AwsClients
    from rotator.notify import Notifier

    first = next((m.settings for m in members if m.settings is not None), None)
    if first is None:
        return None
    aws = AwsClients(region=first.region, endpoint_url=first.aws_endpoint_url)
    return Notifier.from_settings(first, aws)


def build_members(kw: dict[str, Any], *, dry_run: bool) -> list[Any]:
    from rotator import fleet as fl

    defaults, tables = build_tables(kw)
    overrides = {"dry_run": True} if dry_run else {}
    return [fl.member(name, table, defaults, overrides) for name, table in tables.items()]


def build_tables(kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The fleet's [defaults] and one table per database, from --file and/or discovery, filtered by --only."""
    from rotator import fleet as fl

    defaults: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    if kw.get("fleet_file") is not None:
        defaults, tables = fl.load_file(kw["fleet_file"])
    for name in ("region", "aws_endpoint_url"):
        if kw.get(name) and name not in defaults and name.replace("_", "-") not in defaults:
            defaults[name] = kw[name]
    if kw.get("discover_tag") or kw.get("discover_prefix") or kw.get("discover_ssm_path"):
        from rotator.aws import AwsClients
        from rotator.discover import discover, discover_ssm

        if tables:
            raise BadInput("--file with --discover-*: the file may only hold [defaults]; drop its database tables")
        region = defaults.get("region")
        endpoint = defaults.get("aws_endpoint_url") or defaults.get("aws-endpoint-url")
        aws = AwsClients(region=region, endpoint_url=endpoint)
        if kw.get("discover_ssm_path"):
            if kw.get("discover_prefix"):
                raise BadInput("--discover-ssm-path with --discover-prefix: pick one store to discover in")
            found = discover_ssm(aws, path=kw["discover_ssm_path"], tag=kw.get("discover_tag"), defaults=defaults)
        else:
            found = discover(aws, tag=kw.get("discover_tag"), prefix=kw.get("discover_prefix"), defaults=defaults)
        tables = {f.name: f.settings for f in found}
    elif kw.get("fleet_file") is None:
        raise BadInput("no fleet: pass --file fleet.toml, or --discover-tag/--discover-prefix/--discover-ssm-path")
    if kw.get("only"):
        only = [x.strip() for x in str(kw["only"]).split(",") if x.strip()]
        missing = [x for x in only if x not in tables]
        if missing:
            raise BadInput(f"--only names databases the fleet does not have: {', '.join(missing)}")
        tables = {k: v for k, v in tables.items() if k in only}
    if not tables:
        raise BadInput("the fleet is empty: no database table in the file, or nothing discovered")
    return defaults, tables


def _run(kw: dict[str, Any], *, dry_run: bool, mode: str = "rotate") -> int:
    from rotator import fleet as fl

    log.configure(json=bool(kw.get("log_json")))
    context = click.get_current_context(silent=True)
    after_step = (context.find_root().obj or {}).get("after_step") if context is not None else None
    try:
        members = build_members(kw, dry_run=dry_run)
        runner = fl.Fleet(
            members,
            fl.rotation_runner(after_step=after_step, mode=mode),
            concurrency=kw["concurrency"],
            dry_run=dry_run,
            identify=fl.secret_identity(),
        )
        notifier = _notifier(members) if mode == "rotate" and not dry_run else None
    except RotatorError as exc:
        click.echo(f"rotator: {log.scrub(str(exc))}", err=True)
        return int(exc.exit_code)
    report = runner.run()
    if kw.get("report_file") is not None:
        try:
            kw["report_file"].write_text(log.scrub(json.dumps(report.as_dict(full=True), indent=1)) + "\n")
        except OSError as exc:
            click.echo(f"rotator: cannot write --report-file {kw['report_file']}: {exc.strerror}", err=True)
            return fl.worst([report.exit_code, int(ExitCode.FAILED)])
    if notifier is not None:
        notifier.notify(fl.summary(report))
    click.echo(log.scrub(fl.table(report)))
    # The fleet report is the last line on stdout, always JSON, scrubbed like every log line.
    click.echo(log.scrub(json.dumps(report.as_dict())))
    return report.exit_code


@fleet.command("export")
@_fleet_options
def export_cmd(**kw: Any) -> None:
    """Print the fleet as the JSON list the Step Functions fleet reads (deploy/cloudformation/fleet.yaml): one
    item per database, {"name", "environment": [{"Name": "ROTATOR_...", "Value": ...}]}, never a secret value."""
    from rotator import fleet as fl

    try:
        items = fl.export_items(build_tables(kw))
    except RotatorError as exc:
        click.echo(f"rotator: {log.scrub(str(exc))}", err=True)
        sys.exit(int(exc.exit_code))
    click.echo(json.dumps(items, indent=1))


@fleet.command("iam-policy")
@click.option("--region", envvar=["ROTATOR_REGION", "AWS_REGION"], required=True, help="AWS region.")
@click.option("--account-id", envvar="ROTATOR_ACCOUNT_ID", required=True, help="12-digit AWS account id.")
@click.option("--secret-prefix", envvar="ROTATOR_FLEET_SECRET_PREFIX", required=True, help="e.g. prod/")
@click.option("--kms-key-arn", envvar="ROTATOR_KMS_KEY_ARN", help="Customer-managed key of the secrets, if any.")
def iam_policy_cmd(region: str, account_id: str, secret_prefix: str, kms_key_arn: str | None) -> None:
    """Print the least-privilege policy of the fleet's rotation task (the same statements as fleet.yaml)."""
    from rotator import fleet_iam, iam

    try:
        policy = fleet_iam.fleet_task_policy(
            region=region, account_id=account_id, secret_prefix=secret_prefix, kms_key_arn=kms_key_arn
        )
    except RotatorError as exc:
        click.echo(f"rotator: {log.scrub(str(exc))}", err=True)
        sys.exit(int(exc.exit_code))
    click.echo(iam.to_json(policy))
