"""The templates ship with the package: pyproject.toml makes templates/ the package data rotator/templates, and
``--template`` takes a built-in name as well as a path (an existing path wins). The installed wheel itself is
tested in tests/integration/test_packaging_wheel.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rotator import templates_builtin
from rotator.config import Settings, check_paths, settings_from_mapping
from rotator.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
BASE = {"slot_secret": "prod/app/slots", "admin_secret": "prod/app/admin"}
SHIPPED = sorted(p.name for p in TEMPLATES.glob("*.j2"))


def setuptools_config() -> dict[str, object]:
    config: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config


def test_every_package_of_rotator_is_listed_with_the_templates() -> None:
    packages = setuptools_config()["packages"]
    assert isinstance(packages, list)
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "rotator").rglob("__init__.py")}
    missing = on_disk - set(packages)
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert set(packages) == on_disk | {"rotator.templates"}


def test_templates_directory_is_the_package_data_by_glob() -> None:
    config = setuptools_config()
    assert config["package-dir"] == {"rotator.templates": "templates"}
    package_data = config["package-data"]
    assert isinstance(package_data, dict)
    (pattern,) = package_data["rotator.templates"]
    assert pattern == "*.j2"  # a template added later ships without a change here
    assert SHIPPED and all(Path(name).match(pattern) for name in SHIPPED)


def test_builtin_names_are_the_shipped_templates() -> None:
    assert templates_builtin.directory() == TEMPLATES  # a checkout: the repository's templates/
    assert templates_builtin.names() == tuple(name.removesuffix(".j2") for name in SHIPPED)
    assert "sqlconf.php" in templates_builtin.names()


@pytest.mark.parametrize("name", SHIPPED)
def test_a_builtin_name_with_or_without_j2_resolves_to_its_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no file of that name here
    for given in (name, name.removesuffix(".j2")):
        settings = Settings(**BASE, template=given, config_path=tmp_path / "out")
        assert settings.template == TEMPLATES / name
        check_paths(settings)
    assert settings_from_mapping({**BASE, "template": name, "config_path": "/srv/x"}).template == TEMPLATES / name


def test_an_existing_path_wins_over_a_builtin_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sqlconf.php").write_text("{{ username }}\n")
    settings = Settings(**BASE, template="sqlconf.php", config_path=tmp_path / "out")
    assert settings.template == Path("sqlconf.php")
    assert settings.template.resolve() == tmp_path / "sqlconf.php"


def test_a_path_is_never_taken_for_a_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for given in ("conf/sqlconf.php", str(tmp_path / "sqlconf.php.j2"), ".j2", ""):
        settings = Settings(**BASE, template=given or None, config_path=tmp_path / "out" if given else None)
        assert settings.template == (Path(given) if given else None)


def test_an_unknown_name_is_refused_naming_the_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(**BASE, template="sqlconf.phpp", config_path=tmp_path / "out")
    with pytest.raises(BadInput) as refused:
        check_paths(settings)
    message = str(refused.value)
    assert "\n" not in message and "--template" in message and refused.value.exit_code == 2
    for name in templates_builtin.names():
        assert name in message


def test_without_a_templates_directory_there_are_no_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny stand-in for a zip install: the package's directory holds no templates/ and is no checkout.
    monkeypatch.setattr(templates_builtin, "_PACKAGE", tmp_path / "rotator")
    monkeypatch.chdir(tmp_path)
    assert templates_builtin.directory() is None and templates_builtin.names() == ()
    settings = Settings(**BASE, template="sqlconf.php", config_path=tmp_path / "out")
    assert settings.template == Path("sqlconf.php")
    with pytest.raises(BadInput, match="no built-in templates"):
        check_paths(settings)
