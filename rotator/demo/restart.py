"""The demo's deploy command: a rolling restart through the front's control API, one instance at a time.

    python -m rotator.demo.restart --control http://127.0.0.1:PORT

The rotator runs it as ``--deploy-command`` (the ``command`` deployer) with ROTATOR_NEW_SLOT and
ROTATOR_CONFIG_PATH set. For each instance: drain it (no new requests, wait for those in flight), restart it
(it re-reads the config), wait for its own /ready, check that it came back on ROTATOR_NEW_SLOT, put it back
in rotation. Any failure exits non-zero, which fails the deploy step (and the rotator rolls back); an
instance that does not come back stays out of rotation, so it fails no request.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from rotator.demo.front import get_json, wait_ready


def _control(port: int, method: str, path: str) -> dict[str, Any]:
    status, body = get_json(port, path, method=method, timeout=60.0)
    if status != 200:
        raise RuntimeError(f"{method} {path}: status {status}: {body.get('error', body)}")
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rotator.demo.restart")
    parser.add_argument("--control", default=os.environ.get("ROTATOR_DEMO_CONTROL_URL"), required=False)
    parser.add_argument("--ready-timeout", type=float, default=30.0, help="Seconds per instance.")
    args = parser.parse_args(argv)
    if not args.control:
        parser.error("--control (or ROTATOR_DEMO_CONTROL_URL) is required")
    port = urlsplit(args.control).port
    assert port is not None
    want = os.environ.get("ROTATOR_NEW_SLOT")
    try:
        instances = _control(port, "GET", "/state")["instances"]
        for inst in instances:
            i = inst["i"]
            started = time.monotonic()
            drained = _control(port, "POST", f"/drain?i={i}")
            if not drained["drained"]:
                raise RuntimeError(f"instance {i} still had requests in flight after draining")
            pid = _control(port, "POST", f"/restart?i={i}")["pid"]
            body = wait_ready(inst["port"], timeout=args.ready_timeout)
            if want and body.get("slot") != want:
                raise RuntimeError(f"instance {i} came back on slot {body.get('slot')}, not {want}")
            _control(port, "POST", f"/ready?i={i}")
            print(
                f"instance {i}: drained ({drained['inflight_at_drain']} in flight), restarted as pid {pid}, "
                f"ready on slot {body.get('slot')} as {body.get('db_user')} in "
                f"{(time.monotonic() - started) * 1000:.0f} ms",
                flush=True,
            )
    except (OSError, RuntimeError, TimeoutError, KeyError) as exc:
        print(f"rolling restart failed: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
