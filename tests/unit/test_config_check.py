"""ConfigFile.check(): everything that would make a rotation fail at the config file, refused before the first
change with one line naming the problem and the flag, and nothing changed by the check itself."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.errors import BadInput
from rotator.render import ConfigFile, render, write_atomic
from rotator.secrets import Credentials
from tests.unit.unprivileged import run_unprivileged, shared_directory

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SHIPPED = ["sqlconf.php.j2", "app.env.j2", "app.docker-env.j2", "app.sh.j2", "db.json.j2"]
READABLE = "user={{ username|dotenv }}\npass={{ password|dotenv }}\n"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    with shared_directory() as path:
        yield path


def creds(**extras: object) -> Credentials:
    return Credentials(
        username="app_a", password="Plain-pass_1", host="db.example.com", port=3306, dbname="app", extras=dict(extras)
    )


def state(directory: Path) -> dict[str, tuple[bytes | None, int, int, int]]:
    """Every entry of ``directory``: content (regular files), mode, mtime and inode, without following links."""
    out: dict[str, tuple[bytes | None, int, int, int]] = {}
    for name in sorted(os.listdir(directory)):
        st = os.lstat(directory / name)
        content = (directory / name).read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[name] = (content, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ino)
    return out


def template_in(directory: Path, source: str = READABLE, name: str = "t.j2") -> Path:
    path = directory / name
    path.write_text(source)
    return path


def refused(cf: ConfigFile, pattern: str, *slots: Credentials) -> str:
    """check() raises BadInput whose one line matches ``pattern``, and changes nothing around the config path."""
    watched = [d for d in {cf.path.parent, cf.template.parent} if d.is_dir()]
    before = [state(d) for d in watched]
    with pytest.raises(BadInput) as raised:
        cf.check(*slots)
    message = str(raised.value)
    assert "\n" not in message, message
    assert re.search(pattern, message), message
    assert [state(d) for d in watched] == before
    return message


# ---------------------------------------------------------------- what passes, and changes nothing


@pytest.mark.parametrize("template", SHIPPED)
@pytest.mark.parametrize("existing", [False, True])
def test_shipped_templates_pass_and_nothing_changes(tmp_path: Path, template: str, existing: bool) -> None:
    cf = ConfigFile(TEMPLATES / template, tmp_path / "deployed.conf", mode=0o640)
    if existing:
        write_atomic(cf.path, render(cf.template, creds(), "A"), mode=0o600)
        os.utime(cf.path, ns=(1_000_000_000, 1_000_000_000))
    before = state(tmp_path)
    cf.check(creds())
    cf.check()
    assert state(tmp_path) == before  # bytes, mode, mtime, inode; no temp file left, none created


def test_a_slot_extra_is_defined_when_the_slots_are_given(tmp_path: Path) -> None:
    cf = ConfigFile(template_in(tmp_path, READABLE + "{% if ssl %}ssl=1{% endif %}\n"), tmp_path / "out.conf")
    cf.check(creds(ssl=True), creds(ssl=False))
    refused(cf, r"'ssl' is undefined")  # without the slots, a variable nobody defines


def test_the_owner_is_proven_settable(tmp_path: Path) -> None:
    st = os.stat(tmp_path)
    ConfigFile(TEMPLATES / "sqlconf.php.j2", tmp_path / "sqlconf.php", owner=(st.st_uid, st.st_gid)).check()
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- the slots' values, read back by the format's reader


@pytest.mark.parametrize(
    ("template", "slot", "field", "value", "pattern"),
    [
        ("app.docker-env.j2", "B", "password", "new\nline", r"a Docker/ECS env-file .* holding a newline"),
        ("app.docker-env.j2", "A", "password", "cr\r", r"a Docker/ECS env-file .* holding a carriage return"),
        ("app.docker-env.j2", "A", "username", "app\na", r"a Docker/ECS env-file .* holding a newline"),
        ("app.env.j2", "A", "password", "pw${HOME}", r"a dotenv file \(python-dotenv expands \$\{\.\.\.\}"),
        ("app.env.j2", "B", "password", "${X:-y}", r"a dotenv file \(python-dotenv expands \$\{\.\.\.\}"),
    ],
)
@pytest.mark.parametrize("existing", [False, True])
def test_a_slot_value_the_format_cannot_carry(
    tmp_path: Path, template: str, slot: str, field: str, value: str, pattern: str, existing: bool
) -> None:
    cf = ConfigFile(TEMPLATES / template, tmp_path / "deployed.conf")
    if existing:
        write_atomic(cf.path, render(cf.template, creds(), "A"))
    bad = dataclasses.replace(creds(), username=value) if field == "username" else creds().with_password(value)
    slots = (bad, creds()) if slot == "A" else (creds(), bad)
    message = refused(
        cf, rf"^the {field} of slot {slot} cannot be carried by {re.escape(template)}: {pattern}.*--template", *slots
    )
    assert value not in message


@pytest.mark.parametrize("template", SHIPPED)
def test_slot_values_every_format_carries(tmp_path: Path, template: str) -> None:
    hostile = dataclasses.replace(creds(), username="app'\"\\$`#; é", password=" p'\"\\$`#; é😀?><?php $HOME\\ ")
    ConfigFile(TEMPLATES / template, tmp_path / "deployed.conf").check(hostile, creds())


# ---------------------------------------------------------------- the template


def test_an_undefined_variable(tmp_path: Path) -> None:
    cf = ConfigFile(template_in(tmp_path, READABLE + "region={{ region|dotenv }}\n"), tmp_path / "out.conf")
    refused(cf, r"^template .*t\.j2 cannot be rendered: UndefinedError: 'region' is undefined: .*--template")


def test_a_syntax_error(tmp_path: Path) -> None:
    cf = ConfigFile(template_in(tmp_path, "user={{ username|dotenv }\npass={{ password|dotenv }}\n"), tmp_path / "o")
    refused(cf, r"^template .*t\.j2 is invalid: TemplateSyntaxError: .*\(line 1\): fix the template \(--template")


def test_an_unknown_filter(tmp_path: Path) -> None:
    cf = ConfigFile(template_in(tmp_path, READABLE + "{{ password|yaml }}\n"), tmp_path / "out.conf")
    refused(cf, r"is invalid: TemplateAssertionError: No filter named 'yaml'.*--template")


def test_a_filter_that_raises(tmp_path: Path) -> None:
    cf = ConfigFile(template_in(tmp_path, READABLE + "{{ password|shell(1) }}\n"), tmp_path / "out.conf")
    refused(cf, r"cannot be rendered: TypeError: fix the template \(--template")


def test_filters_run_on_hostile_text(tmp_path: Path) -> None:
    """A template that works for a plain password but breaks on quotes or non-ASCII text is refused."""
    source = "user={{ username|dotenv }}\npass={{ password.encode('ascii').decode()|dotenv }}\n"
    cf = ConfigFile(template_in(tmp_path, source), tmp_path / "out.conf")
    assert b"Plain-pass_1" in cf.render(creds(), "A")
    message = refused(cf, r"cannot be rendered: UnicodeEncodeError: fix the template")
    assert "p'" not in message  # the trial password is never quoted


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("host={{ host|dotenv }}\n", r"writes neither username nor password.*--template"),
        # Two values in one word, split by a space: a hostile password holding a space does not read back.
        ("X={{ (password ~ ' ' ~ username)|shell }}\n", r"cannot carry a hostile password.*--template"),
    ],
)
def test_a_template_that_cannot_be_read_back(tmp_path: Path, source: str, pattern: str) -> None:
    cf = ConfigFile(template_in(tmp_path, source), tmp_path / "out.conf")
    cf.render(creds(), "A")  # it renders: only reading it back is impossible
    refused(cf, pattern)


def test_a_missing_template(tmp_path: Path) -> None:
    refused(ConfigFile(tmp_path / "absent.j2", tmp_path / "out.conf"), r"does not exist: check --template")


# ---------------------------------------------------------------- the config path


@pytest.mark.parametrize("how", ["same path", "dotted path", "symlink", "hard link"])
def test_the_config_path_is_the_template(tmp_path: Path, how: str) -> None:
    template = tmp_path / "sqlconf.php.j2"
    shutil.copy(TEMPLATES / "sqlconf.php.j2", template)
    config = {
        "same path": template,
        "dotted path": tmp_path / "sub" / ".." / "sqlconf.php.j2",
        "symlink": tmp_path / "sqlconf.php",
        "hard link": tmp_path / "sqlconf.php",
    }[how]
    if how == "dotted path":
        (tmp_path / "sub").mkdir()
    if how == "symlink":
        config.symlink_to(template)
    if how == "hard link":
        os.link(template, config)
    refused(ConfigFile(template, config), r"^--config-path .* is the template .* itself: render to another path$")


def test_the_config_directory_does_not_exist(tmp_path: Path) -> None:
    cf = ConfigFile(TEMPLATES / "sqlconf.php.j2", tmp_path / "nope" / "sqlconf.php")
    refused(cf, r"^directory .*nope does not exist: create it, or fix --config-path$")
    assert os.listdir(tmp_path) == []


def test_the_config_directory_is_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    cf = ConfigFile(TEMPLATES / "sqlconf.php.j2", tmp_path / "a-file" / "sqlconf.php")
    refused(cf, r"does not exist: create it, or fix --config-path$")


def test_a_read_only_config_directory(shared_dir: Path) -> None:
    """A directory this process may not write (as root, the check runs as an unprivileged user)."""
    config_dir = shared_dir / "site"
    config_dir.mkdir()
    cf = ConfigFile(template_in(shared_dir), config_dir / "sqlconf.php")
    (shared_dir / "t.j2").chmod(0o644)
    config_dir.chmod(0o555)
    out = run_unprivileged(cf.check)
    assert re.fullmatch(r"BadInput: cannot write .*sqlconf\.php: Permission denied: .*or change --config-path", out)
    assert os.listdir(config_dir) == []


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs Linux sysfs")
def test_a_directory_os_access_calls_writable_but_is_not() -> None:
    """sysfs refuses new files even to root, to whom os.access says yes: only a real create tells."""
    if os.geteuid() == 0:
        assert os.access("/sys", os.W_OK)
    before = sorted(os.listdir("/sys"))
    with pytest.raises(BadInput, match=r"^cannot write /sys/sqlconf\.php: .*or change --config-path$"):
        ConfigFile(TEMPLATES / "sqlconf.php.j2", Path("/sys/sqlconf.php")).check()
    assert sorted(os.listdir("/sys")) == before


@pytest.mark.parametrize("kind", ["directory", "FIFO", "character device"])
def test_the_config_path_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    if kind == "character device":
        config = Path("/dev/zero")
    else:
        config = tmp_path / "sqlconf.php"
        config.mkdir() if kind == "directory" else os.mkfifo(config)
    cf = ConfigFile(TEMPLATES / "sqlconf.php.j2", config)
    signal.alarm(10)  # a FIFO must not block the check: fail instead of hanging
    try:
        listing = sorted(os.listdir(config.parent))
        refused(cf, rf"^{re.escape(str(config))} is not a regular file \(an? {kind}\): point --config-path at a file$")
        assert sorted(os.listdir(config.parent)) == listing
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("target", ["a rendered file", "nothing"])
def test_a_symlinked_config_is_refused(tmp_path: Path, target: str) -> None:
    real = tmp_path / "real.php"
    if target == "a rendered file":
        write_atomic(real, render(TEMPLATES / "sqlconf.php.j2", creds(), "A"))
    link = tmp_path / "sqlconf.php"
    link.symlink_to(real)
    cf = ConfigFile(TEMPLATES / "sqlconf.php.j2", link)
    refused(cf, r"sqlconf\.php is a symbolic link: .*point --config-path at the file itself$")
    with pytest.raises(BadInput, match="symbolic link"):
        cf.read_deployed()  # reads refuse it too: what is checked is what is used
    if target == "a rendered file":
        mode = stat.S_IMODE(real.stat().st_mode)
        with pytest.raises(BadInput, match="symbolic link"):
            ConfigFile(cf.template, link, mode=0o600).fix_permissions()
        assert stat.S_IMODE(real.stat().st_mode) == mode  # not changed through the link


def test_an_unreadable_config_file(shared_dir: Path) -> None:
    config = shared_dir / "sqlconf.php"
    write_atomic(config, render(TEMPLATES / "sqlconf.php.j2", creds(), "A"), mode=0o000)
    shared_dir.chmod(0o777)  # writable: only the read can fail
    before = state(shared_dir)
    out = run_unprivileged(ConfigFile(TEMPLATES / "sqlconf.php.j2", config).check)
    assert re.fullmatch(r"BadInput: cannot read .*sqlconf\.php: Permission denied: run as a user that may read it", out)
    assert state(shared_dir) == before


def test_an_owner_this_process_may_not_set(shared_dir: Path) -> None:
    shared_dir.chmod(0o777)
    other = (0, 0) if os.geteuid() == 0 else (os.geteuid() + 1, os.getegid())
    cf = ConfigFile(TEMPLATES / "sqlconf.php.j2", shared_dir / "sqlconf.php", owner=other)
    out = run_unprivileged(cf.check)
    assert re.fullmatch(r"BadInput: cannot set the owner of .*sqlconf\.php to \d+:\d+: .*--file-owner.*", out), out
    assert os.listdir(shared_dir) == []
