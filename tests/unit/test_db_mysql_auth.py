"""MySQL stored password formats against published vectors, and the SHOW GRANTS privilege reader: pure."""

from __future__ import annotations

import pytest

from rotator.db.mysql import global_privileges
from rotator.db.mysql_auth import caching_sha2_password_hash, native_password_hash, sha256_crypt_digest


def test_sha256_crypt_matches_dreppers_reference_vectors() -> None:
    # https://www.akkadia.org/drepper/SHA-crypt.txt, the test vectors at its end.
    assert sha256_crypt_digest(b"Hello world!", b"saltstring", 5000) == "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
    assert (
        sha256_crypt_digest(b"Hello world!", b"saltstringsaltst", 10000)
        == "3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"
    )


# Published MySQL 8 authentication strings with their passwords (the unit tests of the mysql_hashes module of
# Yandex's cloud.mdb salt states); their salts hold control characters, as MySQL's own salts do.
_SHA2_VECTORS = {
    "Q": "$A$005$L%*,g1\\\x11Ei%%Y3\x1f\x07uF)56R6OBmao.7gDHAdcEqhrLF33ZjApRNgQyvDHN.tuH45",
    "9Aq7z": '$A$005$9?\x113I\x03c@<~\r"c@g\x15F"z!f4egYDpJtjssix4x7rpd3RIxXlzLK4eeZcST.5SIzc1',
    "CMunq1PrKH": "$A$005$&M\x15\x06UEK\rS#{: d}\x1a\x1ak'Pmqo1L9Dlfn03ogl4DiNubgaRsN4FYJjhE57s08Z39s2",
    "fZ3nZT8TXRieMNDkMMG9": "$A$005$f'p\x05F'}\x03\r(O> ]Qf^\x07U.0Tbz2cVYoPpFSeOBoOjtsEOCTDgfcoFN0yu2DEiGA5/",
}
_NATIVE_VECTORS = {
    "Q": "*FB7DA503AFE304D828558DD6C08F3EB169284A3C",
    "9Aq7z": "*69B6085A06D05476296F257F626D26D3691806C0",
    "CMunq1PrKH": "*FF36B72DA2AB727D4380FCFD39313C295186E876",
    "fZ3nZT8TXRieMNDkMMG9": "*57166FC4BBDF4BFDE892CF3966C30AC3DA76485F",
}


@pytest.mark.parametrize("password", sorted(_SHA2_VECTORS))
def test_caching_sha2_password_matches_published_authentication_strings(password: str) -> None:
    stored = _SHA2_VECTORS[password]
    assert caching_sha2_password_hash(password, salt=stored[7:27]) == stored


@pytest.mark.parametrize("password", sorted(_NATIVE_VECTORS))
def test_native_password_matches_published_hashes(password: str) -> None:
    assert native_password_hash(password) == _NATIVE_VECTORS[password]


def test_caching_sha2_password_fresh_salts() -> None:
    first, second = caching_sha2_password_hash("pw"), caching_sha2_password_hash("pw")
    assert first != second
    assert len(first) == 70 and first.startswith("$A$005$")
    assert "$" not in first[7:] and "'" not in first and "\\" not in first


_ME = "`app`@`%`"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([f"GRANT USAGE ON *.* TO {_ME}", f"GRANT ALL PRIVILEGES ON `app`.* TO {_ME}"], []),
        ([f"GRANT USAGE ON *.* TO {_ME} IDENTIFIED BY PASSWORD '*ABC'"], []),
        ([f"GRANT SELECT ON *.* TO {_ME}"], ["SELECT ON *.*"]),
        ([f"GRANT USAGE ON *.* TO {_ME} WITH GRANT OPTION"], ["GRANT OPTION ON *.*"]),
        (
            [f"GRANT ALL PRIVILEGES ON *.* TO {_ME} IDENTIFIED BY PASSWORD '*ABC' WITH GRANT OPTION"],
            ["ALL PRIVILEGES ON *.*", "GRANT OPTION ON *.*"],
        ),
        (
            [f"GRANT USAGE ON *.* TO {_ME} WITH MAX_QUERIES_PER_HOUR 5"],  # a resource limit is no privilege
            [],
        ),
        ([f"GRANT SELECT, RELOAD ON *.* TO {_ME}"], ["SELECT ON *.*", "RELOAD ON *.*"]),
        ([f"GRANT BACKUP_ADMIN,ROLE_ADMIN ON *.* TO {_ME}"], ["BACKUP_ADMIN ON *.*", "ROLE_ADMIN ON *.*"]),
        ([f"GRANT SELECT (`Host`, `User`) ON `mysql`.`user` TO {_ME}"], ["SELECT (`Host`, `User`) ON `mysql`.`user`"]),
        ([f"GRANT `rotator_slot_app` TO {_ME}"], []),
    ],
)
def test_global_privileges(lines: list[str], expected: list[str]) -> None:
    assert global_privileges(lines, _ME) == expected
