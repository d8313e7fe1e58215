"""Everything the demo runs, brought up in order and torn down in reverse: :class:`DemoStack`.

Used by ``rotator demo`` and by the zero-downtime end-to-end tests, so that both prove the same thing.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from rotator import render, templates_builtin
from rotator.db import get_engine
from rotator.demo.aws import (
    DemoSecrets,
    MotoSide,
    demo_live_secret,
    demo_secrets,
    moto_server,
    read_secret,
    slot_secret_value,
)
from rotator.demo.database import (
    DemoDatabase,
    Login,
    PostgresServer,
    Server,
    create_demo_table,
    mysql_from_dsn,
    new_prefix,
    postgres_from_dsn,
    prove_passwords_count,
    provisioned,
)
from rotator.demo.front import Fleet, Front, Instance, wait_ready
from rotator.demo.load import LoadGenerator
from rotator.demo.pgembedded import embedded_postgres
from rotator.demo.rotations import Event, RotationRun, run_rotation
from rotator.demo.seed002_reader import slot_of
from rotator.secrets import Slot, SlotSecret

TEMPLATE_NAME = "app.env.j2"
APPS = ("config", "live-secret")  # how the instances get their credentials: a rendered file, or the live secret
T = TypeVar("T")


@dataclass(frozen=True)
class DemoConfig:
    rotations: int = 3
    instances: int = 2
    load_threads: int = 4
    postgres_dsn: str | None = None
    mysql_dsn: str | None = None
    show_rollback: bool = False
    pool_size: int = 4
    deploy_timeout: float = 60.0
    health_attempts: int = 3
    health_interval: float = 0.5
    warmup_s: float = 1.0
    app: str = "config"

    def __post_init__(self) -> None:
        if self.app not in APPS:
            raise ValueError(f"--app must be one of {', '.join(APPS)}")
        if self.postgres_dsn and self.mysql_dsn:
            raise ValueError("give --postgres-dsn or --mysql-dsn, not both")
        if self.instances < 2:
            raise ValueError("--instances must be at least 2: a rolling restart needs one serving while one restarts")
        if self.rotations < 0 or self.load_threads < 1:
            raise ValueError("--rotations must be >= 0 and --load-threads >= 1")


def find_template() -> Path:
    """The dotenv template the package ships (rotator.templates_builtin)."""
    path = templates_builtin.find(TEMPLATE_NAME)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the built-in template {TEMPLATE_NAME} is missing: reinstall rotator")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoStack:
    """Database, moto and the secrets, the rendered config, the app instances, the front and the load.

    ``say`` gets one human line per piece brought up (and torn down).
    """

    def __init__(self, config: DemoConfig, say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.say = say
        self.template = find_template()
        self._exit = contextlib.ExitStack()
        self.cleaned: list[str] = []
        self.tmp = Path()
        self.db: DemoDatabase
        self.moto: MotoSide
        self.secrets: DemoSecrets
        self.config_path = Path()
        self.live_arn: str | None = None
        self.fleet: Fleet
        self.front: Front
        self.load: LoadGenerator

    # ------------------------------------------------------------ up

    def __enter__(self) -> DemoStack:
        try:
            self._up()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit.close()

    def _enter(self, cm: contextlib.AbstractContextManager[T], what: str) -> T:
        self._exit.callback(self.cleaned.append, what)  # registered first, so it runs after cm's exit
        return self._exit.enter_context(cm)

    def _cleanup(self, what: str, action: Callable[[], Any]) -> None:
        def run() -> None:
            action()
            self.cleaned.append(what)

        self._exit.callback(run)

    def _up(self) -> None:
        cfg, say = self.config, self.say
        self.tmp = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
        self._cleanup(f"removed {self.tmp}", lambda: shutil.rmtree(self.tmp, ignore_errors=True))

        server = self._server()
        prefix = new_prefix("demo" if not (cfg.postgres_dsn or cfg.mysql_dsn) else None)
        self.db = self._enter(provisioned(server, prefix), f"dropped database {prefix} and its users")
        slots = self.db.slots
        rights = "owns it, may create roles" if self.db.engine == "postgres" else "all privileges, grant option"
        say(
            f"  database  {self.db.dbname}: admin {self.db.admin.username} ({rights}), "
            f"slot users A={slots['A'].username} B={slots['B'].username}"
        )
        say(f"  auth      {prove_passwords_count(self.db)}: passwords count")
        create_demo_table(self.db.engine, slots["A"])

        self.moto = self._enter(moto_server(), "stopped the moto server")
        self.secrets = self._enter(
            demo_secrets(self.moto, self.db, f"rotator-demo-{secrets.token_hex(3)}"), "deleted the two secrets"
        )
        say(
            f"  AWS       Secrets Manager on an in-process moto server at {self.moto.endpoint_url}: "
            f"slot secret {self.secrets.slot_name} (slot A active), admin secret {self.secrets.admin_name}"
        )

        self.config_path = self.tmp / "app.env"
        if cfg.app == "live-secret":
            self.live_arn, live_name = self._enter(
                demo_live_secret(self.moto, self.db, self.secrets.slot_name.rsplit("/", 1)[0]),
                "deleted the live secret",
            )
            say(
                f"  live      live secret {live_name} (RDS format + database + the app's own ssl_cert_path) on slot A: "
                "what the instances read at start, like seed 002's get_database_credentials with @lru_cache"
            )
        else:
            self._render("A")
        self._start_app()
        self.load = LoadGenerator(self.front.url, threads=cfg.load_threads)
        self.load.start()
        self._cleanup("stopped the load generator", self.load.stop)
        say(f"  load      {cfg.load_threads} client threads, keep-alive, GET {self.front.url}/query without pause")

    def _server(self) -> Server:
        cfg = self.config
        if cfg.mysql_dsn:
            server: Server = mysql_from_dsn(cfg.mysql_dsn)
        elif cfg.postgres_dsn:
            server = postgres_from_dsn(cfg.postgres_dsn)
        else:
            embedded = self._enter(embedded_postgres(self.tmp), "stopped the embedded PostgreSQL")
            server = PostgresServer(embedded.host, embedded.port, embedded.description, embedded.superuser_connect)
            self.say(
                f"  server    {embedded.description} on {embedded.host}:{embedded.port}, data in {embedded.pgdata}; "
                "pg_hba.conf rewritten from trust to scram-sha-256 and reloaded"
            )
            return server
        self.say(f"  server    {server.description} (given by DSN)")
        return server

    def _render(self, slot: Slot) -> None:
        creds = SlotSecret.parse(json.dumps(slot_secret_value(self.db))).slot(slot)
        extra = {"db_scheme": "mysql" if self.db.engine == "mysql" else "postgresql"}
        data = render.render(self.template, creds, slot, extra)
        render.write_atomic(self.config_path, data, mode=0o600)

    def _start_app(self) -> None:
        cfg = self.config
        ports = [_free_port() for _ in range(cfg.instances)]

        if self.live_arn is not None:
            source = ["--live-secret", self.live_arn, "--aws-endpoint-url", self.moto.endpoint_url]
            source += ["--slot-users", self._slot_users()]
        else:
            source = ["--config", str(self.config_path), "--template", str(self.template)]

        def command(inst: Instance) -> list[str]:
            return [
                sys.executable,
                "-m",
                "rotator.demo.app",
                *("--port", str(inst.port), *source),
                *("--engine", self.db.engine, "--instance", str(inst.index), "--pool-size", str(cfg.pool_size)),
            ]

        self.fleet = Fleet(ports, command, self.tmp)
        self._cleanup("stopped the app instances", self.fleet.stop_all)
        for inst in self.fleet.instances:
            self.fleet.spawn(inst)
        for inst in self.fleet.instances:
            wait_ready(inst.port, proc=inst.proc)
            self.fleet.mark_ready(inst.index)
        self.front = Front(self.fleet)
        self.front.start()
        self._cleanup("stopped the front", self.front.stop)
        pids = ", ".join(str(i.proc.pid) for i in self.fleet.instances if i.proc)
        reads = (
            "the live secret once"
            if self.live_arn is not None
            else f"{self.config_path.name} (rendered from templates/{TEMPLATE_NAME}, mode 0600)"
        )
        self.say(
            f"  app       {cfg.instances} instances (pids {pids}), each reading {reads} at start; "
            f"round-robin front at {self.front.url}, control API at {self.front.control_url}"
        )

    # ------------------------------------------------------------ rotate

    def rotation_settings(self) -> dict[str, str]:
        """`rotator rotate` configured through the ROTATOR_* twins of its flags: no secret in them."""
        cfg = self.config
        restart = f"{shlex.quote(sys.executable)} -m rotator.demo.restart --control {self.front.control_url}"
        if self.live_arn is not None:
            target = {"ROTATOR_LIVE_SECRET": self.live_arn}  # no --template: the live secret is the app's config
        else:
            target = {
                "ROTATOR_TEMPLATE": str(self.template),
                "ROTATOR_CONFIG_PATH": str(self.config_path),
                "ROTATOR_FILE_MODE": "0600",
            }
        return {
            **self.moto.environment(),
            **target,
            "ROTATOR_SLOT_SECRET": self.secrets.slot_arn,
            "ROTATOR_ADMIN_SECRET": self.secrets.admin_arn,
            "ROTATOR_REGION": "us-east-1",
            "ROTATOR_AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "ROTATOR_DB_TLS": "disable",
            "ROTATOR_DEPLOY": "command",
            "ROTATOR_DEPLOY_COMMAND": restart,
            "ROTATOR_DEPLOY_TIMEOUT": f"{cfg.deploy_timeout:g}",
            "ROTATOR_HEALTH_URL": f"{self.front.url}/health",
            "ROTATOR_HEALTH_ATTEMPTS": str(cfg.health_attempts),
            "ROTATOR_HEALTH_INTERVAL": f"{cfg.health_interval:g}",
        }

    def rotate(self, on_event: Callable[[float, Event], None] | None = None) -> RotationRun:
        return run_rotation(self.rotation_settings(), on_event, timeout=self.config.deploy_timeout * 3 + 60)

    # ------------------------------------------------------------ observe

    def slot_secret(self) -> dict[str, Any]:
        return read_secret(self.moto, self.secrets.slot_arn)

    def active_slot(self) -> str:
        return str(self.slot_secret()["active_slot"])

    def config_slot(self) -> str | None:
        """The slot the app's credentials source names: the rendered config, or the live secret."""
        if self.live_arn is not None:
            return self.live_slot()
        deployed = render.read_deployed(self.template, self.config_path)
        return deployed.slot if deployed is not None else None

    def live_secret(self) -> dict[str, Any] | None:
        return read_secret(self.moto, self.live_arn) if self.live_arn is not None else None

    def live_slot(self) -> str | None:
        live = self.live_secret()
        return None if live is None else slot_of(str(live.get("username", "")), self._slot_users())

    def _slot_users(self) -> str:
        return ",".join(f"{slot}={login.username}" for slot, login in self.db.slots.items())

    def live_logs_in(self) -> bool:
        live = self.live_secret()
        if live is None:
            return False
        login = Login(live["host"], int(live["port"]), live["database"], live["username"], live["password"])
        return get_engine(self.db.engine).check_login(login.endpoint, login.username, login.password).ok

    def slot_logs_in(self, slot: Slot) -> bool:
        creds = self.slot_secret()[slot]
        login = Login(creds["host"], int(creds["port"]), creds["dbname"], creds["username"], creds["password"])
        return get_engine(self.db.engine).check_login(login.endpoint, login.username, login.password).ok
