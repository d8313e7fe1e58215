"""The templates that ship with the package: ``templates/*.j2`` of the repository, installed as the package data
``rotator/templates/`` (pyproject.toml maps the subpackage ``rotator.templates`` to that directory).

``--template`` takes a path or one of these names, with or without ``.j2`` (``sqlconf.php``, ``app.env.j2``).
A built-in always resolves to a real file on disk, since the renderer reads its template from a path.
"""

from __future__ import annotations

import os
from pathlib import Path

SUFFIX = ".j2"
_PACKAGE = Path(__file__).resolve().parent


def directory() -> Path | None:
    """Where the built-in templates are: ``rotator/templates`` of an installed wheel, else ``templates/`` of
    the checkout (an editable install: setuptools' editable finder cannot map a nested package without an
    ``__init__.py``). None when neither is a directory, e.g. a zip install: built-in names are then unknown
    and ``--template`` needs a path."""
    installed = _PACKAGE / "templates"
    if installed.is_dir():
        return installed
    # Only in a checkout: beside an installed package, a top-level "templates" would be someone else's.
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "templates").is_dir():
        return checkout / "templates"
    return None


def names() -> tuple[str, ...]:
    """The built-in names, without ``.j2``, sorted."""
    found = directory()
    if found is None:
        return ()
    return tuple(sorted(p.name.removesuffix(SUFFIX) for p in found.iterdir() if p.suffix == SUFFIX and p.is_file()))


def find(name: str) -> Path | None:
    """The built-in template called ``name`` (``sqlconf.php`` or ``sqlconf.php.j2``), else None."""
    bare = name.removesuffix(SUFFIX)
    found = directory()
    if found is None or not bare or os.sep in name or (os.altsep and os.altsep in name) or bare not in names():
        return None
    return found / (bare + SUFFIX)


def resolve(path: Path) -> Path:
    """The template ``--template`` means: an existing path wins; else a built-in name; else ``path`` as given
    (:func:`rotator.config.check_paths` refuses it, naming the built-ins)."""
    if path.exists():
        return path
    return find(str(path)) or path


def described() -> str:
    """What ``--template`` accepts, for an error message."""
    shown = ", ".join(names())
    return f"a path, or a built-in name: {shown}" if shown else "a path (this installation has no built-in templates)"
