"""`rotator adopt` exactly as the CLI runs it, SIGKILLed right after statement K (the crash-safety tests).

Usage: python -m tests.integration.crash_adopt K [adopt options...]. The kill comes from the after-statement
callback the adoption takes (injected here through click's context object), not from production code.
"""

from __future__ import annotations

import os
import signal
import sys

from rotator.cli import main
from rotator.db.base import Statement


def run() -> None:
    kill_after = int(sys.argv[1])

    def after_statement(index: int, statement: Statement) -> None:
        if index == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    main(["adopt", *sys.argv[2:]], obj={"after_statement": after_statement})


if __name__ == "__main__":
    run()
