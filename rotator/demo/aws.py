"""The AWS side of the demo: Secrets Manager on a moto server in this process, and the two secrets on it.

Nothing here can reach real AWS: every client is given the moto endpoint and dummy credentials, and the
rotator subprocess gets the same (its environment is built from scratch, see :mod:`rotator.demo.rotations`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3

from rotator.demo.database import DemoDatabase
from rotator.secrets import Slot

REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"}  # moto accepts any


@dataclass(frozen=True)
class MotoSide:
    endpoint_url: str

    def client(self) -> Any:
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def environment(self) -> dict[str, str]:
        """What a process needs to talk to this moto server and nothing else."""
        return {
            **DUMMY_CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@dataclass(frozen=True)
class DemoSecrets:
    slot_arn: str
    admin_arn: str
    slot_name: str
    admin_name: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[MotoSide]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoSide(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def slot_secret_value(db: DemoDatabase, active: str = "A") -> dict[str, Any]:
    slots: dict[str, Any] = {
        name: {
            "username": login.username,
            "password": login.password,
            "host": login.host,
            "port": login.port,
            "dbname": login.dbname,
        }
        for name, login in db.slots.items()
    }
    return {"active_slot": active, "engine": db.engine, **slots}


@contextlib.contextmanager
def demo_secrets(moto: MotoSide, db: DemoDatabase, prefix: str) -> Iterator[DemoSecrets]:
    """The slot secret (slot A active) and the admin secret, in the shapes the rotator reads; deleted on exit."""
    sm = moto.client()
    admin = {"username": db.admin.username, "password": db.admin.password, "host": db.host, "port": db.port}
    slot_name, admin_name = f"{prefix}/app-db", f"{prefix}/admin"
    slot_arn = sm.create_secret(Name=slot_name, SecretString=json.dumps(slot_secret_value(db)))["ARN"]
    admin_arn = sm.create_secret(Name=admin_name, SecretString=json.dumps(admin))["ARN"]
    try:
        yield DemoSecrets(slot_arn, admin_arn, slot_name, admin_name)
    finally:
        for arn in (slot_arn, admin_arn):
            with contextlib.suppress(Exception):
                sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def live_secret_value(db: DemoDatabase, slot: Slot = "A") -> dict[str, Any]:
    """The app's own secret, as a team on ECS has it before adopting the rotator: the RDS format plus seed 002's
    ``database``, and a key of the app's own (kept by every rotation)."""
    login = db.slots[slot]
    return {
        "engine": db.engine,
        "host": login.host,
        "port": login.port,
        "username": login.username,
        "password": login.password,
        "dbname": login.dbname,
        "database": login.dbname,
        "ssl_cert_path": "/etc/ssl/certs/rds-ca-root.pem",
    }


@contextlib.contextmanager
def demo_live_secret(moto: MotoSide, db: DemoDatabase, prefix: str) -> Iterator[tuple[str, str]]:
    """The live secret (--live-secret), on slot A: (arn, name); deleted on exit."""
    sm = moto.client()
    name = f"{prefix}/app-live"
    arn = sm.create_secret(Name=name, SecretString=json.dumps(live_secret_value(db)))["ARN"]
    try:
        yield arn, name
    finally:
        with contextlib.suppress(Exception):
            sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def read_secret(moto: MotoSide, arn: str) -> dict[str, Any]:
    # Name the stage: moto answers a bare get_secret_value with the version the secret was created with.
    response = moto.client().get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    value: dict[str, Any] = json.loads(response["SecretString"])
    return value
