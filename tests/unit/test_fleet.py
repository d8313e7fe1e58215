"""The fleet's pure parts: the exit-code order, the fleet file, shared admins, the scheduler's isolation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rotator import fleet, log
from rotator.config import Settings
from rotator.errors import BadInput, ExitCode, Locked
from rotator.report import Report
from rotator.signals import StopSignal


def test_worst_exit_code_order() -> None:
    assert fleet.worst([]) == 0
    assert fleet.worst([0, 3, 2]) == 2
    assert fleet.worst([3, 2, 4]) == 4
    assert fleet.worst([4, 1, 2]) == 1
    assert fleet.worst([1, 5, 0]) == 5
    assert fleet.worst([0, 3]) == 3
    assert fleet.worst([3, 6, 0]) == 6 and fleet.worst([6, 2]) == 2
    assert fleet.worst([0, 99]) == 1  # unknown: a failure


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_fleet_file_defaults_and_tables(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[defaults]\nadmin_secret = "admin"\nfile-mode = 0o640\n\n[billing]\nslot_secret = "billing/db"\n\n'
        '[crm]\nslot_secret = "crm/db"\nadmin-secret = "crm-admin"\nengine = "mysql"\n[typo]\nslot_secret = "x"\n'
        "grace = 3\n",
    )
    defaults, tables = fleet.load_file(path)
    members = [fleet.member(name, table, defaults, {"dry_run": True}) for name, table in tables.items()]
    assert [m.name for m in members] == ["billing", "crm", "typo"]
    billing, crm, typo = members
    assert billing.settings is not None and billing.settings.admin_secret == "admin"
    assert billing.settings.file_mode == 0o640 and billing.settings.dry_run
    assert crm.settings is not None and (crm.settings.admin_secret, crm.settings.engine) == ("crm-admin", "mysql")
    assert typo.settings is None and typo.error is not None and "unknown setting 'grace'" in typo.error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults\n", "not valid TOML"),
        ('slot_secret = "x"\n', "top-level key 'slot_secret' is not a table"),
        ('defaults = "x"\n', "[defaults] must be a table"),
    ],
)
def test_fleet_file_structure_is_bad_input(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("[", r"\[")):
        fleet.load_file(_file(tmp_path, text))


def test_missing_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        fleet.load_file(tmp_path / "nope.toml")


def _m(name: str, slot: str, admin: str = "admin", **kw: object) -> fleet.Member:
    return fleet.Member(name, Settings(slot_secret=slot, admin_secret=admin, **kw))  # type: ignore[arg-type]


def test_shared_admin_rotated_once_by_the_last_member() -> None:
    members = fleet.arrange([_m("a", "s1"), _m("b", "s2"), _m("c", "s3", skip_admin=True), _m("d", "s4", "own")])
    a, b, c, d = members
    assert a.settings is not None and a.settings.skip_admin and not a.after
    assert b.settings is not None and not b.settings.skip_admin and b.after == ("a", "c")
    assert c.settings is not None and c.settings.skip_admin
    assert d.settings is not None and not d.settings.skip_admin and not d.after  # its own admin


def test_one_slot_secret_twice_is_refused() -> None:
    with pytest.raises(BadInput, match="same slot secret"):
        fleet.arrange([_m("a", "s1"), _m("b", "s1", "other")])


def _by_arn(_settings: Settings, secret: str) -> str:
    """A store where ``x`` and ``arn:x`` are one secret."""
    return secret.removeprefix("arn:")


def test_secrets_are_compared_by_their_identity_not_their_spelling() -> None:
    a, b = fleet.arrange([_m("a", "s1", "admin"), _m("b", "s2", "arn:admin")], _by_arn)
    assert a.settings is not None and a.settings.skip_admin
    assert b.settings is not None and not b.settings.skip_admin and b.after == ("a",)
    with pytest.raises(BadInput, match="same slot secret"):
        fleet.arrange([_m("a", "s1"), _m("b", "arn:s1", "other")], _by_arn)
    assert fleet.arrange([_m("a", "s1"), _m("b", "arn:s1", "other")])  # as written: two secrets


def _report(code: int = 0, outcome: str = "ok") -> Report:
    report = Report(dry_run=False, outcome=outcome, exit_code=code)
    report.slots_before, report.slots_after = {"active": "A"}, {"active": "B"}
    return report


def test_scheduler_isolates_failures_and_bounds_concurrency() -> None:
    lock = threading.Lock()
    running, peak, order = 0, 0, []

    def run_one(settings: Settings, stop: StopSignal) -> Report:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            order.append(settings.slot_secret)
        try:
            time.sleep(0.02)
            if settings.slot_secret == "boom":
                raise RuntimeError("a bug")
            if settings.slot_secret == "locked":
                raise Locked("held")
            return _report(4, "RolledBack") if settings.slot_secret == "rb" else _report()
        finally:
            with lock:
                running -= 1

    members = [_m(f"m{i}", f"s{i}") for i in range(10)]
    members += [_m("boom", "boom", "a2"), _m("locked", "locked", "a3"), _m("rb", "rb", "a4")]
    members.append(fleet.Member("bad", None, error="unknown setting"))
    report = fleet.Fleet(members, run_one, concurrency=3, dry_run=False).run()
    results = {r.name: r for r in report.results}
    assert peak <= 3
    assert [r.name for r in report.results] == [m.name for m in members]  # file order, whatever finished first
    assert results["boom"].exit_code == 1 and results["boom"].outcome == "UnexpectedError"
    assert results["locked"].exit_code == 3 and results["bad"].exit_code == 2
    assert all(results[f"m{i}"].exit_code == 0 for i in range(10))
    assert report.exit_code == 1  # 1 > 4 > 2 > 3
    # The member rotating the shared admin ran after all the others of its group.
    assert order.index("s9") > max(order.index(f"s{i}") for i in range(9))
    assert "m9" in fleet.table(report) and "A→B" in fleet.table(report)


def test_a_stop_starts_no_new_database_and_reaches_running_ones() -> None:
    fleet_stop: list[StopSignal] = []
    seen: list[str | None] = []

    def run_one(settings: Settings, stop: StopSignal) -> Report:
        if settings.slot_secret == "s0":
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)  # to the main thread, whose handler the fleet installed
            deadline = time.monotonic() + 5
            while not stop.requested and time.monotonic() < deadline:
                time.sleep(0.01)
        seen.append(stop.requested)
        fleet_stop.append(stop)
        return _report()

    members = [_m(f"m{i}", f"s{i}", f"a{i}") for i in range(5)]
    report = fleet.Fleet(members, run_one, concurrency=1, dry_run=False).run()
    assert seen == ["SIGTERM"]
    assert report.interrupted == "SIGTERM"
    assert [r.outcome for r in report.results] == ["ok"] + ["NotStarted"] * 4
    assert report.exit_code == ExitCode.FAILED


def test_scrub_with_thousands_of_secrets() -> None:
    values = [f"fleet-secret-{i:05d}-xyz" for i in range(3000)]
    log.register_secret(*values)
    log.register_secret("abcd-9876", "abcd-9876-long")
    assert log.scrub(f"a {values[17]} b {values[2999]}c") == f"a {log.REDACTED} b {log.REDACTED}c"
    assert log.scrub("x abcd-9876-long y abcd-9876") == f"x {log.REDACTED} y {log.REDACTED}"
    assert log.scrub("nothing here") == "nothing here"
    # Overlapping secrets are blanked as one run: no part of either survives.
    log.register_secret("zzzz-1111", "1111-yyyy")
    assert log.scrub("zzzz-1111-yyyy") == log.REDACTED


def test_export_items_carry_each_database_as_its_task_environment(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[defaults]\nadmin_secret = "prod/admin"\nfile_mode = 0o640\nskip_admin = true\n\n'
        '[billing]\nslot_secret = "prod/billing"\ngrace_seconds = 5\n',
    )
    (item,) = fleet.export_items(fleet.load_file(path))
    env = {e["Name"]: e["Value"] for e in item["environment"]}
    assert item["name"] == "billing"
    assert env == {
        "ROTATOR_ADMIN_SECRET": "prod/admin",
        "ROTATOR_FILE_MODE": "0640",
        "ROTATOR_SKIP_ADMIN": "true",
        "ROTATOR_SLOT_SECRET": "prod/billing",
        "ROTATOR_GRACE_SECONDS": "5",
    }
    bad = _file(tmp_path, '[x]\nslot_secret = "s"\n')
    with pytest.raises(BadInput, match="database 'x': no admin secret"):
        fleet.export_items(fleet.load_file(bad))


def test_the_command_runs_as_a_module() -> None:
    """`python -m rotator.cli` (the crash tests, the benches): the fleet and adopt commands are both there."""
    import subprocess
    import sys

    for args in (["fleet", "--help"], ["adopt", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "rotator.cli", *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
