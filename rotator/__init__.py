"""rotator: zero-downtime blue/green rotation of database credentials."""

from __future__ import annotations

__version__ = "0.1.0"
