"""One error tree; each class carries the exit code the CLI returns for it.

Messages say what to do next and never carry a secret value.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success, or nothing to do
    FAILED = 1  # failed, nothing left half-done that a re-run cannot heal; see the log
    BAD_INPUT = 2  # bad configuration or secret; nothing was changed
    LOCKED = 3  # another rotation of this database holds the lock; nothing was changed
    ROLLED_BACK = 4  # the flip failed and was rolled back; the app is healthy on the old slot
    NEEDS_HUMAN = 5  # failed and NOT restored, or a state no run can heal on its own
    OVERDUE = 6  # status: a credential is older than --max-age (or of unknown age); nothing was changed


class RotatorError(Exception):
    """Base of every error the rotator raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class BadInput(RotatorError):
    """Configuration, flags or a secret's content are invalid. Raised before any change."""

    exit_code = ExitCode.BAD_INPUT


class SecretFormatError(BadInput):
    """A secret's JSON does not have the expected shape."""


class Locked(RotatorError):
    exit_code = ExitCode.LOCKED


class RolledBack(RotatorError):
    exit_code = ExitCode.ROLLED_BACK


class NeedsHuman(RotatorError):
    exit_code = ExitCode.NEEDS_HUMAN


class StoreError(RotatorError):
    """A secret store call failed (after retries)."""


class SecretNotFound(StoreError):
    exit_code = ExitCode.BAD_INPUT


class DatabaseError(RotatorError):
    """A database administration statement failed."""


class AdminLoginFailed(DatabaseError):
    """The admin connection could not be opened. ``auth_failed`` tells a refused login from an outage."""

    def __init__(self, message: str, *, auth_failed: bool) -> None:
        super().__init__(message)
        self.auth_failed = auth_failed


class DeployError(RotatorError):
    """The deployment did not complete (failed, rolled back by a circuit breaker, or timed out)."""


class StillInUse(RotatorError):
    """The old slot was still in use when the drain timed out: its password was left unchanged (exit 1)."""


class HealthCheckError(RotatorError):
    """A health check refused the new slot."""
