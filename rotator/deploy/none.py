"""No deployment: the app loads its credentials with the client library and picks up the new slot itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rotator.deploy.base import DeploymentState
from rotator.errors import BadInput
from rotator.log import get_logger


class NoneDeployer:
    """``deploy()`` only waits ``grace_seconds``: the time clients need to refresh their cached credentials
    before the old slot's password is changed under them."""

    name = "none"

    def __init__(
        self,
        grace_seconds: float = 0.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        log: Any = None,
    ) -> None:
        if grace_seconds < 0:
            raise BadInput("--grace-seconds must be >= 0")
        self.grace_seconds = grace_seconds
        self._sleep = sleep
        self._log = log if log is not None else get_logger(__name__)

    def describe(self) -> DeploymentState:
        return DeploymentState("stable", "no deployment: the app loads its credentials with the client library")

    def deploy(self, reason: str, *, slot: str | None = None) -> None:
        self._log.info("deploy_grace_wait", deployer=self.name, reason=reason, slot=slot, seconds=self.grace_seconds)
        if self.grace_seconds > 0:
            self._sleep(self.grace_seconds)
        self._log.info("deploy_done", deployer=self.name, slot=slot, outcome="ok")
