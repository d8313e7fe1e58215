"""rotator.client loads no database driver, no SQLAlchemy, no pool, and not even boto3 until it needs it."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light() -> None:
    code = (
        "import sys, rotator.client, rotator.client.sqla, rotator.client.pgpool, rotator.client.seed002\n"
        "heavy = ('sqlalchemy', 'psycopg', 'psycopg_pool', 'pymysql', 'boto3', 'botocore')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_resolves_on_use() -> None:
    """rotator.client imports each name's module on first use: every name of __all__ has one and resolves."""
    code = (
        "import sys, rotator.client as c\n"
        "assert 'rotator.client.loader' not in sys.modules\n"
        "assert sorted(c._MODULES) == sorted(c.__all__), set(c._MODULES) ^ set(c.__all__)\n"
        "missing = [name for name in c.__all__ if getattr(c, name, None) is None]\n"
        "assert not missing, missing\n"
        "from rotator.client import *  # noqa: F403\n"
        "from rotator.client import CredentialLoader, sqla  # a name and a submodule\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
