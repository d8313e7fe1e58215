"""How the commonest ECS app reads its database credentials: seed 002's ``get_database_credentials``, as written.

One ``GetSecretValue`` of a plain ``{username, password, host, port, database}`` secret, cached with
``@lru_cache`` for the life of the process: the app picks up new credentials only when it is restarted. The
rotator's live secret (``--live-secret``) is that secret; the ``command`` deployer restarts the instances one by
one after it has pointed the live secret at the new slot. The demo's client talks only to its moto server.
"""

from __future__ import annotations

import json
from functools import lru_cache

import boto3

from rotator.demo.aws import DUMMY_CREDENTIALS


@lru_cache(maxsize=8)
def get_database_credentials(secret_name: str, region: str, endpoint_url: str) -> dict[str, str]:
    client = boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    # Seed 002 names no stage (AWS then answers AWSCURRENT); moto answers the version the secret was created
    # with unless the stage is named, so name it.
    data = json.loads(client.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")["SecretString"])
    values = {k: str(data[k]) for k in ("username", "password", "host", "port", "database")}
    values["dbname"] = values["database"]
    return values


def slot_of(username: str, slot_users: str) -> str:
    """Which slot ``username`` is, from ``A=user_a,B=user_b`` (names only): lets an instance say its slot."""
    pairs = (item.partition("=") for item in slot_users.split(",") if item)
    return next((slot for slot, _, user in pairs if user == username), "?")
