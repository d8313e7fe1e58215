"""Database engines: MySQL/MariaDB (pymysql) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from rotator.db.base import AdminSession, Endpoint, Engine, LoginResult, TlsConfig, UserInfo

__all__ = ["AdminSession", "Endpoint", "Engine", "LoginResult", "TlsConfig", "UserInfo", "get_engine"]


def get_engine(name: str, *, mysql_user_host: str = "%", pg_owner_role: str | None = None) -> Engine:
    if name == "mysql":
        from rotator.db.mysql import MySQLEngine

        return MySQLEngine(user_host=mysql_user_host)
    if name == "postgres":
        from rotator.db.postgres import PostgresEngine

        return PostgresEngine(owner_role=pg_owner_role)
    raise ValueError(f"unknown engine {name!r}")
