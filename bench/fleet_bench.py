"""Fleet scale on this machine: `rotator fleet rotate` over 100, 300 and 1,000 databases; wall time, peak RSS, and
where the CPU went (the fleet process, the moto server, everything else: the database servers).

    .venv/bin/python bench/fleet_bench.py [--sizes 100,300,1000] [--mysql-sizes 100,300] [--concurrency 8,32]
                                          [--engines postgres,mysql] [--json]

Set-up per engine: one database with one admin and as many slot-user pairs as the largest fleet (made by the
rotator's own engine code, so they are marked slot users), one slot secret per pair and one shared admin secret
on a moto server of its own (a separate process, so its CPU is counted apart from ours). Each "database" of the
fleet is one slot pair with its own lock name (``rotator:bench:<i>``), rendering its own config file
(templates/db.json.j2), ``--deploy none``. The fleet runs as the real command, in a child process whose peak
RSS (VmHWM) is read at its exit. The shared admin secret is rotated once per run, by the last member.

Everything made (roles, databases, secrets, files) is dropped at the end, the moto server stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DSNS = {
    "postgres": ("ROTATOR_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    "mysql": ("ROTATOR_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/"),
}
TARGET_S_PER_1000 = 120.0
TARGET_RSS_MIB = 300.0
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_MEASURED_FLEET = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as status, open(os.environ["BENCH_PEAK_RSS_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_peak)
sys.argv = ["rotator", "fleet", *sys.argv[1:]]
runpy.run_module("rotator.cli", run_name="__main__")
"""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _db_cpu_seconds(engine: str) -> float:
    """CPU seconds of the database server so far: MariaDB's one process; PostgreSQL's postmaster with its reaped
    backends (cutime/cstime: the fleet's connections are all closed by the end of a run). Every user's load on
    that server is in it, not only ours."""
    total = 0
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        comm = _comm(pid)
        try:
            fields = _stat(pid)
        except OSError:
            continue
        if engine == "postgres" and comm == "postgres" and _comm(fields[1]) != "postgres":
            total += sum(int(v) for v in fields[11:15])
        elif engine == "mysql" and comm in ("mariadbd", "mysqld"):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores, /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_process() -> Iterator[tuple[str, int]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_ENV},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _secrets_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


@contextmanager
def database(engine: str) -> Iterator[Any]:
    """A fresh database and admin on the engine's server (the test harness's, dropped with every role it made)."""
    from tests import harness

    var, default = DEFAULT_DSNS[engine]
    os.environ.setdefault(var, default)
    with ExitStack() as stack:
        if engine == "postgres":
            server: Any = stack.enter_context(harness.pg_server_from_env())
            yield stack.enter_context(harness.pg_env(server))
        else:
            server = stack.enter_context(harness.mysql_server_from_env())
            yield stack.enter_context(harness.mysql_env(server))


def make_pairs(db: Any, count: int) -> list[tuple[str, str, str, str]]:
    """``count`` slot pairs (user A, password A, user B, password B), made as the rotator makes them."""
    from rotator.db import get_engine
    from rotator.db.base import Endpoint, TlsConfig
    from tests.harness import strong_password

    def make(chunk: range) -> list[tuple[str, str, str, str]]:
        session = get_engine(db.engine).admin_session(
            Endpoint(db.host, db.port, db.dbname, TlsConfig("disable")), db.admin_user, db.admin_password
        )
        out = []
        try:
            for i in chunk:
                a, b = db.track(f"{db.prefix}_a{i}"), db.track(f"{db.prefix}_b{i}")
                pa, pb = strong_password(), strong_password()
                session.create_user(a, pa, dbname=db.dbname, grants_from=None)
                session.create_user(b, pb, dbname=db.dbname, grants_from=a)
                out.append((a, pa, b, pb))
        finally:
            session.close()
        return out

    # PostgreSQL's first user creates the shared owner role: make it alone, then the rest on 4 sessions.
    pairs = make(range(1))
    chunks = [range(start, count, 4) for start in range(1, 5)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for part in pool.map(make, chunks):
            pairs += part
    return pairs


def make_secrets(endpoint: str, db: Any, pairs: list[tuple[str, str, str, str]], prefix: str) -> tuple[list[str], str]:
    sm = _secrets_client(endpoint)
    admin = {"username": db.admin_user, "password": db.admin_password, "host": db.host, "port": db.port}
    admin_arn = sm.create_secret(Name=f"{prefix}/admin", SecretString=json.dumps(admin))["ARN"]

    def one(i: int) -> str:
        a, pa, b, pb = pairs[i]
        common = {"host": db.host, "port": db.port, "dbname": db.dbname}
        value = {
            "active_slot": "A",
            "engine": db.engine,
            "A": {"username": a, "password": pa, **common},
            "B": {"username": b, "password": pb, **common},
        }
        return str(sm.create_secret(Name=f"{prefix}/db{i:04d}", SecretString=json.dumps(value))["ARN"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(len(pairs)))), admin_arn


def fleet_file(path: Path, endpoint: str, slot_arns: list[str], admin_arn: str, config_dir: Path) -> Path:
    q = json.dumps
    lines = [
        "[defaults]",
        f"admin_secret = {q(admin_arn)}",
        'region = "us-east-1"',
        f"aws_endpoint_url = {q(endpoint)}",
        'db_tls = "disable"',
        'deploy = "none"',
        *([f"drain_timeout = {float(DRAIN)}"] if DRAIN is not None else []),
        f"template = {q(str(ROOT / 'templates' / 'db.json.j2'))}",
    ]
    for i, arn in enumerate(slot_arns):
        lines += [
            f"[db{i:04d}]",
            f"slot_secret = {q(arn)}",
            f'lock_name = "rotator:bench:{i}"',
            f"config_path = {q(str(config_dir / f'db{i:04d}.json'))}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


PROFILE: str | None = None  # --py-spy DIR: record each fleet run's samples (collapsed stacks) there
DRAIN: str | None = None  # --drain-timeout SECONDS for every database (default: the rotator's)


def run_fleet(engine: str, path: Path, concurrency: int, moto_pid: int, tmp: Path) -> dict[str, Any]:
    peak_file, report_file = tmp / "peak", tmp / "report.json"
    env = {**os.environ, **AWS_ENV, "BENCH_PEAK_RSS_FILE": str(peak_file)}
    moto_before, busy_before, db_before = _cpu_seconds(moto_pid), _machine_busy_seconds(), _db_cpu_seconds(engine)
    usage_before = os.times()
    started = time.perf_counter()
    command = command_tail(path, concurrency, report_file)
    if PROFILE is not None:
        out = Path(PROFILE) / f"{path.stem}-c{concurrency}.txt"
        command = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--gil",
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(out),
        ]
        command += ["--", *command_tail(path, concurrency, report_file)]
    proc = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - started
    usage_after = os.times()
    fleet_cpu = (usage_after.children_user - usage_before.children_user) + (
        usage_after.children_system - usage_before.children_system
    )
    moto_cpu = _cpu_seconds(moto_pid) - moto_before
    busy = _machine_busy_seconds() - busy_before
    db_cpu = _db_cpu_seconds(engine) - db_before
    report = json.loads(report_file.read_text())
    durations = sorted(d["duration_ms"] for d in report["databases"])
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(int(peak_file.read_text().strip()) / 1024, 1),
        "outcomes": report["outcomes"],
        "rotation_median_ms": durations[len(durations) // 2],
        "rotation_p95_ms": durations[int(len(durations) * 0.95)],
        "aws_api_calls": sum(d.get("aws_api_calls", 0) for d in report["databases"]),
        "cpu_s": {
            "fleet": round(fleet_cpu, 1),
            "moto": round(moto_cpu, 1),
            "db": round(db_cpu, 1),
            "rest": round(max(0.0, busy - fleet_cpu - moto_cpu - db_cpu), 1),
        },
    }


def command_tail(path: Path, concurrency: int, report_file: Path) -> list[str]:
    fleet = ["rotate", "--file", str(path), "--concurrency", str(concurrency), "--report-file", str(report_file)]
    return [sys.executable, "-c", _MEASURED_FLEET, *fleet, "--log-json"]


def bench_engine(engine: str, sizes: list[int], concurrencies: list[int]) -> list[dict[str, Any]]:
    from tests.harness import new_name

    rows = []
    with ExitStack() as stack:
        db = stack.enter_context(database(engine))
        endpoint, moto_pid = stack.enter_context(moto_process())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rotator-fleet-bench-")))
        started = time.perf_counter()
        pairs = make_pairs(db, max(sizes))
        slot_arns, admin_arn = make_secrets(endpoint, db, pairs, new_name("bench"))
        print(
            f"  {engine}: {len(pairs)} slot pairs and {len(slot_arns) + 1} secrets made in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        for size in sizes:
            path = fleet_file(tmp / f"fleet-{size}.toml", endpoint, slot_arns[:size], admin_arn, tmp)
            for concurrency in concurrencies:
                row = {"engine": engine, "databases": size, "concurrency": concurrency}
                row |= run_fleet(engine, path, concurrency, moto_pid, tmp)
                rows.append(row)
                print_row(row)
        # The harness drops the database and every role; the moto server (and its secrets) goes with its process.
    return rows


HEADER = (
    f"  {'engine':<9}{'dbs':>6}{'conc':>6}{'wall s':>9}{'ms/db':>8}{'rot p50':>9}{'rot p95':>9}{'RSS MiB':>9}"
    f"{'exit':>6}{'cpu fleet':>11}{'cpu moto':>10}{'cpu db':>8}{'cpu rest':>10}{'SM calls':>10}"
)


def print_row(r: dict[str, Any]) -> None:
    per_db = r["wall_s"] * 1000 / r["databases"]
    cpu = r["cpu_s"]
    print(
        f"  {r['engine']:<9}{r['databases']:>6}{r['concurrency']:>6}{r['wall_s']:>9.1f}{per_db:>8.1f}"
        f"{r['rotation_median_ms']:>9.0f}{r['rotation_p95_ms']:>9.0f}{r['peak_rss_mib']:>9.1f}{r['exit_code']:>6}"
        f"{cpu['fleet']:>11.1f}{cpu['moto']:>10.1f}{cpu['db']:>8.1f}{cpu['rest']:>10.1f}{r['aws_api_calls']:>10}",
        flush=True,
    )


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r["databases"] == 1000:
            ok = r["wall_s"] <= TARGET_S_PER_1000 and r["peak_rss_mib"] <= TARGET_RSS_MIB and r["exit_code"] == 0
            out.append(
                f"  {r['engine']} 1,000 databases at concurrency {r['concurrency']}: {r['wall_s']:.0f} s "
                f"(target <= {TARGET_S_PER_1000:.0f}), {r['peak_rss_mib']:.0f} MiB (target <= {TARGET_RSS_MIB:.0f}): "
                f"{'within' if ok else 'OVER'}"
            )
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault((r["engine"], r["concurrency"]), []).append(r)
    for (engine, concurrency), group in by_key.items():
        group.sort(key=lambda r: r["databases"])
        if len(group) > 1:
            per = [r["wall_s"] * 1000 / r["databases"] for r in group]
            out.append(
                f"  {engine} concurrency {concurrency}: ms per database "
                + " -> ".join(f"{p:.0f} ({r['databases']})" for p, r in zip(per, group, strict=True))
                + f"; largest/smallest {per[-1] / per[0]:.2f} (1.00 = linear)"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,300,1000", help="PostgreSQL fleet sizes")
    parser.add_argument("--mysql-sizes", default="100,300", help="MariaDB/MySQL fleet sizes")
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--engines", default="postgres,mysql")
    parser.add_argument("--json", action="store_true", help="Also print the rows as one JSON line.")
    parser.add_argument("--drain-timeout", metavar="SECONDS", help="drain_timeout of every database (0: no drain).")
    parser.add_argument("--py-spy", metavar="DIR", help="Profile each fleet run with py-spy (collapsed stacks in DIR).")
    args = parser.parse_args()
    global PROFILE, DRAIN
    PROFILE, DRAIN = args.py_spy, args.drain_timeout

    from rotator import log

    log.configure(json=True, level="critical", stream=open(os.devnull, "w"))

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    print(
        f"fleet benchmark: python {platform.python_version()}, {os.cpu_count()} CPUs; `rotator fleet rotate` as a "
        "command, --deploy none, one moto server process; cpu = CPU seconds (fleet process, moto, rest of the "
        "database server (all its users), rest of the machine (the other engineers' work))",
        flush=True,
    )
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        sizes = ints(args.sizes if engine == "postgres" else args.mysql_sizes)
        rows += bench_engine(engine, sizes, ints(args.concurrency))
    print("\n".join(verdict(rows)))
    if args.json:
        print(json.dumps({"event": "fleet_bench", "rows": rows}))


if __name__ == "__main__":
    main()
