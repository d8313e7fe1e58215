"""MySQL/MariaDB stored password formats, computed on this side so that no plaintext reaches the server.

``ALTER USER ... IDENTIFIED BY '<plaintext>'`` shows the password to anyone with PROCESS while the statement
waits on a lock (SHOW PROCESSLIST), and may reach the general or slow query log. The rotator sends the
stored form instead:

- ``mysql_native_password`` (MariaDB, where it is the default): ``'*' + HEX(SHA1(SHA1(password)))``, sent as
  ``IDENTIFIED BY PASSWORD '<hash>'``.
- ``caching_sha2_password`` (MySQL 8, the default there; mysql_native_password is disabled by default from 8.4
  and removed in 9): ``$A$005$`` + a 20-character salt + the 43-character SHA-256-crypt digest of 5,000
  rounds (Drepper's algorithm, whose salt MySQL does not cut at 16 bytes), sent as
  ``IDENTIFIED WITH caching_sha2_password AS '<hash>'``.

Passwords are hashed over their UTF-8 bytes: the bytes that PHP, the mysql client and the rotator's own
logins (which pass ``password.encode()`` to PyMySQL) send.
"""

from __future__ import annotations

import hashlib
import secrets

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHA2_SALT_LENGTH = 20
_SHA2_ROUNDS = 5000
# The byte order in which SHA-256-crypt encodes the final digest, three bytes (24 bits) at a time.
_SHA256_CRYPT_ORDER = (
    (0, 10, 20),
    (21, 1, 11),
    (12, 22, 2),
    (3, 13, 23),
    (24, 4, 14),
    (15, 25, 5),
    (6, 16, 26),
    (27, 7, 17),
    (18, 28, 8),
    (9, 19, 29),
)


def native_password_hash(password: str) -> str:
    """``mysql_native_password``'s stored form (what MariaDB's ``PASSWORD()`` returns)."""
    stage1 = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324  (the server's format, not our choice)
    return "*" + hashlib.sha1(stage1).hexdigest().upper()  # noqa: S324


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // len(digest) + 1))[:length]


def sha256_crypt_digest(key: bytes, salt: bytes, rounds: int) -> str:
    """The 43-character digest of SHA-256-crypt (https://www.akkadia.org/drepper/SHA-crypt.txt), uncut salt."""
    alternate = hashlib.sha256(key + salt + key).digest()
    ctx = hashlib.sha256(key + salt)
    ctx.update(_repeat(alternate, len(key)))
    n = len(key)
    while n:
        ctx.update(alternate if n & 1 else key)
        n >>= 1
    a = ctx.digest()
    p = _repeat(hashlib.sha256(key * len(key)).digest(), len(key))
    s = _repeat(hashlib.sha256(salt * (16 + a[0])).digest(), len(salt))
    for i in range(rounds):
        c = hashlib.sha256(p if i & 1 else a)
        if i % 3:
            c.update(s)
        if i % 7:
            c.update(p)
        c.update(a if i & 1 else p)
        a = c.digest()
    out = []
    for first, second, third in (*_SHA256_CRYPT_ORDER, (None, 31, 30)):
        word = ((a[first] if first is not None else 0) << 16) | (a[second] << 8) | a[third]
        for _ in range(4 if first is not None else 3):
            out.append(_CRYPT_ALPHABET[word & 0x3F])
            word >>= 6
    return "".join(out)


def caching_sha2_password_hash(password: str, salt: str | None = None) -> str:
    """``caching_sha2_password``'s stored form; a fresh random salt unless one is given (tests)."""
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT_ALPHABET) for _ in range(_SHA2_SALT_LENGTH))
    salt_bytes = salt.encode("latin-1")  # MySQL's own salts are bytes 1..127; ours are from the crypt alphabet
    if len(salt_bytes) != _SHA2_SALT_LENGTH:
        raise ValueError(f"a caching_sha2_password salt has {_SHA2_SALT_LENGTH} bytes")
    digest = sha256_crypt_digest(password.encode("utf-8"), salt_bytes, _SHA2_ROUNDS)
    return f"$A${_SHA2_ROUNDS // 1000:03X}${salt}{digest}"
