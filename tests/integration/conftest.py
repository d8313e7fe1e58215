"""The ``store_driver`` fixture: every test that takes it runs once per secret store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import AwsEnv, new_name
from tests.integration.store_drivers import FileDriver, SecretsManagerDriver, SsmDriver, StoreDriver, VaultDriver

STORES = ("secretsmanager", "ssm", "vault", "file")


@pytest.fixture(params=STORES)
def store_driver(
    request: pytest.FixtureRequest, aws: AwsEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreDriver]:
    kind: str = request.param
    if kind == "secretsmanager":
        yield SecretsManagerDriver(aws)
    elif kind == "ssm":
        driver = SsmDriver(aws)
        yield driver
        driver.cleanup()
    elif kind == "vault":
        vault = VaultDriver(request.getfixturevalue("openbao"), prefix=new_name("rt"))
        yield vault
        vault.cleanup()
    elif kind == "file":
        yield FileDriver(tmp_path_factory.mktemp("store"))
    else:
        raise AssertionError(f"no driver for store {kind}")
