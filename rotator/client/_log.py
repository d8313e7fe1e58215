"""The client's structlog logger. Events carry sanitized ARNs, slots and versions: never a secret value."""

from __future__ import annotations

from typing import Any

import structlog

log: Any = structlog.get_logger("rotator.client")
