"""The Secrets Manager store on a real moto HTTP server: labels, idempotence, call counts, retries, no leaks."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import boto3
import pytest
import structlog
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from rotator import log
from rotator.aws import AwsClients, map_client_error, sanitize_arn
from rotator.errors import SecretNotFound, StoreError
from rotator.store.base import CURRENT, PENDING
from rotator.store.factory import open_store
from rotator.store.secretsmanager import SecretsManagerStore
from tests.aws_faults import Fault, fault_proxy
from tests.harness import AwsEnv, strong_password

pytestmark = pytest.mark.integration


def slot_secret(password: str) -> str:
    return json.dumps({"active_slot": "A", "A": {"username": "app_a", "password": password}})


def stages(aws: AwsEnv, arn: str) -> dict[str, list[str]]:
    """Labelled versions only: moto also lists unlabelled ones with [], AWS deprecates them."""
    described = aws.client("secretsmanager").describe_secret(SecretId=arn)
    return {vid: sorted(labels) for vid, labels in described["VersionIdsToStages"].items() if labels}


def holder(aws: AwsEnv, arn: str, stage: str) -> list[str]:
    return [vid for vid, labels in stages(aws, arn).items() if stage in labels]


@pytest.fixture
def store(aws: AwsEnv) -> SecretsManagerStore:
    return SecretsManagerStore(aws.client("secretsmanager"), backoff_base=0, backoff_max=0)


@pytest.fixture
def secret(aws: AwsEnv) -> tuple[str, str]:
    value = slot_secret(strong_password())
    return aws.create_secret("slots", value), value


def token() -> str:
    return str(uuid.uuid4())


def test_read_returns_current_and_no_pending_in_two_calls(store: SecretsManagerStore, secret: tuple[str, str]) -> None:
    arn, value = secret
    versions = store.read(arn)
    assert versions.current.value == value
    assert versions.pending is None and versions.owning_service is None
    assert dict(store.calls) == {"GetSecretValue": 1, "DescribeSecret": 1}  # no pending label: not read


def test_a_secret_owned_by_rds_reads_as_owned(aws: AwsEnv, store: SecretsManagerStore) -> None:
    """Real: moto's DescribeSecret answers OwningService from the aws:secretsmanager:owningService tag, the tag RDS
    puts on the master-password secrets it manages (moto's own RDS ManageMasterUserPassword makes its secrets so).
    Not real: the test sets that tag itself; AWS refuses user tags with the aws: prefix."""
    sm = aws.client("secretsmanager")
    value = json.dumps({"username": "master", "password": strong_password()})
    arn = sm.create_secret(
        Name=f"{aws.prefix}/rds-master",
        SecretString=value,
        Tags=[{"Key": "aws:secretsmanager:owningService", "Value": "rds"}],
    )["ARN"]
    aws.secret_ids.append(arn)
    assert sm.describe_secret(SecretId=arn)["OwningService"] == "rds"
    versions = store.read(arn)
    assert versions.owning_service == "rds" and versions.current.value == value


def test_a_second_read_reads_current_again_and_pending_only_when_unseen(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    """Read again (the read under the lock), a secret's AWSCURRENT is read itself, never taken from DescribeSecret's
    labels; AWSPENDING's value is read only for a version this store has not seen (a version's value never
    changes). The answers are the ones a fresh store gives."""
    arn, value = secret
    first = store.read(arn)
    store.calls.clear()
    assert store.read(arn) == first
    assert dict(store.calls) == {"GetSecretValue": 1, "DescribeSecret": 1}

    # Another writer (not this store) adds a pending version, then makes it current.
    sm = aws.client("secretsmanager")
    pending_value, tok = slot_secret(strong_password()), token()
    sm.put_secret_value(SecretId=arn, SecretString=pending_value, ClientRequestToken=tok, VersionStages=[PENDING])
    store.calls.clear()
    again = store.read(arn)
    assert again.current == first.current and again.pending is not None and again.pending.value == pending_value
    assert dict(store.calls) == {"DescribeSecret": 1, "GetSecretValue": 2}  # AWSCURRENT, and AWSPENDING unseen
    sm.update_secret_version_stage(
        SecretId=arn, VersionStage=CURRENT, MoveToVersionId=tok, RemoveFromVersionId=first.current.version_id
    )
    store.calls.clear()
    moved = store.read(arn)
    assert dict(store.calls) == {"GetSecretValue": 1, "DescribeSecret": 1}  # AWSCURRENT, read itself
    fresh = SecretsManagerStore(aws.client("secretsmanager")).read(arn)
    assert moved == fresh and moved.current.value == pending_value and moved.pending is None
    assert value != pending_value


def test_read_many_reads_each_secret_as_read_does(aws: AwsEnv, store: SecretsManagerStore) -> None:
    one, two = aws.create_secret("one", slot_secret(strong_password())), aws.create_secret("two", "{}")
    both = store.read_many(one, two)
    fresh = SecretsManagerStore(aws.client("secretsmanager"))
    assert both == [fresh.read(one), fresh.read(two)]
    assert dict(store.calls) == {"GetSecretValue": 2, "DescribeSecret": 2}
    with pytest.raises(SecretNotFound):  # the first failure in the order given, every read having ended
        store.read_many(one, f"{one}-missing")


def test_put_pending_writes_pending_and_keeps_current(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    arn, value = secret
    current_id = store.read(arn).current.version_id
    new_value, tok = slot_secret(strong_password()), token()

    assert store.put_pending(arn, new_value, tok) == tok

    assert stages(aws, arn) == {current_id: [CURRENT], tok: [PENDING]}
    assert store.calls["PutSecretValue"] == 1
    versions = store.read(arn)
    assert versions.current.value == value
    assert versions.pending is not None
    assert versions.pending.version_id == tok
    assert versions.pending.value == new_value


def test_put_pending_twice_with_the_same_token_makes_one_version(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    arn, _ = secret
    new_value, tok = slot_secret(strong_password()), token()
    store.put_pending(arn, new_value, tok)
    store.put_pending(arn, new_value, tok)
    # A fresh store (a re-run after a crash) sends the same request again.
    SecretsManagerStore(aws.client("secretsmanager")).put_pending(arn, new_value, tok)

    listed = aws.client("secretsmanager").list_secret_version_ids(SecretId=arn)["Versions"]
    assert len(listed) == 2
    assert holder(aws, arn, PENDING) == [tok]
    assert store.calls["PutSecretValue"] == 2


def test_reused_token_with_another_value_is_refused(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    arn, _ = secret
    first, second, tok = strong_password(), strong_password(), token()
    store.put_pending(arn, slot_secret(first), tok)

    with pytest.raises(StoreError) as raised:
        store.put_pending(arn, slot_secret(second), tok)
    # Another process that has read the secret refuses too.
    other = SecretsManagerStore(aws.client("secretsmanager"))
    other.read(arn)
    with pytest.raises(StoreError):
        other.put_pending(arn, slot_secret(second), tok)

    assert first not in str(raised.value) and second not in str(raised.value)
    assert "new token" in str(raised.value)
    pending = store.read(arn).pending
    assert pending is not None and pending.value == slot_secret(first)


def test_promote_moves_current_and_clears_pending(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    arn, _ = secret
    old_id = store.read(arn).current.version_id
    new_value, tok = slot_secret(strong_password()), token()
    store.put_pending(arn, new_value, tok)
    before = store.api_calls

    store.promote(arn, tok)

    assert store.api_calls - before == 2  # move AWSCURRENT, remove AWSPENDING; no DescribeSecret
    assert stages(aws, arn) == {old_id: ["AWSPREVIOUS"], tok: [CURRENT]}
    versions = store.read(arn)
    assert versions.current.value == new_value
    assert versions.pending is None


def test_second_promotion_does_nothing(aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]) -> None:
    arn, _ = secret
    store.read(arn)
    tok = token()
    store.put_pending(arn, slot_secret(strong_password()), tok)
    store.promote(arn, tok)
    after_first = stages(aws, arn)
    before = store.api_calls

    store.promote(arn, tok)
    assert store.api_calls == before  # known to be done: not a single call

    fresh = SecretsManagerStore(aws.client("secretsmanager"))
    fresh.promote(arn, tok)
    assert dict(fresh.calls) == {"DescribeSecret": 1}  # looks, writes nothing
    assert stages(aws, arn) == after_first


def test_promote_without_a_prior_read_describes_once(aws: AwsEnv, secret: tuple[str, str]) -> None:
    arn, _ = secret
    writer = SecretsManagerStore(aws.client("secretsmanager"))
    tok = token()
    writer.put_pending(arn, slot_secret(strong_password()), tok)

    promoter = SecretsManagerStore(aws.client("secretsmanager"))
    promoter.promote(arn, tok)

    assert dict(promoter.calls) == {"DescribeSecret": 1, "UpdateSecretVersionStage": 2}
    assert holder(aws, arn, CURRENT) == [tok]
    assert holder(aws, arn, PENDING) == []


def test_promote_heals_stale_memory(aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]) -> None:
    arn, _ = secret
    store.read(arn)
    tok = token()
    store.put_pending(arn, slot_secret(strong_password()), tok)
    # Someone else finishes the promotion behind this store's back (or a retried call already succeeded).
    SecretsManagerStore(aws.client("secretsmanager")).promote(arn, tok)

    store.promote(arn, tok)  # its memory says AWSCURRENT is on the old version: AWS refuses, it re-reads

    assert holder(aws, arn, CURRENT) == [tok]
    assert holder(aws, arn, PENDING) == []


def test_an_interrupted_promotion_reads_as_no_pending_and_finishes(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    arn, _ = secret
    old_id = store.read(arn).current.version_id
    new_value, tok = slot_secret(strong_password()), token()
    store.put_pending(arn, new_value, tok)
    # The crash: AWSCURRENT moved, AWSPENDING not yet removed.
    aws.client("secretsmanager").update_secret_version_stage(
        SecretId=arn, VersionStage=CURRENT, MoveToVersionId=tok, RemoveFromVersionId=old_id
    )

    after_crash = SecretsManagerStore(aws.client("secretsmanager"))
    versions = after_crash.read(arn)
    assert versions.current.value == new_value
    assert versions.pending is None
    # The current version carries AWSPENDING too: no second GetSecretValue.
    assert dict(after_crash.calls) == {"GetSecretValue": 1, "DescribeSecret": 1}

    after_crash.promote(arn, tok)
    assert stages(aws, arn)[tok] == [CURRENT]


def test_discard_pending_removes_the_label(aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]) -> None:
    arn, value = secret
    current_id = store.read(arn).current.version_id
    store.put_pending(arn, slot_secret(strong_password()), token())
    before = store.api_calls

    store.discard_pending(arn)
    assert store.api_calls - before == 1
    assert stages(aws, arn) == {current_id: [CURRENT]}

    store.discard_pending(arn)  # nothing pending: nothing to do
    assert store.api_calls - before == 1
    fresh = SecretsManagerStore(aws.client("secretsmanager"))
    fresh.discard_pending(arn)
    assert dict(fresh.calls) == {"DescribeSecret": 1}
    assert fresh.read(arn).current.value == value


def test_put_pending_again_after_discard_labels_the_version_again(
    aws: AwsEnv, store: SecretsManagerStore, secret: tuple[str, str]
) -> None:
    arn, _ = secret
    store.read(arn)
    new_value, tok = slot_secret(strong_password()), token()
    store.put_pending(arn, new_value, tok)
    store.discard_pending(arn)

    assert store.put_pending(arn, new_value, tok) == tok

    assert holder(aws, arn, PENDING) == [tok]
    pending = store.read(arn).pending
    assert pending is not None and pending.value == new_value


def test_missing_secret_names_the_secret_and_the_fix(aws: AwsEnv, store: SecretsManagerStore) -> None:
    name = f"{aws.prefix}/does-not-exist"
    with pytest.raises(SecretNotFound) as raised:
        store.read(name)
    message = str(raised.value)
    assert name in message
    assert "--slot-secret" in message and "region" in message
    assert "\n" not in message


def test_aws_clients_count_every_call_and_honour_aws_endpoint_url(aws: AwsEnv, secret: tuple[str, str]) -> None:
    arn, value = secret
    # No endpoint_url: boto3 takes AWS_ENDPOINT_URL, which the moto_server fixture has set.
    clients = AwsClients(region=aws.region)
    store = open_store("secretsmanager", aws=clients)
    tok = token()

    assert store.read(arn).current.value == value
    store.put_pending(arn, slot_secret(strong_password()), tok)
    store.promote(arn, tok)

    assert clients.calls == {
        "secretsmanager.GetSecretValue": 1,
        "secretsmanager.DescribeSecret": 1,
        "secretsmanager.PutSecretValue": 1,
        "secretsmanager.UpdateSecretVersionStage": 2,
    }
    assert clients.api_calls == store.api_calls == 5
    retries = clients.config.retries  # type: ignore[attr-defined]  # set at runtime, not in the stubs
    assert retries == {"mode": "standard", "total_max_attempts": 1}


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
def test_a_fault_on_the_first_call_of_every_operation_is_survived(
    aws: AwsEnv, secret: tuple[str, str], fault: Fault
) -> None:
    """The fault proxy answers a throttle (HTTP 400) or a 503 to the first GetSecretValue, PutSecretValue,
    DescribeSecret and UpdateSecretVersionStage, instead of moto."""
    arn, value = secret
    new = slot_secret(strong_password())
    tok = token()
    with fault_proxy(aws.endpoint_url, {"*": [fault]}) as proxy:
        clients = AwsClients(region=aws.region, endpoint_url=proxy.url)
        store = SecretsManagerStore(clients.secretsmanager(), backoff_base=0.01)
        assert store.read(arn).current.value == value
        store.put_pending(arn, new, tok)
        fresh = SecretsManagerStore(clients.secretsmanager(), backoff_base=0.01)  # knows no labels: describes
        fresh.promote(arn, tok)
    operations = ["GetSecretValue", "PutSecretValue", "DescribeSecret", "UpdateSecretVersionStage"]
    assert proxy.faulted == {f"secretsmanager.{op}": 1 for op in operations}
    assert holder(aws, arn, CURRENT) == [tok] and holder(aws, arn, PENDING) == []
    # Logical calls counted once by the store; every attempt counted by AwsClients (what the quota sees).
    assert store.api_calls + fresh.api_calls + len(operations) == clients.api_calls


def test_a_label_move_whose_answer_was_lost_converges(aws: AwsEnv, secret: tuple[str, str]) -> None:
    """The move is done but its answer is a 503 ("lost"): the retry is refused (the label has moved already), the
    store re-reads the labels once and finds the work done."""
    arn, _ = secret
    tok = token()
    with fault_proxy(aws.endpoint_url, {"secretsmanager.UpdateSecretVersionStage": ["lost"]}) as proxy:
        store = SecretsManagerStore(
            AwsClients(region=aws.region, endpoint_url=proxy.url).secretsmanager(), backoff_base=0.01
        )
        store.read(arn)
        store.put_pending(arn, slot_secret(strong_password()), tok)
        store.promote(arn, tok)
    assert proxy.faulted == {"secretsmanager.UpdateSecretVersionStage": 1}
    assert holder(aws, arn, CURRENT) == [tok] and holder(aws, arn, PENDING) == []


def test_no_password_reaches_the_logs(aws: AwsEnv, secret: tuple[str, str]) -> None:
    arn, _ = secret
    buf = io.StringIO()
    log.configure(json=True, level="debug", stream=buf)
    try:
        store = SecretsManagerStore(aws.client("secretsmanager"))
        logger = log.get_logger("test")
        versions = store.read(arn)
        new_password = strong_password()
        tok = token()
        store.put_pending(arn, new_password, tok)
        store.promote(arn, tok)
        # Careless callers: values in events and in exception text are redacted all the same.
        logger.info("read", detail=versions.current.value, versions=repr(versions))
        logger.info("wrote", detail=f"new one is {new_password}")
        try:
            store.put_pending(arn, strong_password(), tok)
        except StoreError:
            logger.exception("refused")
        old_password = json.loads(versions.current.value)["A"]["password"]
        output = buf.getvalue()
    finally:
        structlog.reset_defaults()
    assert output.count("\n") >= 3
    assert "[REDACTED]" in output
    assert "store.promote" in output and "secret_id" in output
    assert new_password not in output
    assert old_password not in output


# -- retries: moto cannot throttle on demand, so these use botocore's Stubber (and one tiny fake client) -------


@pytest.fixture
def stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    return client, Stubber(client)


def current_response(value: str, version_id: str) -> dict[str, Any]:
    return {"ARN": ARN, "Name": "db", "VersionId": version_id, "SecretString": value, "VersionStages": [CURRENT]}


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
DENIED = (
    "User: arn:aws:sts::123456789012:assumed-role/task/x is not authorized to perform: "
    f"secretsmanager:GetSecretValue on resource: {ARN} because no identity-based policy allows it"
)


def test_throttling_and_5xx_are_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    vid = str(uuid.uuid4())
    stub.add_client_error("get_secret_value", "ThrottlingException", http_status_code=400)
    stub.add_client_error("get_secret_value", "InternalServiceError", http_status_code=500)
    stub.add_response("get_secret_value", current_response("s3cr3t-value", vid))
    stub.add_response("describe_secret", {"ARN": ARN, "Name": "db", "VersionIdsToStages": {vid: [CURRENT]}})
    sleeps: list[float] = []
    store = SecretsManagerStore(client, max_attempts=3, backoff_base=0.01, sleep=sleeps.append)

    with stub:
        versions = store.read(ARN)

    stub.assert_no_pending_responses()
    assert versions.current.value == "s3cr3t-value" and versions.pending is None
    assert len(sleeps) == 2
    assert store.api_calls == 2  # logical calls: the retries are not counted again


def test_throttling_gives_up_after_max_attempts(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    for _ in range(3):
        stub.add_client_error("get_secret_value", "TooManyRequestsException", http_status_code=400)
    sleeps: list[float] = []
    store = SecretsManagerStore(client, max_attempts=3, sleep=sleeps.append)

    with stub, pytest.raises(StoreError, match="throttled after retries"):
        store.read(ARN)
    assert len(sleeps) == 2


def test_access_denied_is_not_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error("get_secret_value", "AccessDeniedException", DENIED, http_status_code=400)
    stub.add_response("get_secret_value", current_response("never-read", str(uuid.uuid4())))
    sleeps: list[float] = []
    store = SecretsManagerStore(client, max_attempts=5, sleep=sleeps.append)

    with stub, pytest.raises(StoreError) as raised:
        store.read(ARN)

    assert sleeps == []
    with pytest.raises(AssertionError):
        stub.assert_no_pending_responses()  # the second response was never asked for
    message = str(raised.value)
    assert "secretsmanager:GetSecretValue" in message
    assert "123456789012" not in message and "****9012" in message


class FlakyNetworkClient:
    """A tiny fake: the Stubber cannot raise connection errors."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    def get_secret_value(self, **params: Any) -> dict[str, Any]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com/")
        # AWSPENDING on the current version: read() needs no second GetSecretValue.
        return current_response("s3cr3t-value", "v1") | {"VersionStages": [CURRENT, PENDING]}

    def describe_secret(self, **params: Any) -> dict[str, Any]:
        return {"ARN": ARN, "Name": "db", "VersionIdsToStages": {"v1": [CURRENT, PENDING]}}


def test_connection_errors_are_retried_then_reported_with_the_fix() -> None:
    flaky = FlakyNetworkClient(failures=1)
    assert SecretsManagerStore(flaky, sleep=lambda _: None).read(ARN).current.value == "s3cr3t-value"
    assert flaky.attempts == 2

    down = FlakyNetworkClient(failures=99)
    with pytest.raises(StoreError, match=r"cannot reach AWS.*AWS_ENDPOINT_URL"):
        SecretsManagerStore(down, max_attempts=4, sleep=lambda _: None).read(ARN)
    assert down.attempts == 4


def test_resource_exists_is_success_only_for_the_same_value(stubbed: tuple[Any, Stubber]) -> None:
    # Real AWS answers ResourceExists when a token's version exists already (moto does not: it overwrites).
    client, stub = stubbed
    tok = str(uuid.uuid4())
    exists = "You can't use ClientRequestToken because that value is already in use for a version of secret"
    stored = current_response("the-stored-value", tok) | {"VersionStages": [PENDING]}
    stub.add_client_error("put_secret_value", "ResourceExistsException", exists, http_status_code=400)
    stub.add_response("get_secret_value", stored, {"SecretId": ARN, "VersionId": tok})
    stub.add_client_error("put_secret_value", "ResourceExistsException", exists, http_status_code=400)
    stub.add_response("get_secret_value", stored, {"SecretId": ARN, "VersionId": tok})

    with stub:
        assert SecretsManagerStore(client).put_pending(ARN, "the-stored-value", tok) == tok
        with pytest.raises(StoreError, match="another value") as raised:
            SecretsManagerStore(client).put_pending(ARN, "a-different-value", tok)
    assert "the-stored-value" not in str(raised.value) and "a-different-value" not in str(raised.value)
    stub.assert_no_pending_responses()


def test_sanitize_arn_masks_the_account_id() -> None:
    assert sanitize_arn(ARN) == "arn:aws:secretsmanager:us-east-1:****9012:secret:db-AbCdEf"
    assert sanitize_arn("plain/name") == "plain/name"
    assert "123456789012" not in sanitize_arn(f"denied on {ARN} for arn:aws:iam::123456789012:role/x")


def test_map_client_error_never_carries_a_secret(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    log.register_secret("hunter2-hunter2")
    stub.add_client_error("get_secret_value", "ValidationException", "bad value hunter2-hunter2\nsecond line")
    with stub, pytest.raises(Exception) as raised:
        client.get_secret_value(SecretId=ARN)
    error = map_client_error(raised.value, f"secret {ARN}")
    assert isinstance(error, StoreError)
    assert "hunter2-hunter2" not in str(error)
    assert "\n" not in str(error)
    assert "ValidationException" in str(error)


@pytest.mark.parametrize("when", ["before_describe", "before_pending_read"])
def test_a_read_while_another_run_promotes_is_read_again_as_one_snapshot(
    aws: AwsEnv, secret: tuple[str, str], when: str
) -> None:
    """Another run promotes its pending version (AWSCURRENT moved to it, AWSPENDING removed) between this read's
    calls: the answer is not a mix (the old AWSCURRENT with no AWSPENDING, while the server already has the new
    password: a run that lost a race would conclude that no admin password logs in), but the secret read again."""
    arn, old_value = secret
    sm = aws.client("secretsmanager")
    old_version = holder(aws, arn, CURRENT)[0]
    new_value, tok = slot_secret(strong_password()), token()
    sm.put_secret_value(SecretId=arn, SecretString=new_value, ClientRequestToken=tok, VersionStages=[PENDING])
    client = aws.client("secretsmanager")
    promoted: list[bool] = []

    def other_run_promotes(**_: Any) -> None:
        if not promoted:
            promoted.append(True)
            sm.update_secret_version_stage(
                SecretId=arn, VersionStage=CURRENT, MoveToVersionId=tok, RemoveFromVersionId=old_version
            )
            sm.update_secret_version_stage(SecretId=arn, VersionStage=PENDING, RemoveFromVersionId=tok)

    if when == "before_describe":
        event = "before-call.secrets-manager.DescribeSecret"
    else:  # after DescribeSecret listed AWSPENDING, before it is read
        event = "before-call.secrets-manager.GetSecretValue"
        client.meta.events.register(
            "after-call.secrets-manager.DescribeSecret",
            lambda **_: client.meta.events.register(event, other_run_promotes),
        )
    if when == "before_describe":
        client.meta.events.register(event, other_run_promotes)
    store = SecretsManagerStore(client, backoff_base=0, backoff_max=0)
    versions = store.read(arn)
    assert promoted
    assert versions.current.value == new_value and versions.current.version_id == tok and versions.pending is None
    assert old_value != new_value
    assert store.calls["DescribeSecret"] == 2  # read again
