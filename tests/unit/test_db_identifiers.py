"""Identifier validation, quoting, lock names and SHOW GRANTS rewriting: pure, no database."""

from __future__ import annotations

import pytest

from rotator.db._common import (
    REDACTED,
    mysql_lock_name,
    pg_lock_key,
    quote_mysql_identifier,
    scrub,
    short_reason,
    validate_mysql_database,
    validate_mysql_user,
    validate_pg_identifier,
)
from rotator.db.mysql import grant_template, strip_auth_clause
from rotator.errors import BadInput, DatabaseError


@pytest.mark.parametrize("name", ["app", "slot-a", "o'brien", 'we"ird', "x`y%z_", "ünïcødé", "a" * 63])
def test_pg_identifier_accepts(name: str) -> None:
    assert validate_pg_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "a" * 64, "é" * 32, "nul\x00byte", "new\nline", "tab\tname", "del\x7f", "c1\x85", " lead", "trail "],
)
def test_pg_identifier_rejects(name: str) -> None:
    with pytest.raises(BadInput):
        validate_pg_identifier(name)


def test_pg_identifier_limit_is_in_bytes() -> None:
    assert validate_pg_identifier("é" * 31 + "a") == "é" * 31 + "a"  # 63 bytes
    with pytest.raises(BadInput, match="64 bytes"):
        validate_pg_identifier("é" * 32)


def test_mysql_names() -> None:
    assert validate_mysql_user("u" * 80) == "u" * 80
    with pytest.raises(BadInput):
        validate_mysql_user("u" * 81)
    assert validate_mysql_database("d" * 64) == "d" * 64
    with pytest.raises(BadInput):
        validate_mysql_database("d" * 65)
    with pytest.raises(BadInput):
        validate_mysql_user("a\x00b")


def test_rejection_message_names_the_problem() -> None:
    with pytest.raises(BadInput, match="control character"):
        validate_mysql_user("a\rb")
    with pytest.raises(BadInput, match="empty"):
        validate_mysql_user("")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("app", "`app`"), ("a`b", "`a``b`"), ("``", "``````"), ("o'brien", "`o'brien`"), ("50%_off", "`50%_off`")],
)
def test_quote_mysql_identifier(name: str, quoted: str) -> None:
    assert quote_mysql_identifier(name) == quoted


def test_mysql_lock_names() -> None:
    assert mysql_lock_name("rotator:db1") == "rotator:db1"
    assert mysql_lock_name("x" * 64) == "x" * 64
    long = mysql_lock_name("x" * 65)
    assert len(long) == 64
    assert long == mysql_lock_name("x" * 65)
    assert long != mysql_lock_name("y" * 65)


def test_pg_lock_key_is_stable_signed_int64() -> None:
    key = pg_lock_key("rotator:db1")
    assert key == pg_lock_key("rotator:db1")
    assert key != pg_lock_key("rotator:db2")
    assert -(2**63) <= key < 2**63
    # Known value: the first 8 bytes of sha256("a"), big-endian, signed.
    assert pg_lock_key("a") == int.from_bytes(bytes.fromhex("ca978112ca1bbdca"), "big", signed=True)


def test_scrub_and_short_reason() -> None:
    assert scrub("pw is hunter22 and hunter2", "hunter2", "hunter22") == f"pw is {REDACTED} and {REDACTED}"
    reason = short_reason("first line with s3cret\nsecond line", "s3cret")
    assert reason == f"first line with {REDACTED}"
    assert len(short_reason("x" * 1000)) == 200


def test_strip_auth_clause() -> None:
    hashed = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*3E37AF99C403572FF7CC53D335BE336E52569EBF'"
    assert strip_auth_clause(hashed) == "GRANT USAGE ON *.* TO `u`@`%`"
    via = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED VIA mysql_native_password USING '*AB' OR unix_socket"
    assert strip_auth_clause(via) == "GRANT USAGE ON *.* TO `u`@`%`"
    kept = "GRANT PROCESS ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*AB' REQUIRE SSL WITH GRANT OPTION"
    assert strip_auth_clause(kept) == "GRANT PROCESS ON *.* TO `u`@`%` REQUIRE SSL WITH GRANT OPTION"
    assert strip_auth_clause("GRANT ALL PRIVILEGES ON `d`.* TO `u`@`%`") == "GRANT ALL PRIVILEGES ON `d`.* TO `u`@`%`"


def test_grant_template_replaces_only_the_grantee() -> None:
    line = "GRANT ALL PRIVILEGES ON `a_b%c`.* TO `o'b``r`@`%` WITH GRANT OPTION"
    assert grant_template(line, "o'b`r", "%") == "GRANT ALL PRIVILEGES ON `a_b%%c`.* TO %s@%s WITH GRANT OPTION"


def test_grant_template_skips_bare_usage_and_keeps_meaningful_usage() -> None:
    bare = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*AB'"
    assert grant_template(bare, "u", "%") is None
    tls = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*AB' REQUIRE SSL"
    assert grant_template(tls, "u", "%") == "GRANT USAGE ON *.* TO %s@%s REQUIRE SSL"


def test_grant_template_roles_and_default_role() -> None:
    assert grant_template("GRANT `app_rw` TO `u`@`%`", "u", "%") == "GRANT `app_rw` TO %s@%s"
    assert grant_template("SET DEFAULT ROLE `app_rw` FOR `u`@`%`", "u", "%") == "SET DEFAULT ROLE `app_rw` FOR %s@%s"


def test_grant_template_mysql57_quoting() -> None:
    assert grant_template("GRANT SELECT ON `d`.* TO 'u'@'10.%'", "u", "10.%") == "GRANT SELECT ON `d`.* TO %s@%s"


def test_grant_template_refuses_an_unknown_grantee() -> None:
    with pytest.raises(DatabaseError, match="cannot find the grantee"):
        grant_template("GRANT SELECT ON `d`.* TO `other`@`%`", "u", "%")
