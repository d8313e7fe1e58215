"""structlog set-up: console for people, JSON with --log-json, and redaction of secrets.

Every secret value the process learns is registered with :func:`register_secret`; the redaction
processor replaces it anywhere in any event (values, nested containers, formatted exceptions), and
blanks every key named like a password, secret or token.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(
    r"(^|_)(pass|passwd|password|pwd|secret|secret_?string|secret_?value|token|api_?key|private_?key)$",
    re.IGNORECASE,
)
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a secret containing another is replaced whole
# A fleet run learns thousands of secrets: past this many, scrubbing goes through an index of each secret's first
# _MIN_SECRET_LEN characters (one dict lookup per position of the text) instead of one scan per secret, and
# registering stops re-sorting (both would grow with the square of the fleet).
_INDEX_FROM = 64
_by_prefix: dict[str, tuple[str, ...]] = {}


def register_secret(*values: str | None) -> None:
    """Remember secret values so that no log line can carry them."""
    global _ordered
    new = {v for v in values if v and len(v) >= _MIN_SECRET_LEN} - _secrets
    if not new:
        return
    with _lock:
        new -= _secrets
        _secrets.update(new)
        for value in new:
            key = value[:_MIN_SECRET_LEN]
            _by_prefix[key] = (*_by_prefix.get(key, ()), value)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True)) if len(_secrets) <= _INDEX_FROM else ()


def scrub(text: str) -> str:
    # Plain substring search: registering stays O(1)-ish (no regex to recompile) and scrubbing a line is
    # a handful of C-speed scans for the few secrets a run knows.
    ordered = _ordered
    if not ordered and _secrets:
        return _scrub_indexed(text)
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub_indexed(text: str) -> str:
    """Every occurrence of every registered secret, found through the prefix index; overlapping or adjacent
    occurrences are blanked as one run, so no part of any secret survives."""
    index, size = _by_prefix, _MIN_SECRET_LEN
    spans: list[tuple[int, int]] = []
    for i in range(len(text) - size + 1):
        candidates = index.get(text[i : i + size])
        if candidates:
            end = max((i + len(s) for s in candidates if text.startswith(s, i)), default=i)
            if end > i:
                if spans and i <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
                else:
                    spans.append((i, end))
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], REDACTED]
        last = end
    out.append(text[last:])
    return "".join(out)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SENSITIVE_KEY.search(k) else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SENSITIVE_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


_json_lines = False


def is_json() -> bool:
    """Whether log lines are JSON (--log-json): then CloudWatch EMF metric lines go with them (rotator.metrics)."""
    return _json_lines


def configure(*, json: bool = False, level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once per process (idempotent). Output goes to stderr by default."""
    global _json_lines
    _json_lines = json
    out = stream if stream is not None else sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    if json:
        processors.append(structlog.processors.JSONRenderer(sort_keys=False))
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library; keep them quiet and scrubbed.
    logging.basicConfig(level=logging.WARNING, stream=out)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
            handler.addFilter(_ScrubFilter())


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


def get_logger(name: str | None = None, **initial: Any) -> Any:
    return structlog.get_logger(name, **initial)


def all_secrets() -> Iterable[str]:
    return tuple(_secrets)
