"""The deployer protocol: how the app picks up a new config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

DeployStatus = Literal["stable", "in_progress", "failed", "unknown"]


@dataclass(frozen=True)
class DeploymentState:
    """The app's deployment as it is now: ``stable`` (nothing rolling), ``in_progress``, ``failed`` (the
    latest rollout failed), or ``unknown`` (could not be read)."""

    status: DeployStatus
    detail: str
    deployment_id: str | None = None


@dataclass(frozen=True)
class DeployProgress:
    """Where a rollout stands, for a progress display: the deployment followed, its status and rollout state,
    its task counts, and the seconds since it was started. ``final``: the last one (the rollout ended)."""

    deployment: str
    status: str | None
    rollout: str | None
    running: int
    desired: int
    pending: int
    elapsed_s: float
    final: bool = False


class Deployer(Protocol):
    name: str

    def describe(self) -> DeploymentState:
        """Read the current deployment state; never raises for a remote failure (status ``unknown``)."""
        ...

    def deploy(self, reason: str, *, slot: str | None = None) -> None:
        """Roll the app onto the config now on disk and block until that is done.

        ``slot`` is the slot the new config uses, for logs and hooks. Raises DeployError when the
        rollout fails, is rolled back, or times out.
        """
        ...
