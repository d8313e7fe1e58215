"""The jinja2 side of rendering: the escaping filters, the environment, and :func:`render`.

Templates escape every value with the filter for their format: ``php_sq`` (inside a PHP single-quoted
string), ``env`` (a complete double-quoted dotenv value), ``json`` (a complete JSON value), ``shell``
(one shell word) and ``url`` (a URL component, e.g. userinfo).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from rotator.errors import BadInput
from rotator.secrets import Credentials

CREDENTIAL_VARIABLES = ("username", "password", "host", "port", "dbname", "slot")
FIX_TEMPLATE = "fix the template (--template, ROTATOR_TEMPLATE)"

Filter = Callable[[Any], str]

# ---------------------------------------------------------------- filters


def php_sq(value: Any) -> str:
    """Content of a PHP single-quoted string: only backslash and single quote are special."""
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


ENV_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`", "\n": "\\n", "\r": "\\r"}


def env_inner(value: str) -> str:
    """The inside of a double-quoted dotenv value."""
    return "".join(ENV_ESCAPES.get(ch, ch) for ch in value)


def env(value: Any) -> str:
    """A complete dotenv value, always double-quoted."""
    return '"' + env_inner(str(value)) + '"'


def json_filter(value: Any) -> str:
    return json.dumps(value)


def shell(value: Any) -> str:
    return shlex.quote(str(value))


def url(value: Any) -> str:
    return quote(str(value), safe="")


FILTERS: dict[str, Filter] = {
    "php_sq": php_sq,
    "env": env,
    "json": json_filter,
    "shell": shell,
    "url": url,
}

# ---------------------------------------------------------------- environment


_EnvironmentKey = tuple[str, type[jinja2.Undefined], tuple[tuple[str, Filter], ...]]
_environments: dict[_EnvironmentKey, jinja2.Environment] = {}


def _environment(key: _EnvironmentKey) -> jinja2.Environment:
    """One environment per template directory and kind (jinja2 reloads a template whose file changed)."""
    environment = _environments.get(key)
    if environment is None:
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
    undefined: type[jinja2.Undefined] = jinja2.StrictUndefined,
    filters: Mapping[str, Filter] = FILTERS,
) -> jinja2.Template:
    """The compiled template; BadInput when it is missing or does not compile."""
    path = Path(template_path).absolute()
    try:
        return _environment((str(path.parent), undefined, tuple(filters.items()))).get_template(path.name)
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
    template = load(template_path)
    context = context_for(creds, slot, extra)
    try:
        text = template.render(context)
    except jinja2.TemplateError as exc:
        raise BadInput(f"template {template_path} cannot be rendered: {_describe(exc)}: {FIX_TEMPLATE}") from None
    except Exception as exc:  # a filter or expression failed; its message could quote a value
        raise BadInput(f"template {template_path} cannot be rendered: {type(exc).__name__}: {FIX_TEMPLATE}") from None
    return text.encode("utf-8")
