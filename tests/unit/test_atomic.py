"""The one atomic writer, as the config file and the file store use it: how its temp file is made and kept."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rotator.atomic import write_atomic
from rotator.errors import BadInput
from rotator.store.file import FileStore

TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OpenSpy:
    """Records the flags and mode of every os.open that creates a file, then calls the real os.open (a spy,
    not a fake: the flags are what this test is about, and no behaviour tells O_CLOEXEC apart in Python)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[tuple[str, int, int]] = []
        self._real = os.open
        monkeypatch.setattr(os, "open", self)

    def __call__(self, path: Any, flags: int, mode: int = 0o777, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            self.created.append((os.fspath(path), flags, mode))
        return self._real(path, flags, mode, *args, **kw)


@pytest.mark.parametrize("writer", ["config", "file store"])
def test_the_temp_file_is_new_private_and_not_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    spy = OpenSpy(monkeypatch)
    if writer == "config":
        write_atomic(tmp_path / "sqlconf.php", b"x", mode=0o644)
        directory = tmp_path
    else:
        store = FileStore(tmp_path / "secrets")
        store.create("dev/db", "first-value")
        store.put_pending("dev/db", "second-value", "token-1")
        directory = store.directory
    assert spy.created, "nothing was created"
    for path, flags, mode in spy.created:
        assert Path(path).parent == directory and Path(path).name.endswith(".tmp")
        assert flags & TEMP_FLAGS == TEMP_FLAGS, oct(flags)
        assert mode == 0o600
    assert [p for p in os.listdir(directory) if p.endswith(".tmp")] == []


def test_writing_over_a_directory_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "sqlconf.php").mkdir()
    with pytest.raises(BadInput, match=r"sqlconf\.php is a directory: point --config-path at a file$"):
        write_atomic(tmp_path / "sqlconf.php", b"x")
    assert os.listdir(tmp_path) == ["sqlconf.php"]
