"""Cached-read cost: rotator.client's CredentialLoader.get() next to aws-secretsmanager-caching's
SecretCache.get_secret_string(), in the same process and run, against a moto server started here.

    .venv/bin/python bench/client_bench.py [--runs 11] [--reads 20000]

Each run times ``reads`` back-to-back cached reads with time.perf_counter_ns(); runs of the two libraries
alternate so that machine noise hits both alike. Figures are medians over the runs, in ns per read, and include
the same Python ``for`` loop overhead (printed too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECRET = {
    "active_slot": "A",
    "A": {"username": "app_a", "password": "bench-password-a", "host": "db", "port": 5432, "dbname": "app"},
    "B": {"username": "app_b", "password": "bench-password-b", "host": "db", "port": 5432, "dbname": "app"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_reads(read: Callable[[], Any], reads: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(reads):
        read()
    return (time.perf_counter_ns() - start) / reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args()

    for var, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(var, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3
    import structlog
    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig
    from moto.server import ThreadedMotoServer

    from rotator.client import CredentialLoader

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # Two sessions with a call counter each: the timed reads must all be cache hits.
        calls = {"ours": 0, "theirs": 0}

        def counting_session(name: str) -> boto3.Session:
            session = boto3.Session(region_name="us-east-1")

            def count(**_: Any) -> None:
                calls[name] += 1

            session.events.register("before-call.secrets-manager.GetSecretValue", count)
            return session

        client = counting_session("theirs").client("secretsmanager", endpoint_url=endpoint)
        arn = client.create_secret(Name="bench/db", SecretString=json.dumps(SECRET))["ARN"]

        ours = CredentialLoader.from_secret(arn, endpoint_url=endpoint, session=counting_session("ours"), ttl=3600)
        theirs = SecretCache(config=SecretCacheConfig(), client=client)
        assert ours.get().password == "bench-password-a"
        assert json.loads(theirs.get_secret_string(arn))["A"]["password"] == "bench-password-a"

        def theirs_read() -> Any:
            return theirs.get_secret_string(arn)

        def nothing() -> None:
            return None

        warm_calls = dict(calls)
        results: dict[str, list[float]] = {"ours": [], "theirs": [], "loop": []}
        for _ in range(args.runs):
            results["ours"].append(time_reads(ours.get, args.reads))
            results["theirs"].append(time_reads(theirs_read, args.reads))
            results["loop"].append(time_reads(nothing, args.reads))
        api_calls = {name: calls[name] - warm_calls[name] for name in calls}
    finally:
        server.stop()

    med = {name: statistics.median(values) for name, values in results.items()}
    print(f"python {platform.python_version()} on {platform.machine()}, {args.runs} runs x {args.reads} cached reads")
    print(f"{'library':58} {'median ns/op':>12} {'min':>9} {'max':>9}")
    rows = [
        ("rotator.client CredentialLoader.get()", "ours"),
        ("aws-secretsmanager-caching SecretCache.get_secret_string()", "theirs"),
        ("(empty call in the same loop, included in both)", "loop"),
    ]
    for label, key in rows:
        print(f"{label:58} {med[key]:12.0f} {min(results[key]):9.0f} {max(results[key]):9.0f}")
    print(f"ratio: aws-secretsmanager-caching / rotator.client = {med['theirs'] / med['ours']:.0f}x")
    print(f"GetSecretValue calls during the timed reads: ours {api_calls['ours']}, theirs {api_calls['theirs']}")


if __name__ == "__main__":
    main()
