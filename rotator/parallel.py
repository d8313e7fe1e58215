"""Independent reads at once: :func:`together` runs calls concurrently and returns, or raises, as if they had run
one after the other in the order given.

For observe()'s reads (the secrets' versions, the slot logins): each waits on the network, none changes anything,
and none depends on another's answer. The first call runs in the calling thread, the others each in a thread of
their own; every call runs to its end before anything is returned or raised, and the exception raised is the
first failed call's in the order given, so errors keep the classification (and exit code) of the sequential
code. Each thread runs in a copy of the caller's context (the log's bound values).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def together(*calls: Callable[[], T]) -> list[T]:
    """The results of ``calls``, in order; the first exception in that order is raised once all have ended."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls) - 1, thread_name_prefix="rotator-read") as pool:
        others: list[Future[T]] = [pool.submit(contextvars.copy_context().run, call) for call in calls[1:]]
        first: Future[T] = Future()
        try:
            first.set_result(calls[0]())
        except BaseException as exc:  # re-raised below, after the other calls have ended
            first.set_exception(exc)
    return [future.result() for future in (first, *others)]
