"""The jinja2 side of rendering: the escaping filters, the environment, and :func:`render`.

Templates escape every value with the filter named for the program that reads it: ``php_sq`` (inside a PHP
single-quoted string), ``dotenv`` (a complete double-quoted python-dotenv / docker compose ``.env`` value),
``docker_env`` (a literal Docker / ECS env-file value), ``json`` (a complete JSON value), ``shell`` (one word of
a POSIX shell file to ``source``) and ``url`` (a URL component, e.g. userinfo). A filter refuses, with BadInput,
a value its reader cannot get back exactly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rotator.errors import BadInput
from rotator.secrets import Credentials

CREDENTIAL_VARIABLES = ("username", "password", "host", "port", "dbname", "slot")
FIX_TEMPLATE = "fix the template (--template, ROTATOR_TEMPLATE)"
CHANGE_VALUE = "pick a template of another format (--template) or a value without it"

Filter = Callable[[Any], str]

if TYPE_CHECKING:  # jinja2 is imported when a template is first loaded: a run without one never needs it
    import jinja2

    _EnvironmentKey = tuple[str, type[jinja2.Undefined], tuple[tuple[str, Filter], ...]]

# ---------------------------------------------------------------- filters


def php_sq(value: Any) -> str:
    """Content of a PHP single-quoted string: only backslash and single quote are special."""
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


# python-dotenv decodes these escapes in a double-quoted value (and \a \b \f \t \v, hence "\\" too).
DOTENV_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
# python-dotenv expands ${NAME} (and ${NAME:-default}) in every value, quoted or not, with no escape for it.
DOTENV_VARIABLE = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")


def _refuse(reader: str, problem: str) -> BadInput:
    return BadInput(f"{reader} cannot carry a value {problem}: {CHANGE_VALUE}")


def dotenv_inner(value: str) -> str:
    """The inside of a double-quoted python-dotenv / docker compose ``.env`` value."""
    if DOTENV_VARIABLE.search(value):
        raise _refuse("a dotenv file (python-dotenv expands ${...} in it)", "holding ${...}")
    return "".join(DOTENV_ESCAPES.get(ch, ch) for ch in value)


def dotenv(value: Any) -> str:
    """A complete python-dotenv value, always double-quoted (docker compose also expands $NAME in it)."""
    return '"' + dotenv_inner(str(value)) + '"'


# Docker's env-file reader splits lines (a CR before the newline is dropped) and takes the rest literally.
DOCKER_ENV_UNSAFE = {"\n": "holding a newline", "\r": "holding a carriage return", "\x00": "holding a NUL byte"}


def docker_env(value: Any) -> str:
    """A literal Docker / ECS env-file value (``docker run --env-file``, ECS ``environmentFiles``): no quoting."""
    text = str(value)
    for ch, problem in DOCKER_ENV_UNSAFE.items():
        if ch in text:
            raise _refuse("a Docker/ECS env-file (one literal line per variable)", problem)
    return text


def json_filter(value: Any) -> str:
    return json.dumps(value)


def shell_inner(value: str) -> str:
    """The inside of a single-quoted POSIX shell word: a quote closes, is escaped, and reopens."""
    if "\x00" in value:
        raise _refuse("a POSIX shell file", "holding a NUL byte")
    return value.replace("'", "'\"'\"'")


def shell(value: Any) -> str:
    """One word of a POSIX shell file to ``source``, always single-quoted: nothing in it is expanded."""
    return "'" + shell_inner(str(value)) + "'"


def url(value: Any) -> str:
    """A URL component (userinfo, path): everything but unreserved characters percent-encoded (UTF-8)."""
    return quote(str(value), safe="")


FILTERS: dict[str, Filter] = {
    "php_sq": php_sq,
    "dotenv": dotenv,
    "docker_env": docker_env,
    "json": json_filter,
    "shell": shell,
    "url": url,
}

# ---------------------------------------------------------------- environment


_environments: dict[_EnvironmentKey, jinja2.Environment] = {}


def _environment(key: _EnvironmentKey) -> jinja2.Environment:
    """One environment per template directory and kind (jinja2 reloads a template whose file changed)."""
    environment = _environments.get(key)
    if environment is None:
        import jinja2

        directory, undefined, filters = key
        # Config files, not HTML: every value is escaped for its format by an explicit filter.
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=undefined,
            autoescape=False,  # noqa: S701
            keep_trailing_newline=True,
        )
        environment.filters.update(dict(filters))
        environment = _environments.setdefault(key, environment)
    return environment


def load(
    template_path: str | os.PathLike[str],
    *,
    undefined: type[jinja2.Undefined] | None = None,
    filters: Mapping[str, Filter] = FILTERS,
) -> jinja2.Template:
    """The compiled template; BadInput when it is missing or does not compile. ``undefined``: by default
    ``jinja2.StrictUndefined`` (an unknown variable is an error)."""
    import jinja2

    path = Path(template_path).absolute()
    key = (str(path.parent), undefined or jinja2.StrictUndefined, tuple(filters.items()))
    try:
        return _environment(key).get_template(path.name)
    except jinja2.TemplateNotFound:
        raise BadInput(f"template {template_path} does not exist: check --template (ROTATOR_TEMPLATE)") from None
    except jinja2.TemplateError as exc:
        raise BadInput(f"template {template_path} is invalid: {_describe(exc)}: {FIX_TEMPLATE}") from None


def _describe(exc: jinja2.TemplateError) -> str:
    text = f"{type(exc).__name__}: {exc.message}"
    lineno = getattr(exc, "lineno", None)
    return f"{text} (line {lineno})" if lineno else text


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
    import jinja2

    template = load(template_path)
    context = context_for(creds, slot, extra)
    try:
        text = template.render(context)
    except jinja2.TemplateError as exc:
        raise BadInput(f"template {template_path} cannot be rendered: {_describe(exc)}: {FIX_TEMPLATE}") from None
    except BadInput:  # a filter refused a value its reader cannot get back
        raise
    except Exception as exc:  # a filter or expression failed; its message could quote a value
        raise BadInput(f"template {template_path} cannot be rendered: {type(exc).__name__}: {FIX_TEMPLATE}") from None
    return text.encode("utf-8")
