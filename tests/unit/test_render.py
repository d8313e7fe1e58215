"""The renderer: escaping per format, reading back what is deployed through any template, atomic writes."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from rotator import render
from rotator.errors import BadInput, RotatorError
from rotator.passwords import PasswordPolicy
from rotator.render import ConfigFile, DeployedConfig, read_deployed, write_atomic
from rotator.secrets import Credentials
from rotator.template import DOTENV_VARIABLE

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SHIPPED = ["sqlconf.php.j2", "app.env.j2", "app.docker-env.j2", "app.sh.j2", "db.json.j2"]

NASTY = [
    "it's",
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "\\'",
    "\\\\'';",
    "$HOME",
    "${HOME}",
    "$(id)",
    "`id`",
    "a b  c",
    " leading and trailing ",
    "tab\there",
    "new\nline",
    "cr\r\nlf",
    "ünïcödé-密码-🔑",
    "%41%zz",
    "@:/?#[]",
    "';\n$pass = 'evil",
    '"\n$config = 0; //',
    "}}{{ password }}{%",
    "\\n\\r\\$",
    "'\"'\"'",
    "x" * 128,
    "-",
    "0",
    "null",
    "true",
]


def creds(password: str = "Secret-pass_1.~", username: str = "openemr_a", **kw: object) -> Credentials:  # noqa: S107
    return Credentials(
        username=username,
        password=password,
        host=str(kw.get("host", "db.cluster-abc.us-east-1.rds.amazonaws.com")),
        port=int(str(kw.get("port", 3306))),
        dbname=str(kw.get("dbname", "openemr")),
    )


def fuzz_passwords(n: int) -> list[str]:
    rng = random.Random(20240601)
    alphabet = "".join(chr(c) for c in range(32, 127)) + "\t\n\r\\'\"$`éß€😀\u00a0\u2028"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def refused_by(template: str, value: str) -> bool:
    """The values a shipped template's format cannot carry (its filter refuses them)."""
    if template == "app.docker-env.j2":
        return "\n" in value or "\r" in value
    if template == "app.env.j2":
        return DOTENV_VARIABLE.search(value) is not None
    return False


def deploy(tmp_path: Path, template: str | Path, c: Credentials, slot: str = "A") -> Path:
    path = tmp_path / "deployed.conf"
    write_atomic(path, render.render(TEMPLATES / template if isinstance(template, str) else template, c, slot))
    return path


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("value", "expected"),
    [("plain", "plain"), ("it's", "it\\'s"), ("a\\b", "a\\\\b"), ("\\'", "\\\\\\'"), (3306, "3306")],
)
def test_php_sq(value: object, expected: str) -> None:
    assert render.php_sq(value) == expected


def test_dotenv_always_double_quotes_and_escapes_what_python_dotenv_decodes() -> None:
    assert render.dotenv("plain") == '"plain"'
    assert render.dotenv("a\\b\"c$d`e\nf\rg'") == '"a\\\\b\\"c$d`e\\nf\\rg\'"'
    assert render.dotenv("${HOME:x} $HOME {x}") == '"${HOME:x} $HOME {x}"'  # python-dotenv expands none of them


@pytest.mark.parametrize("value", ["${HOME}", "a${X:-d}b", "${}"])
def test_dotenv_refuses_what_python_dotenv_expands(value: str) -> None:
    with pytest.raises(BadInput, match=r"^a dotenv file \(python-dotenv expands \$\{\.\.\.\} in it\) cannot carry"):
        render.dotenv(value)


def test_docker_env_is_literal() -> None:
    assert render.docker_env(" a'\"\\$`#; b ") == " a'\"\\$`#; b "


@pytest.mark.parametrize(("value", "what"), [("a\nb", "newline"), ("a\r", "carriage return"), ("\x00", "NUL byte")])
def test_docker_env_refuses_what_a_line_cannot_carry(value: str, what: str) -> None:
    with pytest.raises(
        BadInput, match=rf"^a Docker/ECS env-file \(one literal line per variable\) cannot carry .*{what}:"
    ):
        render.docker_env(value)


def test_shell_always_single_quotes() -> None:
    assert render.shell("plain") == "'plain'"
    assert render.shell("it's $x") == "'it'\"'\"'s $x'"


def test_url_escapes_everything_reserved() -> None:
    assert render.url("a b@c:d/e%") == "a%20b%40c%3Ad%2Fe%25"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("value", NASTY)
def test_shell_values_survive_a_real_shell(tmp_path: Path, value: str) -> None:
    """Sourcing the shell file in a POSIX shell gives back the exact value, newlines included."""
    path = deploy(tmp_path, "app.sh.j2", creds(value))
    out = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; printf "%s" "$DB_PASSWORD"', "bash", str(path)],
        capture_output=True,
        check=True,
    )
    assert out.stdout.decode("utf-8") == value


# ---------------------------------------------------------------- shipped templates


def test_sqlconf_has_openemrs_shape() -> None:
    text = render.render(TEMPLATES / "sqlconf.php.j2", creds("it's"), "B").decode()
    assert text.startswith("<?php\n")
    for line in [
        "global $disable_utf8_flag;",
        "$disable_utf8_flag = false;",
        "$host\t= 'db.cluster-abc.us-east-1.rds.amazonaws.com';",
        "$port\t= '3306';",
        "$login\t= 'openemr_a';",
        "$pass\t= 'it\\'s';",
        "$dbase\t= 'openemr';",
        "$db_encoding\t= 'utf8mb4';",
        "$sqlconf = array();",
        "global $sqlconf;",
        '$sqlconf["host"]= $host;',
        '$sqlconf["login"] = $login;',
        '$sqlconf["pass"] = $pass;',
        '$sqlconf["db_encoding"] = $db_encoding;',
    ]:
        assert line in text.splitlines(), line
    assert "$config = 1;" in text
    assert "?>" not in text


def test_app_env_and_database_url() -> None:
    c = creds("p@ss:w/rd é", username="app user")
    text = render.render(TEMPLATES / "app.env.j2", c, "A", {"db_scheme": "mysql"}).decode()
    lines = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["DB_HOST"] == '"db.cluster-abc.us-east-1.rds.amazonaws.com"'
    assert lines["DB_PORT"] == '"3306"'
    assert lines["DB_USER"] == '"app user"'
    url = urlsplit(lines["DATABASE_URL"].strip('"'))
    assert url.scheme == "mysql"
    assert unquote(url.username or "") == "app user"
    assert unquote(url.password or "") == "p@ss:w/rd é"
    assert url.hostname == c.host and url.port == 3306 and url.path == "/openemr"


def test_db_json() -> None:
    c = creds('q"\\\n')
    data = json.loads(render.render(TEMPLATES / "db.json.j2", c, "A"))
    assert data == {"username": c.username, "password": c.password, "host": c.host, "port": 3306, "dbname": "openemr"}


def test_render_context_has_extras_and_extra(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ ssl }} {{ region }} {{ slot }}\n")
    c = Credentials.parse(
        {"username": "u", "password": "p", "host": "h", "port": 1, "dbname": "d", "ssl": "on"}, "test"
    )
    assert render.render(template, c, "B", {"region": "eu"}) == b"on eu B\n"


def test_render_missing_variable_is_bad_input(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ nope }}")
    with pytest.raises(BadInput, match="nope"):
        render.render(template, creds(), "A")


def test_extra_may_not_shadow_credentials() -> None:
    with pytest.raises(BadInput, match="password"):
        render.render(TEMPLATES / "db.json.j2", creds(), "A", {"password": "x"})


def test_missing_template_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        render.render(tmp_path / "missing.j2", creds(), "A")


# ---------------------------------------------------------------- read back: round trips


def policy_passwords() -> list[str]:
    policies = [PasswordPolicy(), PasswordPolicy(length=16), PasswordPolicy(length=128), PasswordPolicy(symbols="")]
    return [p.generate() for p in policies for _ in range(25)]


@pytest.mark.parametrize("template", SHIPPED)
def test_round_trip_generated_passwords(tmp_path: Path, template: str) -> None:
    for password in policy_passwords():
        path = deploy(tmp_path, template, creds(password))
        got = read_deployed(TEMPLATES / template, path)
        assert got is not None and got.raw_ok, got
        assert (got.username, got.password) == ("openemr_a", password)


@pytest.mark.parametrize("template", SHIPPED)
@pytest.mark.parametrize("password", NASTY)
def test_round_trip_nasty_passwords(tmp_path: Path, template: str, password: str) -> None:
    if refused_by(template, password):
        with pytest.raises(BadInput, match="cannot carry a value"):
            render.render(TEMPLATES / template, creds(password), "A")
        return
    path = deploy(tmp_path, template, creds(password))
    got = read_deployed(TEMPLATES / template, path)
    assert got is not None and got.raw_ok, got.reason if got else None
    assert got.password == password
    assert got.username == "openemr_a"


@pytest.mark.parametrize("template", SHIPPED)
def test_round_trip_fuzzed_usernames_and_passwords(tmp_path: Path, template: str) -> None:
    values = fuzz_passwords(300)
    for username, password in zip(values, reversed(values), strict=True):
        if refused_by(template, username + password):
            continue
        path = deploy(tmp_path, template, creds(password, username=username))
        got = read_deployed(TEMPLATES / template, path)
        assert got is not None and got.raw_ok, (username, password, got.reason if got else None)
        assert (got.username, got.password) == (username, password)


@pytest.mark.parametrize("template", SHIPPED)
def test_read_back_other_values(tmp_path: Path, template: str) -> None:
    path = deploy(tmp_path, template, creds(host="db'host", port=5432, dbname="my db"), slot="B")
    got = read_deployed(TEMPLATES / template, path)
    assert got is not None and got.raw_ok
    assert got.values["host"] == "db'host"
    assert got.values["port"] == "5432"
    assert got.values["dbname"] == "my db"
    if template != "db.json.j2":
        assert got.slot == "B"


def test_repr_never_shows_the_password(tmp_path: Path) -> None:
    path = deploy(tmp_path, "sqlconf.php.j2", creds("Sup3r-Secret-Value"))
    got = read_deployed(TEMPLATES / "sqlconf.php.j2", path)
    assert got is not None and got.password == "Sup3r-Secret-Value"
    assert "Sup3r-Secret-Value" not in repr(got)
    assert "Sup3r-Secret-Value" not in str(got)


# ---------------------------------------------------------------- read back: what is not ours


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_deployed(TEMPLATES / "sqlconf.php.j2", tmp_path / "absent.php") is None


@pytest.mark.parametrize(
    ("template", "old", "new"),
    [
        ("sqlconf.php.j2", "$pass\t= '", "$password = '"),
        ("sqlconf.php.j2", "$config = 1;", "$config = 0;"),
        ("sqlconf.php.j2", "$pass\t= 'pw';", '$pass\t= "pw";'),
        ("app.env.j2", 'DB_PASSWORD="pw"', "DB_PASSWORD=pw"),
        ("app.env.j2", "DB_USER=", "export DB_USER="),
        ("db.json.j2", '"password": "pw"', '"password": "pw", "extra": 1'),
    ],
)
def test_hand_edited_file_is_reported_not_raised(tmp_path: Path, template: str, old: str, new: str) -> None:
    path = deploy(tmp_path, template, creds("pw"))
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    got = read_deployed(TEMPLATES / template, path)
    assert got == DeployedConfig(username=None, password=None, raw_ok=False, reason=got.reason if got else "")
    assert got is not None and "shape" in got.reason


def test_values_that_disagree_are_not_trusted(tmp_path: Path) -> None:
    path = deploy(tmp_path, "app.env.j2", creds("old-password"))
    path.write_text(path.read_text().replace('DB_PASSWORD="old-password"', 'DB_PASSWORD="new-password"'))
    got = read_deployed(TEMPLATES / "app.env.j2", path)
    assert got is not None and not got.raw_ok and got.password is None
    assert "two different values of password" in got.reason


def test_invalid_escape_is_reported(tmp_path: Path) -> None:
    path = deploy(tmp_path, "app.env.j2", creds("pw"))
    path.write_text(path.read_text().replace(":pw@", ":%ZZ@"))
    got = read_deployed(TEMPLATES / "app.env.j2", path)
    assert got is not None and not got.raw_ok


def test_reflowed_whitespace_still_reads(tmp_path: Path) -> None:
    path = deploy(tmp_path, "sqlconf.php.j2", creds("it's"))
    path.write_text(path.read_text().replace("\t", "    ").rstrip("\n"))
    got = read_deployed(TEMPLATES / "sqlconf.php.j2", path)
    assert got is not None and got.raw_ok and got.password == "it's"


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "sqlconf.php"
    path.write_bytes(b"<?php \xff\xfe")
    got = read_deployed(TEMPLATES / "sqlconf.php.j2", path)
    assert got is not None and not got.raw_ok and "UTF-8" in got.reason


def test_an_openemr_setup_file_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "sqlconf.php"
    path.write_text("<?php\n$host = 'localhost';\n$login = 'openemr';\n$pass = 'x';\n$config = 1;\n")
    got = read_deployed(TEMPLATES / "sqlconf.php.j2", path)
    assert got is not None and not got.raw_ok and got.username is None


# ---------------------------------------------------------------- read back: any template


@pytest.mark.parametrize(
    "source",
    [
        "export PGPASSWORD={{ password|shell }}\nexport PGUSER={{ username|shell }}\n",
        "user={{ username }}\npass={{ password|url|dotenv }}\n",
        "X={{ ('u:' ~ password ~ '@h')|shell }}\nU={{ username|shell }}\nY={{ password|url|docker_env }}\n",
        "X={{ ('u:' ~ password|url ~ '@' ~ username)|dotenv }}\n",
        "[client]\nuser = {{ username|json }}\npassword = {{ password|php_sq|json }}\n",
        "{{ username|url }}:{{ password|url }}@{{ host }}\n{{ password|json }} {{ username|dotenv }}",
        "DSN={{ ('u=' ~ username ~ ';p=' ~ password ~ ';')|json }}\n",
        "DSN={{ ('u=' ~ username|url ~ ' p=' ~ password|url)|php_sq }}\n",
        "{% if ssl %}ssl=1{% endif %}\n{{ username|json }}={{ password|json }}",
        "{% include 'inc.j2' %}\nuser={{ username|json }}",
    ],
)
def test_any_template_round_trips(tmp_path: Path, source: str) -> None:
    (tmp_path / "inc.j2").write_text("password={{ password|json }} region={{ region|default('x')|dotenv }}")
    template = tmp_path / "custom.j2"
    template.write_text(source)
    c = Credentials.parse(
        {"username": "app_b", "password": "", "host": "h", "port": 5432, "dbname": "d", "ssl": True}, "t"
    )
    ConfigFile(template, tmp_path / "out.conf").check(c)
    for password in [*NASTY, *policy_passwords()[:10], *fuzz_passwords(40)]:
        if "username|url }}:" in source and not password:
            continue
        path = tmp_path / "out.conf"
        write_atomic(path, render.render(template, c.with_password(password), "B"))
        got = read_deployed(template, path)
        assert got is not None and got.raw_ok, (password, got.reason if got else None)
        assert (got.username, got.password) == ("app_b", password)


def test_template_without_credentials_is_bad_input(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("host={{ host }}\n")
    with pytest.raises(BadInput, match="neither username nor password"):
        ConfigFile(template, tmp_path / "out.conf").check()


# ---------------------------------------------------------------- atomic writes


def test_write_atomic_sets_mode_despite_umask(tmp_path: Path) -> None:
    path = tmp_path / "sqlconf.php"
    old = os.umask(0o077)
    try:
        write_atomic(path, b"one", mode=0o644)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == render.DEFAULT_MODE
    assert os.listdir(tmp_path) == ["sqlconf.php"]


@pytest.mark.parametrize("failing", ["replace", "fsync", "fchmod", "write"])
def test_write_atomic_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = tmp_path / "sqlconf.php"
    path.write_bytes(b"old")

    def boom(*_args: object, **_kw: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(RotatorError, match="unchanged"):
        write_atomic(path, b"new secret content")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["sqlconf.php"]


def test_write_atomic_owner_eperm_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sqlconf.php"

    def eperm(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", eperm)
    with pytest.raises(BadInput, match="needs root or the app's uid"):
        write_atomic(path, b"x", owner=(1000, 1000))
    assert os.listdir(tmp_path) == []


def test_write_atomic_real_owner(tmp_path: Path) -> None:
    """As root the owner is set; as anyone else, chown to root is refused with the explanation."""
    path = tmp_path / "sqlconf.php"
    if os.geteuid() == 0:
        write_atomic(path, b"x", mode=0o644, owner=(1000, 1001))
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o644)
    else:
        with pytest.raises(BadInput, match="needs root"):
            write_atomic(path, b"x", owner=(0, 0))
        assert os.listdir(tmp_path) == []


def test_write_atomic_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"directory .*nope does not exist: create it, or fix --config-path"):
        write_atomic(tmp_path / "nope" / "f", b"x")


def test_fix_permissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sqlconf.php"
    path.write_bytes(b"content")
    path.chmod(0o600)
    assert render.fix_permissions(path, 0o644, None) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert render.fix_permissions(path, 0o644, None) is False
    assert path.read_bytes() == b"content"
    st = path.stat()
    assert render.fix_permissions(path, 0o644, (st.st_uid, st.st_gid)) is False

    def eperm(*_args: object, **_kw: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", eperm)
    with pytest.raises(BadInput, match="--fix-permissions"):
        render.fix_permissions(path, 0o644, (st.st_uid + 1, st.st_gid))
    with pytest.raises(BadInput, match="does not exist"):
        render.fix_permissions(tmp_path / "absent", 0o644, None)


def test_snapshot_and_restore(tmp_path: Path) -> None:
    path = tmp_path / "sqlconf.php"
    assert render.snapshot(path) is None
    write_atomic(path, b"new")
    render.restore(path, None)
    assert not path.exists()
    render.restore(path, None)  # twice is fine

    path.write_bytes(b"original")
    snap = render.snapshot(path)
    write_atomic(path, b"rotated")
    render.restore(path, snap, 0o600)
    assert path.read_bytes() == b"original"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["sqlconf.php"]


def test_config_file(tmp_path: Path) -> None:
    cf = ConfigFile(template=TEMPLATES / "sqlconf.php.j2", path=tmp_path / "sqlconf.php", mode=0o644)
    assert cf.read_deployed() is None
    snap = cf.snapshot()
    cf.write(creds("pw-b", username="openemr_b"), "B")
    got = cf.read_deployed()
    assert got is not None and (got.username, got.password, got.slot) == ("openemr_b", "pw-b", "B")
    cf.restore(snap)
    assert cf.read_deployed() is None
