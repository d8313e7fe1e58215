"""`rotator fleet` exactly as the CLI runs it, SIGKILLed right after the K-th step of the whole fleet.

Usage: python -m tests.integration.crash_fleet K [fleet rotate options...]. Steps run on worker threads, so the
K-th step is counted across all of them; the kill takes the whole process, mid-rotation for every database
under way. The callback is injected through click's context object, as in crash_rotate.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys

from rotator.cli import main
from rotator.steps import Step


def run() -> None:
    kill_after = int(sys.argv[1])
    counter = itertools.count(1)  # next() on itertools.count is atomic under the GIL

    def after_step(_index: int, _step: Step) -> None:
        if next(counter) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    main(["fleet", *sys.argv[2:]], obj={"after_step": after_step})


if __name__ == "__main__":
    run()
