"""Settings: one declaration per setting; values from a mapping (a fleet file's TOML table) and by keyword are
parsed like flags; pure checks in Settings, filesystem checks only in check_paths."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rotator import render
from rotator.config import SETTINGS, Settings, check_paths, settings_from_mapping
from rotator.errors import BadInput
from rotator.passwords import PasswordPolicy

BASE = {"slot_secret": "prod/app/slots", "admin_secret": "prod/app/admin"}

FLEET = """
[defaults]
region = "eu-west-1"
db-tls = "verify-full"
health_attempts = 3

[databases.billing]
slot_secret = "prod/billing/slots"
admin_secret = "prod/billing/admin"
engine = "aurora-postgresql"
deploy = "ecs"
ecs-cluster = "prod"
ecs_service = "billing-web"
template = "templates/app.env.j2"
config_path = "/srv/billing/app.env"
file_mode = "0600"
file-owner = "1000:1001"
grace_seconds = 2.5
health_interval = 1
password_length = 40

[databases.wiki]
slot_secret = "prod/wiki/slots"
admin_secret = "prod/wiki/admin"
file_mode = 0o640
health_attempts = 7
"""


def test_settings_from_a_toml_table_with_dashes_or_underscores_over_defaults() -> None:
    fleet = tomllib.loads(FLEET)
    billing = settings_from_mapping(fleet["databases"]["billing"], defaults=fleet["defaults"])
    assert (billing.engine, billing.deploy, billing.ecs_cluster, billing.ecs_service) == (
        "postgres",
        "ecs",
        "prod",
        "billing-web",
    )
    assert billing.template == Path("templates/app.env.j2") and billing.config_path == Path("/srv/billing/app.env")
    assert (billing.file_mode, billing.file_owner) == (0o600, (1000, 1001))
    assert (billing.grace_seconds, billing.health_interval, billing.health_attempts) == (2.5, 1.0, 3)
    assert (billing.region, billing.db_tls) == ("eu-west-1", "verify-full")
    assert billing.password_policy == PasswordPolicy(length=40)
    wiki = settings_from_mapping(fleet["databases"]["wiki"], defaults=fleet["defaults"])
    assert (wiki.file_mode, wiki.health_attempts, wiki.deploy, wiki.engine) == (0o640, 7, "none", None)


def test_unknown_key_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(BadInput) as err:
        settings_from_mapping({**BASE, "file_mod": "0640"})
    message = str(err.value)
    assert "'file_mod'" in message and "file_mode" in message and "slot_secret" in message
    with pytest.raises(BadInput, match="'log_json'"):  # the CLI's own flag, not a setting of a database
        settings_from_mapping(BASE, defaults={"log_json": True})


def test_a_setting_given_twice_is_refused() -> None:
    with pytest.raises(BadInput, match="twice"):
        settings_from_mapping({**BASE, "file_mode": "0640", "file-mode": "0600"})


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        ("engine", 5, "engine must be a string"),
        ("engine", ["mysql"], "engine must be a string"),
        ("engine", "oracle", "engine"),
        ("deploy", "kubernetes", "deploy"),
        ("db_tls", "prefer", "db_tls"),
        ("health_interval", math.nan, "health_interval"),
        ("health_interval", math.inf, "health_interval"),
        ("health_interval", -1, "health_interval"),
        ("health_interval", True, "health_interval"),
        ("grace_seconds", math.inf, "grace_seconds"),
        ("grace_seconds", "nan", "grace_seconds"),
        ("grace_seconds", -0.5, "grace_seconds"),
        ("deploy_timeout", math.nan, "deploy_timeout"),
        ("deploy_timeout", "inf", "deploy_timeout"),
        ("deploy_timeout", 0, "deploy_timeout"),
        ("health_attempts", 0, "health_attempts"),
        ("health_attempts", "\u0663", "health_attempts"),
        ("health_attempts", 2.5, "health_attempts"),
        ("health_statuses", "2xx,ok", "--health-statuses"),
        ("file_mode", "0999", "file_mode"),
        ("file_mode", "rw-r--r--", "file_mode"),
        ("file_mode", "0o1777777", "file_mode"),
        ("file_owner", "1000:\u0661\u0660\u0660\u0660", "file_owner"),
        ("file_owner", "1000\u00b2", "file_owner"),
        ("fix_permissions", "yes", "fix_permissions"),
        ("slot_secret", 12, "slot_secret"),
        ("slot_secret", "a\x00b", "NUL"),
        ("password_length", "32\u00b2", "password_length"),
        ("password_length", 8, "too short"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(key: str, value: Any, names: str) -> None:
    with pytest.raises(BadInput) as err:
        settings_from_mapping({**BASE, key: value})
    assert names in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"health_interval": math.nan}, "--health-interval"),
        ({"grace_seconds": math.inf}, "--grace-seconds"),
        ({"deploy_timeout": math.inf}, "--deploy-timeout"),
        ({"health_attempts": 0}, "--health-attempts"),
        ({"health_statuses": "2xx,ok"}, "--health-statuses"),
        ({"engine": 5}, "--engine"),
        ({"file_mode": 0o17777}, "--file-mode"),
    ],
)
def test_keyword_construction_is_checked_like_a_flag(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(BadInput, match=names):
        Settings(**BASE, **kwargs)


def test_a_drain_that_could_never_finish_is_refused() -> None:
    with pytest.raises(BadInput, match=r"--drain-quiet 5 is longer than --drain-timeout 3: .* raise --drain-timeout"):
        settings_from_mapping({**BASE, "drain_timeout": 3, "drain_quiet": 5})
    assert settings_from_mapping({**BASE, "drain_timeout": 0, "drain_quiet": 5}).drain_quiet == 5  # no drain
    with pytest.raises(BadInput, match="drain_quiet"):
        settings_from_mapping({**BASE, "drain_quiet": 0})


def test_keyword_construction_keeps_working_and_normalizes() -> None:
    s = Settings(slot_secret="s", admin_secret="a", engine="MariaDB", file_mode=0o600, db_tls="disable")
    assert (s.engine, s.file_mode, s.db_tls, s.tls.mode) == ("mysql", 0o600, "disable", "disable")
    assert not s.renders_config and s.password_policy == PasswordPolicy()


def test_the_default_file_mode_is_the_renderers() -> None:
    assert render.DEFAULT_MODE == 0o640
    assert Settings(**BASE).file_mode == render.DEFAULT_MODE
    assert settings_from_mapping(BASE).file_mode == render.DEFAULT_MODE


def test_settings_do_not_touch_the_filesystem_check_paths_does(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    s = Settings(**BASE, template=missing / "app.env.j2", config_path=missing / "app.env")
    with pytest.raises(BadInput, match="--template"):
        check_paths(s)
    template = tmp_path / "app.env.j2"
    template.write_text("x")
    with pytest.raises(BadInput, match="--config-path"):
        check_paths(Settings(**BASE, template=template, config_path=missing / "app.env"))
    with pytest.raises(BadInput, match="--db-ca-bundle"):
        check_paths(Settings(**BASE, db_ca_bundle=str(tmp_path)))  # a directory is not a bundle
    check_paths(Settings(**BASE, template=template, config_path=tmp_path / "app.env"))


def test_every_setting_has_one_declaration_with_an_env_twin() -> None:
    names = [spec.name for spec in SETTINGS]
    assert len(names) == len(set(names))
    assert {spec.field for spec in SETTINGS} == set(Settings.__dataclass_fields__)
    by_name = {spec.name: spec for spec in SETTINGS}
    assert by_name["region"].envvars == ("ROTATOR_REGION", "AWS_REGION")
    assert by_name["password_length"].field == "password_policy"
    assert by_name["file_mode"].default_text == "0640"
    assert "log_json" not in Settings.__dataclass_fields__
    for spec in SETTINGS:
        assert spec.help and spec.envvars[0] == "ROTATOR_" + spec.name.upper()
        if spec.default_text is not None:  # the default as typed parses back to the field's default
            field = Settings.__dataclass_fields__[spec.field]
            default = field.default_factory() if callable(field.default_factory) else field.default
            assert spec.parse(spec.default_text, spec.flag) == default, spec.name
