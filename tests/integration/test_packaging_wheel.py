"""From an installed wheel, as a user who runs ``pip install rotator`` has it: the templates are package data
and ``--template sqlconf.php`` resolves to a file of the installed package, with the working directory outside
the repository.

The wheel is built by pip with build isolation (setuptools from PyPI, as any user's build) and installed with
``--no-deps`` into a fresh venv; the runtime dependencies come from this venv's site-packages through a ``.pth``
line (a directory added by a ``.pth`` file is not a site directory, so this venv's editable-install hook is not
loaded there and only the wheel provides ``rotator``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

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
shipped = sorted(p.name for p in importlib.resources.files("rotator.templates").iterdir() if p.name.endswith(".j2"))
settings = {}
for name in json.loads(sys.argv[2]):
    for given in (name, name.removesuffix(".j2")):
        s = Settings(slot_secret="s", admin_secret="a", template=given, config_path=out)
        check_paths(s)
        settings[given] = str(s.template)
print(json.dumps({"package": rotator.__file__, "shipped": shipped, "settings": settings,
                  "directory": str(templates_builtin.directory())}))
"""


def run(*args: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_installed_wheel_carries_the_templates_and_resolves_builtin_names(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("rotator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = sorted(n.removeprefix("rotator/templates/") for n in archive.namelist() if "/templates/" in n)
    assert in_wheel == SHIPPED

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=tmp_path)  # fmt: skip
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip())
    (site / "rotator_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    away = tmp_path / "elsewhere"
    away.mkdir()
    report = json.loads(run(python, "-I", "-c", PROBE, away / "out.conf", json.dumps(SHIPPED), cwd=away))
    package = site / "rotator"
    assert Path(report["package"]) == package / "__init__.py"
    assert report["shipped"] == SHIPPED
    assert report["directory"] == str(package / "templates")
    for name in SHIPPED:
        for given in (name, name.removesuffix(".j2")):
            resolved = Path(report["settings"][given])
            assert resolved == package / "templates" / name
            assert resolved.read_bytes() == (ROOT / "templates" / name).read_bytes()
