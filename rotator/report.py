"""The run report: what was observed, the plan (and its rollback), what ran, the outcome. Always JSON-able."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rotator.steps import Step


@dataclass
class StepRecord:
    description: dict[str, Any]
    outcome: str = "pending"
    duration_ms: float = 0.0
    error: str | None = None

    @classmethod
    def of(cls, step: Step, outcome: str = "pending") -> StepRecord:
        return cls(step.describe(), outcome)

    def finish(self, outcome: str, started: float, error: str | None = None) -> None:
        self.outcome, self.error = outcome, error
        self.duration_ms = round((time.monotonic() - started) * 1000, 1)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.description, "outcome": self.outcome, "duration_ms": self.duration_ms}
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Report:
    dry_run: bool
    slots_before: dict[str, Any] = field(default_factory=dict)
    slots_after: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    rollback: list[StepRecord] = field(default_factory=list)  # planned (dry run) or run (a failed flip)
    notes: list[str] = field(default_factory=list)
    blocked: str | None = None
    outcome: str = "ok"
    exit_code: int = 0
    error: str | None = None
    aws_api_calls: int = 0
    store_operations: int = 0
    duration_ms: float = 0.0
    ages: dict[str, Any] = field(default_factory=dict)  # rotator.age.AgePolicy.as_dict(): ages, overdue, next due

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "rotation_report",
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "slots_before": self.slots_before,
            "slots_after": self.slots_after,
            "observed": self.observed,
            "steps": [s.as_dict() for s in self.steps],
            "rollback": [s.as_dict() for s in self.rollback],
            "notes": self.notes,
            "blocked": self.blocked,
            "error": self.error,
            "aws_api_calls": self.aws_api_calls,
            "store_operations": self.store_operations,
            "duration_ms": round(self.duration_ms, 1),
            "ages": self.ages,
        }
