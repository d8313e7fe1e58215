"""rotator adopt's inputs and the grant comparisons it and the grant sync rest on: pure functions."""

from __future__ import annotations

import json

import pytest
from psycopg import sql

from rotator.adopt import existing_from_secret
from rotator.db.mysql import grant_atoms, missing_atoms
from rotator.db.postgres import _setting_value
from rotator.errors import BadInput, SecretFormatError


def test_seed_002_and_rds_formats_give_the_same_credentials() -> None:
    seed = {"username": "app", "password": "pw-123", "host": "db", "port": 5432, "database": "shop"}
    rds = {
        "engine": "postgres",
        "host": "db",
        "port": "5432",
        "username": "app",
        "password": "pw-123",
        "dbname": "shop",
    }
    a, engine_a = existing_from_secret(json.dumps(seed))
    b, engine_b = existing_from_secret(json.dumps(rds))
    assert (a.username, a.password, a.host, a.port, a.dbname) == (b.username, b.password, b.host, b.port, b.dbname)
    assert (engine_a, engine_b) == (None, "postgres")
    assert existing_from_secret(json.dumps({**rds, "engine": "mariadb"}))[1] == "mysql"


@pytest.mark.parametrize("missing", ["username", "password", "host", "port", "dbname"])
def test_an_incomplete_existing_secret_is_refused_without_echoing_it(missing: str) -> None:
    data = {"username": "app", "password": "s3cret-value", "host": "db", "port": 5432, "dbname": "shop"}
    del data[missing]
    with pytest.raises(BadInput) as err:
        existing_from_secret(json.dumps(data))
    assert missing.split()[0] in str(err.value) and "s3cret-value" not in str(err.value)


def test_a_slot_secret_is_not_an_existing_secret() -> None:
    with pytest.raises(SecretFormatError):
        existing_from_secret(json.dumps({"active_slot": "A", "A": {}, "B": {}}))


def test_mysql_grant_lines_become_rights_named_without_the_user() -> None:
    line = "GRANT SELECT, INSERT, UPDATE (`a`, `b`) ON `db`.`t` TO `app_a`@`%` WITH GRANT OPTION"
    assert grant_atoms(line, "app_a", "%") == [
        "SELECT ON `db`.`t`",
        "INSERT ON `db`.`t`",
        "UPDATE (`a`, `b`) ON `db`.`t`",
        "GRANT OPTION ON `db`.`t`",
    ]
    assert grant_atoms(line.replace("app_a", "app_b"), "app_b", "%") == grant_atoms(line, "app_a", "%")
    assert grant_atoms("GRANT USAGE ON *.* TO `app_a`@`%` IDENTIFIED BY PASSWORD '*ABC'", "app_a", "%") == []
    assert grant_atoms("GRANT `rotator_slot_db` TO `app_a`@`%`", "app_a", "%") == ["GRANT `rotator_slot_db`"]
    assert grant_atoms("SET DEFAULT ROLE `r` FOR `app_a`@`%`", "app_a", "%") == ["SET DEFAULT ROLE `r` FOR <grantee>"]


def test_all_privileges_covers_every_privilege_but_grant_option() -> None:
    held = {"ALL PRIVILEGES ON `db`.*"}
    assert missing_atoms(["SELECT ON `db`.*", "GRANT OPTION ON `db`.*", "SELECT ON `x`.*"], held) == [
        "GRANT OPTION ON `db`.*",
        "SELECT ON `x`.*",
    ]


def test_list_settings_are_given_back_one_literal_per_element() -> None:
    """search_path's stored form is a list of quoted identifiers; one literal for all would name one schema."""
    assert isinstance(_setting_value("statement_timeout", "7s"), sql.Literal)
    composed = _setting_value("search_path", 'reporting, "$user", "My ""Schema"""')
    assert composed == sql.SQL(", ").join([sql.Literal("reporting"), sql.Literal("$user"), sql.Literal('My "Schema"')])
