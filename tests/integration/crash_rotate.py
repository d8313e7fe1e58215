"""`rotator rotate` exactly as the CLI runs it, SIGKILLed right after step K (the crash-safety tests).

Usage: python -m tests.integration.crash_rotate K [rotate options...]. The kill comes from the after-step
callback the orchestrator takes (injected here through click's context object), not from production code.
"""

from __future__ import annotations

import os
import signal
import sys

from rotator.cli import main
from rotator.steps import Step


def run() -> None:
    kill_after = int(sys.argv[1])

    def after_step(index: int, step: Step) -> None:
        if index == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    main(["rotate", *sys.argv[2:]], obj={"after_step": after_step})


if __name__ == "__main__":
    run()
