"""The front of the demo app: a round-robin HTTP proxy over the instances, and their supervisor.

Only instances marked ready get requests. A rolling restart (:mod:`rotator.demo.restart`, the rotator's
deploy command) drives the control API, one instance at a time:

    POST /drain?i=N    stop routing to N and wait until its in-flight requests are done
    POST /restart?i=N  stop N's process and start it again (it re-reads the config)
    POST /ready?i=N    route to N again (the restart script first waits for N's own /ready)
    GET  /state        the instances: port, pid, ready, in flight, restarts

The proxy never retries a failed request on another instance: a failure is counted, not hidden.
``GET /health`` on the front asks every instance's /health and answers 200 only if all of them do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from rotator.demo.app import UNHEALTHY_SLOT_ENV


@dataclass
class Instance:
    index: int
    port: int
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    inflight: int = 0
    restarts: int = 0
    idle: list[http.client.HTTPConnection] = field(default_factory=list)


class Fleet:
    """The instances: their processes, readiness and in-flight counts, and pooled connections to them."""

    def __init__(self, ports: list[int], command: Callable[[Instance], list[str]], log_dir: Path) -> None:
        self.instances = [Instance(i, port) for i, port in enumerate(ports)]
        self._command = command
        self._log_dir = log_dir
        self._cond = threading.Condition()
        self._next = 0
        self.unhealthy_slot: str | None = None  # passed to instances started from now on

    # ------------------------------------------------------------ processes

    def spawn(self, inst: Instance) -> None:
        env = {k: v for k, v in os.environ.items() if k != UNHEALTHY_SLOT_ENV}
        if self.unhealthy_slot:
            env[UNHEALTHY_SLOT_ENV] = self.unhealthy_slot
        log: IO[bytes] = open(self._log_dir / f"instance-{inst.index}.log", "ab")
        with log:
            inst.proc = subprocess.Popen(
                self._command(inst), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def stop_process(self, inst: Instance, grace: float = 5.0) -> None:
        proc, inst.proc = inst.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for inst in self.instances:
            with self._cond:
                inst.ready = False
                self._close_idle(inst)
            self.stop_process(inst)

    # ------------------------------------------------------------ routing

    def pick(self) -> Instance | None:
        with self._cond:
            n = len(self.instances)
            for k in range(n):
                inst = self.instances[(self._next + k) % n]
                if inst.ready:
                    self._next = (inst.index + 1) % n
                    inst.inflight += 1
                    return inst
        return None

    def connection(self, inst: Instance) -> http.client.HTTPConnection:
        with self._cond:
            if inst.idle:
                return inst.idle.pop()
        return http.client.HTTPConnection("127.0.0.1", inst.port, timeout=30)

    def release(self, inst: Instance, conn: http.client.HTTPConnection | None) -> None:
        with self._cond:
            inst.inflight -= 1
            if conn is not None:
                if inst.ready:
                    inst.idle.append(conn)
                else:
                    conn.close()
            self._cond.notify_all()

    def _close_idle(self, inst: Instance) -> None:
        for conn in inst.idle:
            conn.close()
        inst.idle.clear()

    # ------------------------------------------------------------ control

    def drain(self, index: int, timeout: float = 30.0) -> dict[str, Any]:
        inst = self.instances[index]
        started = time.monotonic()
        with self._cond:
            inst.ready = False
            seen = inst.inflight
            drained = self._cond.wait_for(lambda: inst.inflight == 0, timeout=timeout)
            self._close_idle(inst)
        return {"i": index, "drained": drained, "inflight_at_drain": seen, "waited_ms": _ms(started)}

    def restart(self, index: int) -> dict[str, Any]:
        inst = self.instances[index]
        with self._cond:
            if inst.ready or inst.inflight:
                return {"i": index, "error": "drain it first"}
        self.stop_process(inst)
        self.spawn(inst)
        inst.restarts += 1
        assert inst.proc is not None
        return {"i": index, "pid": inst.proc.pid}

    def mark_ready(self, index: int) -> dict[str, Any]:
        with self._cond:
            self.instances[index].ready = True
        return {"i": index, "ready": True}

    def state(self) -> dict[str, Any]:
        with self._cond:
            return {
                "instances": [
                    {
                        "i": inst.index,
                        "port": inst.port,
                        "pid": inst.proc.pid if inst.proc else None,
                        "ready": inst.ready,
                        "inflight": inst.inflight,
                        "restarts": inst.restarts,
                    }
                    for inst in self.instances
                ]
            }


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


def get_json(port: int, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        data = resp.read()
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            body = {"raw": data[:200].decode("utf-8", "replace")}
        return resp.status, body if isinstance(body, dict) else {"body": body}
    finally:
        conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms
    fleet: Fleet

    def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ProxyHandler(_Handler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            self._health()
            return
        inst = self.fleet.pick()
        if inst is None:
            self._json(503, {"error": "no instance is ready"})
            return
        conn: http.client.HTTPConnection | None = self.fleet.connection(inst)
        try:
            assert conn is not None
            conn.request("GET", self.path)
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            conn = None
            status, data = 502, json.dumps({"error": f"instance {inst.index}: {type(exc).__name__}"}).encode()
        finally:
            self.fleet.release(inst, conn)
        self._send(status, data)

    def _health(self) -> None:
        results = []
        for inst in self.fleet.instances:
            try:
                status, body = get_json(inst.port, "/health")
            except OSError as exc:
                status, body = 503, {"error": type(exc).__name__}
            results.append({"i": inst.index, "status": status, **body})
        ok = all(r["status"] == 200 for r in results)
        self._json(200 if ok else 503, {"ok": ok, "instances": results})


class _ControlHandler(_Handler):
    def do_GET(self) -> None:
        if self.path == "/state":
            self._json(200, self.fleet.state())
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        actions: dict[str, Callable[[int], dict[str, Any]]] = {
            "/drain": self.fleet.drain,
            "/restart": self.fleet.restart,
            "/ready": self.fleet.mark_ready,
        }
        action = actions.get(parts.path)
        try:
            index = int(parse_qs(parts.query)["i"][0])
            if not 0 <= index < len(self.fleet.instances):
                raise ValueError(index)
        except (KeyError, ValueError):
            self._json(400, {"error": "POST /drain|/restart|/ready?i=<instance>"})
            return
        if action is None:
            self._json(404, {"error": "not found"})
            return
        body = action(index)
        self._json(409 if "error" in body else 200, body)


class Front:
    """The proxy (public port) and the control API (another port), each a threaded HTTP server."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        proxy = type("ProxyHandler", (_ProxyHandler,), {"fleet": fleet})
        control = type("ControlHandler", (_ControlHandler,), {"fleet": fleet})
        self.proxy = ThreadingHTTPServer(("127.0.0.1", 0), proxy)
        self.control = ThreadingHTTPServer(("127.0.0.1", 0), control)
        for server in (self.proxy, self.control):
            server.daemon_threads = True
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            for s in (self.proxy, self.control)
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.server_address[1]}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control.server_address[1]}"

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server in (self.proxy, self.control):
            with contextlib.suppress(Exception):
                server.shutdown()
            server.server_close()


def wait_ready(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
    """Poll an instance's /ready until 200; raise TimeoutError (or RuntimeError if its process exited)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the instance exited with code {proc.returncode}")
        try:
            status, body = get_json(port, "/ready", timeout=2.0)
            if status == 200:
                return body
            last = f"status {status}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise TimeoutError(f"not ready after {timeout:g}s ({last})")
