"""A shell hook: the operator's own command rolls the app onto the new config (restart a unit, kubectl ...).

The command gets no secret: not in its arguments and not in its environment. It is told the new slot
and the config path (ROTATOR_NEW_SLOT, ROTATOR_CONFIG_PATH, ROTATOR_DEPLOY_REASON) and reads the file
itself if it must.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from rotator.deploy.base import DeploymentState
from rotator.errors import BadInput, DeployError
from rotator.log import all_secrets, get_logger
from rotator.signals import Interrupted, held

# Variables of the rotator's own environment that may hold a secret and are not passed on.
_SENSITIVE_NAME = re.compile(r"PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL", re.IGNORECASE)
_KILL_GRACE_S = 5.0


class CommandDeployer:
    name = "command"

    def __init__(
        self,
        command: str,
        timeout_s: float = 1800.0,
        env: Mapping[str, str] | None = None,
        *,
        config_path: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log: Any = None,
    ) -> None:
        if not command.strip():
            raise BadInput("--deploy command needs --deploy-command (ROTATOR_DEPLOY_COMMAND)")
        if timeout_s <= 0:
            raise BadInput("--deploy-timeout must be > 0")
        self.command = command
        self.timeout_s = timeout_s
        self.extra_env = dict(env or {})
        self.config_path = str(config_path) if config_path is not None else None
        self.cwd = cwd
        self._log = log if log is not None else get_logger(__name__)

    def describe(self) -> DeploymentState:
        return DeploymentState("unknown", "a deploy command cannot report the app's deployment state")

    def environment(self, reason: str, slot: str | None) -> dict[str, str]:
        """The command's environment: the rotator's own, without anything that is or names a secret."""
        secrets = tuple(all_secrets())
        base = {**os.environ, **self.extra_env}
        out = {
            key: value
            for key, value in base.items()
            # The operator's own AWS credentials stay: a hook may need them to call AWS.
            if not (key.startswith("ROTATOR_") and _SENSITIVE_NAME.search(key)) and not any(s in value for s in secrets)
        }
        out["ROTATOR_DEPLOY_REASON"] = reason
        if slot is not None:
            out["ROTATOR_NEW_SLOT"] = slot
        if self.config_path is not None:
            out["ROTATOR_CONFIG_PATH"] = self.config_path
        return out

    def deploy(self, reason: str, *, slot: str | None = None) -> None:
        self._log.info("deploy_start", deployer=self.name, reason=reason, slot=slot)
        started = time.monotonic()
        try:
            with held():  # a stop signal inside Popen would leave the command running, its pid unknown
                proc = self._start(reason, slot)
        except OSError as exc:
            raise DeployError(
                f"the deploy command could not be started: {exc.strerror}: check --deploy-command"
            ) from None
        except Interrupted:  # it started; the signal held during the start arrives now
            self._stop(proc)
            self._log.warning("deploy_stopped", deployer=self.name, detail="its process group was stopped")
            raise
        assert proc.stdout is not None
        reader = threading.Thread(target=self._stream, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self._stop(proc)
            reader.join(timeout=_KILL_GRACE_S)
            raise DeployError(
                f"the deploy command did not finish within {self.timeout_s:g}s and was stopped: "
                "check it, or raise --deploy-timeout"
            ) from None
        except BaseException:  # a stop signal (rotator.signals) or Ctrl-C: never leave the command running
            self._stop(proc)
            reader.join(timeout=_KILL_GRACE_S)
            self._log.warning("deploy_stopped", deployer=self.name, detail="its process group was stopped")
            raise
        reader.join(timeout=_KILL_GRACE_S)
        duration_ms = int((time.monotonic() - started) * 1000)
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self._log.error(
                "deploy_done", deployer=self.name, outcome="failed", exit_code=code, duration_ms=duration_ms
            )
            raise DeployError(f"the deploy command {how}: see its output in the log above")
        self._log.info("deploy_done", deployer=self.name, outcome="ok", exit_code=0, duration_ms=duration_ms)

    def _start(self, reason: str, slot: str | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S602 - the operator's own configured command, run as written
            self.command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.environment(reason, slot),
            cwd=self.cwd,
            start_new_session=True,  # its own process group, so a timeout can stop all of it
        )

    def _stream(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in stream:
                # The log's redaction processor scrubs any known secret from the line.
                self._log.info("deploy_output", line=raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop the command's process group: SIGTERM, then SIGKILL after a grace period."""
        for sig, wait in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
