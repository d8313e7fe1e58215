"""The one atomic file writer (the rendered config, the file store's secrets) and the reader of such files.

:func:`write_atomic` replaces a file so that readers see the old file or the new one, never a part: a
private temp file in the same directory, fsync, rename, fsync of the directory. No temp file outlives a
failure, and every OSError becomes a :class:`~rotator.errors.RotatorError` whose one line names the fix.
``setting`` names the flag that chose the path, for those messages.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from rotator.errors import BadInput, RotatorError
from rotator.log import get_logger

log = get_logger(__name__)

DEFAULT_MODE = 0o640  # of the rendered config: it holds a password, so its owner and group only
PRIVATE_MODE = 0o600
CONFIG_SETTING = "--config-path"

# The temp file: a new file (never one planted in advance), not through a symlink, not inherited by a child.
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
# Reads never follow a symlink, and never block on a FIFO before fstat can refuse it.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = DEFAULT_MODE,
    owner: tuple[int, int] | None = None,
    setting: str = CONFIG_SETTING,
) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with exactly ``mode`` (whatever the umask).

    The temp file is private (0600) until its final mode and owner are set, just before the rename.
    """
    target = Path(path)
    tmp, fd = _create_temp(target, setting)
    replaced = False
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            if owner is not None:
                try:
                    os.fchown(fd, owner[0], owner[1])
                except PermissionError:
                    raise owner_error(target, owner) from None
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        replaced = True
        fsync_dir(target.parent)
    except RotatorError:
        raise
    except OSError as exc:
        if replaced:
            raise RotatorError(
                f"wrote {target} but could not flush its directory: {exc.strerror or type(exc).__name__}: "
                "check the filesystem, then re-run"
            ) from None
        raise write_error(target, exc, setting) from None
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    log.debug("file_written", path=str(target), mode=oct(mode), bytes=len(data))


def probe_writable(
    path: str | os.PathLike[str], *, owner: tuple[int, int] | None = None, setting: str = CONFIG_SETTING
) -> None:
    """Raise unless :func:`write_atomic` could create its temp file next to ``path`` (and give it ``owner``):
    create one, empty, and remove it.

    ``os.access`` is no proof: it says yes to root on a filesystem that refuses root (sysfs, an NFS/EFS
    export that squashes root) and does not see every ACL or security module.
    """
    target = Path(path)
    tmp, fd = _create_temp(target, setting)
    try:
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
    except PermissionError:
        raise owner_error(target, owner or (-1, -1)) from None
    except OSError as exc:
        raise write_error(target, exc, setting) from None
    finally:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError as exc:
            raise RotatorError(
                f"cannot remove the probe file {tmp}: {exc.strerror}: remove it by hand and check {target.parent}"
            ) from None


def read_regular(path: str | os.PathLike[str], *, setting: str = CONFIG_SETTING) -> bytes | None:
    """The content of the regular file ``path``, or None when there is none. BadInput for a symlink, a
    directory, a device or FIFO, or a file this process may not read."""
    target = Path(path)
    try:
        fd = os.open(target, _READ_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_error(target, setting) from None
        raise BadInput(f"cannot read {target}: {exc.strerror}: run as a user that may read it") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadInput(f"{target} is not a regular file ({_kind(st.st_mode)}): point {setting} at a file")
    with os.fdopen(fd, "rb") as file:
        try:
            return file.read()
        except OSError as exc:
            raise BadInput(f"cannot read {target}: {exc.strerror}: run as a user that may read it") from None


def remove(path: str | os.PathLike[str], *, setting: str = CONFIG_SETTING) -> None:
    """Remove ``path`` durably; no file is fine."""
    target = Path(path)
    try:
        os.unlink(target)
        fsync_dir(target.parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise write_error(target, exc, setting) from None


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def symlink_error(target: Path, setting: str = CONFIG_SETTING) -> BadInput:
    return BadInput(
        f"{target} is a symbolic link: the rotator replaces the file, not what a link points to: "
        f"point {setting} at the file itself"
    )


def owner_error(path: str | os.PathLike[str], owner: tuple[int, int]) -> BadInput:
    return BadInput(
        f"cannot set the owner of {path} to {owner[0]}:{owner[1]}: changing the owner (--file-owner, "
        "--fix-permissions) needs root or the app's uid: run the rotator as that user, or leave the owner unset"
    )


def write_error(target: Path, exc: OSError, setting: str = CONFIG_SETTING) -> RotatorError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BadInput(
            f"cannot write {target}: {reason}: run as a user that may write {target.parent}, or change {setting}"
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return BadInput(f"directory {target.parent} does not exist: create it, or fix {setting}")
    if exc.errno == errno.EISDIR:
        return BadInput(f"{target} is a directory: point {setting} at a file")
    return RotatorError(f"writing {target} failed: {reason}; the old file is unchanged: fix the cause and re-run")


def _create_temp(target: Path, setting: str) -> tuple[Path, int]:
    tmp = target.parent / f".{target.name}.rotator-{secrets.token_hex(6)}.tmp"
    try:
        return tmp, os.open(tmp, _TEMP_FLAGS, PRIVATE_MODE)
    except OSError as exc:
        raise write_error(target, exc, setting) from None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"
