"""The app's config file: render it from a jinja2 template, check it can be written and read back before the
first change, write it atomically, snapshot and restore it, fix its mode and owner.

The pieces live in :mod:`rotator.template` (filters, environment, :func:`render`), :mod:`rotator.readback`
(which credentials the deployed file holds) and :mod:`rotator.atomic` (the one atomic file writer); this
module re-exports what callers use.

A config path that is a symbolic link is refused (by :meth:`ConfigFile.check` and by every read): the
writer replaces the file by a rename, which would replace the link itself rather than the file it points to.
Point ``--config-path`` at the real file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rotator import readback
from rotator.atomic import (
    DEFAULT_MODE,
    owner_error,
    probe_writable,
    read_regular,
    remove,
    symlink_error,
    write_atomic,
    write_error,
)
from rotator.errors import BadInput, RotatorError
from rotator.log import get_logger
from rotator.readback import DeployedConfig, read_deployed
from rotator.secrets import Credentials
from rotator.template import CREDENTIAL_VARIABLES, FILTERS, context_for, env, json_filter, php_sq, render, shell, url

__all__ = [
    "CREDENTIAL_VARIABLES",
    "DEFAULT_MODE",
    "FILTERS",
    "ConfigFile",
    "DeployedConfig",
    "context_for",
    "env",
    "fix_permissions",
    "json_filter",
    "php_sq",
    "read_deployed",
    "render",
    "restore",
    "shell",
    "snapshot",
    "url",
    "write_atomic",
]

log = get_logger(__name__)

# The trial render's password: every character some format escapes, so each filter runs on hostile text.
_TRIAL_PASSWORD = "p'\"\\$`{{ x }}%41 ;\n\t\r#é"  # noqa: S105


def fix_permissions(path: str | os.PathLike[str], mode: int, owner: tuple[int, int] | None) -> bool:
    """Set mode (and owner) of an existing file without touching its content. True when anything changed."""
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise BadInput(f"{target} does not exist: nothing to fix") from None
    if stat.S_ISLNK(st.st_mode):
        raise symlink_error(target)
    changed = False
    try:
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            try:
                os.chown(target, owner[0], owner[1])
            except PermissionError:
                raise owner_error(target, owner) from None
            changed = True
        if stat.S_IMODE(st.st_mode) != mode:
            try:
                os.chmod(target, mode)
            except PermissionError:
                raise BadInput(
                    f"cannot change the mode of {target}: --fix-permissions needs root or the file's owner"
                ) from None
            changed = True
    except RotatorError:
        raise
    except OSError as exc:
        raise write_error(target, exc) from None
    log.info("permissions_fixed" if changed else "permissions_ok", path=str(target), mode=oct(mode), owner=owner)
    return changed


def snapshot(path: str | os.PathLike[str]) -> bytes | None:
    """The file's content, kept in memory for :func:`restore`; None when there is no file."""
    return read_regular(path)


def restore(
    path: str | os.PathLike[str],
    snap: bytes | None,
    mode: int = DEFAULT_MODE,
    owner: tuple[int, int] | None = None,
) -> None:
    """Put back what :func:`snapshot` saw: its content, or no file at all."""
    if snap is None:
        remove(path)
    else:
        write_atomic(path, snap, mode=mode, owner=owner)


@dataclass(frozen=True)
class ConfigFile:
    """One deployed config file and its template: what the orchestrator renders, writes, reads and restores."""

    template: Path
    path: Path
    mode: int = DEFAULT_MODE
    owner: tuple[int, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def render(self, creds: Credentials, slot: str) -> bytes:
        return render(self.template, creds, slot, self.extra)

    def write(self, creds: Credentials, slot: str) -> None:
        write_atomic(self.path, self.render(creds, slot), mode=self.mode, owner=self.owner)

    def read_deployed(self) -> DeployedConfig | None:
        return read_deployed(self.template, self.path)

    def snapshot(self) -> bytes | None:
        return snapshot(self.path)

    def restore(self, snap: bytes | None) -> None:
        restore(self.path, snap, self.mode, self.owner)

    def fix_permissions(self) -> bool:
        return fix_permissions(self.path, self.mode, self.owner)

    def check(self, *slots: Credentials) -> None:
        """Raise BadInput when a rotation could not render, read back or replace this file. Changes nothing.

        Call it before the first change. ``slots``: the slots' credentials when known, so that the template may
        use their extra keys (e.g. ``ssl``); the trial render puts placeholder values in place of the
        username and password whatever is given.
        """
        for creds in slots or (None,):
            self.render(_trial_credentials(creds), "A")
        readback.probe(self.template)
        self._check_not_the_template()
        read_regular(self.path)  # a symlink, not a regular file, or unreadable: BadInput
        probe_writable(self.path, owner=self.owner)

    def _check_not_the_template(self) -> None:
        try:
            same = os.path.samefile(self.template, self.path)
        except OSError:  # no config file yet (the template was just read)
            same = False
        if same or self.template.resolve() == self.path.resolve():
            raise BadInput(f"--config-path {self.path} is the template {self.template} itself: render to another path")


def _trial_credentials(creds: Credentials | None) -> Credentials:
    return Credentials(
        username="check_user'\"\\$",
        password=_TRIAL_PASSWORD,
        host=creds.host if creds else "db.check.invalid",
        port=creds.port if creds else 5432,
        dbname=creds.dbname if creds else "check_db",
        extras=dict(creds.extras) if creds else {},
    )
