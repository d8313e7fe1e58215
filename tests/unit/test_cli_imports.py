"""The rotator command imports only what the run needs (issue 15: a command's start is mostly its imports).

`rotator --help` needs click and the settings declaration; `rotator rotate` adds the one store, the one database
driver and the one deployer it uses. Each case runs in a fresh interpreter and lists what was loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Loaded only by the runs that need them.
OPTIONAL = (
    "boto3",  # never: the AWS edge uses botocore's clients (rotator.aws)
    "s3transfer",
    "botocore",
    "jinja2",  # a template is rendered or read back
    "hvac",  # --store vault
    "psycopg",  # PostgreSQL
    "pymysql",  # MySQL / MariaDB
    "rotator.adopt",  # `rotator adopt`
    "rotator.client.loader",  # the credential loader library
    "rotator.deploy.ecs",  # --deploy ecs
    "rotator.deploy.command",  # --deploy command
    "rotator.store.vault",
)


def _loaded(code: str) -> set[str]:
    """Which of OPTIONAL ``code`` loads, run in a fresh interpreter."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"optional = {OPTIONAL!r}\n"
        "print(json.dumps(sorted(m for m in optional if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"}
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _build_rotation(**settings: str) -> str:
    """Code that builds (not runs) a rotation from settings and makes its database engine, as `rotate` does."""
    base = {"slot_secret": "app/db", "admin_secret": "app/admin", "region": "us-east-1", "deploy": "none"}
    return (
        "from rotator.config import Settings\n"
        "from rotator.wiring import build_rotation\n"
        f"rotation, aws = build_rotation(Settings(**{ {**base, **settings}!r}))\n"
        "rotation.adapters.engine_for(rotation.settings.engine)\n"
    )


def test_help_loads_no_driver_no_aws_no_jinja() -> None:
    assert _loaded("import rotator.cli") == set()


def test_rotate_postgres_with_secrets_manager_loads_botocore_and_psycopg_only() -> None:
    assert _loaded(_build_rotation(engine="postgres")) == {"botocore", "psycopg"}


def test_rotate_mysql_from_a_file_store_loads_pymysql_not_psycopg(tmp_path: Path) -> None:
    # botocore is imported by the AWS edge module whichever the store; no client is made.
    assert _loaded(_build_rotation(engine="mysql", store=f"file:{tmp_path}")) == {"botocore", "pymysql"}


def test_a_template_loads_jinja2_and_deploy_ecs_its_deployer(tmp_path: Path) -> None:
    loaded = _loaded(
        _build_rotation(
            engine="postgres",
            template="app.env",
            config_path=str(tmp_path / "app.env"),
            deploy="ecs",
            ecs_cluster="c",
            ecs_service="s",
        )
        + "rotation.adapters.config_for('postgres').check_template()\n"
    )
    assert loaded == {"botocore", "psycopg", "jinja2", "rotator.deploy.ecs"}
