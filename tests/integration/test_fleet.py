"""`rotator fleet` on real PostgreSQL and MariaDB, every secret on the moto server.

A fleet of 20 databases with one broken admin rotates the other 19 and exits with the broken one's code; a
SIGKILL of the fleet process mid-run converges on the next run; a shared admin secret is rotated once; discovery
by tag finds exactly the tagged slot secrets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rotator.age import OVERDUE_OUTCOME
from rotator.cli import main
from rotator.errors import ExitCode
from tests.harness import AwsEnv, DbEnv, MySqlServer, PgServer, mysql_env, pg_env, strong_password, unavailable
from tests.integration.rotation_env import ROOT, RotationEnv, make_env

pytestmark = pytest.mark.integration

Factory = Callable[[], DbEnv]


@pytest.fixture(params=["postgres", "mysql"])
def new_db(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Makes fresh databases (each with its own admin) on one engine; all dropped at teardown."""
    server: PgServer | MySqlServer | None = request.getfixturevalue(
        "pg_server" if request.param == "postgres" else "mysql_server"
    )
    if server is None:
        unavailable(request.param, "set ROTATOR_TEST_POSTGRES_DSN / ROTATOR_TEST_MYSQL_DSN")
    assert server is not None
    with ExitStack() as stack:

        def make() -> DbEnv:
            if isinstance(server, PgServer):
                return stack.enter_context(pg_env(server))
            return stack.enter_context(mysql_env(server))

        yield make


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or number is a TOML one


def fleet_file(path: Path, envs: dict[str, RotationEnv], **defaults: Any) -> Path:
    aws = next(iter(envs.values())).aws
    base = {
        "region": aws.region,
        "aws_endpoint_url": aws.endpoint_url,
        "db_tls": "disable",
        "deploy": "none",
        "drain_quiet": float(next(iter(envs.values())).drain_quiet),  # as rotation_env.RotationEnv says why
    }
    lines = ["[defaults]", *(f"{k} = {_toml(v)}" for k, v in {**base, **defaults}.items())]
    for name, env in envs.items():
        lines += [
            "",
            f"[{name}]",
            f"slot_secret = {_toml(env.slot_arn)}",
            f"admin_secret = {_toml(env.admin_arn)}",
            f"template = {_toml(str(env.template))}",
            f"config_path = {_toml(str(env.config_path))}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_fleet(*args: str) -> tuple[int, str, str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["fleet", *args], catch_exceptions=False)
    last = result.stdout.strip().splitlines()[-1]
    report: dict[str, Any] = json.loads(last)
    assert report["event"] == "fleet_report"
    return result.exit_code, result.stdout, result.stderr, report


def run_fleet_subprocess(*args: str, kill_after: int | None = None) -> subprocess.CompletedProcess[str]:
    command = ["rotator.cli", "fleet"] if kill_after is None else ["tests.integration.crash_fleet", str(kill_after)]
    return subprocess.run(
        [sys.executable, "-m", *command, *args],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["database"]: d for d in report["databases"]}


def no_secret_in(envs: dict[str, RotationEnv], *texts: str) -> None:
    for env in envs.values():
        env.remember()
        for password in env.seen_passwords:
            assert all(password not in text for text in texts), "a password leaked"


def test_twenty_databases_one_broken_admin(new_db: Factory, aws: AwsEnv, tmp_path: Path) -> None:
    envs = {f"db{i:02d}": make_env(new_db(), aws, tmp_path / f"db{i:02d}", tag=f"db{i:02d}_") for i in range(20)}
    broken = envs["db07"]
    admin = broken.admin()
    assert admin is not None
    broken.put_current({**admin, "password": strong_password()}, arn=broken.admin_arn)  # the server never had it
    broken_before = broken.state()
    path = fleet_file(tmp_path / "fleet.toml", envs)

    code, out, err, report = run_fleet("rotate", "--file", str(path), "--concurrency", "6", "--log-json")

    assert code == ExitCode.NEEDS_HUMAN, out + err[-3000:]
    assert report["exit_code"] == ExitCode.NEEDS_HUMAN
    results = by_name(report)
    assert results["db07"]["outcome"] == "NeedsHuman" and "admin password" in results["db07"]["error"]
    assert broken.state() == broken_before, "the broken database was changed"
    for name, env in envs.items():
        if name == "db07":
            continue
        assert results[name]["outcome"] == "ok" and results[name]["exit_code"] == 0, results[name]
        assert (results[name]["slots_before"]["active"], results[name]["slots_after"]["active"]) == ("A", "B")
        assert env.secret()["active_slot"] == "B"  # type: ignore[index]
        env.remember()
        env.assert_consistent()
    assert report["outcomes"] == {"ok": 19, "NeedsHuman": 1}
    # The table: one line per database with its slots, and the total with the fleet's exit code.
    table = out.strip().splitlines()[:-1]
    assert any(line.startswith("db03") and "A→B" in line for line in table)
    assert any(line.startswith("db07") and "NeedsHuman" in line and " 5 " in line for line in table)
    assert "20 databases" in table[-1] and "exit 5" in table[-1]
    # Every log line of a rotation names its database.
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {e.get("database") for e in events if e.get("event") == "observed"} >= set(envs) - {"db07"}
    no_secret_in(envs, out, err)


def test_crash_mid_fleet_converges(new_db: Factory, aws: AwsEnv, tmp_path: Path) -> None:
    envs = {f"db{i}": make_env(new_db(), aws, tmp_path / f"db{i}", tag=f"db{i}_") for i in range(6)}
    path = fleet_file(tmp_path / "fleet.toml", envs)
    # 6 databases of about 12 steps each, 3 at a time: the 20th step falls mid-rotation for several of them.
    crashed = run_fleet_subprocess("rotate", "--file", str(path), "--concurrency", "3", "--log-json", kill_after=20)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    deadline = time.monotonic() + 20
    while True:  # the servers drop the killed process's locks once they notice: until then, exit 3
        rerun = run_fleet_subprocess("rotate", "--file", str(path), "--concurrency", "3")
        if rerun.returncode != ExitCode.LOCKED or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    for env in envs.values():
        env.remember()
        env.assert_consistent()
    again = run_fleet_subprocess("rotate", "--file", str(path), "--concurrency", "3")
    assert again.returncode == 0
    for env in envs.values():
        env.remember()
        env.assert_consistent()
    no_secret_in(envs, crashed.stdout, crashed.stderr, rerun.stdout, rerun.stderr)


def test_shared_admin_is_rotated_once_and_last(new_db: Factory, aws: AwsEnv, tmp_path: Path) -> None:
    db = new_db()
    envs = {f"app{i}": make_env(db, aws, tmp_path / f"app{i}", tag=f"s{i}_") for i in range(4)}
    shared = envs["app0"].admin_arn
    for env in envs.values():
        env.admin_arn = shared
    lines = fleet_file(tmp_path / "fleet.toml", envs).read_text().splitlines()
    # Two of the four name it by its name, two by its ARN: still one secret, rotated once.
    name = envs["app0"].sm.describe_secret(SecretId=shared)["Name"]
    table = ""
    for i, line in enumerate(lines):
        table = line.strip("[]") if line.startswith("[") else table
        if table in ("app1", "app3") and line.startswith("admin_secret"):
            lines[i] = f"admin_secret = {_toml(name)}"
    # One database, four slot pairs: each member needs its own lock name.
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("[app"):
            out.append(f"lock_name = {_toml('rotator:fleet-test:' + line.strip('[]'))}")
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(out) + "\n")
    versions_before = len(envs["app0"].stages(shared))

    code, stdout, stderr, report = run_fleet("rotate", "--file", str(path), "--concurrency", "4")

    assert code == 0, stdout + stderr[-3000:]
    assert len(envs["app0"].stages(shared)) == versions_before + 1, "the shared admin was not rotated exactly once"
    results = by_name(report)
    assert "rotated once, by 'app3'" in results["app0"]["note"]
    assert all(r["outcome"] == "ok" for r in results.values())
    for env in envs.values():
        env.remember()
        env.assert_consistent()


def test_discovery_by_tag_and_fleet_status(new_db: Factory, aws: AwsEnv, tmp_path: Path) -> None:
    envs = {f"d{i}": make_env(new_db(), aws, tmp_path / f"d{i}", tag=f"d{i}_") for i in range(3)}
    ignored = make_env(new_db(), aws, tmp_path / "ignored", tag="ignored_")
    sm = aws.client("secretsmanager")
    for env in envs.values():
        tags = {
            "rotator:managed": "true",
            "rotator:admin-secret": env.admin_arn,
            "rotator:config-path": str(env.config_path),
        }
        sm.tag_resource(SecretId=env.slot_arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    sm.tag_resource(SecretId=ignored.slot_arn, Tags=[{"Key": "rotator:managed", "Value": "false"}])
    defaults = tmp_path / "defaults.toml"
    defaults.write_text(
        "[defaults]\n"
        f"region = {_toml(aws.region)}\naws_endpoint_url = {_toml(aws.endpoint_url)}\n"
        f'db_tls = "disable"\ntemplate = {_toml(str(envs["d0"].template))}\n'
    )
    before = {name: env.state() for name, env in envs.items()}
    args = ("--file", str(defaults), "--discover-tag", "rotator:managed=true", "--discover-prefix", aws.prefix)

    code, out, err, report = run_fleet("status", *args)

    # Secrets made by hand carry no rotated_at: status calls their age unknown, overdue (exit 6), as `rotator status`.
    assert code == ExitCode.OVERDUE, out + err[-3000:]
    names = {d["database"] for d in report["databases"]}
    assert names == {f"{aws.prefix}/d{i}_slots" for i in range(3)}
    assert report["dry_run"] is True and report["outcomes"] == {OVERDUE_OUTCOME: 3}
    assert {name: env.state() for name, env in envs.items()} == before, "fleet status changed something"

    code, out, err, report = run_fleet("rotate", *args)
    assert code == 0, out + err[-3000:]
    assert report["outcomes"] == {"ok": 3}
    for env in envs.values():
        env.remember()
        env.assert_consistent()
    assert ignored.secret()["active_slot"] == "A"  # type: ignore[index]


def test_fleet_check_and_one_notification_per_run(new_db: Factory, aws: AwsEnv, tmp_path: Path) -> None:
    import http.server
    import threading

    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        envs = {f"n{i}": make_env(new_db(), aws, tmp_path / f"n{i}", tag=f"n{i}_") for i in range(3)}
        broken = envs["n1"]
        admin = broken.admin()
        assert admin is not None
        broken.put_current({**admin, "password": strong_password()}, arn=broken.admin_arn)
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        path = fleet_file(tmp_path / "fleet.toml", envs, notify_webhook=hook, notify_on="failure,success")

        code, out, err, report = run_fleet("check", "--file", str(path))
        assert code == ExitCode.BAD_INPUT, out + err[-2000:]
        assert by_name(report)["n1"]["outcome"] == "CheckFailed" and "admin" in by_name(report)["n1"]["error"]
        assert [by_name(report)[n]["exit_code"] for n in ("n0", "n2")] == [0, 0]
        assert received == []  # check and status never notify

        code, out, err, report = run_fleet("rotate", "--file", str(path))
        assert code == ExitCode.NEEDS_HUMAN
        (message,) = received
        assert "3 databases: FAILED (exit 5)" in message["text"] and "n1: NeedsHuman, exit 5" in message["text"]
        no_secret_in(envs, out, err, json.dumps(received))
    finally:
        server.shutdown()


def test_discovery_in_ssm_parameter_store(new_db: Factory, aws: AwsEnv, tmp_path: Path) -> None:
    from tests.integration.store_drivers import SsmDriver

    store = SsmDriver(aws)
    try:
        envs = {f"p{i}": make_env(new_db(), aws, tmp_path / f"p{i}", tag=f"p{i}_", store=store) for i in range(2)}
        ignored = make_env(new_db(), aws, tmp_path / "ignored", tag="ignored_", store=store)
        ssm = aws.client("ssm")
        for env in envs.values():
            tags = {
                "rotator:managed": "true",
                "rotator:admin-secret": env.admin_arn,
                "rotator:config-path": str(env.config_path),
            }
            ssm.add_tags_to_resource(
                ResourceType="Parameter",
                ResourceId=env.slot_arn,
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        ssm.add_tags_to_resource(
            ResourceType="Parameter", ResourceId=ignored.slot_arn, Tags=[{"Key": "rotator:managed", "Value": "no"}]
        )
        defaults = tmp_path / "defaults.toml"
        defaults.write_text(
            "[defaults]\n"
            f"region = {_toml(aws.region)}\naws_endpoint_url = {_toml(aws.endpoint_url)}\n"
            f'db_tls = "disable"\ntemplate = {_toml(str(envs["p0"].template))}\n'
        )
        path = f"/rcm/test/{aws.prefix}/"

        code, out, err, report = run_fleet("rotate", "--file", str(defaults), "--discover-ssm-path", path)

        assert code == 0, out + err[-3000:]
        assert {d["database"] for d in report["databases"]} == {env.slot_arn for env in envs.values()}
        for env in envs.values():
            env.remember()
            env.assert_consistent()
        assert ignored.secret()["active_slot"] == "A"  # type: ignore[index]
    finally:
        store.cleanup()
