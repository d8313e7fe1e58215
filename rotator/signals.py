"""SIGTERM and SIGINT: stop at the next safe point, never in the middle of a step that changes something.

ECS stops a task with SIGTERM and kills it 30 s later. A signal sets a flag that the applier reads between
steps; only long waits (a deployment, a health check) are cut short, by raising :class:`Interrupted` inside
them, which a flip step treats as a failure (and rolls back). A second signal changes nothing more.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from rotator.errors import RotatorError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(RotatorError):
    """A stop signal ended the run at a safe point (exit 1: a re-run continues; 4 when a flip was rolled back)."""


class StopSignal:
    def __init__(self) -> None:
        self.requested: str | None = None  # the signal's name, once one arrived
        self._interruptible = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.requested is None
        self.requested = self.requested or signal.Signals(signum).name
        if first and self._interruptible:
            self._interruptible = False
            raise Interrupted(f"stopped by {self.requested}")

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A long wait that a signal may cut short."""
        if self.requested:
            raise Interrupted(f"stopped by {self.requested}")
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """Catch SIGTERM and SIGINT for the block (main thread only; elsewhere signals stay as they are)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        global _installed
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        outer, _installed = _installed, self
        try:
            yield self
        finally:
            _installed = outer
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_installed: StopSignal | None = None  # the one whose handler is in place (main thread)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A block inside a long wait that a stop signal must not cut in two: starting a child process (cut inside
    ``subprocess.Popen``, the child runs on and nobody holds its pid to stop it). A signal that arrives inside
    is raised at the end of the block instead, once the caller holds what it must clean up."""
    stop = _installed
    if stop is None or not stop._interruptible or threading.current_thread() is not threading.main_thread():
        yield
        return
    stop._interruptible = False
    try:
        yield
    except BaseException:
        stop._interruptible = True
        raise
    stop._interruptible = True
    if stop.requested:
        stop._interruptible = False
        raise Interrupted(f"stopped by {stop.requested}")
