"""A loopback HTTP proxy in front of the moto server that answers AWS faults on demand.

moto never throttles nor fails, so this proxy sits between botocore and moto: it names each request's
operation (``service.Operation``, the same names as ``AwsClients.calls``: the service from the SigV4 credential
scope, the operation from ``X-Amz-Target`` for JSON protocols or the ``Action`` form field for query
protocols), and for the first N requests of an operation answers a fault *instead of* forwarding it, as AWS
does when it throttles or fails (the request had no effect). ``lost`` forwards the request and then replaces
moto's answer by a 503: the change happened but the caller never heard of it.

A real process can be pointed at it (``AWS_ENDPOINT_URL``/``ROTATOR_AWS_ENDPOINT_URL`` = ``proxy.url``), so a
subprocess ``rotator rotate`` meets the faults too.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal
from urllib.parse import parse_qs, urlparse

Fault = Literal["throttle", "unavailable", "denied", "lost"]
FAULTS: tuple[Fault, ...] = ("throttle", "unavailable", "denied", "lost")

_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

# (HTTP status, error code, message) of each fault, as AWS sends them.
_ANSWERS: dict[str, tuple[int, str, str]] = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "unavailable": (503, "ServiceUnavailable", "Service Unavailable"),
    "denied": (400, "AccessDeniedException", "User is not authorized to perform this operation"),
    "lost": (503, "ServiceUnavailable", "Service Unavailable"),
}


class FaultProxy:
    """Faults for the first requests of chosen operations; everything else goes to ``upstream`` unchanged.

    ``plan`` maps ``"service.Operation"`` (or ``"*"``, every operation not named) to the faults answered to
    that operation's first requests, in order; ``always`` maps operations to one fault answered every time.
    """

    def __init__(
        self,
        upstream: str,
        plan: Mapping[str, Sequence[Fault]] | None = None,
        *,
        always: Mapping[str, Fault] | None = None,
    ) -> None:
        parsed = urlparse(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.plan = {op: list(faults) for op, faults in (plan or {}).items()}
        self.always = dict(always or {})
        self.requests: Counter[str] = Counter()  # operation -> requests received
        self.faulted: Counter[str] = Counter()  # operation -> faults answered
        self._pending: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fault_for(self, operation: str) -> Fault | None:
        with self._lock:
            self.requests[operation] += 1
            fault = self.always.get(operation)
            if fault is None:
                if operation not in self._pending:
                    self._pending[operation] = list(self.plan.get(operation, self.plan.get("*", [])))
                queue = self._pending[operation]
                fault = queue.pop(0) if queue else None
            if fault is not None:
                self.faulted[operation] += 1
            return fault

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target")
                operation = _operation(self.headers.get("Authorization", ""), target, body)
                fault = proxy.fault_for(operation)
                if fault is not None and fault != "lost":
                    self._answer_fault(fault, json_protocol=target is not None)
                    return
                status, headers, answer = self._forward(body)
                if fault == "lost":
                    self._answer_fault(fault, json_protocol=target is not None)
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    return response.status, response.getheaders(), response.read()
                finally:
                    conn.close()

            def _answer_fault(self, fault: Fault, *, json_protocol: bool) -> None:
                status, code, message = _ANSWERS[fault]
                if json_protocol:
                    payload = json.dumps({"__type": code, "message": message}).encode()
                    content_type = "application/x-amz-json-1.1"
                else:
                    kind = "Receiver" if status >= 500 else "Sender"
                    query_code = "Throttling" if fault == "throttle" else code.removesuffix("Exception")
                    payload = (
                        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{query_code}</Code>"
                        f"<Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
                    ).encode()
                    content_type = "text/xml"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("x-amzn-RequestId", "fault-proxy")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def _operation(authorization: str, target: str | None, body: bytes) -> str:
    scope = _SCOPE.search(authorization)
    service = scope.group(1) if scope else "unknown"
    if target:
        return f"{service}.{target.rsplit('.', 1)[-1]}"
    action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["unknown"])[0]
    return f"{service}.{action}"


@contextmanager
def fault_proxy(
    upstream: str,
    plan: Mapping[str, Sequence[Fault]] | None = None,
    *,
    always: Mapping[str, Fault] | None = None,
) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, plan, always=always).start()
    try:
        yield proxy
    finally:
        proxy.stop()
