"""--live-secret end to end on real PostgreSQL and MariaDB, with Secrets Manager on the moto server (and the file
store): the live secret follows the active slot through rotations, keeps the app's own keys, is healed when it
drifts, refuses what it must not overwrite, and logs in at every step boundary of a SIGKILLed run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from rotator.errors import ExitCode
from rotator.store.file import FileStore
from tests.harness import AwsEnv, DbEnv, strong_password
from tests.integration.rotation_env import Result, RotationEnv, make_env

pytestmark = pytest.mark.integration

NO_TEMPLATE = {"ROTATOR_TEMPLATE": "", "ROTATOR_CONFIG_PATH": ""}
APP_KEYS = {"sslmode": "require", "pool_size": 5, "port": "1"}  # "port" is ours: rewritten (as a string)


class LiveEnv:
    def __init__(self, env: RotationEnv, tag: str = "", value: dict[str, Any] | None = None) -> None:
        self.env = env
        start = {"sslmode": "require", "pool_size": 5} if value is None else value
        self.arn = env.aws.create_secret(f"{tag}live", json.dumps(start))

    def rotate(self, *args: str, **extra: str) -> Result:
        return self.env.rotate(*args, **{"ROTATOR_LIVE_SECRET": self.arn, **extra})

    def subprocess(self, *args: str, kill_after: int | None = None, **extra: str) -> Result:
        return self.env.rotate_subprocess(*args, kill_after=kill_after, **{"ROTATOR_LIVE_SECRET": self.arn, **extra})

    def heal(self, **extra: str) -> Result:
        return self.env.rotate_after_lock_holder_died(**{"ROTATOR_LIVE_SECRET": self.arn, **extra})

    def value(self, stage: str = "AWSCURRENT") -> dict[str, Any] | None:
        return self.env.secret(stage, self.arn)

    def logs_in(self) -> bool:
        live = self.value()
        return bool(live and live.get("username") and self.env.db.login_works(live["username"], live["password"]))

    def state(self) -> tuple[object, ...]:
        return (*self.env.state(), self.env.stages(self.arn), json.dumps(self.value(), sort_keys=True))

    def assert_on_active(self) -> None:
        cur, live = self.env.secret(), self.value()
        assert cur is not None and live is not None
        active = cur[cur["active_slot"]]
        assert self.value("AWSPENDING") is None, "the live secret's AWSPENDING was left behind"
        assert live["username"] == active["username"] and live["password"] == active["password"]
        assert (live["host"], str(live["port"]), live["dbname"]) == (active["host"], active["port"], active["dbname"])
        assert live["database"] == live["dbname"]
        assert live["engine"] == self.env.db.engine
        assert (live["sslmode"], live["pool_size"]) == ("require", 5), "the app's own keys were not kept"
        assert self.logs_in()


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    return make_env(db, aws, tmp_path)


def test_three_rotations_move_the_live_secret_with_the_app(env: RotationEnv) -> None:
    live = LiveEnv(env)
    expected = ["B", "A", "B"]
    for i, slot in enumerate(expected):
        result = live.rotate()
        assert result.exit_code == 0, result.stderr[-2000:]
        report = result.report
        assert report["slots_before"]["live"] == (None if i == 0 else expected[i - 1])
        assert report["slots_after"] == {"active": slot, "config": slot, "live": slot}
        kinds = [s["step"] for s in report["steps"]]
        assert kinds.index("write_live_pending") < kinds.index("promote_live_pending") < kinds.index("deploy")
        env.assert_consistent()
        live.assert_on_active()
    stages = env.stages(live.arn)
    assert sum("AWSCURRENT" in s for s in stages.values()) == 1


def test_without_a_template_and_a_deploy_command(env: RotationEnv) -> None:
    """--deploy command with only a live secret (no --template): the command restarts the app, which reads the
    live secret; the slot secret's active_slot is published too (loader clients follow it)."""
    live = LiveEnv(env)
    marker = env.tmp / "deployed"
    extra = {**NO_TEMPLATE, "ROTATOR_DEPLOY": "command", "ROTATOR_DEPLOY_COMMAND": f"echo x >> {marker}"}
    for _ in range(2):
        result = live.rotate(**extra)
        assert result.exit_code == 0, result.stderr[-2000:]
        env.assert_consistent(loader=True)
        live.assert_on_active()
    assert marker.read_text().count("x") == 2
    assert live.rotate(**NO_TEMPLATE, ROTATOR_DEPLOY="ecs").exit_code == ExitCode.BAD_INPUT  # ecs needs its names


def test_a_drifted_live_secret_is_healed(env: RotationEnv) -> None:
    live = LiveEnv(env)
    assert live.rotate().exit_code == 0  # active B
    cur = env.secret()
    assert cur is not None
    stale = {**live.value(), "username": cur["A"]["username"], "password": strong_password()}  # type: ignore[dict-item]
    env.put_current(stale, live.arn)
    assert not live.logs_in()
    healed = live.rotate("--sync-db-users")
    assert healed.exit_code == 0, healed.stderr[-2000:]
    assert [s["step"] for s in healed.report["steps"]] == ["write_live_pending", "promote_live_pending"]
    live.assert_on_active()
    assert live.rotate("--sync-db-users").report["steps"] == []  # exact: nothing to do
    # A live secret on the right slot with a wrong password is rewritten by the flip itself.
    env.put_current({**live.value(), "password": strong_password()}, live.arn)  # type: ignore[dict-item]
    assert live.rotate().exit_code == 0
    env.assert_consistent()
    live.assert_on_active()


def test_a_working_live_password_is_adopted_not_overwritten(env: RotationEnv) -> None:
    """The slot secret's standby password drifted, the live secret holds the one that works (tasks use it):
    the rotator records it, never sets the standby back underneath those tasks before the flip."""
    live = LiveEnv(env)
    assert live.rotate().exit_code == 0  # active B, standby A
    working = strong_password()
    cur = env.secret()
    assert cur is not None
    env.db.set_password_directly(cur["A"]["username"], working)
    env.put_current({**live.value(), "username": cur["A"]["username"], "password": working}, live.arn)  # type: ignore[dict-item]
    result = live.rotate("--sync-db-users")
    assert result.exit_code == 0, result.stderr[-2000:]
    write = next(s for s in result.report["steps"] if s["step"] == "write_slot_pending")
    assert write["changes"]["adopt"] == ["A:live"]
    assert env.secret()["A"]["password"] == working  # type: ignore[index]
    assert env.db.login_works(cur["A"]["username"], working)
    live.assert_on_active()  # and the live secret moved to the active slot B


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("admin", "names the admin user"),
        ("stranger", "neither slot user"),
        ("slot-secret", "is a slot secret"),
        ("engine", "says engine"),
        ("missing", "must exist before the first run"),
        ("same-flag", "same secret as --slot-secret"),
    ],
)
def test_what_must_not_be_overwritten_is_refused(env: RotationEnv, what: str, words: str) -> None:
    live = LiveEnv(env)
    assert live.rotate().exit_code == 0
    cur, admin = env.secret(), env.admin()
    assert cur is not None and admin is not None
    extra: dict[str, str] = {}
    if what == "admin":
        env.put_current({"username": admin["username"], "password": admin["password"]}, live.arn)
    elif what == "stranger":
        env.put_current({**cur["A"], "username": "someone_else"}, live.arn)
    elif what == "slot-secret":
        extra["ROTATOR_LIVE_SECRET"] = env.slot_arn.rsplit(":", 1)[1].rsplit("-", 1)[0]  # its name, not its ARN
    elif what == "engine":
        env.put_current({"engine": "mysql" if env.db.engine == "postgres" else "postgres"}, live.arn)
    elif what == "missing":
        extra["ROTATOR_LIVE_SECRET"] = "no-such-live-secret"
    else:
        extra["ROTATOR_LIVE_SECRET"] = env.slot_arn
    before = live.state()
    result = live.rotate(**extra)
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr[-2000:]
    said = result.report["error"] if what != "same-flag" else result.stderr.strip()  # settings: before any report
    assert words in said and "\n" not in said
    assert live.state() == before
    env.remember()
    for password in env.seen_passwords | {admin["password"]}:
        assert password not in result.stdout + result.stderr


def test_on_the_file_store(env: RotationEnv, tmp_path: Path) -> None:
    """The same protocol on --store file:<dir>: pending, proven to log in, promoted."""
    store = FileStore(tmp_path / "store")
    store.create("slots", json.dumps(env.secret()))
    store.create("admin", json.dumps(env.admin()))
    store.create("live", json.dumps({"sslmode": "require"}))
    files = {
        "ROTATOR_STORE": f"file:{tmp_path / 'store'}",
        "ROTATOR_SLOT_SECRET": "slots",
        "ROTATOR_ADMIN_SECRET": "admin",
        "ROTATOR_LIVE_SECRET": "live",
        "ROTATOR_SKIP_ADMIN": "1",
    }
    for slot in ("B", "A"):
        result = env.rotate(**files)
        assert result.exit_code == 0, result.stderr[-2000:]
        assert result.report["slots_after"]["live"] == slot
        versions = store.read("live")
        assert versions.pending is None
        live, slots = json.loads(versions.current.value), json.loads(store.read("slots").current.value)
        assert slots["active_slot"] == slot and live["username"] == slots[slot]["username"]
        assert live["sslmode"] == "require" and env.db.login_works(live["username"], live["password"])


def _kill_every_boundary(env: RotationEnv, live: LiveEnv, **extra: str) -> None:
    steps = len(live.rotate("--dry-run", **extra).report["steps"])
    assert steps >= 13
    for k in range(1, steps + 1):
        crashed = live.subprocess(kill_after=k, **extra)
        assert crashed.exit_code == -9, (k, crashed.stderr[-1500:])
        assert live.logs_in(), f"the live secret does not log in after step {k}"
        if not extra:
            user, password = env.config_user(), env.config_password()
            assert user and password and env.db.login_works(user, password), f"config does not log in after {k}"
        healed = live.heal(**extra)
        assert healed.exit_code == 0, (k, healed.stderr[-2000:])
        assert live.logs_in()
        env.assert_consistent(loader=bool(extra))
        live.assert_on_active()


@pytest.mark.parametrize("template", [True, False], ids=["template", "no-template"])
def test_sigkill_after_every_step_the_live_secret_logs_in(env: RotationEnv, template: bool) -> None:
    """For every step boundary, a real `rotator rotate` is SIGKILLed right after that step: the live secret's
    AWSCURRENT logs in (as does the config), and a re-run converges with the live secret on the active slot."""
    live = LiveEnv(env)
    extra = {} if template else NO_TEMPLATE
    assert live.rotate(**extra).exit_code == 0
    _kill_every_boundary(env, live, **extra)


# ------------------------------------------------------------------ --deploy ecs: the task definition reads it


@pytest.fixture
def ecs_live(aws: AwsEnv, env: RotationEnv) -> tuple[Any, str, str, LiveEnv]:
    """An ECS service on moto whose task definition injects the live secret with valueFrom."""
    from tests.harness import new_name

    live = LiveEnv(env, "ecs")
    client = aws.client("ecs")
    cluster = new_name("cluster")
    client.create_cluster(clusterName=cluster)
    family = new_name("app")
    secrets = [{"name": f"DB_{k.upper()}", "valueFrom": f"{live.arn}:{k}::"} for k in ("username", "password", "host")]
    client.register_task_definition(
        family=family, containerDefinitions=[{"name": "app", "image": "app:1", "memory": 512, "secrets": secrets}]
    )
    client.create_service(cluster=cluster, serviceName="web", taskDefinition=family, desiredCount=0)
    return client, cluster, "web", live


def test_deploy_ecs_with_only_a_live_secret(env: RotationEnv, ecs_live: tuple[Any, str, str, LiveEnv]) -> None:
    client, cluster, service, live = ecs_live

    def deployments() -> set[str]:
        return {
            d["id"] for d in client.describe_services(cluster=cluster, services=[service])["services"][0]["deployments"]
        }

    ecs = {**NO_TEMPLATE, "ROTATOR_DEPLOY": "ecs", "ROTATOR_ECS_CLUSTER": cluster, "ROTATOR_ECS_SERVICE": service}
    for _ in range(2):
        before = deployments()
        result = live.rotate(**ecs)
        assert result.exit_code == 0, result.stderr[-2000:]
        assert deployments() - before, "no new deployment was forced"
        env.assert_consistent(loader=True)
        live.assert_on_active()


def test_a_circuit_breaker_rollback_puts_the_live_secret_back(
    env: RotationEnv, ecs_live: tuple[Any, str, str, LiveEnv]
) -> None:
    from rotator.deploy.ecs import EcsDeployer
    from rotator.wiring import build_rotation
    from tests.integration.test_deploy_health import ScriptedEcs, _dep
    from tests.integration.test_rotate_ecs import settings_for

    client, cluster, service, live = ecs_live
    assert live.rotate().exit_code == 0  # active B, the live secret on B
    before = live.value()
    script = [
        lambda ours: [_dep("ecs-svc/old", "PRIMARY", "COMPLETED")],  # observe()
        lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS"), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
        lambda ours: [
            _dep("ecs-svc/rollback", "PRIMARY", "IN_PROGRESS"),
            _dep(ours, "ACTIVE", "FAILED", "tasks failed"),
        ],
        lambda ours: [_dep(ours, "PRIMARY", "COMPLETED", running=2)],  # our rollback deployment
    ]
    deployer = EcsDeployer(ScriptedEcs(client, script), cluster, service, timeout_s=30, poll_s=0.01)  # type: ignore[arg-type]
    settings = dataclasses.replace(settings_for(env, cluster, service), live_secret=live.arn)
    report = build_rotation(settings, deployer=deployer)[0].run()
    assert report.exit_code == ExitCode.ROLLED_BACK, report.error
    rollback = [r.description["step"] for r in report.rollback]
    assert rollback[:3] == ["restore_config", "write_live_pending", "promote_live_pending"]
    assert report.slots_after == {"active": "B", "config": "B", "live": "B"}
    after = live.value()
    assert after is not None and before is not None
    assert (after["username"], after["password"]) == (before["username"], before["password"])
    env.assert_consistent()
    live.assert_on_active()
