"""ECS: force a new deployment of the service and follow *that* deployment until it completes.

The "services stable" waiter is not enough: when the deployment circuit breaker rolls a deployment back,
the service becomes stable again (on the rollback) and the waiter reports success. Here the deployment
created by our UpdateService is followed by id; it must itself reach rolloutState COMPLETED while PRIMARY.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rotator.aws import DEFAULT_MAX_ATTEMPTS, AwsEdge
from rotator.deploy.base import DeploymentState, DeployProgress, DeployStatus
from rotator.errors import BadInput, DeployError, RotatorError
from rotator.log import get_logger

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import DeploymentTypeDef

_STATUS: dict[str, DeployStatus] = {"COMPLETED": "stable", "IN_PROGRESS": "in_progress", "FAILED": "failed"}
_FIX = "check --ecs-cluster, --ecs-service and the region (AWS_REGION)"


def _primary(deployments: Sequence[DeploymentTypeDef]) -> DeploymentTypeDef | None:
    return next((d for d in deployments if d.get("status") == "PRIMARY"), None)


def _counts(d: DeploymentTypeDef) -> str:
    return f"running {d.get('runningCount', 0)}/{d.get('desiredCount', 0)}, pending {d.get('pendingCount', 0)}"


class EcsDeployer:
    name = "ecs"

    def __init__(
        self,
        client: ECSClient,
        cluster: str,
        service: str,
        timeout_s: float = 1800.0,
        poll_s: float = 15.0,
        log: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        progress: Callable[[DeployProgress], None] | None = None,
        progress_s: float = 5.0,
    ) -> None:
        """``progress`` is called every ``progress_s`` seconds while the rollout is followed (between the polls
        too, with the last state and the time elapsed) and once at the end; a terminal display, for example."""
        if not cluster or not service:
            raise BadInput("the ECS deployer needs a cluster and a service (--ecs-cluster, --ecs-service)")
        if timeout_s <= 0 or poll_s <= 0:
            raise BadInput("the ECS deploy timeout and poll interval must be > 0")
        # One retry loop per call, the edge's: a poll that still fails after it ends the deployment.
        self._edge = AwsEdge(
            client, "ecs", max_attempts=max_attempts, sleep=sleep, refused=DeployError, failed=DeployError
        )
        self.cluster = cluster
        self.service = service
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._log = log if log is not None else get_logger(__name__)
        self._clock = clock
        self._sleep = sleep
        self._progress = progress
        self._progress_s = max(0.1, progress_s)

    @property
    def _where(self) -> str:
        return f"service {self.cluster}/{self.service}"

    def _deployments(self) -> list[DeploymentTypeDef]:
        resp = self._edge.call(
            "DescribeServices", what=self._where, fix=_FIX, cluster=self.cluster, services=[self.service]
        )
        services = resp.get("services", [])
        if not services or services[0].get("status") == "INACTIVE":
            raise DeployError(f"ECS service {self.service} not found in cluster {self.cluster}: check --ecs-service")
        return list(services[0].get("deployments", []))

    def describe(self) -> DeploymentState:
        try:
            deployments = self._deployments()
        except RotatorError as exc:
            return DeploymentState("unknown", str(exc))
        primary = _primary(deployments)
        if primary is None:
            return DeploymentState("unknown", f"service {self.service} has no PRIMARY deployment")
        rollout = primary.get("rolloutState")
        if rollout is not None:
            status = _STATUS.get(rollout, "unknown")
        else:  # no rollout state (older services): the "services stable" condition
            settled = len(deployments) == 1 and primary.get("runningCount") == primary.get("desiredCount")
            status = "stable" if settled else "in_progress"
        detail = f"deployment {primary.get('id')}: rollout {rollout or 'n/a'}, {_counts(primary)}"
        if rollout == "FAILED" and primary.get("rolloutStateReason"):
            detail += f": {primary.get('rolloutStateReason')}"
        return DeploymentState(status, detail, primary.get("id"))

    def deploy(self, reason: str, *, slot: str | None = None) -> None:
        where = f"{self.cluster}/{self.service}"
        self._log.info("deploy_start", deployer=self.name, service=where, reason=reason, slot=slot)
        resp = self._edge.call(
            "UpdateService",
            what=self._where,
            fix=_FIX,
            cluster=self.cluster,
            service=self.service,
            forceNewDeployment=True,
        )
        primary = _primary(resp["service"].get("deployments", []))
        if primary is None or not primary.get("id"):
            raise DeployError(f"ECS UpdateService on {where} returned no PRIMARY deployment: cannot follow the rollout")
        deployment_id = primary["id"]
        started = self._clock()
        deadline = started + self.timeout_s
        last = "not yet described"
        while True:
            try:
                deployments = self._deployments()
            except DeployError as exc:
                raise DeployError(
                    f"{exc}; the state of deployment {deployment_id} is unknown: check the ECS console"
                ) from None
            ours = next((d for d in deployments if d.get("id") == deployment_id), None)
            try:
                finished = self._finished(deployment_id, ours, _primary(deployments), len(deployments), started)
            except DeployError:
                self._show(deployment_id, ours, started, final=True)
                raise
            if finished:
                self._show(deployment_id, ours, started, final=True)
                self._log.info(
                    "deploy_done",
                    deployer=self.name,
                    deployment=deployment_id,
                    outcome="ok",
                    duration_ms=int((self._clock() - started) * 1000),
                )
                return
            assert ours is not None
            last = f"rollout {ours.get('rolloutState', 'n/a')}, {_counts(ours)}"
            if self._clock() >= deadline:
                raise DeployError(
                    f"ECS deployment {deployment_id} of {where} did not finish within {self.timeout_s:g}s "
                    f"({last}): check the service's events in the ECS console"
                )
            self._wait(deployment_id, ours, started)

    def _wait(self, deployment_id: str, ours: DeploymentTypeDef, started: float) -> None:
        """Sleep one poll interval; with a progress display, in steps of ``progress_s``, showing each."""
        if self._progress is None:
            self._sleep(self.poll_s)
            return
        left = self.poll_s
        while left > 0:
            step = min(self._progress_s, left)
            self._sleep(step)
            left -= step
            self._show(deployment_id, ours, started)

    def _show(self, deployment_id: str, ours: DeploymentTypeDef | None, started: float, *, final: bool = False) -> None:
        if self._progress is None:
            return
        d: Any = ours or {}
        try:
            self._progress(
                DeployProgress(
                    deployment=deployment_id,
                    status=d.get("status"),
                    rollout=d.get("rolloutState"),
                    running=int(d.get("runningCount", 0)),
                    desired=int(d.get("desiredCount", 0)),
                    pending=int(d.get("pendingCount", 0)),
                    elapsed_s=self._clock() - started,
                    final=final,
                )
            )
        except Exception as exc:  # a display never fails a deployment
            self._log.warning("progress_display_failed", error=type(exc).__name__)

    def _finished(
        self,
        deployment_id: str,
        ours: DeploymentTypeDef | None,
        primary: DeploymentTypeDef | None,
        count: int,
        started: float,
    ) -> bool:
        """True when our deployment completed; False while it is in progress; DeployError when it failed."""
        now_primary = f"; deployment {primary.get('id')} is now primary" if primary is not None else ""
        if ours is None:
            raise DeployError(f"deployment {deployment_id} was rolled back by the circuit breaker{now_primary}")
        rollout = ours.get("rolloutState")
        reason = ours.get("rolloutStateReason") or "no reason given"
        self._log.info(
            "deploy_progress",
            deployer=self.name,
            deployment=deployment_id,
            deployment_status=ours.get("status"),
            rollout=rollout,
            running=ours.get("runningCount", 0),
            desired=ours.get("desiredCount", 0),
            pending=ours.get("pendingCount", 0),
            failed_tasks=ours.get("failedTasks", 0),
            elapsed_s=round(self._clock() - started, 1),
        )
        if ours.get("status") != "PRIMARY":
            if rollout == "FAILED" or primary is not None:
                raise DeployError(
                    f"deployment {deployment_id} was rolled back by the circuit breaker ({reason}){now_primary}"
                )
            raise DeployError(f"deployment {deployment_id} is no longer primary ({ours.get('status')})")
        if rollout == "FAILED":
            raise DeployError(f"deployment {deployment_id} failed: {reason}")
        if rollout == "COMPLETED":
            return True
        if rollout is None:  # services without rollout state: the "services stable" condition
            return count == 1 and ours.get("runningCount") == ours.get("desiredCount") and not ours.get("pendingCount")
        return False
