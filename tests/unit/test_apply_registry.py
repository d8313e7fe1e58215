"""Every step kind the planner can emit has exactly one registered handler."""

from __future__ import annotations

import dataclasses

from rotator import steps
from rotator.apply import HANDLERS


def test_every_step_kind_has_a_handler() -> None:
    kinds = {
        obj
        for obj in vars(steps).values()
        if isinstance(obj, type) and issubclass(obj, steps.Step) and "kind" in vars(obj)
    }
    assert kinds == set(steps.ALL_KINDS), "ALL_KINDS does not list every step kind"
    missing = sorted(k.__name__ for k in kinds if k not in HANDLERS)
    assert not missing, f"step kinds without a handler in rotator/apply.py: {missing}"
    assert set(HANDLERS) <= kinds


def test_step_kinds_are_unique_frozen_dataclasses() -> None:
    names = [k.kind for k in steps.ALL_KINDS]
    assert len(names) == len(set(names))
    for kind in steps.ALL_KINDS:
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
