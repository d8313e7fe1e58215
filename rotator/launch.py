"""``rotator launch``: start the rotation task on ECS (Fargate), wait until it stops, print its log, return its code.

Settings that are not given come from the outputs of the CloudFormation stack made from
``deploy/cloudformation/rotation.yaml`` (``--stack-name``). The task definition there sets the container's
entrypoint to ``rotator``; ECS lets a caller replace the command but never the entrypoint, so the command this
module sends is a whole subcommand: ``["rotate", "--log-json", ...overrides]``.

The exit code returned is the rotation container's own (0 ok, 1 failed, 2 bad input, 3 locked, 4 rolled back,
5 needs a human); a task that stopped without one (the image could not be pulled, the task could not start)
returns 1 after printing why.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rotator.aws import AwsEdge
from rotator.errors import BadInput, ExitCode, RotatorError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import AwsVpcConfigurationTypeDef
    from mypy_boto3_logs import CloudWatchLogsClient

PrintLine = Callable[[str], object]

# Stack output keys (deploy/cloudformation/rotation.yaml) and the flag that replaces each.
OUTPUT_CLUSTER = "ClusterName"
OUTPUT_TASK_DEFINITION = "RotationTaskDefinitionArn"
OUTPUT_SUBNETS = "SubnetIds"
OUTPUT_SECURITY_GROUPS = "SecurityGroupIds"
OUTPUT_ASSIGN_PUBLIC_IP = "AssignPublicIp"
OUTPUT_LOG_GROUP = "RotationLogGroup"
OUTPUT_LOG_STREAM_PREFIX = "RotationLogStreamPrefix"

FLAG_STACK = "--stack-name"
FLAGS = {
    OUTPUT_CLUSTER: "--cluster",
    OUTPUT_TASK_DEFINITION: "--task-definition",
    OUTPUT_SUBNETS: "--subnets",
    OUTPUT_SECURITY_GROUPS: "--security-groups",
    OUTPUT_LOG_GROUP: "--log-group",
}

SUBCOMMAND = ("rotate",)
JSON_FLAG = "--log-json"
NO_JSON_FLAG = "--no-json"
DEFAULT_LOG_STREAM_PREFIX = "rotator"
STARTED_BY = "rotator-launch"
STOPPED = "STOPPED"

EXIT_MEANINGS = {
    ExitCode.OK: "ok, or nothing to do",
    ExitCode.FAILED: "failed; a re-run heals",
    ExitCode.BAD_INPUT: "bad input; nothing was changed",
    ExitCode.LOCKED: "another rotation holds the lock; nothing was changed",
    ExitCode.ROLLED_BACK: "failed and rolled back; the app is healthy on the old slot",
    ExitCode.NEEDS_HUMAN: "failed and NOT restored; a human must look (see the log above)",
}

RUN_TASK_FIX = (
    "check --cluster, --task-definition, --subnets, --security-groups and the caller's permissions: rotator iam-policy"
)


@dataclass(frozen=True)
class Target:
    """Where and what to run, every value resolved."""

    cluster: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    log_group: str | None
    log_stream_prefix: str


def split_ids(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b,c"]`` as ``("a", "b", "c")``."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def build_command(overrides: Iterable[str] = (), *, subcommand: str = SUBCOMMAND[0]) -> list[str]:
    """The container command: ``rotate --log-json`` plus the overrides (``--no-json`` drops ``--log-json``);
    ``subcommand="check"``: the pre-flight, from the task's own network path."""
    args = list(overrides)
    json_logs = NO_JSON_FLAG not in args
    rest = [a for a in args if a not in (NO_JSON_FLAG, JSON_FLAG)]
    return [subcommand, *([JSON_FLAG] if json_logs else []), *rest]


def stack_outputs(cfn: CloudFormationClient | AwsEdge, stack_name: str) -> dict[str, str]:
    """The stack's outputs; a stack that cannot be read is bad input (exit 2), a failure after retries exit 1."""
    stacks = (
        AwsEdge.of(cfn, "cloudformation")
        .call(
            "DescribeStacks",
            what=f"stack {stack_name!r}",
            fix=f"check {FLAG_STACK} and --region",
            refused=BadInput,
            failed=RotatorError,
            StackName=stack_name,
        )
        .get("Stacks", [])
    )
    if not stacks:
        raise BadInput(f"stack {stack_name!r} not found: check {FLAG_STACK} and --region")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}


def resolve_target(
    cfn: CloudFormationClient | AwsEdge | None,
    *,
    stack_name: str | None = None,
    cluster: str | None = None,
    task_definition: str | None = None,
    subnets: str | Sequence[str] | None = None,
    security_groups: str | Sequence[str] | None = None,
    assign_public_ip: bool | None = None,
    log_group: str | None = None,
    log_stream_prefix: str | None = None,
) -> Target:
    """Fill what is not given from the stack's outputs; a value given wins over the stack's."""
    given_subnets = split_ids(subnets)
    given_groups = split_ids(security_groups)
    outputs: dict[str, str] = {}
    needs_stack = not (cluster and task_definition and given_subnets and given_groups and log_group)
    if stack_name and needs_stack:
        if cfn is None:
            raise BadInput(f"{FLAG_STACK} needs a CloudFormation client")
        outputs = stack_outputs(cfn, stack_name)

    def need(value: str | None, key: str) -> str:
        if value:
            return value
        if outputs.get(key):
            return outputs[key]
        what = FLAGS[key][2:].replace("-", " ")
        if stack_name:
            raise BadInput(f"no {what}: pass {FLAGS[key]} (stack {stack_name!r} has no output {key})")
        raise BadInput(f"no {what}: pass {FLAGS[key]}, or {FLAG_STACK} of a stack with output {key}")

    resolved_cluster = need(cluster, OUTPUT_CLUSTER)
    resolved_task_definition = need(task_definition, OUTPUT_TASK_DEFINITION)
    resolved_subnets = given_subnets or split_ids(need(None, OUTPUT_SUBNETS))
    resolved_groups = given_groups or split_ids(outputs.get(OUTPUT_SECURITY_GROUPS))
    if assign_public_ip is None:
        assign_public_ip = outputs.get(OUTPUT_ASSIGN_PUBLIC_IP, "DISABLED").upper() == "ENABLED"
    return Target(
        cluster=resolved_cluster,
        task_definition=resolved_task_definition,
        subnets=resolved_subnets,
        security_groups=resolved_groups,
        assign_public_ip=assign_public_ip,
        log_group=log_group or outputs.get(OUTPUT_LOG_GROUP) or None,
        log_stream_prefix=log_stream_prefix or outputs.get(OUTPUT_LOG_STREAM_PREFIX) or DEFAULT_LOG_STREAM_PREFIX,
    )


def run_task(ecs: ECSClient | AwsEdge, target: Target, *, container_name: str, command: list[str]) -> str:
    """Start one task; return its ARN. Errors name what to fix; nothing has changed when they are raised.

    The edge retries the call with the same ``clientToken``, so a retry after an answer that was lost (a 5xx or
    a read timeout after the task started) starts no second task: ECS returns the first one.
    """
    network: AwsVpcConfigurationTypeDef = {
        "subnets": list(target.subnets),
        "assignPublicIp": "ENABLED" if target.assign_public_ip else "DISABLED",
    }
    if target.security_groups:
        network["securityGroups"] = list(target.security_groups)
    response = AwsEdge.of(ecs, "ecs").call(
        "RunTask",
        what=f"task definition {target.task_definition} in cluster {target.cluster}",
        fix=RUN_TASK_FIX,
        refused=BadInput,
        failed=RotatorError,
        cluster=target.cluster,
        taskDefinition=target.task_definition,
        launchType="FARGATE",
        count=1,
        startedBy=STARTED_BY,
        clientToken=uuid.uuid4().hex,
        networkConfiguration={"awsvpcConfiguration": network},
        overrides={"containerOverrides": [{"name": container_name, "command": command}]},
    )
    failures = response.get("failures", [])
    tasks = response.get("tasks", [])
    if failures or not tasks:
        reasons = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip() for f in failures)
        raise RotatorError(f"RunTask started no task: {reasons or 'no reason given'}")
    return str(tasks[0]["taskArn"])


class LogFollower:
    """Prints new events of one CloudWatch Logs stream each time it is pumped.

    The log is shown for the operator's convenience: when it cannot be read (after the edge's retries), the
    follower prints why once and stops, and the launch goes on to report the task's exit code.
    """

    def __init__(self, logs: CloudWatchLogsClient | AwsEdge, group: str, stream: str) -> None:
        self.logs = AwsEdge.of(logs, "logs")
        self.group = group
        self.stream = stream
        self.token: str | None = None
        self.found = False
        self.broken = False

    def pump(self, print_line: PrintLine) -> int:
        """Print every event not printed yet; return how many. A stream not created yet has none."""
        count = 0
        while not self.broken:
            kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": self.stream}
            kwargs.update({"nextToken": self.token} if self.token else {"startFromHead": True})
            try:
                page = self.logs.call(
                    "GetLogEvents",
                    what=f"log stream {self.stream} in {self.group}",
                    allow=("ResourceNotFoundException",),
                    fix="check --log-group",
                    refused=RotatorError,
                    failed=RotatorError,
                    **kwargs,
                )
            except ClientError:  # allowed: the stream does not exist yet
                return count
            except RotatorError as exc:
                self.broken = True
                print_line(f"cannot read the task's log ({exc}); still following the task")
                return count
            self.found = True
            for event in page.get("events", []):
                print_line(event.get("message", "").rstrip("\n"))
                count += 1
            token = page.get("nextForwardToken")
            if not token or token == self.token:
                return count
            self.token = token
        return count


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def log_stream_name(prefix: str, container_name: str, task_arn: str) -> str:
    """The awslogs driver's stream: ``<prefix>/<container>/<task-id>``."""
    return f"{prefix}/{container_name}/{task_id(task_arn)}"


def describe_task(ecs: ECSClient | AwsEdge, cluster: str, task_arn: str) -> dict[str, Any]:
    try:
        response = AwsEdge.of(ecs, "ecs").call(
            "DescribeTasks",
            what=f"task {task_arn}",
            fix="check --cluster",
            refused=RotatorError,
            failed=RotatorError,
            cluster=cluster,
            tasks=[task_arn],
        )
    except RotatorError as exc:
        raise RotatorError(f"{exc}; the task may still be running: follow it in the ECS console") from None
    tasks = response.get("tasks", [])
    if not tasks:
        raise RotatorError(f"task {task_arn} is gone from cluster {cluster}; read its log in CloudWatch Logs")
    return dict(tasks[0])


def exit_code_of(task: dict[str, Any], container_name: str, print_line: PrintLine) -> int:
    """The container's exit code; a task without one (it never ran, or was killed) counts as failed (1)."""
    reason = task.get("stoppedReason") or "no reason given"
    stop_code = task.get("stopCode") or "unknown"
    container = next((c for c in task.get("containers", []) if c.get("name") == container_name), None)
    if container is None:
        print_line(f"task stopped ({stop_code}: {reason}) with no container named {container_name!r}")
        return int(ExitCode.FAILED)
    code = container.get("exitCode")
    if code is None:
        detail = container.get("reason") or ""
        print_line(
            f"task stopped without an exit code ({stop_code}: {reason}{'; ' + detail if detail else ''}); "
            "nothing ran, or it was killed: fix the cause and run again"
        )
        return int(ExitCode.FAILED)
    code = int(code)
    try:
        meaning = EXIT_MEANINGS[ExitCode(code)]
    except ValueError:
        meaning = ""
    suffix = f" ({meaning})" if meaning else f" (stopped: {reason})"
    print_line(f"task exited with code {code}{suffix}")
    return code


def launch(
    ecs: ECSClient,
    logs: CloudWatchLogsClient,
    cfn: CloudFormationClient | None,
    *,
    stack_name: str | None = None,
    cluster: str | None = None,
    task_definition: str | None = None,
    subnets: str | Sequence[str] | None = None,
    security_groups: str | Sequence[str] | None = None,
    assign_public_ip: bool | None = None,
    log_group: str | None = None,
    log_stream_prefix: str | None = None,
    container_name: str = "rotator",
    overrides: Sequence[str] = (),
    subcommand: str = SUBCOMMAND[0],
    wait: bool = True,
    poll_s: float = 6.0,
    timeout_s: float = 3600.0,
    print_line: PrintLine = print,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run the rotation task once; with ``wait``, follow it to the end and return its exit code.

    ``assign_public_ip=None`` takes the stack's ``AssignPublicIp`` output (else no public IP). Without
    ``wait`` the return is 0 once the task has started. Raises :class:`BadInput` for missing or refused
    settings (nothing started), and a :class:`RotatorError` (exit 1) for an AWS call that still fails after
    the edge's retries; every AWS call goes through :class:`rotator.aws.AwsEdge`, whose backoff uses ``sleep``.
    """
    ecs_edge = AwsEdge.of(ecs, "ecs", sleep=sleep)
    logs_edge = AwsEdge.of(logs, "logs", sleep=sleep)
    cfn_edge = AwsEdge.of(cfn, "cloudformation", sleep=sleep) if cfn is not None else None
    target = resolve_target(
        cfn_edge,
        stack_name=stack_name,
        cluster=cluster,
        task_definition=task_definition,
        subnets=subnets,
        security_groups=security_groups,
        assign_public_ip=assign_public_ip,
        log_group=log_group,
        log_stream_prefix=log_stream_prefix,
    )
    command = build_command(overrides, subcommand=subcommand)
    task_arn = run_task(ecs_edge, target, container_name=container_name, command=command)
    print_line(f"started task {task_arn} in cluster {target.cluster}: {' '.join(command)}")
    if not wait:
        return int(ExitCode.OK)

    follower: LogFollower | None = None
    if target.log_group:
        stream = log_stream_name(target.log_stream_prefix, container_name, task_arn)
        follower = LogFollower(logs_edge, target.log_group, stream)
    else:
        print_line("no log group known (pass --log-group or --stack-name): the task's log is not shown here")

    deadline = clock() + timeout_s
    status = ""
    try:
        while True:
            task = describe_task(ecs_edge, target.cluster, task_arn)
            if task.get("lastStatus", "") != status:
                status = task.get("lastStatus", "")
                print_line(f"task {task_id(task_arn)}: {status}")
            if follower is not None:
                follower.pump(print_line)
            if status == STOPPED:
                break
            if clock() >= deadline:
                print_line(
                    f"task {task_arn} is still {status} after {timeout_s:.0f}s; it keeps running: "
                    "follow it in the ECS console or with `rotator status`"
                )
                return int(ExitCode.FAILED)
            sleep(poll_s)
    except KeyboardInterrupt:
        print_line(f"interrupted: task {task_arn} keeps running (a stopped rotation is healed by the next run)")
        return 130
    if follower is not None:
        _drain(follower, print_line, sleep, poll_s)
    return exit_code_of(task, container_name, print_line)


def _drain(follower: LogFollower, print_line: PrintLine, sleep: Callable[[float], object], poll_s: float) -> None:
    """awslogs delivers the last lines shortly after the task stops: read until a pump finds nothing new."""
    for _ in range(5):
        if follower.broken or (follower.pump(print_line) == 0 and follower.found):
            return
        sleep(min(poll_s, 2.0))
    if not follower.found:
        print_line(f"no log stream {follower.stream} in {follower.group}: the container may never have started")
