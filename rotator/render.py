"""Render the app's config from a jinja2 template, write it atomically, and read back what is deployed.

Templates escape every value with the filter for their format: ``php_sq`` (inside a PHP single-quoted
string), ``env`` (a complete double-quoted dotenv value), ``json`` (a complete JSON value), ``shell``
(one shell word) and ``url`` (a URL component, e.g. userinfo).

:func:`read_deployed` works for any template without knowing its format: it renders the template once
with a marker in place of every variable, marking also which filters were applied to it; the text
between the markers becomes the literal part of a regular expression, each marker a capture group
that matches only what its outermost filter can produce, and each captured value is decoded with the
inverse filters. See :class:`_Probe`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import secrets
import shlex
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
import jinja2.meta

from rotator.errors import BadInput, RotatorError
from rotator.log import get_logger
from rotator.secrets import Credentials

log = get_logger(__name__)

CREDENTIAL_VARIABLES = ("username", "password", "host", "port", "dbname", "slot")
DEFAULT_MODE = 0o640

# ---------------------------------------------------------------- filters


def php_sq(value: Any) -> str:
    """Content of a PHP single-quoted string: only backslash and single quote are special."""
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


_ENV_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`", "\n": "\\n", "\r": "\\r"}
_ENV_UNESCAPES = {"\\": "\\", '"': '"', "$": "$", "`": "`", "n": "\n", "r": "\r"}


def _env_inner(value: str) -> str:
    return "".join(_ENV_ESCAPES.get(ch, ch) for ch in value)


def env(value: Any) -> str:
    """A complete dotenv value, always double-quoted."""
    return '"' + _env_inner(str(value)) + '"'


def json_filter(value: Any) -> str:
    return json.dumps(value)


def shell(value: Any) -> str:
    return shlex.quote(str(value))


def url(value: Any) -> str:
    return quote(str(value), safe="")


FILTERS: dict[str, Callable[[Any], str]] = {
    "php_sq": php_sq,
    "env": env,
    "json": json_filter,
    "shell": shell,
    "url": url,
}


@functools.lru_cache(maxsize=16)
def _environment(directory: str, probe: bool) -> jinja2.Environment:
    """One environment per template directory (jinja2 reloads a template whose file changed)."""
    # Config files, not HTML: every value is escaped for its format by an explicit filter.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=_MarkerUndefined if probe else jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
    )
    environment.filters.update({name: _probe_filter(name) for name in FILTERS} if probe else FILTERS)
    return environment


def _load(template_path: str | os.PathLike[str], *, probe: bool = False) -> jinja2.Template:
    path = Path(template_path).absolute()
    try:
        return _environment(str(path.parent), probe).get_template(path.name)
    except jinja2.TemplateNotFound:
        raise BadInput(f"template {template_path} does not exist: check --template (ROTATOR_TEMPLATE)") from None
    except jinja2.TemplateError as exc:
        raise BadInput(f"template {template_path} is invalid: {type(exc).__name__}: {exc.message}") from None


# ---------------------------------------------------------------- render


def context_for(creds: Credentials, slot: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(CREDENTIAL_VARIABLES))
    if clash:
        raise BadInput(f"extra template variables {', '.join(clash)} clash with the credential variables: rename them")
    return {
        **creds.extras,
        **extra,
        "username": creds.username,
        "password": creds.password,
        "host": creds.host,
        "port": creds.port,
        "dbname": creds.dbname,
        "slot": slot,
    }


def render(
    template_path: str | os.PathLike[str],
    creds: Credentials,
    slot: str,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The app's config for ``creds`` (slot ``slot``), UTF-8. Raises BadInput for a broken template."""
    template = _load(template_path)
    context = context_for(creds, slot, extra)
    try:
        text = template.render(context)
    except jinja2.TemplateError as exc:
        raise BadInput(f"template {template_path} cannot be rendered: {type(exc).__name__}: {exc.message}") from None
    except Exception as exc:  # a filter or expression failed; its message could quote a value
        raise BadInput(f"template {template_path} cannot be rendered: {type(exc).__name__}") from None
    return text.encode("utf-8")


# ---------------------------------------------------------------- read back


@dataclass(frozen=True)
class DeployedConfig:
    """What the deployed config file says. ``raw_ok`` is False when the file does not have the template's
    shape (hand-edited, another tool's output); then ``username``/``password`` are None and ``reason`` says why."""

    username: str | None
    password: str | None = field(repr=False)
    raw_ok: bool
    reason: str = "ok"
    values: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def slot(self) -> str | None:
        """The ``slot`` variable when the template writes it into the file."""
        return self.values.get("slot")


class _Unreadable(Exception):
    """The template cannot be read back (raised while probing)."""


# A marker: NUL, "rt:", the variable's name, the filters applied to it (innermost first), NUL.
_MARK = re.compile(r"\x00rt:([A-Za-z_][A-Za-z0-9_]*)((?:\.[a-z_]+)*)\x00")


def _marker(name: str) -> str:
    return f"\x00rt:{name}\x00"


class _MarkerUndefined(jinja2.Undefined):
    """A variable the probe did not know of in advance (one used only in an included template)."""

    def __str__(self) -> str:
        return _marker(self._undefined_name or "undefined")

    def __bool__(self) -> bool:
        return True  # like the markers given for known variables: non-empty strings


# Regex of what each filter can produce (the outermost filter decides what a capture group may match).
# "envi"/"jsoni": the inside of a quoted value, for a filter applied to a longer string holding the variable.
_ENV_INNER = r'(?:[^"\\$`\n\r]|\\[\\"$`nr])*'
_JSON_INNER = r'(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*'
_PATTERNS = {
    "": r"(?:.*?)",
    "php_sq": r"(?:[^'\\]|\\[\\'])*?",
    "env": '"' + _ENV_INNER + '"',
    "envi": _ENV_INNER + "?",
    "json": '(?:"' + _JSON_INNER + r'"|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)',
    "jsoni": _JSON_INNER + "?",
    "shell": r"""(?:'[^']*(?:'"'"'[^']*)*'|[A-Za-z0-9_@%+=:,./-]+)""",
    "url": r"(?:[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2})*?",
}


def _decode_env_inner(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ENV_UNESCAPES[m.group(1)], text, flags=re.DOTALL)


def _decode_shell(text: str) -> str:
    words = shlex.split(text)
    if len(words) != 1:
        raise ValueError("not one shell word")
    return words[0]


_DECODERS: dict[str, Callable[[str], Any]] = {
    "php_sq": lambda t: re.sub(r"\\([\\'])", r"\1", t),
    "env": lambda t: _decode_env_inner(t[1:-1]),
    "envi": _decode_env_inner,
    "json": json.loads,
    "jsoni": lambda t: json.loads('"' + t + '"'),
    "shell": _decode_shell,
    "url": lambda t: unquote(t, errors="strict"),
}

# Filters that escape character by character, so filter(a + b) == wrap(inner(a) + inner(b)).
_COMPOSABLE: dict[str, tuple[str, Callable[[str], str], str]] = {
    "php_sq": ("", php_sq, ""),
    "url": ("", url, ""),
    "env": ('"', _env_inner, '"'),
    "json": ('"', lambda s: json.dumps(s)[1:-1], '"'),
}


def _probe_filter(name: str) -> Callable[[Any], str]:
    def probe(value: Any) -> str:
        text = str(value)
        if _MARK.fullmatch(text):
            return text[:-1] + "." + name + "\x00"
        if not _MARK.search(text):
            return FILTERS[name](value)
        if name not in _COMPOSABLE:
            raise _Unreadable(f"the {name!r} filter is applied to a string mixing a variable with other text")
        before, inner, after = _COMPOSABLE[name]
        tag = name if name in ("php_sq", "url") else name + "i"
        out, pos = [before], 0
        for m in _MARK.finditer(text):
            out.append(inner(text[pos : m.start()]))
            out.append(m.group(0)[:-1] + "." + tag + "\x00")
            pos = m.end()
        out.append(inner(text[pos:]))
        out.append(after)
        return "".join(out)

    return probe


@dataclass(frozen=True)
class _Group:
    group: str
    variable: str
    filters: tuple[str, ...]  # innermost first


class _Probe:
    """A template's shape: a regex over the rendered file, and how to decode each captured value."""

    def __init__(self, template_path: str | os.PathLike[str]) -> None:
        path = Path(template_path)
        template = _load(path, probe=True)
        environment = template.environment
        try:
            source = path.read_text(encoding="utf-8")
            names = jinja2.meta.find_undeclared_variables(environment.parse(source))
        except (OSError, UnicodeDecodeError, jinja2.TemplateError) as exc:
            raise BadInput(f"template {path} cannot be read: {type(exc).__name__}") from None
        try:
            rendered = template.render({name: _marker(name) for name in names})
        except _Unreadable as exc:
            raise BadInput(f"template {path} cannot be read back: {exc}") from None
        except Exception as exc:
            raise BadInput(
                f"template {path} cannot be read back ({type(exc).__name__}): "
                "use the credential variables only as plain values through the escaping filters"
            ) from None
        parts: list[str] = []
        self.groups: list[_Group] = []
        pos = 0
        for m in _MARK.finditer(rendered):
            parts.append(_literal(rendered[pos : m.start()]))
            filters = tuple(f for f in m.group(2).split(".") if f)
            group = f"g{len(self.groups)}"
            parts.append(f"(?P<{group}>{_PATTERNS[filters[-1] if filters else '']})")
            self.groups.append(_Group(group, m.group(1), filters))
            pos = m.end()
        parts.append(_literal(rendered[pos:], final=True))
        self.regex = re.compile("".join(parts), re.DOTALL)
        if not {g.variable for g in self.groups} & {"username", "password"}:
            raise BadInput(f"template {path} writes neither username nor password: the deployed slot cannot be read")

    def read(self, text: str) -> DeployedConfig:
        m = self.regex.fullmatch(text)
        if m is None:
            return _unreadable("the file does not have the template's shape (edited by hand, or another tool's output)")
        values: dict[str, str] = {}
        for g in self.groups:
            try:
                value: Any = m.group(g.group)
                for name in reversed(g.filters):
                    value = _DECODERS[name](value)
            except (ValueError, KeyError):
                return _unreadable(f"the {g.variable} value in the file is not validly escaped")
            value = value if isinstance(value, str) else json.dumps(value)
            # The first occurrence is the value; any other must agree with it.
            if values.setdefault(g.variable, value) != value:
                return _unreadable(f"the file holds two different values of {g.variable} (edited by hand?)")
        return DeployedConfig(
            username=values.get("username"), password=values.get("password"), raw_ok=True, reason="ok", values=values
        )


def _literal(text: str, *, final: bool = False) -> str:
    """Literal template text; any run of whitespace matches any run of whitespace (editors reflow)."""
    out = []
    for piece in re.split(r"(\s+)", text):
        if not piece:
            continue
        out.append(r"\s+" if piece.isspace() else re.escape(piece))
    if final:
        # A trailing newline added or dropped by an editor is not a change of shape.
        while out and out[-1] == r"\s+":
            out.pop()
        out.append(r"\s*")
    return "".join(out)


def _unreadable(reason: str) -> DeployedConfig:
    return DeployedConfig(username=None, password=None, raw_ok=False, reason=reason)


def _probe(template_path: str | os.PathLike[str]) -> _Probe:
    path = Path(template_path).absolute()
    try:
        st = path.stat()
    except OSError:
        raise BadInput(f"template {template_path} does not exist: check --template (ROTATOR_TEMPLATE)") from None
    return _cached_probe(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _cached_probe(path: str, _mtime_ns: int, _size: int) -> _Probe:
    return _Probe(path)


def check_readable(template_path: str | os.PathLike[str]) -> None:
    """Raise BadInput unless :func:`read_deployed` can read username and password back through this template."""
    _probe(template_path)


def read_deployed(template_path: str | os.PathLike[str], config_path: str | os.PathLike[str]) -> DeployedConfig | None:
    """The credentials in the deployed config file, or None when there is no file.

    Raises BadInput when the *template* cannot be read back, or the file cannot be read at all; a file
    whose content does not fit the template gives ``raw_ok=False`` instead.
    """
    probe = _probe(template_path)
    try:
        data = Path(config_path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInput(f"cannot read {config_path}: {exc.strerror}: run as a user that may read it") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _unreadable("the file is not UTF-8 text")
    return probe.read(text)


# ---------------------------------------------------------------- files


def _owner_error(path: str | os.PathLike[str], owner: tuple[int, int]) -> BadInput:
    return BadInput(
        f"cannot set the owner of {path} to {owner[0]}:{owner[1]}: changing the owner (--file-owner, "
        "--fix-permissions) needs root or the app's uid: run the rotator as that user, or leave the owner unset"
    )


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = DEFAULT_MODE,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old file or the new one, never a part.

    The temp file is private (0600) until its final mode and owner are set, just before the rename.
    No temp file is left behind on failure.
    """
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.rotator-{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _write_error(target, exc) from None
    replaced = False
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, mode)
            if owner is not None:
                try:
                    os.fchown(fd, owner[0], owner[1])
                except PermissionError:
                    raise _owner_error(target, owner) from None
        finally:
            os.close(fd)
        os.replace(tmp, target)
        replaced = True
        _fsync_dir(directory)
    except RotatorError:
        raise
    except OSError as exc:
        if replaced:
            raise RotatorError(
                f"wrote {target} but could not flush its directory: {exc.strerror or type(exc).__name__}"
            ) from None
        raise _write_error(target, exc) from None
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    log.debug("config_written", path=str(target), mode=oct(mode), bytes=len(data))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(target: Path, exc: OSError) -> RotatorError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BadInput(f"cannot write {target}: {exc.strerror}: run as a user that may write its directory")
    return RotatorError(f"writing {target} failed: {exc.strerror or type(exc).__name__}; the old file is unchanged")


def fix_permissions(path: str | os.PathLike[str], mode: int, owner: tuple[int, int] | None) -> bool:
    """Set mode (and owner) of an existing file without touching its content. True when anything changed."""
    target = Path(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise BadInput(f"{target} does not exist: nothing to fix") from None
    changed = False
    try:
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            try:
                os.chown(target, owner[0], owner[1])
            except PermissionError:
                raise _owner_error(target, owner) from None
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
        raise _write_error(target, exc) from None
    log.info("permissions_fixed" if changed else "permissions_ok", path=str(target), mode=oct(mode), owner=owner)
    return changed


def snapshot(path: str | os.PathLike[str]) -> bytes | None:
    """The file's content, kept in memory for :func:`restore`; None when there is no file."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}: run as a user that may read it") from None


def restore(
    path: str | os.PathLike[str],
    snap: bytes | None,
    mode: int = DEFAULT_MODE,
    owner: tuple[int, int] | None = None,
) -> None:
    """Put back what :func:`snapshot` saw: its content, or no file at all."""
    if snap is None:
        try:
            os.unlink(path)
            _fsync_dir(Path(path).parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _write_error(Path(path), exc) from None
        return
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
