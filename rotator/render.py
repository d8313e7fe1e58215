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

import dataclasses
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
from rotator.template import (
    CHANGE_VALUE,
    CREDENTIAL_VARIABLES,
    FILTERS,
    FIX_TEMPLATE,
    context_for,
    docker_env,
    dotenv,
    json_filter,
    php_sq,
    render,
    shell,
    url,
)

__all__ = [
    "CREDENTIAL_VARIABLES",
    "DEFAULT_MODE",
    "FILTERS",
    "ConfigFile",
    "DeployedConfig",
    "context_for",
    "docker_env",
    "dotenv",
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

# The trial render's password: every character some format escapes and every shipped format can carry (no
# newline: a Docker env-file cannot), so each filter runs on hostile text; a trailing backslash last.
_TRIAL_PASSWORD = "p'\"\\$`{{ x }}%41 ;\t#é😀?><?php $HOME\\"  # noqa: S105
_SAFE_USERNAME = "check_user"
_SAFE_PASSWORD = "check-password"  # noqa: S105


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

        Call it before the first change, with the slots' credentials (A, B) when known. Each slot's username and
        password, and a hostile placeholder in their place, are rendered and read back by the format's own
        reader (:func:`rotator.readback.reads_back`): a value that does not come back exactly is refused.
        """
        self.check_template(*slots)
        self.check_path()

    def check_template(self, *slots: Credentials) -> None:
        """The template half of :meth:`check`: it renders hostile text, and these slots' values, readably."""
        trials = [_trial_credentials(creds) for creds in slots or (None,)]
        for trial in trials:
            self.render(trial, "A")  # a template that breaks on hostile text: its own message
        readback.probe(self.template)
        for trial in trials:
            if self._not_carried(trial) is not None:
                raise BadInput(
                    f"template {self.template} cannot carry a hostile password (quotes, backslash, $, #, non-ASCII):"
                    f" escape every value with the filter of its format: {FIX_TEMPLATE}"
                )
        for index, creds in enumerate(slots):
            self._check_carried(creds, chr(ord("A") + index))

    def check_path(self) -> None:
        """The file half of :meth:`check`: not the template, a regular readable file (or none), and writable by
        the atomic writer (a probe file is created next to it and removed; the file itself is not touched)."""
        self._check_not_the_template()
        read_regular(self.path)  # a symlink, not a regular file, or unreadable: BadInput
        probe_writable(self.path, owner=self.owner)

    def _check_carried(self, creds: Credentials, slot: str) -> None:
        reason = self._not_carried(creds)
        if reason is None:
            return
        for name in ("password", "username"):
            alone = dataclasses.replace(creds, username=_SAFE_USERNAME, password=_SAFE_PASSWORD)
            alone_reason = self._not_carried(dataclasses.replace(alone, **{name: getattr(creds, name)}))
            if alone_reason is not None:
                raise BadInput(f"the {name} of slot {slot} cannot be carried by {self.template.name}: {alone_reason}")
        raise BadInput(f"the credentials of slot {slot} cannot be carried by {self.template.name}: {reason}")

    def _not_carried(self, creds: Credentials) -> str | None:
        """Why the format's reader would not get ``creds``' username and password back exactly, or None."""
        try:
            text = self.render(creds, "A").decode("utf-8")
        except BadInput as exc:  # a filter refused a value (the trial render with these extras passed)
            return str(exc)
        got = readback.reads_back(self.template, text)
        if got.raw_ok and (got.username, got.password) == (creds.username, creds.password):
            return None
        plain = dataclasses.replace(creds, username=_SAFE_USERNAME, password=_SAFE_PASSWORD)
        if not readback.reads_back(self.template, self.render(plain, "A").decode("utf-8")).raw_ok:
            return None  # not the values: this rendering never reads back (e.g. an {% if %} on a false extra)
        return f"its reader would get back another value: {CHANGE_VALUE}"

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
