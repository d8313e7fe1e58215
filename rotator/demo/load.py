"""The load generator: a few threads, each with one keep-alive connection, hammering GET /query on the front.

Every request is recorded (when it finished, how long it took, whether it got a 200), so that any time
window (a whole rotation, one of its steps) can be counted afterwards. Any status but 200, or any connection
error, is a failed request.
"""

from __future__ import annotations

import bisect
import http.client
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Window:
    served: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def total(self) -> int:
        return self.served + self.failed


class _Worker:
    def __init__(self) -> None:
        self.records: list[tuple[float, float, bool]] = []  # (monotonic end time, latency ms, ok), in time order
        self.failures: list[tuple[float, str]] = []


class LoadGenerator:
    def __init__(self, url: str, threads: int = 4, path: str = "/query") -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self.host, self.port, self.path = parts.hostname, parts.port, path
        self._workers = [_Worker() for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in self._workers]
        self.started_at = 0.0
        self.stopped_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)
        self.stopped_at = time.monotonic()

    def _run(self, w: _Worker) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self._stop.is_set():
            t0 = time.monotonic()
            error = None
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    error = f"status {resp.status}: {body[:120].decode('utf-8', 'replace')}"
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            t1 = time.monotonic()
            # Appending to a list is atomic in CPython; readers copy the lists.
            w.records.append((t1, (t1 - t0) * 1000, error is None))
            if error is not None:
                w.failures.append((t1, error))
        conn.close()

    def window(self, start: float, end: float) -> Window:
        """Requests that finished in [start, end) (monotonic clock)."""
        lat: list[float] = []
        failed = 0
        for w in self._workers:
            records = list(w.records)
            lo = bisect.bisect_left(records, start, key=lambda r: r[0])
            hi = bisect.bisect_left(records, end, key=lambda r: r[0])
            for _, ms, ok in records[lo:hi]:
                lat.append(ms)
                failed += not ok
        if not lat:
            return Window(0, 0, 0.0, 0.0, 0.0)
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return Window(len(lat) - failed, failed, statistics.median(lat), p99, lat[-1])

    def totals(self) -> Window:
        return self.window(0.0, float("inf"))

    def failures(self, limit: int = 10) -> list[str]:
        every = sorted(f for w in self._workers for f in list(w.failures))
        return [reason for _, reason in every[:limit]]
