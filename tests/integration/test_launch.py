"""``rotator.launch`` against the moto server.

Real (moto over HTTP): the CloudFormation stack made from ``deploy/cloudformation/rotation.yaml`` (its outputs
fill in cluster, task definition, subnets, security groups and log group), the ECS cluster, ``RunTask`` (the
task and its command overrides are read back from moto), the VPC's subnet and security group, and CloudWatch
Logs (the container's lines are put into moto's log stream and read back through ``get_log_events``).

Scripted: moto's ECS never moves a task to STOPPED nor gives a container an exit code, so ``ScriptedEcs``
wraps the real moto client and, for ``describe_tasks`` only, overlays a scripted sequence of states
(PROVISIONING -> RUNNING -> STOPPED with an exit code) on the task moto really holds. Each state may also
write the container's log lines into moto, as the awslogs driver would while the task runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rotator.aws import AwsClients
from rotator.errors import BadInput
from rotator.launch import build_command, launch, log_stream_name
from tests.aws_faults import Fault, fault_proxy
from tests.harness import AwsEnv

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation" / "rotation.yaml"
ACCOUNT = "123456789012"


@dataclass
class State:
    """One answer of describe_tasks: fields laid over the real task, and log lines the container writes by then."""

    fields: dict[str, Any]
    log_lines: list[str] = field(default_factory=list)


class ScriptedEcs:
    """The real moto ECS client, except that describe_tasks walks through scripted states (see module doc)."""

    def __init__(self, real: Any, logs: Any, states: list[State], *, log_group: str | None, prefix: str = "rotator"):
        self.real = real
        self.logs = logs
        self.states = list(states)
        self.log_group = log_group
        self.prefix = prefix
        self.run_calls: list[dict[str, Any]] = []
        self.describe_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_task(self, **kwargs: Any) -> Any:
        self.run_calls.append(kwargs)
        return self.real.run_task(**kwargs)

    def describe_tasks(self, *, cluster: str, tasks: list[str]) -> dict[str, Any]:
        self.describe_calls += 1
        real = self.real.describe_tasks(cluster=cluster, tasks=tasks)  # the task must really exist in moto
        assert len(real["tasks"]) == 1, real
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if state.log_lines and self.log_group:
            self._write_logs(real["tasks"][0]["taskArn"], state.log_lines)
            state.log_lines = []
        task = {**real["tasks"][0], **state.fields}
        return {"tasks": [task], "failures": []}

    def _write_logs(self, task_arn: str, lines: list[str]) -> None:
        stream = log_stream_name(self.prefix, "rotator", task_arn)
        try:
            self.logs.create_log_stream(logGroupName=self.log_group, logStreamName=stream)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        base = int(time.time() * 1000)  # CloudWatch Logs refuses events older than 14 days
        events = [{"timestamp": base + i, "message": line} for i, line in enumerate(lines)]
        self.logs.put_log_events(logGroupName=self.log_group, logStreamName=stream, logEvents=events)


@dataclass
class Infra:
    cluster: str
    stack_name: str
    subnet: str
    security_group: str
    outputs: dict[str, str]


def running(**extra: Any) -> State:
    return State({"lastStatus": "RUNNING", **extra})


def stopped(exit_code: int | None, *, reason: str = "Essential container in task exited", **extra: Any) -> State:
    container: dict[str, Any] = {"name": "rotator", "lastStatus": "STOPPED"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    fields = {
        "lastStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": reason,
        "containers": [container],
        **extra,
    }
    return State(fields)


@pytest.fixture
def infra(aws: AwsEnv) -> Infra:
    """A VPC, a cluster, and the rotation stack deployed into moto's CloudFormation."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=aws.prefix, Description="rotator", VpcId=vpc)["GroupId"]
    cluster = f"{aws.prefix}-app"
    aws.client("ecs").create_cluster(clusterName=cluster)
    stack_name = aws.prefix.replace("_", "-")
    secret = f"arn:aws:secretsmanager:{aws.region}:{ACCOUNT}:secret:{aws.prefix}"
    parameters = {
        "Image": "registry.example/rotator:1.0.0",
        "ClusterName": cluster,
        "Subnets": subnet,
        "SecurityGroups": group,
        "SlotSecretArn": f"{secret}/slot-AbCdEf",
        "AdminSecretArn": f"{secret}/admin-GhIjKl",
        "DeployMode": "ecs",
        "AppServiceName": "web",
    }
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    return Infra(cluster=cluster, stack_name=stack_name, subnet=subnet, security_group=group, outputs=outputs)


def collect() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


def test_failed_task_returns_its_exit_code_and_prints_its_log(aws: AwsEnv, infra: Infra) -> None:
    logs = aws.client("logs")
    log_group = infra.outputs["RotationLogGroup"]
    ecs = ScriptedEcs(
        aws.client("ecs"),
        logs,
        [
            State({"lastStatus": "PROVISIONING"}),
            State(
                {"lastStatus": "RUNNING"}, ['{"event": "observe", "outcome": "ok"}', '{"event": "flip", "slot": "B"}']
            ),
            State(
                stopped(4).fields,
                ['{"event": "health", "outcome": "failed"}', '{"event": "rollback", "outcome": "ok", "slot": "A"}'],
            ),
        ],
        log_group=log_group,
    )
    printed, print_line = collect()

    code = launch(
        ecs,  # type: ignore[arg-type]
        logs,
        aws.client("cloudformation"),
        stack_name=infra.stack_name,
        overrides=["--dry-run"],
        poll_s=0,
        print_line=print_line,
    )

    assert code == 4
    container_lines = [line for line in printed if line.startswith("{")]
    assert container_lines == [
        '{"event": "observe", "outcome": "ok"}',
        '{"event": "flip", "slot": "B"}',
        '{"event": "health", "outcome": "failed"}',
        '{"event": "rollback", "outcome": "ok", "slot": "A"}',
    ]
    assert any("exited with code 4" in line and "rolled back" in line for line in printed), printed
    # Everything came from the stack's outputs, and moto really holds the task with the command override.
    (call,) = ecs.run_calls
    assert call["cluster"] == infra.cluster
    assert call["taskDefinition"] == infra.outputs["RotationTaskDefinitionArn"]
    assert call["launchType"] == "FARGATE"
    assert call["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": [infra.subnet],
        "securityGroups": [infra.security_group],
        "assignPublicIp": "DISABLED",
    }
    task_arns = aws.client("ecs").list_tasks(cluster=infra.cluster)["taskArns"]
    assert len(task_arns) == 1
    real = aws.client("ecs").describe_tasks(cluster=infra.cluster, tasks=task_arns)["tasks"][0]
    assert real["overrides"]["containerOverrides"] == [
        {"name": "rotator", "command": ["rotate", "--log-json", "--dry-run"]}
    ]


def test_successful_task_returns_zero(aws: AwsEnv, infra: Infra) -> None:
    logs = aws.client("logs")
    log_group = f"/test/{aws.prefix}"
    logs.create_log_group(logGroupName=log_group)
    ecs = ScriptedEcs(
        aws.client("ecs"),
        logs,
        [State({"lastStatus": "RUNNING"}, ["rotated slot A", "done"]), stopped(0)],
        log_group=log_group,
    )
    printed, print_line = collect()

    # Every setting given explicitly: no stack is read (cfn=None would fail if it were).
    code = launch(
        ecs,  # type: ignore[arg-type]
        logs,
        None,
        cluster=infra.cluster,
        task_definition=infra.outputs["RotationTaskDefinitionArn"],
        subnets=[infra.subnet],
        security_groups=infra.security_group,
        assign_public_ip=True,
        log_group=log_group,
        overrides=["--no-json", "--sync-db-users", "--fix-permissions"],
        poll_s=0,
        print_line=print_line,
    )

    assert code == 0
    assert printed.index("rotated slot A") < printed.index("done")
    assert printed.count("done") == 1  # each event printed once, however often the stream is read
    (call,) = ecs.run_calls
    assert call["overrides"]["containerOverrides"][0]["command"] == ["rotate", "--sync-db-users", "--fix-permissions"]
    assert call["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED"


def test_launch_check_runs_the_preflight_in_the_task(aws: AwsEnv, infra: Infra) -> None:
    """`rotator launch --check`: the pre-flight from the task's own network path; its exit code (2: a check
    failed) is the launch's."""
    logs = aws.client("logs")
    log_group = f"/test/{aws.prefix}"
    logs.create_log_group(logGroupName=log_group)
    report = '{"event": "check_report", "outcome": "failed", "exit_code": 2, "failed": ["database TLS"]}'
    ecs = ScriptedEcs(
        aws.client("ecs"), logs, [State({"lastStatus": "RUNNING"}, [report]), stopped(2)], log_group=log_group
    )
    printed, print_line = collect()
    code = launch(
        ecs,  # type: ignore[arg-type]
        logs,
        aws.client("cloudformation"),
        stack_name=infra.stack_name,
        log_group=log_group,
        subcommand="check",
        poll_s=0,
        print_line=print_line,
    )
    assert code == 2 and report in printed
    (call,) = ecs.run_calls
    assert call["overrides"]["containerOverrides"][0]["command"] == ["check", "--log-json"]


def test_task_that_never_ran_fails_with_its_reason(aws: AwsEnv, infra: Infra) -> None:
    reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"
    ecs = ScriptedEcs(
        aws.client("ecs"),
        aws.client("logs"),
        [
            State({"lastStatus": "PENDING"}),
            stopped(None, reason=reason, stopCode="TaskFailedToStart"),
        ],
        log_group=None,
    )
    printed, print_line = collect()

    code = launch(
        ecs,  # type: ignore[arg-type]
        aws.client("logs"),
        aws.client("cloudformation"),
        stack_name=infra.stack_name,
        poll_s=0,
        print_line=print_line,
    )

    assert code == 1
    assert any("CannotPullContainerError" in line and "TaskFailedToStart" in line for line in printed), printed
    assert any("no log stream" in line for line in printed), printed


def test_timeout_leaves_the_task_running_and_fails(aws: AwsEnv, infra: Infra) -> None:
    ecs = ScriptedEcs(aws.client("ecs"), aws.client("logs"), [running()], log_group=None)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += 10

    printed, print_line = collect()
    code = launch(
        ecs,  # type: ignore[arg-type]
        aws.client("logs"),
        aws.client("cloudformation"),
        stack_name=infra.stack_name,
        poll_s=10,
        timeout_s=30,
        print_line=print_line,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert code == 1
    assert any("still RUNNING after 30s" in line for line in printed), printed
    assert ecs.describe_calls == 4


def test_no_wait_returns_once_started(aws: AwsEnv, infra: Infra) -> None:
    ecs = ScriptedEcs(aws.client("ecs"), aws.client("logs"), [running()], log_group=None)
    printed, print_line = collect()
    code = launch(
        ecs,  # type: ignore[arg-type]
        aws.client("logs"),
        aws.client("cloudformation"),
        stack_name=infra.stack_name,
        wait=False,
        print_line=print_line,
    )
    assert code == 0
    assert ecs.describe_calls == 0
    assert printed and printed[0].startswith("started task arn:aws:ecs:")


def test_missing_settings_name_the_flag(aws: AwsEnv, infra: Infra) -> None:
    with pytest.raises(
        BadInput, match=r"no cluster: pass --cluster, or --stack-name of a stack with output ClusterName"
    ):
        launch(aws.client("ecs"), aws.client("logs"), None, task_definition="x", subnets="subnet-1")
    with pytest.raises(BadInput, match=r"no subnets: pass --subnets"):
        launch(aws.client("ecs"), aws.client("logs"), None, cluster="c", task_definition="x")
    with pytest.raises(BadInput, match=r"stack 'no-such-stack' does not exist"):
        launch(aws.client("ecs"), aws.client("logs"), aws.client("cloudformation"), stack_name="no-such-stack")


def test_refused_run_task_is_bad_input(aws: AwsEnv, infra: Infra) -> None:
    with pytest.raises(
        BadInput, match=r"^ECS RunTask: .* does not exist \(ClusterNotFoundException\): check --cluster"
    ):
        launch(
            aws.client("ecs"),
            aws.client("logs"),
            None,
            cluster=f"{aws.prefix}-missing",
            task_definition=infra.outputs["RotationTaskDefinitionArn"],
            subnets=infra.subnet,
        )


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
def test_a_fault_on_the_first_call_of_every_operation_is_survived(aws: AwsEnv, infra: Infra, fault: Fault) -> None:
    """DescribeStacks, RunTask, DescribeTasks and GetLogEvents each meet a throttle or a 503 first (the fault
    proxy answers it instead of moto): the launch still follows the task to its exit code and log."""
    direct_logs = aws.client("logs")
    log_group = infra.outputs["RotationLogGroup"]
    with fault_proxy(aws.endpoint_url, {"*": [fault]}) as proxy:
        clients = AwsClients(region=aws.region, endpoint_url=proxy.url)
        ecs = ScriptedEcs(
            clients.client("ecs"),
            direct_logs,  # the container's own log writes do not go through the proxy
            [State({"lastStatus": "RUNNING"}, ["rotated slot A"]), stopped(0)],
            log_group=log_group,
        )
        printed, print_line = collect()
        code = launch(
            ecs,  # type: ignore[arg-type]
            clients.client("logs"),
            clients.client("cloudformation"),
            stack_name=infra.stack_name,
            poll_s=0,
            print_line=print_line,
            sleep=lambda _: None,
        )
    assert code == 0, printed
    assert "rotated slot A" in printed
    for operation in ("cloudformation.DescribeStacks", "ecs.RunTask", "ecs.DescribeTasks", "logs.GetLogEvents"):
        assert proxy.faulted[operation] == 1, proxy.faulted
    assert len(ecs.run_calls) == proxy.requests["ecs.RunTask"] == 2  # refused once, then one task started
    # The retry is the same request: with the same clientToken, ECS never starts a second task for it
    # (moto keeps the token but does not deduplicate, so only the request is checked here).
    first, retried = ecs.run_calls
    assert first == retried and len(first["clientToken"]) == 32
    assert len(aws.client("ecs").list_tasks(cluster=infra.cluster)["taskArns"]) == 1


def _rotator_launch(proxy_url: str, region: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROTATOR_AWS_ENDPOINT_URL": proxy_url, "AWS_ENDPOINT_URL": proxy_url, "AWS_REGION": region}
    return subprocess.run(
        [sys.executable, "-m", "rotator.cli", "launch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


def test_rotator_launch_never_prints_a_traceback(aws: AwsEnv, infra: Infra) -> None:
    """Every AWS failure of the real `rotator launch` is one line and a documented exit code: a stack it may not
    read is bad input (2), nothing started; a log it may not read is said once and the task is still followed
    (here until --timeout 0: exit 1, as moto's tasks never stop)."""
    with fault_proxy(aws.endpoint_url, always={"cloudformation.DescribeStacks": "denied"}) as proxy:
        denied = _rotator_launch(proxy.url, aws.region, "--stack-name", infra.stack_name)
    assert denied.returncode == 2, denied.stderr
    assert "Traceback" not in denied.stdout + denied.stderr
    (line,) = denied.stderr.strip().splitlines()
    assert "CloudFormation DescribeStacks" in line and "IAM permission cloudformation:DescribeStacks" in line, line
    assert proxy.requests["ecs.RunTask"] == 0

    with fault_proxy(aws.endpoint_url, always={"logs.GetLogEvents": "denied"}) as proxy:
        followed = _rotator_launch(proxy.url, aws.region, "--stack-name", infra.stack_name, "--timeout", "0")
    output = followed.stdout + followed.stderr
    assert followed.returncode == 1, output
    assert "Traceback" not in output
    said = [line for line in followed.stdout.splitlines() if "cannot read the task's log" in line]
    assert len(said) == 1 and "logs:GetLogEvents" in said[0], output
    assert "keeps running" in followed.stdout, output
    assert proxy.requests["logs.GetLogEvents"] == 1  # refused: not retried, not asked again


def test_build_command() -> None:
    assert build_command([]) == ["rotate", "--log-json"]
    assert build_command(["--log-json", "--dry-run"]) == ["rotate", "--log-json", "--dry-run"]
    assert build_command(["--no-json"]) == ["rotate"]
    assert build_command([], subcommand="check") == ["check", "--log-json"]


def test_moto_endpoint_is_used(aws: AwsEnv) -> None:
    """Guard: these tests never reach real AWS."""
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize(
    ("script", "extra"),
    [
        ("run-credential-rotation.sh", []),
        ("fix-sqlconf-permissions.sh", ["--sync-db-users", "--fix-permissions"]),
    ],
)
def test_scripts_run_rotator_launch(tmp_path: Path, script: str, extra: list[str]) -> None:
    """The wrappers exec `rotator launch` with STACK_NAME/AWS_REGION as flags, then the caller's arguments."""
    import subprocess

    stub = tmp_path / "rotator"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\nexit 4\n')
    stub.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "ROTATOR_BIN": str(stub),
        "STACK_NAME": "rotator-prod",
        "AWS_REGION": "eu-west-1",
    }
    result = subprocess.run(
        [str(SCRIPTS / script), "--dry-run"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 4  # the task's exit code comes through
    assert result.stdout.splitlines() == [
        "launch",
        "--stack-name",
        "rotator-prod",
        "--region",
        "eu-west-1",
        "--dry-run",
        *extra,
    ]
