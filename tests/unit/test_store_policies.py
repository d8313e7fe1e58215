"""Least privilege for the SSM and Vault stores: `rotator iam-policy --store ssm` and `rotator vault-policy`.
(That the Vault policy is enough for a whole rotation, on a real OpenBao: tests/integration/test_store_vault.py.)"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rotator import iam
from rotator.cli import main
from rotator.errors import BadInput, ExitCode
from rotator.store.vault import policy_hcl

SCOPE = {"region": "us-east-1", "account_id": "123456789012"}
P = "arn:aws:ssm:us-east-1:123456789012:parameter"


def test_ssm_policy_grants_the_two_parameters_and_their_pending_siblings_only() -> None:
    policy = iam.build_policy(
        **SCOPE,
        slot_secret_arn="/rcm/prod/org1/db/slots",
        admin_secret_arn=f"{P}/rcm/prod/org1/db/admin",
        cluster_name=None,
        service_name=None,
        store="ssm",
    )
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"RotationParameters", "RotationPendingParameters"}
    assert by_sid["RotationParameters"]["Action"] == ["ssm:GetParameter", "ssm:PutParameter"]
    assert by_sid["RotationParameters"]["Resource"] == [
        f"{P}/rcm/prod/org1/db/admin",
        f"{P}/rcm/prod/org1/db/admin.pending",
        f"{P}/rcm/prod/org1/db/slots",
        f"{P}/rcm/prod/org1/db/slots.pending",
    ]
    assert by_sid["RotationPendingParameters"]["Action"] == ["ssm:GetParameterHistory", "ssm:DeleteParameter"]
    assert all(r.endswith(".pending") for r in by_sid["RotationPendingParameters"]["Resource"])
    assert "*" not in json.dumps(policy)


def test_ssm_kms_key_only_via_ssm() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    result = CliRunner().invoke(
        main,
        [
            *("iam-policy", "--slot-secret", "/rcm/p/s", "--admin-secret", "/rcm/p/a", "--store", f"ssm:{key}"),
            *("--region", "us-east-1", "--account-id", "123456789012"),
        ],
    )
    assert result.exit_code == 0, result.output
    kms = [s for s in json.loads(result.output)["Statement"] if s["Sid"] == "RotationParametersKms"]
    assert kms[0]["Resource"] == [key]
    assert kms[0]["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}


def test_iam_policy_refuses_vault_and_a_secrets_manager_arn_for_ssm() -> None:
    with pytest.raises(BadInput, match="vault-policy"):
        iam.build_policy(
            **SCOPE, slot_secret_arn="a", admin_secret_arn="b", cluster_name=None, service_name=None, store="vault"
        )
    with pytest.raises(BadInput, match="SSM parameter ARN"):
        iam.build_policy(
            **SCOPE,
            slot_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
            admin_secret_arn="b",
            cluster_name=None,
            service_name=None,
            store="ssm",
        )


def test_vault_policy_is_exact() -> None:
    hcl = policy_hcl("kv", "apps/prod/slots", "/apps/prod/admin/")
    blocks = [line for line in hcl.splitlines() if line.startswith("path ")]
    assert blocks == [
        'path "kv/data/apps/prod/slots" {',
        'path "kv/data/apps/prod/slots.pending" {',
        'path "kv/metadata/apps/prod/slots.pending" {',
        'path "kv/data/apps/prod/admin" {',
        'path "kv/data/apps/prod/admin.pending" {',
        'path "kv/metadata/apps/prod/admin.pending" {',
    ]
    assert hcl.count('capabilities = ["read", "update"]') == 2  # no create, no delete on the secrets themselves
    assert hcl.count('capabilities = ["delete"]') == 2
    assert "*" not in hcl and "+" not in hcl


def test_vault_policy_command() -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["vault-policy", "--slot-secret", "a/s", "--admin-secret", "a/s", "--store", "vault:kv2"])
    assert ok.exit_code == 0 and ok.output.count("path ") == 3  # one secret given twice: granted once
    bad = runner.invoke(main, ["vault-policy", "--slot-secret", 'a"}', "--admin-secret", "b"])
    assert bad.exit_code == ExitCode.BAD_INPUT
    wrong_store = runner.invoke(main, ["vault-policy", "--slot-secret", "a", "--admin-secret", "b", "--store", "ssm"])
    assert wrong_store.exit_code == ExitCode.BAD_INPUT
