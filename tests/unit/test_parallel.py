"""rotator.parallel.together: concurrent calls that return and raise as if run one after the other."""

from __future__ import annotations

import threading

import pytest

from rotator.parallel import together


def test_results_come_in_the_order_given() -> None:
    assert together(lambda: 1, lambda: 2, lambda: 3) == [1, 2, 3]
    assert together(lambda: "one") == ["one"]
    assert together() == []


def test_the_first_failure_in_order_is_raised_after_every_call_ended() -> None:
    ended: list[str] = []
    release = threading.Event()

    def slow_ok() -> str:
        release.wait(5)
        ended.append("slow")
        return "slow"

    def fails(name: str) -> str:
        ended.append(name)
        if name == "second":
            release.set()
        raise KeyError(name)

    with pytest.raises(KeyError, match="first"):
        together(lambda: fails("first"), slow_ok, lambda: fails("second"))
    assert sorted(ended) == ["first", "second", "slow"]


def test_calls_run_at_once() -> None:
    """Each of three calls waits until all three have started: run one after another they would never end."""
    barrier = threading.Barrier(3, timeout=5)
    assert together(barrier.wait, barrier.wait, barrier.wait) is not None
