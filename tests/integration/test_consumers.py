"""The consumer matrix: each shipped template, rendered with every hostile class of password and with generated
ones, is read by the program that reads it in production (PHP, python-dotenv, bash, the Docker env-file rule,
json, libpq, SQLAlchemy), which must get exactly the password and log in with it to a real database. A class a
format cannot carry is refused by ``ConfigFile.check`` with BadInput, and the deployed file is left unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from rotator.errors import BadInput, ExitCode
from rotator.passwords import PasswordPolicy
from rotator.render import ConfigFile
from rotator.secrets import Credentials
from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import make_env

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

HOSTILE = {
    "single-quote": "it's 'quoted'",
    "double-quote": 'say "hi"',
    "backtick": "`id` and `",
    "backslash": "back\\slash \\n \\' \\\\",
    "dollar": "$HOME $(id) $$ $1",
    "dollar-brace": "pw${HOME}",
    "hash": "#not-a-comment #",
    "semicolon": "a;b; DROP USER x;",
    "spaces": " lead  and trail ",
    "newline": "new\nline",
    "cr": "cr\rmid",
    "crlf": "cr\r\nlf",
    "php-close": "x?>y",
    "php-open": "<?php echo 1; ?>",
    "trailing-backslash": "trail\\",
    "non-ascii": "ünïcödé-密码-ß",
    "emoji": "🔑🚀-key",
    "everything": "'\";\n$pass = 'evil'; // ?> `$x` \\",
}
GENERATED = {f"generated-{i}": PasswordPolicy().generate() for i in range(3)}
PASSWORDS = {**HOSTILE, **GENERATED}

# What each format cannot carry (its filter refuses it); every other class must be read back exactly.
REFUSED = {
    "app.docker-env.j2": {"newline", "cr", "crlf", "everything"},
    "app.env.j2": {"dollar-brace"},
}


def classes(template: str, *, refused: bool = False) -> list[str]:
    return [name for name in PASSWORDS if (name in REFUSED.get(template, set())) == refused]


def login_user(db: DbEnv, password: str) -> Credentials:
    """A real login user with ``password`` on the test's database server (dropped at teardown)."""
    name = db.user("app")
    db.create_plain_user(name, password)
    if db.engine == "mysql":
        db.execute(f"GRANT SELECT ON `{db.dbname}`.* TO %s@'%%'", (name,))
    return Credentials(username=name, password=password, host="127.0.0.1", port=db.port, dbname=db.dbname)


def deployed(tmp_path: Path, template: str, creds: Credentials, name: str) -> Path:
    """Check (with the slots' real values), then write: what a rotation does."""
    cf = ConfigFile(TEMPLATES / template, tmp_path / name, extra={"db_scheme": "postgresql"})
    cf.check(creds, creds)
    cf.write(creds, "A")
    got = cf.read_deployed()
    assert got is not None and got.raw_ok and (got.username, got.password) == (creds.username, creds.password)
    return cf.path


def libpq_logs_in(database_url: str, creds: Credentials) -> None:
    """libpq parses the URL (psycopg passes it as conninfo), logs in, and is who the file says."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (creds.username,)


def sqlalchemy_reads(database_url: str, creds: Credentials) -> None:
    url = make_url(database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        creds.username,
        creds.password,
        creds.host,
        creds.port,
        creds.dbname,
    )


def docker_env_file(path: Path) -> dict[str, str]:
    """Docker's env-file rule (docker/cli opts.ParseKeyValueFile), as a tiny fake: no Docker daemon here.

    Lines split at LF with a CR before it dropped (Go's bufio.ScanLines), leading whitespace trimmed, blank
    and ``#`` lines skipped, NAME=value split at the first ``=``, the value taken literally: no quotes.
    """
    values = {}
    for raw in path.read_bytes().decode("utf-8").split("\n"):
        line = raw.removesuffix("\r").lstrip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


# ---------------------------------------------------------------- PHP + mysqli: OpenEMR's sqlconf.php

PHP_READS = r"""
include $argv[1];
foreach ([$host, $port, $login, $pass, $dbase] as $v) { echo base64_encode($v), "\n"; }
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
$db = new mysqli($host, $login, $pass, $dbase, (int)$port);
echo base64_encode($db->query("SELECT CURRENT_USER()")->fetch_row()[0]), "\n";
"""


@pytest.fixture(scope="module")
def php() -> str:
    path = shutil.which("php")
    if path is None:
        message = "php is not installed: apt-get install php-cli php-mysql (scripts/test.sh does, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(f"SKIPPED THE PHP CONSUMER MATRIX: {message}")
    return path


@pytest.mark.parametrize("kind", classes("sqlconf.php.j2"))
def test_php_includes_sqlconf_and_logs_in_with_mysqli(php: str, mysql: DbEnv, tmp_path: Path, kind: str) -> None:
    import base64

    creds = login_user(mysql, PASSWORDS[kind])
    path = deployed(tmp_path, "sqlconf.php.j2", creds, "sqlconf.php")
    out = subprocess.run([php, "-r", PHP_READS, str(path)], capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace").replace(creds.password, "<password>")
    assert out.stderr == b""  # nothing printed before the headers: no stray output from the include
    values = [base64.b64decode(line).decode("utf-8") for line in out.stdout.decode("ascii").split()]
    assert values[:5] == ["127.0.0.1", str(mysql.port), creds.username, creds.password, mysql.dbname]
    assert values[5].split("@")[0] == creds.username


# ---------------------------------------------------------------- python-dotenv / docker compose .env


@pytest.mark.parametrize("kind", classes("app.env.j2"))
def test_python_dotenv_reads_app_env_and_logs_in(pg: DbEnv, tmp_path: Path, kind: str) -> None:
    creds = login_user(pg, PASSWORDS[kind])
    values = dotenv_values(deployed(tmp_path, "app.env.j2", creds, "app.env"))
    assert values["DB_USER"] == creds.username and values["DB_PASSWORD"] == creds.password
    assert values["DB_HOST"] == "127.0.0.1" and values["DB_PORT"] == str(pg.port) and values["DB_NAME"] == pg.dbname
    url = values["DATABASE_URL"]
    assert url is not None
    sqlalchemy_reads(url, creds)
    libpq_logs_in(url, creds)


# ---------------------------------------------------------------- docker run --env-file / ECS environmentFiles


@pytest.mark.parametrize("kind", classes("app.docker-env.j2"))
def test_docker_env_file_lines_are_the_values_and_log_in(pg: DbEnv, tmp_path: Path, kind: str) -> None:
    creds = login_user(pg, PASSWORDS[kind])
    values = docker_env_file(deployed(tmp_path, "app.docker-env.j2", creds, "app.env"))
    assert values["DB_USER"] == creds.username and values["DB_PASSWORD"] == creds.password
    assert values["DB_PORT"] == str(pg.port) and values["DB_HOST"] == "127.0.0.1"  # no quotes
    sqlalchemy_reads(values["DATABASE_URL"], creds)
    libpq_logs_in(values["DATABASE_URL"], creds)


# ---------------------------------------------------------------- a POSIX shell file to source


@pytest.mark.parametrize("kind", classes("app.sh.j2"))
def test_bash_sources_app_sh_and_logs_in(pg: DbEnv, tmp_path: Path, kind: str) -> None:
    creds = login_user(pg, PASSWORDS[kind])
    path = deployed(tmp_path, "app.sh.j2", creds, "app.sh")
    script = 'set -a; . "$1"; printf "%s\\0" "$DB_USER" "$DB_PASSWORD" "$DB_PORT" "$DATABASE_URL"'
    out = subprocess.run(["bash", "-c", script, "bash", str(path)], capture_output=True, timeout=30, check=True)
    assert out.stderr == b""
    user, password, port, url, _ = out.stdout.decode("utf-8").split("\0")
    assert (user, password, port) == (creds.username, creds.password, str(pg.port))
    sqlalchemy_reads(url, creds)
    libpq_logs_in(url, creds)


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("kind", classes("db.json.j2"))
def test_json_reads_db_json_and_logs_in(pg: DbEnv, tmp_path: Path, kind: str) -> None:
    creds = login_user(pg, PASSWORDS[kind])
    data = json.loads(deployed(tmp_path, "db.json.j2", creds, "db.json").read_bytes())
    assert data == {"username": creds.username, "password": creds.password, "host": "127.0.0.1", "port": pg.port,
                    "dbname": pg.dbname}  # fmt: skip
    with psycopg.connect(
        host=data["host"], port=data["port"], user=data["username"], password=data["password"], dbname=data["dbname"]
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (creds.username,)


# ---------------------------------------------------------------- what a format cannot carry: refused, nothing changed

REFUSED_CASES = [(template, kind) for template, kinds in REFUSED.items() for kind in sorted(kinds)]


@pytest.mark.parametrize(("template", "kind"), REFUSED_CASES)
def test_a_class_the_format_cannot_carry_is_refused_and_the_file_unchanged(
    tmp_path: Path, template: str, kind: str
) -> None:
    current = Credentials(username="app_a", password="Current-pass_1", host="127.0.0.1", port=5432, dbname="app")
    cf = ConfigFile(TEMPLATES / template, tmp_path / "app.env")
    cf.write(current, "A")
    before = (cf.path.read_bytes(), os.stat(cf.path).st_mtime_ns, os.stat(cf.path).st_ino, sorted(os.listdir(tmp_path)))
    pending = Credentials(username="app_b", password=PASSWORDS[kind], host="127.0.0.1", port=5432, dbname="app")
    with pytest.raises(BadInput) as raised:
        cf.check(current, pending)
    message = str(raised.value)
    assert message.startswith(f"the password of slot B cannot be carried by {template}: ")
    assert "\n" not in message and PASSWORDS[kind] not in message
    after = (cf.path.read_bytes(), os.stat(cf.path).st_mtime_ns, os.stat(cf.path).st_ino, sorted(os.listdir(tmp_path)))
    assert after == before
    assert cf.read_deployed() is not None and cf.read_deployed().password == "Current-pass_1"  # type: ignore[union-attr]


# ---------------------------------------------------------------- end to end: `rotator rotate` refuses, exit 2


@pytest.mark.parametrize(("template", "password"), [("app.docker-env.j2", "adopted\npw"), ("app.env.j2", "pw${HOME}")])
def test_rotate_refuses_a_slot_password_the_format_cannot_carry(
    pg: DbEnv, aws: AwsEnv, tmp_path: Path, template: str, password: str
) -> None:
    env = make_env(pg, aws, tmp_path)
    env.template = TEMPLATES / template
    env.config_path = tmp_path / "app.env"
    assert env.rotate().exit_code == 0
    current = env.secret()
    assert current is not None
    idle = "A" if current["active_slot"] == "B" else "B"
    current[idle]["password"] = password  # adopted from elsewhere: the database holds it too
    pg.set_password_directly(current[idle]["username"], password)
    env.put_current(current)
    before = env.state()
    result = env.rotate()
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"the password of slot {idle} cannot be carried by {template}: " in result.stdout + result.stderr
    assert password not in result.stdout + result.stderr
    assert env.state() == before
