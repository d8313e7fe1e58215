"""Health checks that can fail a run: the new slot logs in, the app answers over HTTP, the deployment is stable.

Each check returns a :class:`CheckResult` and never raises for the thing it checks; :func:`run_checks`
runs them all and raises HealthCheckError naming every check that failed.
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from rotator import __version__
from rotator.errors import BadInput, HealthCheckError
from rotator.log import get_logger, scrub

log = get_logger(__name__)

DEFAULT_STATUSES = frozenset(range(200, 400))


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    name: str
    detail: str


class Check(Protocol):
    name: str

    def run(self) -> CheckResult: ...


class LoginResultLike(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class ChecksFailed(HealthCheckError):
    """HealthCheckError carrying every result, passed and failed."""

    def __init__(self, message: str, results: list[CheckResult]) -> None:
        super().__init__(message)
        self.results = results


def run_checks(checks: Iterable[Check]) -> list[CheckResult]:
    """Run every check (all of them, so the log shows each); raise ChecksFailed if any failed."""
    results = []
    for check in checks:
        started = time.monotonic()
        result = check.run()
        log.info(
            "health_check",
            check=result.name,
            outcome="ok" if result.ok else "failed",
            detail=result.detail,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        results.append(result)
    failed = [r for r in results if not r.ok]
    if failed:
        raise ChecksFailed(
            "health check failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed),
            results,
        )
    return results


class DbLoginCheck:
    """Wraps a callable that tries the login (built by the engine) and returns something with .ok/.reason."""

    def __init__(self, check: Callable[[], LoginResultLike], name: str = "db-login") -> None:
        self._check = check
        self.name = name

    def run(self) -> CheckResult:
        try:
            result = self._check()
        except Exception as exc:
            return CheckResult(False, self.name, f"the login check raised {type(exc).__name__}: {scrub(str(exc))}")
        return CheckResult(bool(result.ok), self.name, scrub(result.reason))


class DeploymentCheck:
    """The deployment reports itself stable (e.g. no circuit-breaker rollback under way)."""

    def __init__(self, describe: Callable[[], Any], name: str = "deployment") -> None:
        self._describe = describe  # Deployer.describe
        self.name = name

    def run(self) -> CheckResult:
        state = self._describe()
        return CheckResult(state.status == "stable", self.name, f"{state.status}: {state.detail}")


def parse_statuses(spec: str) -> frozenset[int]:
    """``"200-299,301"`` -> the set of accepted HTTP statuses. Raises BadInput on anything else."""
    statuses: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d{3})(?:\s*-\s*(\d{3}))?", part)
        if m is None:
            raise BadInput(
                f"HTTP status list {spec!r}: {part!r} is not a status or a range: use e.g. 200-299,301 "
                "(--health-statuses)"
            )
        low = int(m.group(1))
        high = int(m.group(2) or low)
        if not 100 <= low <= high <= 599:
            raise BadInput(
                f"HTTP status list {spec!r}: {part!r} must be statuses between 100 and 599, low-high "
                "(--health-statuses)"
            )
        statuses.update(range(low, high + 1))
    return frozenset(statuses)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is judged by its own status: following it could turn a redirect to an error page into a 200."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpCheck:
    """GET ``url`` until it answers with an accepted status, up to ``attempts`` times ``interval_s`` apart.

    TLS is verified (against ``ca_bundle`` when given) unless ``verify_tls`` is False. Redirects are not
    followed. A connection error, a timeout or an unaccepted status is a failed attempt.
    """

    def __init__(
        self,
        url: str,
        accepted_statuses: Iterable[int] = DEFAULT_STATUSES,
        timeout_s: float = 10.0,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
        attempts: int = 5,
        interval_s: float = 2.0,
        *,
        name: str = "http",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"health URL must be http:// or https:// with a host (--health-url), got {_display(url)}")
        if attempts < 1 or interval_s < 0 or timeout_s <= 0:
            raise BadInput("health check needs attempts >= 1, interval >= 0 and timeout > 0")
        self.url = url
        self._headers = {"User-Agent": f"rotator-health/{__version__}"}
        if parts.username is not None:
            # urllib does not use userinfo itself: send it as Basic auth, and never show it.
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
            netloc = parts.netloc.rpartition("@")[2]
            self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self.accepted = frozenset(accepted_statuses)
        if not self.accepted:
            raise BadInput("health check accepts no HTTP status: set --health-statuses, e.g. 200-399")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.interval_s = interval_s
        self.name = name
        self._sleep = sleep
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if parts.scheme == "https":
            if verify_tls:
                context = ssl.create_default_context(cafile=ca_bundle)
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def run(self) -> CheckResult:
        shown = _display(self.url)
        detail = ""
        for attempt in range(1, self.attempts + 1):
            ok, detail = self._attempt()
            if ok:
                return CheckResult(True, self.name, f"GET {shown}: {detail}")
            log.info("health_attempt", check=self.name, attempt=attempt, of=self.attempts, detail=detail)
            if attempt < self.attempts:
                self._sleep(self.interval_s)
        return CheckResult(False, self.name, f"GET {shown}: {detail} (after {self.attempts} attempts)")

    def _attempt(self) -> tuple[bool, str]:
        # The scheme is checked in __init__: http or https only.
        request = urllib.request.Request(self.url, headers=self._headers)  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = int(response.status)
                response.read(65536)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except urllib.error.URLError as exc:
            return False, f"cannot connect: {_reason(exc.reason)}"
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return False, f"cannot connect: {_reason(exc)}"
        if status in self.accepted:
            return True, f"status {status}"
        return False, f"status {status} is not accepted"


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        text = getattr(reason, "strerror", None) or getattr(reason, "reason", None) or str(reason)
        return scrub(f"{type(reason).__name__}: {text}")
    return scrub(str(reason))


def _display(url: str) -> str:
    """The URL without user info, query or fragment: those may carry tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
