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
