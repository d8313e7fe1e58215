"""One instance of the demo app: a process that reads its rendered config once, at start, and serves HTTP.

    python -m rotator.demo.app --port P --config PATH --template T --engine postgres|mysql --instance N
    python -m rotator.demo.app --port P --live-secret ARN --aws-endpoint-url URL --engine ... (--app live-secret)

The credentials come only from the config file (never argv or the environment), read back with the same
template the rotator renders it with; or, with ``--live-secret``, from the live secret, read once at start
the way seed 002's ``get_database_credentials`` does (:mod:`rotator.demo.seed002_reader`).

The instance opens a small connection pool at start and keeps it: a password change does not end existing
sessions, so it runs on until it is restarted onto new credentials.

    GET /query   INSERT a row and read back its id and the database user, as the slot user: 200, else 500
    GET /ready   SELECT 1 on a pooled connection: 200, else 503 (the rolling restart waits for this)
    GET /health  /ready, and 500 when the config is on the slot named by ROTATOR_DEMO_UNHEALTHY_SLOT
                 (a deliberately failing health check: the rotation must roll back with no failed request)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rotator.demo.database import connect
from rotator.render import read_deployed

UNHEALTHY_SLOT_ENV = "ROTATOR_DEMO_UNHEALTHY_SLOT"


class Pool:
    """A fixed set of connections; a broken one is replaced on its next use."""

    def __init__(self, engine: str, values: dict[str, str], size: int) -> None:
        self.engine = engine
        self._values = values
        self._idle: queue.Queue[Any] = queue.Queue()
        for _ in range(size):
            self._idle.put(self._open())

    def _open(self) -> Any:
        v = self._values
        return connect(self.engine, v["host"], int(v["port"]), v["dbname"], v["username"], v["password"])

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self._idle.get(timeout=10)
        try:
            if conn is None:
                conn = self._open()
            yield conn
        except Exception:
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
            conn = None
            raise
        finally:
            self._idle.put(conn)

    def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


class App:
    def __init__(self, instance: int, engine: str, values: dict[str, str], pool_size: int) -> None:
        self.instance = instance
        self.engine = engine
        self.slot = values.get("slot", "?")
        self.user = values["username"]
        self.pool = Pool(engine, values, pool_size)
        self.unhealthy_slot = os.environ.get(UNHEALTHY_SLOT_ENV) or None

    def query(self) -> dict[str, Any]:
        with self.pool.connection() as conn:
            if self.engine == "postgres":
                row = conn.execute(
                    "INSERT INTO demo_hits (instance, slot) VALUES (%s, %s) RETURNING id, session_user",
                    (self.instance, self.slot),
                ).fetchone()
            else:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO demo_hits (instance, slot) VALUES (%s, %s)", (self.instance, self.slot))
                    cur.execute("SELECT LAST_INSERT_ID(), SUBSTRING_INDEX(USER(), '@', 1)")
                    row = cur.fetchone()
        return {"instance": self.instance, "slot": self.slot, "db_user": row[1], "hit": row[0]}

    def ready(self) -> dict[str, Any]:
        with self.pool.connection() as conn:
            if self.engine == "postgres":
                conn.execute("SELECT 1").fetchone()
            else:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchone()
        return {"instance": self.instance, "slot": self.slot, "db_user": self.user, "pid": os.getpid()}


def handler_for(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the front reuses its connections
        disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/query":
                    self._send(200, app.query())
                elif path == "/ready":
                    self._send(200, app.ready())
                elif path == "/health":
                    body = app.ready()
                    if app.unhealthy_slot and app.slot == app.unhealthy_slot:
                        body["error"] = f"deliberately unhealthy on slot {app.slot} (demo)"
                        self._send(500, body)
                    else:
                        self._send(200, body)
                else:
                    self._send(404, {"error": "not found"})
            except Exception as exc:
                # Driver messages name hosts and users, never the password.
                status = 503 if path == "/ready" else 500
                self._send(status, {"instance": app.instance, "slot": app.slot, "error": type(exc).__name__})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _exit_with_parent(parent: int) -> None:
    """Leave no orphan behind if the demo itself is killed."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _credentials(args: argparse.Namespace) -> dict[str, str] | None:
    if args.live_secret:
        from rotator.demo.seed002_reader import get_database_credentials, slot_of

        values = dict(get_database_credentials(args.live_secret, args.region, args.aws_endpoint_url))
        return {**values, "slot": slot_of(values["username"], args.slot_users)}
    deployed = read_deployed(args.template, args.config)
    if deployed is None or not deployed.raw_ok or deployed.password is None:
        why = "missing" if deployed is None else deployed.reason
        print(f"instance {args.instance}: cannot read {args.config}: {why}", file=sys.stderr)
        return None
    return dict(deployed.values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rotator.demo.app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--template", type=Path)
    parser.add_argument("--live-secret")
    parser.add_argument("--aws-endpoint-url")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--slot-users", default="", help="A=user_a,B=user_b: names only, to report the slot")
    parser.add_argument("--engine", choices=["postgres", "mysql"], required=True)
    parser.add_argument("--instance", type=int, default=0)
    parser.add_argument("--pool-size", type=int, default=4)
    args = parser.parse_args(argv)

    values = _credentials(args)
    if values is None:
        return 2
    try:
        app = App(args.instance, args.engine, values, args.pool_size)
    except Exception as exc:
        print(
            f"instance {args.instance}: cannot connect as {values['username']}: {type(exc).__name__}", file=sys.stderr
        )
        return 3
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(app))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    print(f"instance {args.instance}: pid {os.getpid()} on :{args.port}, slot {app.slot} as {app.user}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        app.pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
