"""Fixtures: real PostgreSQL and MariaDB/MySQL, a moto server, each test with its own names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.harness import (
    AwsEnv,
    DbEnv,
    MySqlServer,
    PgServer,
    free_port,
    mysql_env,
    mysql_server_from_env,
    new_name,
    pg_env,
    pg_server_from_env,
    unavailable,
)
from tests.openbao import OpenBao, VaultDatabase, database_engine, openbao_server, require_openbao

# Never let anything in the test run reach real AWS.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | None]:
    with pg_server_from_env() as server:
        yield server


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySqlServer | None]:
    with mysql_server_from_env() as server:
        yield server


@pytest.fixture
def pg(pg_server: PgServer | None) -> Iterator[DbEnv]:
    if pg_server is None:
        unavailable(
            "PostgreSQL",
            "set ROTATOR_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/postgres "
            "or start Docker for testcontainers",
        )
    assert pg_server is not None
    with pg_env(pg_server) as env:
        yield env


@pytest.fixture
def mysql(mysql_server: MySqlServer | None) -> Iterator[DbEnv]:
    if mysql_server is None:
        unavailable(
            "MySQL/MariaDB",
            "set ROTATOR_TEST_MYSQL_DSN=mysql://root@127.0.0.1:3306/ or start Docker for testcontainers",
        )
    assert mysql_server is not None
    with mysql_env(mysql_server) as env:
        yield env


@pytest.fixture(params=["postgres", "mysql"])
def db(request: pytest.FixtureRequest) -> DbEnv:
    """Each test using this runs once per engine."""
    env: DbEnv = request.getfixturevalue("pg" if request.param == "postgres" else "mysql")
    return env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    previous = os.environ.get("AWS_ENDPOINT_URL")
    # Subprocesses (the real `rotator` command in tests) inherit this: everything talks to moto.
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous
        server.stop()


@pytest.fixture
def aws(moto_server: str) -> Iterator[AwsEnv]:
    env = AwsEnv(
        endpoint_url=moto_server,
        region="us-east-1",
        session=boto3.Session(region_name="us-east-1"),
        prefix=new_name("rt"),
    )
    yield env
    sm = env.client("secretsmanager")
    for arn in env.secret_ids:
        try:
            sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        except sm.exceptions.ResourceNotFoundException:
            pass


@pytest.fixture
def ecs(aws: AwsEnv) -> tuple[Any, str, str]:
    """An ECS cluster with one service on moto: (client, cluster, service)."""
    client = aws.client("ecs")
    cluster = new_name("cluster")
    client.create_cluster(clusterName=cluster)
    family = new_name("app")
    client.register_task_definition(
        family=family, containerDefinitions=[{"name": "app", "image": "openemr/openemr", "memory": 512}]
    )
    client.create_service(cluster=cluster, serviceName="openemr", taskDefinition=family, desiredCount=0)
    return client, cluster, "openemr"


@pytest.fixture(scope="session")
def openbao_session() -> Iterator[OpenBao | None]:
    with openbao_server() as server:
        yield server


@pytest.fixture
def openbao(openbao_session: OpenBao | None) -> OpenBao:
    """A real OpenBao dev server (one per session): ``.addr``, ``.token``, ``.client()``."""
    return require_openbao(openbao_session)


@pytest.fixture
def vault_db(openbao: OpenBao, db: DbEnv) -> Iterator[VaultDatabase]:
    """The database secrets engine on OpenBao, pointed at this test's database (both engines)."""
    with database_engine(openbao, db) as vdb:
        yield vdb
