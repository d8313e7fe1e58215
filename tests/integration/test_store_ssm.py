"""The SSM Parameter Store store on the moto server: SecureStrings under the configured KMS key, the layout
plain readers and the loader rely on, names and ARNs, call counts, retries (the generic protocol tests run on
every store in test_store_protocol.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rotator.aws import AwsClients
from rotator.client import CredentialLoader
from rotator.errors import BadInput
from rotator.store.factory import open_store
from rotator.store.ssm import SsmStore, parameter_name
from tests.aws_faults import fault_proxy
from tests.harness import AwsEnv, strong_password

pytestmark = pytest.mark.integration


def slots(password: str, active: str = "A") -> str:
    creds = {"username": "app_a", "password": password, "host": "db", "port": "5432", "dbname": "app"}
    return json.dumps({"active_slot": active, "engine": "postgres", "A": creds, "B": dict(creds, username="app_b")})


@pytest.fixture
def parameter(aws: AwsEnv) -> Iterator[tuple[str, str]]:
    name = f"/rcm/test/{aws.prefix}/endpoints/e1/slots"
    value = slots(strong_password())
    ssm = aws.client("ssm")
    ssm.put_parameter(Name=name, Value=value, Type="SecureString")
    yield name, value
    for n in (name, name + ".pending"):
        try:
            ssm.delete_parameter(Name=n)
        except ssm.exceptions.ParameterNotFound:
            pass


def history(aws: AwsEnv, name: str) -> list[dict[str, Any]]:
    try:
        return list(aws.client("ssm").get_parameter_history(Name=name, WithDecryption=True)["Parameters"])
    except aws.client("ssm").exceptions.ParameterNotFound:
        return []


def test_every_write_is_a_securestring_under_the_configured_key(aws: AwsEnv, parameter: tuple[str, str]) -> None:
    name, _ = parameter
    store = open_store("ssm:alias/rotator-test", aws=AwsClients(region=aws.region, endpoint_url=aws.endpoint_url))
    assert isinstance(store, SsmStore) and store.kms_key == "alias/rotator-test"
    store.read(name)
    token = str(uuid.uuid4())
    store.put_pending(name, slots(strong_password()), token)
    (pending,) = history(aws, name + ".pending")
    assert (pending["Type"], pending["KeyId"], pending["Description"]) == (
        "SecureString",
        "alias/rotator-test",
        f"rotator pending {token}",
    )
    store.promote(name, token)
    latest = history(aws, name)[-1]
    assert (latest["Type"], latest["KeyId"], latest["Version"]) == ("SecureString", "alias/rotator-test", 2)
    assert history(aws, name + ".pending") == []
    default = open_store("ssm", aws=AwsClients(region=aws.region, endpoint_url=aws.endpoint_url))
    assert isinstance(default, SsmStore) and default.kms_key == "alias/aws/ssm"


def test_calls_per_operation(aws: AwsEnv, parameter: tuple[str, str]) -> None:
    name, _ = parameter
    clients = AwsClients(region=aws.region, endpoint_url=aws.endpoint_url)
    store = SsmStore(clients.client("ssm"))
    store.read(name)
    assert dict(store.calls) == {"GetParameter": 1, "GetParameterHistory": 1}
    token, new = str(uuid.uuid4()), slots(strong_password())
    store.put_pending(name, new, token)
    store.put_pending(name, new, token)  # the same write again: known, no call
    store.promote(name, token)
    store.discard_pending(name)  # known: nothing pending, no call
    assert dict(store.calls) == {
        "GetParameter": 1,
        "GetParameterHistory": 1,
        "PutParameter": 2,  # the pending value, then the promotion
        "DeleteParameter": 1,
    }
    assert clients.api_calls == store.api_calls == 5


def test_the_loader_reads_the_current_value_never_the_pending_one(aws: AwsEnv, parameter: tuple[str, str]) -> None:
    name, value = parameter
    loader = CredentialLoader.from_ssm(name, endpoint_url=aws.endpoint_url, region=aws.region)
    store = SsmStore(aws.client("ssm"))
    store.read(name)
    new_password, token = strong_password(), str(uuid.uuid4())
    store.put_pending(name, slots(new_password, active="B"), token)
    creds = loader.get()
    assert creds.password == json.loads(value)["A"]["password"] and creds.slot == "A"
    store.promote(name, token)
    creds = CredentialLoader.from_ssm(name, endpoint_url=aws.endpoint_url, region=aws.region).get()
    assert creds.slot == "B" and creds.version == "2"


def test_a_parameter_arn_is_the_same_parameter(aws: AwsEnv, parameter: tuple[str, str]) -> None:
    name, value = parameter
    arn = aws.client("ssm").get_parameter(Name=name)["Parameter"]["ARN"]
    assert parameter_name(arn) == name
    assert parameter_name("arn:aws:ssm:us-east-1:123456789012:parameter/plain") == "plain"
    store = SsmStore(aws.client("ssm"))
    assert json.loads(store.read(arn).current.value) == json.loads(value)
    token = str(uuid.uuid4())
    store.put_pending(arn, slots(strong_password()), token)
    store.promote(arn, token)
    assert [p["Version"] for p in history(aws, name)] == [1, 2]


def test_a_plain_string_parameter_becomes_a_securestring_on_promotion(aws: AwsEnv) -> None:
    name = f"/rcm/test/{aws.prefix}/plain"
    ssm = aws.client("ssm")
    ssm.put_parameter(Name=name, Value=slots(strong_password()), Type="String")
    try:
        store = SsmStore(ssm)
        store.read(name)
        token = str(uuid.uuid4())
        store.put_pending(name, slots(strong_password()), token)
        store.promote(name, token)
        assert history(aws, name)[-1]["Type"] == "SecureString"
    finally:
        ssm.delete_parameter(Name=name)


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
def test_a_fault_on_the_first_call_of_every_operation_is_survived(
    aws: AwsEnv, parameter: tuple[str, str], fault: Any
) -> None:
    name, _ = parameter
    new, token = slots(strong_password()), str(uuid.uuid4())
    with fault_proxy(aws.endpoint_url, {"*": [fault]}) as proxy:
        clients = AwsClients(region=aws.region, endpoint_url=proxy.url)
        store = SsmStore(clients.client("ssm"), backoff_base=0.01)
        store.read(name)
        store.put_pending(name, new, token)
        store.promote(name, token)
    operations = ["GetParameter", "GetParameterHistory", "PutParameter", "DeleteParameter"]
    assert proxy.faulted == {f"ssm.{op}": 1 for op in operations}
    assert json.loads(aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]) == (
        json.loads(new)
    )
    assert history(aws, name + ".pending") == []


def test_an_unknown_store_is_bad_input() -> None:
    with pytest.raises(BadInput, match="ssm"):
        open_store("parameterstore")
