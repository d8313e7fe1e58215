"""The caller's host and port win over the secret's: a pool or engine pointed at a sidecar stays on it.

A tiny TCP forwarder on a free loopback port stands in for a PgBouncer (or ProxySQL) sidecar in front of the
real database: it copies bytes both ways and counts the connections it accepted. The secret names the database's
own port, so a connection that does not go through the forwarder went around the caller's choice.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rotator.client import CredentialLoader, sqla
from rotator.client.pgpool import connection_class, pool_kwargs, pool_options
from tests.harness import AwsEnv, DbEnv
from tests.integration.test_client_rotation import create_slot_db

pytestmark = pytest.mark.integration


class Forwarder:
    """Accepts on 127.0.0.1:<free port> and pipes each connection to the database (a fake sidecar, on purpose)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            upstream = socket.create_connection(self.target, timeout=5)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


@contextmanager
def forwarder(db: DbEnv) -> Iterator[Forwarder]:
    fwd = Forwarder((db.host, db.port))
    try:
        yield fwd
    finally:
        fwd.close()


def loader_for(db: DbEnv, aws: AwsEnv) -> tuple[CredentialLoader, str]:
    slots = create_slot_db(db, aws)  # its secret names db.host:db.port, the database itself
    return CredentialLoader.from_secret(slots.arn, endpoint_url=aws.endpoint_url, region=aws.region), slots.users["A"]


def whoami(engine: Any, db: DbEnv) -> str:
    sql = "SELECT session_user" if db.engine == "postgres" else "SELECT CURRENT_USER()"
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(sql).scalar()).split("@", 1)[0]


@pytest.mark.parametrize("where", ["url", "connect_args"])
def test_sqlalchemy_engine_keeps_the_callers_host_and_port(db: DbEnv, aws: AwsEnv, where: str) -> None:
    loader, user = loader_for(db, aws)
    pg = db.engine == "postgres"
    with forwarder(db) as fwd:
        if where == "url":
            url = (
                f"postgresql+psycopg://127.0.0.1:{fwd.port}/?sslmode=disable"
                if pg
                else f"mysql+pymysql://127.0.0.1:{fwd.port}/"
            )
            engine = sqla.create_engine(loader, url, pool_size=1, max_overflow=0)
        else:
            url = "postgresql+psycopg://?sslmode=disable" if pg else "mysql+pymysql://"
            engine = sqla.create_engine(loader, url, connect_args={"host": "127.0.0.1", "port": fwd.port})
        try:
            assert whoami(engine, db) == user
            engine.dispose()
            assert whoami(engine, db) == user
        finally:
            engine.dispose()
        assert fwd.accepted == 2


def test_psycopg_pool_keeps_the_callers_host_and_port(pg: DbEnv, aws: AwsEnv) -> None:
    from psycopg_pool import ConnectionPool

    loader, user = loader_for(pg, aws)
    with forwarder(pg) as fwd:
        # The options of pool_options, and a pool's own conninfo with the parts used one by one.
        pools: list[ConnectionPool[Any]] = [
            ConnectionPool(
                min_size=1,
                max_size=1,
                open=False,
                **pool_options(loader, host="127.0.0.1", port=fwd.port, sslmode="disable"),
            ),
            ConnectionPool(
                f"host=127.0.0.1 port={fwd.port} sslmode=disable",
                min_size=1,
                max_size=1,
                open=False,
                kwargs=pool_kwargs(loader),
                connection_class=connection_class(loader),
            ),
        ]
        for pool in pools:
            pool.open(wait=True, timeout=10)
            try:
                with pool.connection() as conn:
                    row = conn.execute("SELECT session_user").fetchone()
                assert row is not None and row[0] == user
            finally:
                pool.close()
        assert fwd.accepted == len(pools)
