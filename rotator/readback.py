"""Read a deployed config file back through its template: which credentials does the app use right now?

:func:`read_deployed` works for any template without knowing its format: it renders the template once
with a marker in place of every variable, marking also which filters were applied to it; the text
between the markers becomes the literal part of a regular expression, each marker a capture group
that matches only what its outermost filter can produce, and each captured value is decoded with the
inverse filters, each by its reader's own parser where one exists in Python (python-dotenv for ``dotenv``,
:mod:`json`, :mod:`shlex` for ``shell``, :mod:`urllib.parse` for ``url``; ``docker_env`` is literal). See
:class:`_Probe`. :func:`reads_back` is the same check on a rendered text, before it is written.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from rotator.atomic import read_regular
from rotator.errors import BadInput
from rotator.template import FILTERS, FIX_TEMPLATE, Filter, docker_env, dotenv_inner, load, php_sq, shell_inner, url

if TYPE_CHECKING:
    import jinja2


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


@functools.cache
def _marker_undefined() -> type[jinja2.Undefined]:
    """The class of a variable the probe did not know of in advance (one used only in an included template).
    Made on first use: jinja2 is imported only when a template is read."""
    import jinja2

    class MarkerUndefined(jinja2.Undefined):
        def __str__(self) -> str:
            return _marker(self._undefined_name or "undefined")

        def __bool__(self) -> bool:
            return True  # like the markers given for known variables: non-empty strings

    return MarkerUndefined


# Regex of what each filter can produce (the outermost filter decides what a capture group may match).
# "dotenvi"/"jsoni": the inside of a quoted value, for a filter applied to a longer string holding the variable.
_DOTENV_INNER = r'(?:[^"\\\n\r]|\\[\\"nr])*'
_JSON_INNER = r'(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*'
_PATTERNS = {
    "": r"(?:.*?)",
    "php_sq": r"(?:[^'\\]|\\[\\'])*?",
    "dotenv": '"' + _DOTENV_INNER + '"',
    "dotenvi": _DOTENV_INNER + "?",
    "docker_env": r"[^\n\r]*",
    "json": '(?:"' + _JSON_INNER + r'"|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)',
    "jsoni": _JSON_INNER + "?",
    "shell": r"""(?:'[^']*(?:'"'"'[^']*)*'|[A-Za-z0-9_@%+=:,./-]+)""",  # the bare word: shlex.quote, before
    "shelli": r"""(?:[^']|'"'"')*?""",
    "url": r"(?:[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2})*?",
}


def _decode_dotenv(text: str) -> str:
    """The value python-dotenv reads for ``NAME=<text>``, as an app's ``dotenv_values``/``load_dotenv`` does."""
    try:
        from dotenv import dotenv_values  # only templates using the dotenv filter need python-dotenv
    except ImportError:
        raise BadInput("reading a dotenv file back needs python-dotenv: pip install python-dotenv") from None
    values = dotenv_values(stream=io.StringIO(f"ROTATOR_VALUE={text}\n"))
    value = values.get("ROTATOR_VALUE")
    if list(values) != ["ROTATOR_VALUE"] or value is None:
        raise ValueError("not one dotenv value")
    return value


def _decode_shell(text: str) -> str:
    words = shlex.split(text)
    if len(words) != 1:
        raise ValueError("not one shell word")
    return words[0]


_DECODERS: dict[str, Callable[[str], Any]] = {
    "php_sq": lambda t: re.sub(r"\\([\\'])", r"\1", t),
    "dotenv": _decode_dotenv,
    "dotenvi": lambda t: _decode_dotenv('"' + t + '"'),
    "docker_env": lambda t: t,  # Docker and ECS take the rest of the line literally
    "json": json.loads,
    "jsoni": lambda t: json.loads('"' + t + '"'),
    "shell": _decode_shell,
    "shelli": lambda t: _decode_shell("'" + t + "'"),
    "url": lambda t: unquote(t, errors="strict"),
}

# Filters that escape character by character, so filter(a + b) == wrap(inner(a) + inner(b)).
_COMPOSABLE: dict[str, tuple[str, Callable[[str], str], str]] = {
    "php_sq": ("", php_sq, ""),
    "url": ("", url, ""),
    "dotenv": ('"', dotenv_inner, '"'),
    "docker_env": ("", docker_env, ""),
    "shell": ("'", shell_inner, "'"),
    "json": ('"', lambda s: json.dumps(s)[1:-1], '"'),
}


def _probe_filter(name: str) -> Filter:
    def marked(value: Any) -> str:
        text = str(value)
        if _MARK.fullmatch(text):
            return text[:-1] + "." + name + "\x00"
        if not _MARK.search(text):
            return FILTERS[name](value)
        if name not in _COMPOSABLE:
            raise _Unreadable(f"the {name!r} filter is applied to a string mixing a variable with other text")
        before, inner, after = _COMPOSABLE[name]
        tag = name if name in ("php_sq", "url", "docker_env") else name + "i"
        out, pos = [before], 0
        for m in _MARK.finditer(text):
            out.append(inner(text[pos : m.start()]))
            out.append(m.group(0)[:-1] + "." + tag + "\x00")
            pos = m.end()
        out.append(inner(text[pos:]))
        out.append(after)
        return "".join(out)

    return marked


_PROBE_FILTERS: dict[str, Filter] = {name: _probe_filter(name) for name in FILTERS}


@dataclass(frozen=True)
class _Group:
    group: str
    variable: str
    filters: tuple[str, ...]  # innermost first


class _Probe:
    """A template's shape: a regex over the rendered file, and how to decode each captured value."""

    def __init__(self, template_path: str | os.PathLike[str]) -> None:
        import jinja2.meta

        path = Path(template_path)
        template = load(path, undefined=_marker_undefined(), filters=_PROBE_FILTERS)
        environment = template.environment
        try:
            source = path.read_text(encoding="utf-8")
            names = jinja2.meta.find_undeclared_variables(environment.parse(source))
        except (OSError, UnicodeDecodeError, jinja2.TemplateError) as exc:
            raise BadInput(f"template {path} cannot be read: {type(exc).__name__}: {FIX_TEMPLATE}") from None
        try:
            rendered = template.render({name: _marker(name) for name in names})
        except _Unreadable as exc:
            raise BadInput(f"template {path} cannot be read back: {exc}: {FIX_TEMPLATE}") from None
        except Exception as exc:
            raise BadInput(
                f"template {path} cannot be read back ({type(exc).__name__}): "
                "use the credential variables only as plain values through the escaping filters (--template)"
            ) from None
        parts: list[str] = []
        self.groups: list[_Group] = []
        pos = 0
        for m in _MARK.finditer(rendered):
            parts.append(_literal(rendered[pos : m.start()]))
            filters = tuple(f for f in m.group(2).split(".") if f)
            group = f"g{len(self.groups)}"
            parts.append(f"(?P<{group}>{_PATTERNS[_outer(filters)]})")
            self.groups.append(_Group(group, m.group(1), filters))
            pos = m.end()
        parts.append(_literal(rendered[pos:], final=True))
        self.regex = re.compile("".join(parts), re.DOTALL)
        if not {g.variable for g in self.groups} & {"username", "password"}:
            raise BadInput(
                f"template {path} writes neither username nor password, so the deployed slot cannot be read: "
                "write both (--template)"
            )

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


def _outer(filters: tuple[str, ...]) -> str:
    """The filter whose output the capture group matches: the outermost one that changes its input."""
    changing = [f for f in filters if f != "docker_env"]
    return changing[-1] if changing else "docker_env" if filters else ""


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


def probe(template_path: str | os.PathLike[str]) -> _Probe:
    """The template's shape (cached while the file is unchanged); BadInput when it cannot be read back."""
    path = Path(template_path).absolute()
    try:
        st = path.stat()
    except OSError:
        raise BadInput(f"template {template_path} does not exist: check --template (ROTATOR_TEMPLATE)") from None
    return _cached_probe(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _cached_probe(path: str, _mtime_ns: int, _size: int) -> _Probe:
    return _Probe(path)


def read_deployed(template_path: str | os.PathLike[str], config_path: str | os.PathLike[str]) -> DeployedConfig | None:
    """The credentials in the deployed config file, or None when there is no file.

    Raises BadInput when the *template* cannot be read back, or the file cannot be read at all (also a
    symlink or not a regular file: see :func:`rotator.atomic.read_regular`); a file whose content does not
    fit the template gives ``raw_ok=False`` instead.
    """
    shape = probe(template_path)
    data = read_regular(config_path)
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _unreadable("the file is not UTF-8 text")
    return shape.read(text)


def reads_back(template_path: str | os.PathLike[str], text: str) -> DeployedConfig:
    """What the readers of the template's format get from ``text`` (a rendering of it, not yet written)."""
    return probe(template_path).read(text)
