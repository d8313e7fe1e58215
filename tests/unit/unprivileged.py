"""Permission checks for real: root passes every mode check, so a test that needs "may not write this
directory" runs the code in a forked child that has given up root (uid/gid 65534, no groups).

No exec: the child runs the already imported code, so it needs no access to the interpreter's files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

NOBODY = 65534


def run_unprivileged(fn: Callable[[], object]) -> str:
    """``ok``, or ``<exception class>: <message>`` of what ``fn`` raised, as a user that is not root."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                fn()
                out = "ok"
            except Exception as exc:
                out = f"{type(exc).__name__}: {exc}"
            os.write(write_end, out.encode())
        except BaseException:
            os.write(write_end, ("HARNESS: " + traceback.format_exc()).encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        chunks.append(pipe.read())
    os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    assert not out.startswith("HARNESS:"), out
    return out


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory the unprivileged child can reach (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="rotator-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in [path, *path.rglob("*")]:
            if sub.is_dir() and not sub.is_symlink():
                sub.chmod(0o755)
        shutil.rmtree(path)
