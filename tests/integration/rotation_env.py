"""A rotation set-up on a real database and a real secret store: two secrets, a template, a config path.

The store is reached through a driver (tests/integration/store_drivers.py): Secrets Manager on the moto
server unless another is given. Runs the real `rotator` command, in-process (click's runner) or as a
subprocess (crash tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from rotator.cli import main
from rotator.errors import ExitCode
from rotator.render import read_deployed
from tests.harness import AwsEnv, DbEnv
from tests.integration.store_drivers import CURRENT, PENDING, SecretsManagerDriver, StoreDriver

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "sqlconf.php.j2"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith('{"event": "rotation_report"')]
        assert lines, f"no JSON report on stdout: {self.stdout!r} {self.stderr!r}"
        report: dict[str, Any] = json.loads(lines[-1])
        return report


@dataclass
class RotationEnv:
    db: DbEnv
    aws: AwsEnv
    tmp: Path
    user_a: str
    user_b: str
    slot_arn: str = ""
    admin_arn: str = ""
    config_path: Path = field(default_factory=Path)
    template: Path = TEMPLATE
    seen_passwords: set[str] = field(default_factory=set)
    store: StoreDriver = field(default=None)  # type: ignore[assignment]  # set by make_env
    # The drain_slot step stays in every plan (and in every crash test's list of steps), but watches 0.1 s, not
    # the default second: nothing uses the old slot here, and a second per rotation was most of the suite's time.
    # tests/integration/test_drain.py watches with the default against real consumers.
    drain_quiet: str = "0.1"

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = SecretsManagerDriver(self.aws)

    @property
    def sm(self) -> Any:
        return self.aws.client("secretsmanager")

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "ROTATOR_SLOT_SECRET": self.slot_arn,
            "ROTATOR_ADMIN_SECRET": self.admin_arn,
            "ROTATOR_AWS_ENDPOINT_URL": self.aws.endpoint_url,
            "ROTATOR_REGION": self.aws.region,
            **self.store.env(),
            "ROTATOR_DB_TLS": "disable",
            "ROTATOR_TEMPLATE": str(self.template),
            "ROTATOR_CONFIG_PATH": str(self.config_path),
            "ROTATOR_DEPLOY": "none",
            "ROTATOR_GRACE_SECONDS": "0",  # loader mode's default covers a 300 s client TTL; no client here
            "ROTATOR_LOG_JSON": "1",
            "ROTATOR_HEALTH_ATTEMPTS": "2",
            "ROTATOR_HEALTH_INTERVAL": "0.2",
            "ROTATOR_DRAIN_QUIET": self.drain_quiet,
        }
        env.update(extra)
        return env

    def rotate(self, *args: str, **extra: str) -> Result:
        runner = CliRunner()
        result = runner.invoke(main, ["rotate", *args], env=self.env(**extra), catch_exceptions=False)
        self.remember()
        return Result(result.exit_code, result.stdout, result.stderr)

    def rotate_subprocess(self, *args: str, kill_after: int | None = None, **extra: str) -> Result:
        """The real command in a child process; ``kill_after``: SIGKILLed right after that step (1-based)."""
        env = {**os.environ, **self.env(**extra)}
        command = (
            ["rotator.cli", "rotate"] if kill_after is None else ["tests.integration.crash_rotate", str(kill_after)]
        )
        proc = subprocess.run(
            [sys.executable, "-m", *command, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        self.remember()
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def rotate_after_lock_holder_died(self, *args: str, **extra: str) -> Result:
        """A run right after the previous lock holder was killed or closed: the server releases that session's
        lock only once it has noticed the disconnect, so this run may find it locked (exit 3, nothing changed)
        for a moment; like a user, try again."""
        deadline = time.monotonic() + 10
        while True:
            result = self.rotate_subprocess(*args, **extra)
            if result.exit_code != ExitCode.LOCKED or time.monotonic() > deadline:
                return result
            time.sleep(0.2)

    # ----------------------------------------------------------- reading state

    def secret(self, stage: str = CURRENT, arn: str | None = None) -> dict[str, Any] | None:
        value = self.store.read(arn or self.slot_arn, stage)
        if value is None:
            return None
        data: dict[str, Any] = json.loads(value)
        return data

    def admin(self, stage: str = CURRENT) -> dict[str, Any] | None:
        return self.secret(stage, self.admin_arn)

    def put_current(self, data: dict[str, Any], arn: str | None = None) -> None:
        """Replace the current value by hand (simulating drift)."""
        self.store.put_current(arn or self.slot_arn, json.dumps(data))

    def put_pending(self, data: dict[str, Any], arn: str | None = None) -> None:
        """Leave a pending version behind, as a run that crashed right after writing it would."""
        self.store.put_pending(arn or self.slot_arn, json.dumps(data))

    def stages(self, arn: str | None = None) -> object:
        """The store's versions and labels (or their equivalent) of a secret: what a run may change."""
        return self.store.fingerprint(arn or self.slot_arn)

    def remember(self) -> None:
        """Collect every password stored so far (for 'replaced passwords fail' and log scans), and keep the
        harness's admin password current (several envs may share the test database's admin user)."""
        admin = self.admin()
        if admin is not None and self.db.login_works(admin["username"], admin["password"]):
            self.db.admin_password = admin["password"]
        for arn in (self.slot_arn, self.admin_arn):
            for value in self.store.values(arn):
                data = json.loads(value)
                for slot in ("A", "B"):
                    if isinstance(data.get(slot), dict) and data[slot].get("password"):
                        self.seen_passwords.add(data[slot]["password"])
                if data.get("password"):
                    self.seen_passwords.add(data["password"])

    def config_user(self) -> str | None:
        deployed = read_deployed(self.template, self.config_path)
        return deployed.username if deployed else None

    def config_password(self) -> str | None:
        deployed = read_deployed(self.template, self.config_path)
        return deployed.password if deployed else None

    def state(self) -> tuple[object, ...]:
        """Everything a run could change: password hashes, secret versions and labels, config bytes and mode."""
        config = (self.config_path.read_bytes(), self.config_path.stat().st_mode) if self.config_path.exists() else None
        return (self.db.password_hashes(), self.stages(), self.stages(self.admin_arn), config)

    def assert_consistent(self, *, loader: bool = False) -> None:
        """Both slots' secret credentials log in, every replaced password fails, admin works, config on active
        (``loader``: no config file, the apps follow the secret)."""
        cur = self.secret()
        assert cur is not None
        assert self.secret(PENDING) is None, "AWSPENDING left behind"
        assert self.admin(PENDING) is None, "admin AWSPENDING left behind"
        live = {cur["A"]["password"], cur["B"]["password"]}
        for slot in ("A", "B"):
            creds = cur[slot]
            assert self.db.login_works(creds["username"], creds["password"]), f"slot {slot} does not log in"
            for old in self.seen_passwords - live:
                assert not self.db.login_works(creds["username"], old), f"slot {slot}: a replaced password works"
        admin = self.admin()
        assert admin is not None
        assert self.db.login_works(admin["username"], admin["password"]), "admin does not log in"
        if loader:
            return
        assert self.config_user() == cur[cur["active_slot"]]["username"], "config is not on the active slot"
        assert self.config_password() == cur[cur["active_slot"]]["password"]


def make_env(
    db: DbEnv,
    aws: AwsEnv,
    tmp: Path,
    *,
    create_users: bool = True,
    tag: str = "",
    store: StoreDriver | None = None,
) -> RotationEnv:
    """Secrets for two slot users (created with their passwords unless create_users=False) and the admin, in
    ``store`` (Secrets Manager on moto when None)."""
    from tests.harness import strong_password

    tmp.mkdir(parents=True, exist_ok=True)
    env = RotationEnv(
        db=db,
        aws=aws,
        tmp=tmp,
        user_a=db.user(f"{tag}app_a"),
        user_b=db.user(f"{tag}app_b"),
        store=store or SecretsManagerDriver(aws),
    )
    env.config_path = tmp / "sqlconf.php"
    pw_a, pw_b = strong_password(), strong_password()
    slot = {
        "active_slot": "A",
        "engine": db.engine,
        "A": {"username": env.user_a, "password": pw_a, "host": db.host, "port": str(db.port), "dbname": db.dbname},
        "B": {"username": env.user_b, "password": pw_b, "host": db.host, "port": str(db.port), "dbname": db.dbname},
    }
    admin = {"username": db.admin_user, "password": db.admin_password, "host": db.host, "port": db.port}
    env.slot_arn = env.store.create(f"{tag}slots", json.dumps(slot))
    env.admin_arn = env.store.create(f"{tag}admin", json.dumps(admin))
    if create_users:
        from rotator.db import get_engine
        from rotator.db.base import Endpoint, TlsConfig

        engine = get_engine(db.engine)
        ep = Endpoint(db.host, db.port, db.dbname, TlsConfig("disable"))
        session = engine.admin_session(ep, db.admin_user, db.admin_password)
        try:
            session.create_user(env.user_a, pw_a, dbname=db.dbname, grants_from=None)
            session.create_user(env.user_b, pw_b, dbname=db.dbname, grants_from=env.user_a)
        finally:
            session.close()
    env.remember()
    return env
