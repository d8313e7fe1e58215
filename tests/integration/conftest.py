"""The ``store_driver`` fixture: every test that takes it runs once per secret store."""

from __future__ import annotations

import pytest

from tests.harness import AwsEnv
from tests.integration.store_drivers import FileDriver, SecretsManagerDriver, StoreDriver

STORES = ("secretsmanager", "file")


@pytest.fixture(params=STORES)
def store_driver(request: pytest.FixtureRequest, aws: AwsEnv, tmp_path_factory: pytest.TempPathFactory) -> StoreDriver:
    kind: str = request.param
    if kind == "secretsmanager":
        return SecretsManagerDriver(aws)
    if kind == "file":
        return FileDriver(tmp_path_factory.mktemp("store"))
    raise AssertionError(f"no driver for store {kind}")
