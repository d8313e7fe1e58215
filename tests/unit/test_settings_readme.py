"""The README's flag table agrees with the settings' declaration: the flags it lists are the ones marked
``readme``, each exists with that flag, and the choices it shows are the declared ones."""

from __future__ import annotations

import re
from pathlib import Path

from rotator.config import CLI_ONLY, SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"
FLAG = re.compile(r"(--[a-z][a-z0-9-]*)(?: ((?:[a-z0-9-]+\\\|)+[a-z0-9-]+))?")


def flag_table() -> list[tuple[str, str]]:
    """(first cell, meaning) of each row of the table headed ``| flag | meaning |``."""
    lines = README.read_text().splitlines()
    start = lines.index("| flag | meaning |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append((cells[0], cells[1]))
    return rows


DECLARED = {spec.flag: spec for spec in (*SETTINGS, *CLI_ONLY)}


def test_the_table_lists_exactly_the_settings_marked_for_it_with_their_choices() -> None:
    listed: dict[str, tuple[str, ...]] = {}
    for first, _ in flag_table():
        for flag, choices in FLAG.findall(first):
            assert flag in DECLARED, f"README lists {flag}, which is not a declared setting"
            listed[flag] = tuple(choices.split("\\|")) if choices else ()
    assert set(listed) == {flag for flag, spec in DECLARED.items() if spec.readme}
    for flag, choices in listed.items():
        if choices:
            assert choices == DECLARED[flag].choices, flag


def test_every_flag_the_table_mentions_exists() -> None:
    for first, meaning in flag_table():
        for flag, _ in FLAG.findall(first + " " + meaning):
            assert flag in DECLARED, f"README mentions {flag}, which is not a declared setting"


def test_defaults_the_table_states_are_the_declared_ones() -> None:
    for first, meaning in flag_table():
        flags = [flag for flag, _ in FLAG.findall(first)]
        for stated in re.findall(r"default `?([^`);,]+)`?", meaning):
            assert any(DECLARED[f].default_text == stated.strip() for f in flags), (flags, stated)
