"""Password policy and generation.

The default alphabet is safe, unescaped, inside a URL/DSN userinfo (RFC 3986 unreserved characters),
a PHP single-quoted string, a .pgpass line, a dotenv value and a shell word: letters, digits, '-', '_'
and '.'. None of them needs quoting in any of those places. ('~' is URL-unreserved but not shell-safe: a
word starting with it is tilde-expanded.)
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from rotator.errors import BadInput

SAFE_SYMBOLS = "-_."


@dataclass(frozen=True)
class PasswordPolicy:
    length: int = 32
    lowercase: str = string.ascii_lowercase
    uppercase: str = string.ascii_uppercase
    digits: str = string.digits
    symbols: str = SAFE_SYMBOLS

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or isinstance(self.length, bool):
            raise BadInput("password length must be a whole number (--password-length): use e.g. 32")
        classes = self.classes()
        if not classes:
            raise BadInput("password policy has no character classes: enable at least one")
        if self.length < max(len(classes), 16):
            raise BadInput(
                f"password length {self.length} is too short (--password-length): use at least 16 (default 32)"
            )
        if self.length > 128:
            raise BadInput(f"password length {self.length} is too long (--password-length): use at most 128")
        for ch in "".join(classes):
            if ch not in _SAFE_EVERYWHERE:
                raise BadInput(
                    f"password alphabet contains {ch!r}, which needs escaping in a URL, PHP string, "
                    f".pgpass or shell word: use only letters, digits and {SAFE_SYMBOLS!r}"
                )

    def classes(self) -> list[str]:
        return [c for c in (self.lowercase, self.uppercase, self.digits, self.symbols) if c]

    @property
    def alphabet(self) -> str:
        return "".join(self.classes())

    def generate(self) -> str:
        classes = self.classes()
        alphabet = self.alphabet
        # One of each class, the rest from the whole alphabet, then a CSPRNG shuffle.
        chars = [secrets.choice(c) for c in classes]
        chars += [secrets.choice(alphabet) for _ in range(self.length - len(chars))]
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)

    def satisfied_by(self, password: str) -> bool:
        return (
            len(password) >= self.length
            and all(any(ch in c for ch in password) for c in self.classes())
            and all(ch in self.alphabet for ch in password)
        )


_SAFE_EVERYWHERE = frozenset(string.ascii_letters + string.digits + SAFE_SYMBOLS)
