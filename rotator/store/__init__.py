"""Where secrets live: Secrets Manager (boto3) and a local JSON file store, one write-ahead protocol."""

from __future__ import annotations

from rotator.store.base import CURRENT, PENDING, SecretStore, SecretVersions, Version

__all__ = ["CURRENT", "PENDING", "SecretStore", "SecretVersions", "Version"]
