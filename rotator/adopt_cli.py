"""``rotator adopt``: the click side of :mod:`rotator.adopt`. Parses, builds the settings, prints the report."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from rotator import log
from rotator.cli import setting_option
from rotator.config import LOG_JSON, settings_from_options
from rotator.errors import BadInput, RotatorError
from rotator.secrets import Credentials

if TYPE_CHECKING:  # the adoption itself is imported when `adopt` runs
    from rotator.adopt import AdoptReport, AdoptSettings, AfterStatement

PASSWORD_ENV = "ROTATOR_EXISTING_PASSWORD"  # noqa: S105  (a variable name, not a password)
F = Callable[..., Any]
_SHARED = (
    "slot_secret",
    "admin_secret",
    "engine",
    "region",
    "aws_endpoint_url",
    "store",
    "db_tls",
    "db_ca_bundle",
    "mysql_user_host",
    "pg_owner_role",
    "password_length",
    "dry_run",
)


def _existing_from_flags(kw: dict[str, Any]) -> Credentials | None:
    given = {k: kw[k] for k in ("existing_username", "existing_host", "existing_port", "existing_dbname") if kw[k]}
    if not given:
        return None
    if len(given) < 4:
        raise BadInput(
            "--existing-username, --existing-host, --existing-port and --existing-dbname go together "
            f"(the password in {PASSWORD_ENV}): pass all four, or --existing-secret"
        )
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise BadInput(f"the existing user's password goes in the environment variable {PASSWORD_ENV} (never a flag)")
    return Credentials.parse(
        {
            "username": kw["existing_username"],
            "password": password,
            "host": kw["existing_host"],
            "port": kw["existing_port"],
            "dbname": kw["existing_dbname"],
        },
        "--existing-*",
    )


def build(kw: dict[str, Any]) -> tuple[AdoptSettings, Any]:
    settings = settings_from_options({k: kw[k] for k in _SHARED})
    existing = _existing_from_flags(kw)
    if bool(existing) == bool(kw["existing_secret"]):
        raise BadInput("name the existing user once: --existing-secret, or the --existing-* flags")
    from rotator.adopt import AdoptSettings
    from rotator.store.factory import open_store

    store = open_store(settings.store, region=settings.region, endpoint_url=settings.aws_endpoint_url)
    return (
        AdoptSettings(
            slot_secret=settings.slot_secret,
            admin_secret=settings.admin_secret,
            existing_secret=kw["existing_secret"],
            existing=existing,
            slot_b_username=kw["slot_b_username"],
            engine=settings.engine,
            dry_run=settings.dry_run,
            tls=settings.tls,
            mysql_user_host=settings.mysql_user_host,
            pg_owner_role=settings.pg_owner_role,
            password_policy=settings.password_policy,
        ),
        store,
    )


def _opt(*names: str, env: str, **kw: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=env, show_envvar=True, **kw)


def _adopt(**kw: Any) -> None:
    """Turn the app's existing database user into slot A of a new slot secret, and create slot B with the same
    rights (PostgreSQL: ownership moves to the shared owner role). Idempotent; --dry-run shows the statements."""
    log.configure(json=bool(kw.get("log_json")))
    sys.exit(run(kw))


def _command() -> click.Command:
    options: list[Callable[[F], F]] = [
        _opt(
            "--existing-secret",
            env="ROTATOR_EXISTING_SECRET",
            metavar="NAME|ARN",
            help="The app's existing single-user secret: seed 002 {username,password,host,port,database} or RDS "
            "{engine,host,port,username,password,dbname}.",
        ),
        _opt(
            "--existing-username",
            env="ROTATOR_EXISTING_USERNAME",
            help=f"Instead of --existing-secret (with the next three; the password in {PASSWORD_ENV}).",
        ),
        _opt("--existing-host", env="ROTATOR_EXISTING_HOST", help="The existing user's database host."),
        _opt("--existing-port", env="ROTATOR_EXISTING_PORT", help="The existing user's database port."),
        _opt("--existing-dbname", env="ROTATOR_EXISTING_DBNAME", help="The existing user's database."),
        _opt(
            "--slot-b-username",
            env="ROTATOR_SLOT_B_USERNAME",
            help="Slot B's new user (default: the slot secret's, else <existing user>_b).",
        ),
        setting_option("slot_secret", help="The slot secret to create (or continue, when it names the same users)."),
        *(setting_option(name) for name in _SHARED[1:-1]),
        setting_option("dry_run", help="Print every statement adopt would run; run none, write no secret."),
        setting_option(LOG_JSON.name),
    ]
    f: F = _adopt
    for option in reversed(options):
        f = option(f)
    return click.command(name="adopt")(f)


def run(kw: dict[str, Any], *, after_statement: AfterStatement | None = None) -> int:
    try:
        settings, store = build(kw)
    except RotatorError as exc:
        click.echo(f"rotator: {log.scrub(str(exc))}", err=True)
        return int(exc.exit_code)
    context = click.get_current_context(silent=True)
    if after_statement is None and context is not None:
        after_statement = (context.find_root().obj or {}).get("after_statement")
    from rotator.adopt import Adoption

    report: AdoptReport = Adoption(settings, store, after_statement=after_statement).run()
    if report.exit_code:
        log.get_logger("rotator").error(
            "failed", outcome=report.outcome, exit_code=report.exit_code, error=report.error
        )
    if report.dry_run and not report.exit_code:
        click.echo("-- rotator adopt --dry-run: the statements a real run would execute, in order", err=True)
        for text in report.statements:
            click.echo(log.scrub(text) + ";", err=True)
    click.echo(log.scrub(json.dumps(report.as_dict())))
    return report.exit_code


adopt: click.Command = _command()
