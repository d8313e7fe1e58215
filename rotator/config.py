"""One frozen settings object for a run, built from flags and their ROTATOR_* environment twins."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rotator.db.base import TLS_MODES, TlsConfig, TlsMode
from rotator.errors import BadInput
from rotator.passwords import PasswordPolicy

DEPLOYERS = ("ecs", "command", "none")


@dataclass(frozen=True)
class Settings:
    slot_secret: str
    admin_secret: str
    engine: str | None = None
    region: str | None = None
    aws_endpoint_url: str | None = None
    store: str = "secretsmanager"  # or "file:/dir" for local development
    template: Path | None = None
    config_path: Path | None = None
    file_mode: int = 0o644
    file_owner: tuple[int, int] | None = None
    fix_permissions: bool = False
    deploy: str = "none"
    ecs_cluster: str | None = None
    ecs_service: str | None = None
    deploy_command: str | None = None
    deploy_timeout: float = 1800.0
    grace_seconds: float = 0.0
    health_url: str | None = None
    health_statuses: str = "200-399"
    health_insecure: bool = False
    health_attempts: int = 5
    health_interval: float = 2.0
    db_tls: TlsMode = "require"
    db_ca_bundle: str | None = None
    mysql_user_host: str = "%"
    pg_owner_role: str | None = None
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    dry_run: bool = False
    log_json: bool = False
    sync_db_users: bool = False
    skip_admin: bool = False
    lock_name: str | None = None

    def __post_init__(self) -> None:
        if not self.slot_secret:
            raise BadInput("no slot secret: pass --slot-secret or set ROTATOR_SLOT_SECRET")
        if not self.admin_secret:
            raise BadInput("no admin secret: pass --admin-secret or set ROTATOR_ADMIN_SECRET")
        if self.deploy not in DEPLOYERS:
            raise BadInput(f"--deploy must be one of {', '.join(DEPLOYERS)}")
        if self.db_tls not in TLS_MODES:
            raise BadInput(f"--db-tls must be one of {', '.join(TLS_MODES)}")
        if self.deploy == "ecs" and not (self.ecs_cluster and self.ecs_service):
            raise BadInput("--deploy ecs needs --ecs-cluster and --ecs-service (ROTATOR_ECS_CLUSTER/_SERVICE)")
        if self.deploy == "command" and not self.deploy_command:
            raise BadInput("--deploy command needs --deploy-command (ROTATOR_DEPLOY_COMMAND)")
        if (self.template is None) != (self.config_path is None):
            raise BadInput("--template and --config-path go together: pass both, or neither for --deploy none")
        if self.template is None and self.deploy != "none" and not self.sync_db_users:
            raise BadInput(f"--deploy {self.deploy} needs --template and --config-path to render the app's config")
        if self.template is not None and not self.template.is_file():
            raise BadInput(f"template {self.template} does not exist: check --template (ROTATOR_TEMPLATE)")
        if self.config_path is not None and not self.config_path.parent.is_dir():
            raise BadInput(
                f"directory of --config-path {self.config_path} does not exist: create it or fix ROTATOR_CONFIG_PATH"
            )
        if self.fix_permissions and self.config_path is None:
            raise BadInput("--fix-permissions needs --config-path (and --template): the file to fix")
        if not 0 <= self.file_mode <= 0o7777:
            raise BadInput("--file-mode must be an octal mode such as 0644")
        if self.deploy_timeout <= 0 or self.grace_seconds < 0:
            raise BadInput("--deploy-timeout must be > 0 and --grace-seconds >= 0")

    @property
    def tls(self) -> TlsConfig:
        return TlsConfig(mode=self.db_tls, ca_bundle=self.db_ca_bundle)

    @property
    def renders_config(self) -> bool:
        return self.template is not None and self.config_path is not None


def parse_mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise BadInput(f"--file-mode {text!r} is not an octal mode: use e.g. 0644") from None


def parse_owner(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    uid, sep, gid = text.partition(":")
    if not (uid.isdigit() and (not sep or gid.isdigit())):
        raise BadInput(f"--file-owner {text!r} must be numeric uid:gid, e.g. 1000:1000")
    return int(uid), int(gid or uid)
