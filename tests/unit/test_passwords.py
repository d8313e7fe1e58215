"""Password policy: CSPRNG, every class present, an alphabet safe unescaped in URL, PHP, .pgpass and shell."""

from __future__ import annotations

import shlex
import string
import urllib.parse

import pytest

from rotator.errors import BadInput
from rotator.passwords import PasswordPolicy


def test_default_is_32_chars_with_every_class() -> None:
    policy = PasswordPolicy()
    for _ in range(200):
        pw = policy.generate()
        assert len(pw) == 32
        assert policy.satisfied_by(pw)
        assert any(c in string.ascii_lowercase for c in pw) and any(c in string.ascii_uppercase for c in pw)
        assert any(c in string.digits for c in pw) and any(c in "-_." for c in pw)


def test_passwords_are_distinct() -> None:
    policy = PasswordPolicy()
    assert len({policy.generate() for _ in range(1000)}) == 1000


def test_alphabet_is_safe_everywhere() -> None:
    alphabet = PasswordPolicy().alphabet
    assert urllib.parse.quote(alphabet, safe="") == alphabet  # URL/DSN userinfo, unescaped
    assert shlex.quote(alphabet) == alphabet  # a shell word
    assert "'" not in alphabet and "\\" not in alphabet  # PHP single-quoted string
    assert ":" not in alphabet  # .pgpass field separator
    assert not set(alphabet) & set('"$`#= \n')  # dotenv


def test_configurable() -> None:
    policy = PasswordPolicy(length=48, symbols="")
    pw = policy.generate()
    assert len(pw) == 48 and not set(pw) & set("-_.")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 8},
        {"length": 500},
        {"symbols": "'"},
        {"symbols": "@"},
        {"lowercase": "", "uppercase": "", "digits": "", "symbols": ""},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(BadInput):
        PasswordPolicy(**kwargs)  # type: ignore[arg-type]
