"""From an installed wheel, as a user who runs ``pip install rotator`` has it: the templates are package data
and ``--template sqlconf.php`` resolves to a file of the installed package, with the working directory outside
the repository. And from an editable install of a checkout, which finds the checkout's templates/.

The wheel is built by pip with build isolation (setuptools from PyPI, as any user's build) from a copy of what
the Dockerfile copies (so no build/ or egg-info is written in the repository, and no stale build/ leaks into
the wheel), and installed with ``--no-deps`` into a fresh venv. The runtime dependencies come from this venv's
site-packages through a ``.pth`` line: a directory a ``.pth`` file adds is not a site directory, so this venv's
editable-install hook is not loaded there and only the fresh install provides ``rotator``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.name for p in (ROOT / "templates").glob("*.j2"))

PROBE = """
import importlib.resources, json, pathlib, sys
import rotator
from rotator import templates_builtin
from rotator.config import Settings, check_paths
out = pathlib.Path(sys.argv[1])
try:  # an editable install cannot import rotator.templates (setuptools maps no nested namespace package)
    files = importlib.resources.files("rotator.templates").iterdir()
    resources = sorted(p.name for p in files if p.name.endswith(".j2"))
except ModuleNotFoundError:
    resources = None
shipped = sorted(p.name for p in templates_builtin.directory().iterdir() if p.name.endswith(".j2"))
settings = {}
for name in json.loads(sys.argv[2]):
    for given in (name, name.removesuffix(".j2")):
        s = Settings(slot_secret="s", admin_secret="a", template=given, config_path=out)
        check_paths(s)
        settings[given] = str(s.template)
print(json.dumps({"package": rotator.__file__, "shipped": shipped, "resources": resources, "settings": settings,
                  "directory": str(templates_builtin.directory())}))
"""


def run(*args: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def source_copy(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    for name in ("rotator", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    return source


def fresh_venv(tmp_path: Path, *install: str | Path) -> tuple[Path, Path]:
    """A venv with ``pip install --no-deps <install>``, this venv's dependencies on its path: (python, purelib)."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", *install, cwd=tmp_path)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip())
    (site / "rotator_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python, site


def probe(python: Path, tmp_path: Path) -> dict[str, Any]:
    """What the installed package reports, run with the working directory outside any checkout."""
    away = tmp_path / "elsewhere"
    away.mkdir()
    report: dict[str, Any] = json.loads(
        run(python, "-I", "-c", PROBE, away / "out.conf", json.dumps(SHIPPED), cwd=away)
    )
    assert report["shipped"] == SHIPPED
    return report


def assert_resolved_in(report: dict[str, Any], templates: Path) -> None:
    assert report["directory"] == str(templates)
    for name in SHIPPED:
        for given in (name, name.removesuffix(".j2")):
            resolved = Path(report["settings"][given])
            assert resolved == templates / name
            assert resolved.read_bytes() == (ROOT / "templates" / name).read_bytes()


def test_the_installed_wheel_carries_the_templates_and_resolves_builtin_names(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    source = source_copy(tmp_path)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("rotator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = sorted(n.removeprefix("rotator/templates/") for n in archive.namelist() if "/templates/" in n)
    assert in_wheel == SHIPPED

    python, site = fresh_venv(tmp_path, "--no-index", wheel)
    report = probe(python, tmp_path)
    assert Path(report["package"]) == site / "rotator" / "__init__.py"
    assert report["resources"] == SHIPPED  # importlib.resources.files("rotator.templates") sees them too
    assert_resolved_in(report, site / "rotator" / "templates")


def test_an_editable_install_finds_the_checkouts_templates(tmp_path: Path) -> None:
    source = source_copy(tmp_path)
    python, _ = fresh_venv(tmp_path, "--editable", source)
    report = probe(python, tmp_path)
    assert Path(report["package"]) == source / "rotator" / "__init__.py"
    assert_resolved_in(report, source / "templates")
