"""Parse and check one setting's value: from text (a flag, an environment variable) or from a native value
(a TOML table, a keyword argument of ``Settings``). Each parser is idempotent on its own output.

Every parser takes ``(value, label)`` and raises BadInput naming ``label`` (``--file-mode`` or ``file_mode``)
and the fix. Only numbers, modes and choices are echoed: free text may hold a secret (a health URL's
userinfo, a deploy command), so it never is. Digits are ASCII only: ``str.isdigit()`` and ``int()`` also
accept superscripts and other scripts' digits.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rotator.errors import BadInput

Parser = Callable[[Any, str], Any]

MAX_SECONDS = 7 * 24 * 3600.0  # no wait of the rotator is longer than a week: a bigger value is a typo
_ASCII_INT = re.compile(r"[0-9]+")
_ASCII_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_OCTAL_MODE = re.compile(r"(?:0o)?[0-7]{1,5}")


def ascii_int(text: str) -> int | None:
    """The int written in ASCII digits (surrounding whitespace allowed), else None."""
    text = text.strip()
    return int(text) if _ASCII_INT.fullmatch(text) else None


def _no_nul(value: str, label: str) -> str:
    if "\x00" in value:
        raise BadInput(f"{label} contains a NUL character: remove it")
    return value


def text(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{label} must be a string")
    return _no_nul(value, label)


def optional_text(value: Any, label: str) -> str | None:
    return None if value is None or value == "" else text(value, label)


def optional_path(value: Any, label: str) -> Path | None:
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return Path(text(value, label))


def flag(value: Any, label: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{label} must be true or false")
    return value


def choice(choices: Sequence[str], *, optional: bool = False) -> Parser:
    def parse(value: Any, label: str) -> str | None:
        if optional and (value is None or value == ""):
            return None
        if not isinstance(value, str) or value not in choices:
            shown = f" {value!r}" if isinstance(value, str | int | float) else ""
            raise BadInput(f"{label}{shown} is not one of {', '.join(choices)}: use one of them")
        return value

    return parse


def integer(minimum: int, *, example: int) -> Parser:
    def parse(value: Any, label: str) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            number = ascii_int(value)
        if number is None or number < minimum:
            raise BadInput(f"{label} {_show(value)} must be a whole number >= {minimum}: use e.g. {example}")
        return number

    return parse


def seconds(*, positive: bool, example: float) -> Parser:
    """A finite number of seconds, > 0 (``positive``) or >= 0, at most a week."""
    bound = "> 0" if positive else ">= 0"

    def parse(value: Any, label: str) -> float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _ASCII_DECIMAL.fullmatch(value.strip()):
            number = float(value.strip())
        if number is None or not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise BadInput(f"{label} {_show(value)} must be a finite number of seconds {bound}: use e.g. {example:g}")
        if number > MAX_SECONDS:
            raise BadInput(f"{label} {_show(value)} is more than a week: use at most {MAX_SECONDS:g} seconds")
        return number

    return parse


def file_mode(value: Any, label: str) -> int:
    """An octal mode: ``"0640"`` or ``"640"`` as text, or an int (TOML's ``0o640``)."""
    mode: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and _OCTAL_MODE.fullmatch(value.strip()):
        mode = int(value.strip(), 8)
    if mode is None or not 0 <= mode <= 0o7777:
        raise BadInput(f"{label} {_show(value)} is not an octal file mode: use e.g. 0640")
    return mode


def file_owner(value: Any, label: str) -> tuple[int, int] | None:
    """``"uid:gid"`` or ``"uid"`` (gid = uid) as text, or a pair of ints."""
    if value is None or value == "":
        return None
    ids: list[int | None] = []
    if isinstance(value, str):
        uid, sep, gid = value.partition(":")
        ids = [ascii_int(uid), ascii_int(gid) if sep else ascii_int(uid)]
    elif isinstance(value, tuple | list) and len(value) == 2:
        ids = [v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None for v in value]
    if len(ids) != 2 or ids[0] is None or ids[1] is None:
        raise BadInput(f"{label} {_show(value)} must be a numeric uid:gid: use e.g. 1000:1000")
    return ids[0], ids[1]


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str | int | float | bool) else f"(a {type(value).__name__})"
