"""Deployers and health checks against real things: the moto server for ECS, real subprocesses for the
command hook, a real local HTTP(S) server for the HTTP check."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from rotator.aws import AwsClients
from rotator.db.base import LoginResult
from rotator.deploy import make_deployer
from rotator.deploy.command import CommandDeployer
from rotator.deploy.ecs import EcsDeployer
from rotator.deploy.none import NoneDeployer
from rotator.errors import BadInput, DeployError, HealthCheckError
from rotator.health import (
    ChecksFailed,
    DbLoginCheck,
    DeploymentCheck,
    HttpCheck,
    parse_statuses,
    run_checks,
)
from rotator.log import register_secret
from tests.aws_faults import Fault, fault_proxy
from tests.harness import AwsEnv, free_port, new_name

pytestmark = pytest.mark.integration

NO_SLEEP: Callable[[float], None] = lambda _s: None  # noqa: E731


# ================================================================ ECS


@pytest.fixture
def ecs_service(aws: AwsEnv) -> Iterator[tuple[Any, str, str]]:
    """A cluster and a service in the moto server. desiredCount 0: moto reports its rollout COMPLETED."""
    client = aws.client("ecs")
    cluster = new_name("cluster")
    client.create_cluster(clusterName=cluster)
    client.register_task_definition(
        family=new_name("app"), containerDefinitions=[{"name": "app", "image": "openemr/openemr", "memory": 512}]
    )
    family = client.list_task_definitions()["taskDefinitionArns"][-1]
    client.create_service(cluster=cluster, serviceName="openemr", taskDefinition=family, desiredCount=0)
    client.create_service(cluster=cluster, serviceName="stuck", taskDefinition=family, desiredCount=1)
    yield client, cluster, "openemr"
    for service in ("openemr", "stuck"):
        client.delete_service(cluster=cluster, service=service, force=True)
    client.delete_cluster(cluster=cluster)


def test_ecs_deploy_against_moto(ecs_service: tuple[Any, str, str]) -> None:
    client, cluster, service = ecs_service
    before = EcsDeployer(client, cluster, service).describe()
    assert before.status == "stable"
    deployer = EcsDeployer(client, cluster, service, timeout_s=10, poll_s=0.01)
    deployer.deploy("flip to slot B", slot="B")
    after = deployer.describe()
    assert after.status == "stable"
    assert after.deployment_id and after.deployment_id != before.deployment_id  # a new deployment was forced


def test_ecs_times_out_on_a_rollout_that_never_finishes(ecs_service: tuple[Any, str, str]) -> None:
    client, cluster, _ = ecs_service  # "stuck": desiredCount 1 and nothing running, IN_PROGRESS for ever in moto
    deployer = EcsDeployer(client, cluster, "stuck", timeout_s=0.3, poll_s=0.05)
    assert deployer.describe().status == "in_progress"
    with pytest.raises(DeployError, match=r"did not finish within 0.3s \(rollout IN_PROGRESS, running 0/1"):
        deployer.deploy("flip")


def test_ecs_missing_service(ecs_service: tuple[Any, str, str]) -> None:
    client, cluster, _ = ecs_service
    deployer = EcsDeployer(client, cluster, "no-such-service", timeout_s=5, poll_s=0.01)
    with pytest.raises(
        DeployError, match=r"^ECS UpdateService: service .*/no-such-service does not exist \(ServiceNotFoundException\)"
    ):
        deployer.deploy("flip")
    state = deployer.describe()
    assert state.status == "unknown" and "not found" in state.detail


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
def test_ecs_survives_a_fault_on_the_first_call_of_each_operation(
    aws: AwsEnv, ecs_service: tuple[Any, str, str], fault: Fault
) -> None:
    """The fault proxy answers a throttle (HTTP 400) or a 503 to the first DescribeServices and UpdateService."""
    _, cluster, service = ecs_service
    with fault_proxy(aws.endpoint_url, {"*": [fault]}) as proxy:
        client = AwsClients(region=aws.region, endpoint_url=proxy.url).client("ecs")
        deployer = EcsDeployer(client, cluster, service, timeout_s=10, poll_s=0.01, sleep=lambda _: None)
        before = deployer.describe()
        deployer.deploy("flip to slot B", slot="B")
        after = deployer.describe()
    assert before.status == after.status == "stable"
    assert after.deployment_id != before.deployment_id
    assert proxy.faulted == {"ecs.DescribeServices": 1, "ecs.UpdateService": 1}


def test_ecs_attempts_are_the_edges_alone(aws: AwsEnv, ecs_service: tuple[Any, str, str]) -> None:
    """No retry loop multiplies another: make_deployer's own client has botocore retries off, the deployer
    does not retry around the edge, so a call makes exactly max_attempts requests, then fails in one line."""
    _, cluster, service = ecs_service
    with fault_proxy(aws.endpoint_url, always={"ecs.UpdateService": "throttle"}) as proxy:
        deployer = make_deployer(
            "ecs",
            region=aws.region,
            endpoint_url=proxy.url,
            cluster=cluster,
            service=service,
            timeout_s=5,
            poll_s=0.01,
            sleep=lambda _: None,
            max_attempts=3,
        )
        with pytest.raises(DeployError) as refused:
            deployer.deploy("flip")
    assert proxy.requests["ecs.UpdateService"] == 3
    assert str(refused.value) == (
        f"ECS UpdateService on service {cluster}/{service} is still throttled after retries (3 attempts): "
        "try again later"
    )

    with fault_proxy(aws.endpoint_url, {"ecs.DescribeServices": ["unavailable"] * 99}) as proxy:
        client = AwsClients(region=aws.region, endpoint_url=proxy.url).client("ecs")
        deployer = EcsDeployer(client, cluster, service, timeout_s=5, poll_s=0.01, sleep=lambda _: None, max_attempts=4)
        with pytest.raises(
            DeployError, match=r"failed 4 times in a row .*HTTP 503.* is unknown: check the ECS console"
        ):
            deployer.deploy("flip")
    assert proxy.requests == {"ecs.UpdateService": 1, "ecs.DescribeServices": 4}


def _dep(dep_id: str, status: str, rollout: str, reason: str = "", running: int = 1) -> dict[str, Any]:
    return {
        "id": dep_id,
        "status": status,
        "rolloutState": rollout,
        "rolloutStateReason": reason,
        "desiredCount": 2,
        "runningCount": running,
        "pendingCount": 2 - running,
        "failedTasks": 0,
        "createdAt": datetime.datetime.now(datetime.UTC),
    }


Step = Callable[[str], list[dict[str, Any]]]


class ScriptedEcs:
    """moto never moves a deployment's rolloutState, so this tiny fake replays one: UpdateService and
    DescribeServices go to the moto server for real (names, request shapes), then the deployments in the
    DescribeServices answer are replaced by the next scripted step, given the id of our deployment."""

    def __init__(self, real: Any, script: list[Step | Exception]) -> None:
        self.real = real
        self.script = script
        self.ours = ""

    def update_service(self, **kwargs: Any) -> Any:
        response = self.real.update_service(**kwargs)
        self.ours = next(d["id"] for d in response["service"]["deployments"] if d["status"] == "PRIMARY")
        return response

    def describe_services(self, **kwargs: Any) -> Any:
        response = self.real.describe_services(**kwargs)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        response["services"][0]["deployments"] = step(self.ours)
        return response


def _scripted(ecs_service: tuple[Any, str, str], script: list[Step | Exception]) -> tuple[EcsDeployer, list[float]]:
    client, cluster, service = ecs_service
    sleeps: list[float] = []
    deployer = EcsDeployer(ScriptedEcs(client, script), cluster, service, timeout_s=60, poll_s=7, sleep=sleeps.append)  # type: ignore[arg-type]
    return deployer, sleeps


def test_ecs_follows_its_deployment_to_completed(ecs_service: tuple[Any, str, str]) -> None:
    deployer, sleeps = _scripted(
        ecs_service,
        [
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS", running=0), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS", running=1), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
            lambda ours: [_dep(ours, "PRIMARY", "COMPLETED", running=2)],
        ],
    )
    with capture_logs() as logs:
        deployer.deploy("flip to slot B")
    assert sleeps == [7, 7]
    progress = [e for e in logs if e["event"] == "deploy_progress"]
    assert [(e["rollout"], e["running"], e["desired"], e["pending"]) for e in progress] == [
        ("IN_PROGRESS", 0, 2, 2),
        ("IN_PROGRESS", 1, 2, 1),
        ("COMPLETED", 2, 2, 0),
    ]
    assert logs[-1]["event"] == "deploy_done" and logs[-1]["outcome"] == "ok"


def test_ecs_failed_rollout(ecs_service: tuple[Any, str, str]) -> None:
    deployer, _ = _scripted(
        ecs_service,
        [
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS")],
            lambda ours: [_dep(ours, "PRIMARY", "FAILED", "ECS deployment circuit breaker: tasks failed to start.")],
        ],
    )
    with pytest.raises(DeployError, match="failed: ECS deployment circuit breaker: tasks failed to start"):
        deployer.deploy("flip")


def test_ecs_circuit_breaker_rollback_is_a_failure(ecs_service: tuple[Any, str, str]) -> None:
    """The waiter bug of the reference implementation: after a rollback the *service* is stable again.
    Our deployment is no longer primary, so the deploy failed."""
    deployer, _ = _scripted(
        ecs_service,
        [
            lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS"), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
            lambda ours: [
                _dep("ecs-svc/rollback", "PRIMARY", "IN_PROGRESS"),
                _dep(ours, "ACTIVE", "FAILED", "tasks failed to start"),
            ],
            lambda ours: [_dep("ecs-svc/rollback", "PRIMARY", "COMPLETED", running=2)],
        ],
    )
    with pytest.raises(DeployError, match="was rolled back by the circuit breaker") as err:
        deployer.deploy("flip")
    assert "ecs-svc/rollback is now primary" in str(err.value)
    state = deployer.describe()  # the service is stable again, on the rollback
    assert (state.status, state.deployment_id) == ("stable", "ecs-svc/rollback")


def test_ecs_deployment_vanishing_is_a_rollback(ecs_service: tuple[Any, str, str]) -> None:
    deployer, _ = _scripted(ecs_service, [lambda ours: [_dep("ecs-svc/rollback", "PRIMARY", "COMPLETED")]])
    with pytest.raises(DeployError, match=r"deployment ecs-svc/\d+ was rolled back by the circuit breaker"):
        deployer.deploy("flip")


def test_ecs_transient_describe_errors_are_retried(ecs_service: tuple[Any, str, str]) -> None:
    throttled = ClientError({"Error": {"Code": "ServerException", "Message": "try again"}}, "DescribeServices")
    deployer, sleeps = _scripted(
        ecs_service, [throttled, throttled, lambda ours: [_dep(ours, "PRIMARY", "COMPLETED", running=2)]]
    )
    deployer.deploy("flip")
    assert len(sleeps) == 2

    deployer, _ = _scripted(ecs_service, [throttled])
    with pytest.raises(DeployError, match="failed 5 times in a row"):
        deployer.deploy("flip")


def test_ecs_describe_reports_failed(ecs_service: tuple[Any, str, str]) -> None:
    deployer, _ = _scripted(ecs_service, [lambda _ours: [_dep("ecs-svc/x", "PRIMARY", "FAILED", "boom")]])
    state = deployer.describe()
    assert state.status == "failed" and "boom" in state.detail


# ================================================================ command and none


def test_command_deployer_streams_output_and_passes_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Command-Secret-" + new_name()
    register_secret(secret)
    monkeypatch.setenv("ROTATOR_ADMIN_PASSWORD", "not-registered-but-named-like-one")
    monkeypatch.setenv("SOME_APP_SETTING", f"dsn://u:{secret}@h")
    monkeypatch.setenv("PLAIN_SETTING", "kept")
    config = tmp_path / "sqlconf.php"
    deployer = CommandDeployer(
        "echo slot=$ROTATOR_NEW_SLOT; echo path=$ROTATOR_CONFIG_PATH; echo reason=$ROTATOR_DEPLOY_REASON; env",
        timeout_s=10,
        config_path=config,
    )
    with capture_logs() as logs:
        deployer.deploy("flip to slot B", slot="B")
    lines = [e["line"] for e in logs if e["event"] == "deploy_output"]
    assert lines[:3] == ["slot=B", f"path={config}", "reason=flip to slot B"]
    assert "PLAIN_SETTING=kept" in lines
    assert not any(secret in line or "not-registered" in line for line in lines)
    assert not any(line.startswith(("ROTATOR_ADMIN_PASSWORD=", "SOME_APP_SETTING=")) for line in lines)
    assert logs[-1]["event"] == "deploy_done" and logs[-1]["outcome"] == "ok"


def test_command_deployer_nonzero_exit() -> None:
    with pytest.raises(DeployError, match="exited with code 3"):
        CommandDeployer("echo restarting; exit 3", timeout_s=10).deploy("flip")


def test_command_deployer_timeout_stops_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    started = time.monotonic()
    with pytest.raises(DeployError, match=r"did not finish within 0\.5s"):
        CommandDeployer(f"sleep 3; touch {marker}", timeout_s=0.5).deploy("flip")
    assert time.monotonic() - started < 3
    time.sleep(3)
    assert not marker.exists()  # the whole process group was stopped


def test_none_deployer_waits_the_grace_period() -> None:
    sleeps: list[float] = []
    deployer = NoneDeployer(12.5, sleep=sleeps.append)
    deployer.deploy("flip", slot="B")
    assert sleeps == [12.5]
    assert deployer.describe().status == "stable"
    NoneDeployer(0, sleep=sleeps.append).deploy("flip")
    assert sleeps == [12.5]


def test_make_deployer(ecs_service: tuple[Any, str, str]) -> None:
    client, cluster, service = ecs_service
    ecs = make_deployer("ecs", client=client, cluster=cluster, service=service, timeout_s=5, poll_s=0.01)
    assert ecs.name == "ecs" and ecs.describe().status == "stable"
    assert make_deployer("command", command="true", timeout_s=5).name == "command"
    assert make_deployer("none", grace_seconds=1).name == "none"
    with pytest.raises(BadInput, match="not one of"):
        make_deployer("kubernetes")
    with pytest.raises(BadInput, match="bad settings"):
        make_deployer("command", commmand="true")
    with pytest.raises(BadInput, match="needs a cluster"):
        make_deployer("ecs", client=client, cluster="", service="s")


# ================================================================ health


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int]

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        self.hits["authorization:" + str(self.headers.get("Authorization"))] = 1
        path = self.path.split("?")[0]
        if path == "/ok":
            self._answer(200)
        elif path == "/fail":
            self._answer(500)
        elif path == "/redirect":
            self._answer(302, location="/fail")
        elif path == "/flaky":
            self._answer(503 if self.hits[self.path] < 3 else 200)
        elif path == "/slow":
            time.sleep(1)
            self._answer(200)
        else:
            self._answer(404)

    def _answer(self, status: int, location: str | None = None) -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        try:
            self.wfile.write(b"ok")
        except BrokenPipeError:  # the check gave up (timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_http_ok(http_server: tuple[str, dict[str, int]]) -> None:
    base, _ = http_server
    result = HttpCheck(base + "/ok").run()
    assert result.ok and "status 200" in result.detail


def test_http_500_fails_after_every_attempt(http_server: tuple[str, dict[str, int]]) -> None:
    base, hits = http_server
    result = HttpCheck(base + "/fail", attempts=3, interval_s=0).run()
    assert not result.ok
    assert "status 500 is not accepted (after 3 attempts)" in result.detail
    assert hits["/fail"] == 3
    assert HttpCheck(base + "/fail", accepted_statuses=parse_statuses("500"), attempts=1).run().ok


def test_http_retries_until_the_app_is_up(http_server: tuple[str, dict[str, int]]) -> None:
    base, hits = http_server
    sleeps: list[float] = []
    result = HttpCheck(base + "/flaky", attempts=5, interval_s=1.5, sleep=sleeps.append).run()
    assert result.ok and hits["/flaky"] == 3 and sleeps == [1.5, 1.5]


def test_http_redirect_is_judged_by_its_own_status(http_server: tuple[str, dict[str, int]]) -> None:
    base, hits = http_server
    assert HttpCheck(base + "/redirect", attempts=1).run().ok  # 302 is in the default 200-399
    assert "/fail" not in hits  # not followed
    strict = HttpCheck(base + "/redirect", accepted_statuses=parse_statuses("200-299"), attempts=1).run()
    assert not strict.ok and "status 302" in strict.detail


def test_http_connection_refused() -> None:
    port = free_port()  # nothing listens there
    result = HttpCheck(f"http://127.0.0.1:{port}/health", attempts=2, interval_s=0).run()
    assert not result.ok and "cannot connect" in result.detail and "Connection refused" in result.detail


def test_http_timeout(http_server: tuple[str, dict[str, int]]) -> None:
    base, _ = http_server
    result = HttpCheck(base + "/slow", timeout_s=0.2, attempts=1).run()
    assert not result.ok and "cannot connect" in result.detail


def test_http_userinfo_is_basic_auth_and_never_shown(http_server: tuple[str, dict[str, int]]) -> None:
    base, hits = http_server
    url = base.replace("http://", "http://user:hunter2@") + "/ok?token=abc123"
    result = HttpCheck(url, attempts=1).run()
    assert result.ok
    assert "hunter2" not in result.detail and "abc123" not in result.detail
    assert hits["/ok?token=abc123"] == 1
    assert "authorization:Basic dXNlcjpodW50ZXIy" in hits  # user:hunter2


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    crypto = pytest.importorskip("cryptography")
    del crypto
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_self_signed(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"hits": {}}))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/ok"
        refused = HttpCheck(url, attempts=1).run()
        assert not refused.ok and "CERTIFICATE_VERIFY_FAILED" in refused.detail
        assert HttpCheck(url, attempts=1, ca_bundle=str(cert)).run().ok
        assert HttpCheck(url, attempts=1, verify_tls=False).run().ok
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("200", {200}),
        ("200-204, 301", {200, 201, 202, 203, 204, 301}),
        (" 200 - 201 ,418", {200, 201, 418}),
    ],
)
def test_parse_statuses(spec: str, expected: set[int]) -> None:
    assert parse_statuses(spec) == expected


@pytest.mark.parametrize("spec", ["", "ok", "200,", "299-200", "99", "200-700", "2xx", "200;301"])
def test_parse_statuses_rejects_nonsense(spec: str) -> None:
    with pytest.raises(BadInput, match="--health-statuses"):
        parse_statuses(spec)


def test_http_check_rejects_bad_urls() -> None:
    for url in ("ftp://host/x", "file:///etc/passwd", "http:///nohost", "localhost:8080"):
        with pytest.raises(BadInput, match="--health-url"):
            HttpCheck(url)


def test_db_login_check_and_run_checks(http_server: tuple[str, dict[str, int]]) -> None:
    base, _ = http_server
    good = DbLoginCheck(lambda: LoginResult(True, "ok"), name="db login as slot B")
    bad = DbLoginCheck(lambda: LoginResult(False, "bad password or no such user", auth_failed=True), name="db B")
    duck = DbLoginCheck(lambda: SimpleNamespace(ok=True, reason="ok"))

    def raising() -> LoginResult:
        raise OSError("network unreachable")

    broken = DbLoginCheck(raising, name="db broken")
    assert [r.ok for r in run_checks([good, duck, HttpCheck(base + "/ok")])] == [True, True, True]
    assert not broken.run().ok and "OSError: network unreachable" in broken.run().detail

    with pytest.raises(HealthCheckError, match="db B: bad password or no such user") as err:
        run_checks([good, bad, HttpCheck(base + "/fail", attempts=1)])
    assert isinstance(err.value, ChecksFailed)
    assert "http: GET" in str(err.value)
    assert [r.ok for r in err.value.results] == [True, False, False]


def test_deployment_check(ecs_service: tuple[Any, str, str]) -> None:
    client, cluster, service = ecs_service
    assert DeploymentCheck(EcsDeployer(client, cluster, service).describe).run().ok
    stuck = DeploymentCheck(EcsDeployer(client, cluster, "stuck").describe).run()
    assert not stuck.ok and stuck.detail.startswith("in_progress")
