"""One frozen settings object for a run. Each setting is declared once, as a field of :class:`Settings` whose
metadata (:class:`Spec`) holds its parser, help, choices and environment twins. From that declaration come
the click options of ``rotate`` and ``status`` (``--file-mode`` / ``ROTATOR_FILE_MODE``), the settings from
a plain mapping (a fleet file's TOML table), and the README flag table (a test compares them).

Settings checks only what needs no I/O; :func:`check_paths` looks at the filesystem, explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rotator import age, drain, health, notify, parsing, templates_builtin
from rotator.client.cache import DEFAULT_TTL, longest_cache_age
from rotator.db.base import TLS_MODES, TlsConfig, TlsMode
from rotator.errors import BadInput
from rotator.passwords import PasswordPolicy
from rotator.render import DEFAULT_MODE
from rotator.secrets import ENGINE_ALIASES, ENGINES

DEPLOYERS = ("ecs", "command", "none")

_SPEC = "rotator.setting"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Spec:
    """How one setting is given. ``name`` is its key in a mapping; the flag is ``--name-with-dashes``, the
    environment variable ``ROTATOR_NAME`` (then ``env_aliases``). ``field`` is the Settings attribute."""

    name: str
    help: str
    parse: parsing.Parser
    field: str = ""
    choices: tuple[str, ...] = ()
    metavar: str = "TEXT"
    env_aliases: tuple[str, ...] = ()
    readme: bool = False  # listed in the README's flag table
    is_flag: bool = False
    default_text: str | None = None  # the default as it would be typed; None: no default

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envvars(self) -> tuple[str, ...]:
        return (f"ROTATOR_{self.name.upper()}", *self.env_aliases)


def _spec(
    help: str,
    *,
    parse: parsing.Parser | None = None,
    show: Callable[[Any], str] = str,
    choices: tuple[str, ...] = (),
    metavar: str = "TEXT",
    **spec: Any,
) -> dict[str, Any]:
    """A setting's field metadata. The field gives the name and the default; ``parse`` defaults to the
    choices, else to a flag or text by the default's type; ``show`` writes the default as it would be typed."""
    return {_SPEC: {"help": help, "parse": parse, "show": show, "choices": choices, "metavar": metavar, **spec}}


def _engine(value: Any, label: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadInput(f"{label} must be a string: mysql or postgres")
    engine = ENGINE_ALIASES.get(value.strip().lower())
    if engine is None:
        raise BadInput(f"{label} {value!r} is not a database engine: use mysql or postgres")
    return engine


def _statuses(value: Any, label: str) -> str:
    health.parse_statuses(parsing.text(value, label))  # refuse now, so --dry-run and status refuse it too
    return str(value)


def _password_policy(value: Any, label: str) -> PasswordPolicy:
    if isinstance(value, PasswordPolicy):
        return value
    return PasswordPolicy(length=parsing.integer(1, example=32)(value, label))


_SECONDS = parsing.seconds(positive=False, example=2)
LOADER_GRACE_MARGIN = 5.0  # seconds on top of the loaders' cache age: a fetch, a pool's checkout


def _optional_seconds(value: Any, label: str) -> float | None:
    return None if value is None or value == "" else _SECONDS(value, label)


_OPTIONAL_SECONDS: parsing.Parser = _optional_seconds


def _template(value: Any, label: str) -> Path | None:
    path = parsing.optional_path(value, label)
    return None if path is None else templates_builtin.resolve(path)


@dataclass(frozen=True)
class Settings:
    slot_secret: str = field(
        default="", metadata=_spec(help="Slot secret name or ARN (A/B slots).", metavar="NAME|ARN", readme=True)
    )
    admin_secret: str = field(
        default="", metadata=_spec(help="Admin secret name or ARN.", metavar="NAME|ARN", readme=True)
    )
    engine: str | None = field(
        default=None,
        metadata=_spec(
            parse=_engine, choices=ENGINES, help="Database engine; else the slot secret's engine.", readme=True
        ),
    )
    region: str | None = field(
        default=None, metadata=_spec(parse=parsing.optional_text, env_aliases=("AWS_REGION",), help="AWS region.")
    )
    aws_endpoint_url: str | None = field(
        default=None,
        metadata=_spec(parse=parsing.optional_text, metavar="URL", help="AWS endpoint (moto, LocalStack)."),
    )
    store: str = field(
        default="secretsmanager",
        metadata=_spec(
            help="secretsmanager, ssm[:KMS_KEY] (SSM SecureStrings), vault[:KV_MOUNT] (Vault/OpenBao KV v2, "
            "VAULT_ADDR + VAULT_TOKEN or AppRole from the environment), or file:/dir for local development.",
            readme=True,
        ),
    )
    live_secret: str | None = field(
        default=None,
        metadata=_spec(
            parse=parsing.optional_text,
            metavar="NAME|ARN",
            help="A single-user secret (RDS format) the rotator keeps on the slot the app should use (ECS "
            "valueFrom, seed 002's loader, RDS Proxy). It must exist ({} is enough).",
            readme=True,
        ),
    )
    template: Path | None = field(
        default=None,
        metadata=_spec(
            parse=_template,
            metavar="PATH|NAME",
            help="jinja2 template of the app's config: a path, or a built-in name (sqlconf.php, app.env, ...; "
            "with or without .j2). An existing path wins over a built-in of the same name.",
            readme=True,
        ),
    )
    config_path: Path | None = field(
        default=None,
        metadata=_spec(
            parse=parsing.optional_path, metavar="PATH", help="Where to render the app's config.", readme=True
        ),
    )
    file_mode: int = field(
        default=DEFAULT_MODE,
        metadata=_spec(
            parse=parsing.file_mode,
            show=lambda mode: f"{mode:04o}",
            metavar="MODE",
            help="Octal mode of the rendered config.",
            readme=True,
        ),
    )
    file_owner: tuple[int, int] | None = field(
        default=None,
        metadata=_spec(
            parse=parsing.file_owner,
            metavar="UID:GID",
            help="Owner of the rendered config (needs root or that uid).",
            readme=True,
        ),
    )
    fix_permissions: bool = field(
        default=False, metadata=_spec(help="Set the rendered config's mode and owner.", readme=True)
    )
    deploy: str = field(
        default="none", metadata=_spec(choices=DEPLOYERS, help="How the app picks up the new config.", readme=True)
    )
    ecs_cluster: str | None = field(
        default=None, metadata=_spec(parse=parsing.optional_text, help="With --deploy ecs: the cluster.")
    )
    ecs_service: str | None = field(
        default=None, metadata=_spec(parse=parsing.optional_text, help="With --deploy ecs: the service.")
    )
    deploy_command: str | None = field(
        default=None,
        metadata=_spec(parse=parsing.optional_text, metavar="COMMAND", help="With --deploy command: rolls the app."),
    )
    deploy_timeout: float = field(
        default=1800.0,
        metadata=_spec(
            parse=parsing.seconds(positive=True, example=1800),
            show=lambda s: f"{s:g}",
            metavar="SECONDS",
            help="How long the deployment may take.",
        ),
    )
    grace_seconds: float | None = field(
        default=None,
        metadata=_spec(
            parse=_OPTIONAL_SECONDS,
            show=lambda s: f"{s:g}",
            metavar="SECONDS",
            help="With --deploy none: wait this long for clients to move to the new slot. Default: without a "
            "config file (loader clients), the loader's longest cache age for --client-ttl plus "
            f"{LOADER_GRACE_MARGIN:g} s; with one, 0.",
        ),
    )
    client_ttl: float = field(
        default=DEFAULT_TTL,
        metadata=_spec(
            parse=parsing.seconds(positive=True, example=300),
            show=lambda s: f"{s:g}",
            metavar="SECONDS",
            help="The cache TTL of the apps' rotator.client loaders (the variable they read too); the default "
            "--grace-seconds covers it.",
        ),
    )
    drain_timeout: float = field(
        default=60.0,
        metadata=_spec(
            parse=_SECONDS,
            show=lambda s: f"{s:g}",
            metavar="SECONDS",
            help="After the flip is proven, wait up to this long for the old slot's user to stop opening "
            "sessions; still in use then: the run fails and the old slot keeps its password. 0: no wait.",
        ),
    )
    drain_quiet: float = field(
        default=drain.QUIET,
        metadata=_spec(
            parse=parsing.seconds(positive=True, example=1),
            show=lambda s: f"{s:g}",
            metavar="SECONDS",
            help="The old slot counts as drained after this long without a new session of its user; raise it "
            "for consumers that connect rarely (a cron job every minute: above 60). At most --drain-timeout.",
        ),
    )
    health_url: str | None = field(
        default=None,
        metadata=_spec(
            parse=parsing.optional_text,
            metavar="URL",
            help="HTTP URL that must answer an accepted status.",
            readme=True,
        ),
    )
    health_statuses: str = field(
        default="200-399",
        metadata=_spec(parse=_statuses, metavar="LIST", help="Accepted HTTP statuses, e.g. 200-299,301.", readme=True),
    )
    health_insecure: bool = field(default=False, metadata=_spec(help="Do not verify the health URL's TLS certificate."))
    health_attempts: int = field(
        default=5,
        metadata=_spec(
            parse=parsing.integer(1, example=5), metavar="N", help="Tries of the health URL before it fails."
        ),
    )
    health_interval: float = field(
        default=2.0,
        metadata=_spec(
            parse=_SECONDS, show=lambda s: f"{s:g}", metavar="SECONDS", help="Wait between health URL tries."
        ),
    )
    db_tls: TlsMode = field(
        default="require",
        metadata=_spec(choices=TLS_MODES, help="Database TLS; never falls back to plaintext.", readme=True),
    )
    db_ca_bundle: str | None = field(
        default=None,
        metadata=_spec(
            parse=parsing.optional_text, metavar="PATH", help="CA bundle for --db-tls verify-*.", readme=True
        ),
    )
    mysql_user_host: str = field(default="%", metadata=_spec(metavar="HOST", help="Host part of the MySQL slot users."))
    pg_owner_role: str | None = field(
        default=None,
        metadata=_spec(
            parse=parsing.optional_text, metavar="ROLE", help="Shared NOLOGIN owner role (default <db>_owner)."
        ),
    )
    password_policy: PasswordPolicy = field(
        default_factory=PasswordPolicy,
        metadata=_spec(
            parse=_password_policy,
            show=lambda policy: str(policy.length),
            name="password_length",
            metavar="N",
            help="Length of generated passwords.",
        ),
    )
    dry_run: bool = field(
        default=False, metadata=_spec(help="Print the plan with reasons; change nothing.", readme=True)
    )
    sync_db_users: bool = field(
        default=False, metadata=_spec(help="Heal the database users only; no flip.", readme=True)
    )
    skip_admin: bool = field(default=False, metadata=_spec(help="Do not rotate the admin password.", readme=True))
    lock_name: str | None = field(
        default=None,
        metadata=_spec(parse=parsing.optional_text, help="Advisory lock name (default from host and database)."),
    )
    # ---- operations (rotator.age, rotator.audit, rotator.metrics, rotator.notify)
    rotate_after: float | None = field(
        default=None,
        metadata=_spec(
            parse=age.optional_duration,
            metavar="DURATION",
            help="Flip (and rotate the admin) only when the live slot's password is this old (30d, 12h); "
            "a run always heals. Default: every run flips.",
            readme=True,
        ),
    )
    max_age: float = field(
        default=age.DEFAULT_MAX_AGE_S,
        metadata=_spec(
            parse=age.parse_duration,
            show=age.format_duration,
            metavar="DURATION",
            help="status exits 6 when a credential is older than this (or of unknown age); rotate reports it.",
            readme=True,
        ),
    )
    metrics: str = field(
        default="auto",
        metadata=_spec(
            choices=("auto", "emf", "none"),
            help="CloudWatch EMF metric lines on stderr; auto: when log lines are JSON (--log-json).",
        ),
    )
    notify_topic: str | None = field(
        default=None,
        metadata=_spec(
            parse=notify.parse_topic_arn, metavar="ARN", help="SNS topic for a summary of the run.", readme=True
        ),
    )
    notify_webhook: str | None = field(
        default=None,
        metadata=_spec(
            parse=notify.parse_webhook_url, metavar="URL", help="Slack-compatible webhook for the summary.", readme=True
        ),
    )
    notify_on: str = field(
        default="failure",
        metadata=_spec(
            parse=notify.parse_outcomes, metavar="LIST", help="When to notify: failure, success or both.", readme=True
        ),
    )

    def __post_init__(self) -> None:
        # Every value goes through its parser, so keyword construction is checked like a flag is.
        for spec in SETTINGS:
            object.__setattr__(self, spec.field, spec.parse(getattr(self, spec.field), spec.flag))
        if not self.slot_secret:
            raise BadInput("no slot secret: pass --slot-secret or set ROTATOR_SLOT_SECRET")
        if not self.admin_secret:
            raise BadInput("no admin secret: pass --admin-secret or set ROTATOR_ADMIN_SECRET")
        if self.deploy == "ecs" and not (self.ecs_cluster and self.ecs_service):
            raise BadInput("--deploy ecs needs --ecs-cluster and --ecs-service (ROTATOR_ECS_CLUSTER/_SERVICE)")
        if self.deploy == "command" and not self.deploy_command:
            raise BadInput("--deploy command needs --deploy-command (ROTATOR_DEPLOY_COMMAND)")
        if (self.template is None) != (self.config_path is None):
            raise BadInput("--template and --config-path go together: pass both, or neither for --deploy none")
        if self.live_secret is not None and self.live_secret in (self.slot_secret, self.admin_secret):
            which = "--slot-secret" if self.live_secret == self.slot_secret else "--admin-secret"
            raise BadInput(f"--live-secret is the same secret as {which}: pass the app's own single-user secret")
        if self.template is None and self.deploy != "none" and not self.sync_db_users and self.live_secret is None:
            raise BadInput(
                f"--deploy {self.deploy} needs --template and --config-path to render the app's config, "
                "or --live-secret for an app that reads its credentials from a secret"
            )
        if 0 < self.drain_timeout < self.drain_quiet:
            raise BadInput(
                f"--drain-quiet {self.drain_quiet:g} is longer than --drain-timeout {self.drain_timeout:g}: the "
                "drain could never finish; raise --drain-timeout or lower --drain-quiet"
            )
        if self.fix_permissions and self.config_path is None:
            raise BadInput("--fix-permissions needs --config-path (and --template): the file to fix")

    @property
    def tls(self) -> TlsConfig:
        return TlsConfig(mode=self.db_tls, ca_bundle=self.db_ca_bundle)

    @property
    def renders_config(self) -> bool:
        return self.template is not None and self.config_path is not None

    @property
    def grace(self) -> float:
        """--grace-seconds, or its default: loader clients (no config file) move to the new slot when their
        cached credentials expire, so the wait covers the longest age of a loader's cache."""
        if self.grace_seconds is not None:
            return self.grace_seconds
        return 0.0 if self.renders_config else longest_cache_age(self.client_ttl) + LOADER_GRACE_MARGIN


def _declared(f: dataclasses.Field[Any]) -> Spec:
    spec = dict(f.metadata[_SPEC])
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    is_flag = isinstance(default, bool)
    choices = spec["choices"]
    parse = spec.pop("parse") or (parsing.choice(choices) if choices else parsing.flag if is_flag else parsing.text)
    show = spec.pop("show")
    if choices:
        spec["metavar"] = "[" + "|".join(choices) + "]"
    return Spec(
        **{"name": f.name, **spec},
        parse=parse,
        field=f.name,
        is_flag=is_flag,
        default_text=None if default in (None, "") or is_flag else show(default),
    )


SETTINGS: tuple[Spec, ...] = tuple(_declared(f) for f in dataclasses.fields(Settings))
"""Every setting of Settings, in declaration order."""

LOG_JSON = Spec(name="log_json", help="JSON log lines (stderr).", parse=parsing.flag, is_flag=True, readme=True)
"""Read by the CLI itself, to configure logging before anything else; not a setting of the run."""

OUTPUTS = ("auto", "table", "json")
OUTPUT = Spec(
    name="output",
    help="The report on stdout: a table for people or JSON; auto: a table on a terminal, else JSON (as before).",
    parse=parsing.choice(OUTPUTS),
    choices=OUTPUTS,
    metavar="[auto|table|json]",
    default_text="auto",
    readme=True,
)
"""Read by the CLI itself, like LOG_JSON: how the report is shown, not a setting of the run."""

CLI_ONLY = (LOG_JSON, OUTPUT)
"""The options every rotation command has besides the settings."""

_BY_NAME = {spec.name: spec for spec in SETTINGS}


def _build(values: Mapping[str, Any], label: Callable[[Spec], str]) -> Settings:
    """Settings from values keyed by setting name, each parsed with its declared parser."""
    return Settings(
        **{_BY_NAME[name].field: _BY_NAME[name].parse(v, label(_BY_NAME[name])) for name, v in values.items()}
    )


def settings_from_options(options: Mapping[str, Any]) -> Settings:
    """From the CLI's options, keyed by setting name; None means not given (the declared default)."""
    unknown = set(options) - set(_BY_NAME)
    if unknown:
        raise TypeError(f"not settings: {sorted(unknown)}")
    return _build({k: v for k, v in options.items() if v is not None}, lambda spec: spec.flag)


def _keyed(mapping: Mapping[Any, Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = key.replace("-", "_") if isinstance(key, str) else None
        if name not in _BY_NAME:
            raise BadInput(f"{what}: unknown setting {key!r}: use one of {', '.join(_BY_NAME)}")
        if name in out:
            raise BadInput(f"{what}: setting {name} is given twice ({key!r}): keep one")
        out[name] = value
    return out


def settings_from_mapping(mapping: Mapping[str, Any], *, defaults: Mapping[str, Any] = _EMPTY) -> Settings:
    """Settings from a plain mapping (a fleet file's table), over ``defaults`` (the fleet's shared table).
    Keys are setting names, with underscores or dashes (``file_mode``, ``file-mode``); values are native
    (``file_mode = 0o640``, ``grace_seconds = 5``) or as they would be typed (``file_mode = "0640"``)."""
    if not isinstance(mapping, Mapping) or not isinstance(defaults, Mapping):
        raise BadInput("settings must be a table of setting = value")
    values = {**_keyed(defaults, "defaults"), **_keyed(mapping, "settings")}
    return _build(values, lambda spec: spec.name)


def check_paths(settings: Settings) -> None:
    """The filesystem checks of the settings: the template exists, the config's directory exists, the CA
    bundle exists. Call before the first change."""
    if settings.template is not None and not settings.template.is_file():
        raise BadInput(
            f"template {settings.template} does not exist: check --template (ROTATOR_TEMPLATE), "
            f"{templates_builtin.described()}"
        )
    if settings.config_path is not None and not settings.config_path.parent.is_dir():
        raise BadInput(
            f"directory of --config-path {settings.config_path} does not exist: create it or fix ROTATOR_CONFIG_PATH"
        )
    if settings.db_ca_bundle is not None and not Path(settings.db_ca_bundle).is_file():
        raise BadInput(f"CA bundle {settings.db_ca_bundle} is not a file: check --db-ca-bundle (ROTATOR_DB_CA_BUNDLE)")
