"""The Vault sources without a server: hvac stays optional, and configuration errors name the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rotator.client import ConfigurationError, CredentialLoader
from rotator.client.vault import VaultSession


def test_rotator_client_never_imports_hvac() -> None:
    code = "import sys, rotator.client; assert 'hvac' not in sys.modules, 'hvac imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_hvac_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # what an install without the extra looks like to import
    loader = CredentialLoader.from_vault_kv("app/db", session=VaultSession("http://127.0.0.1:1", token="t"))
    with pytest.raises(Exception, match=r"pip install 'rotator\[vault\]'"):
        loader.get()


@pytest.mark.parametrize(
    ("kwargs", "environ", "needle"),
    [
        ({}, {}, "VAULT_ADDR"),
        ({"addr": "http://v:8200"}, {}, "VAULT_TOKEN"),
        ({"addr": "http://v:8200", "role_id": "r"}, {}, "both role_id and secret_id"),
    ],
)
def test_session_configuration_errors(kwargs: dict[str, str], environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        VaultSession(**kwargs, environ=environ)  # type: ignore[arg-type]


def test_session_from_environment() -> None:
    session = VaultSession(environ={"VAULT_ADDR": "http://v:8200", "VAULT_TOKEN": "s.x"})
    assert session.addr == "http://v:8200" and session.auth_method == "token"
    assert "s.x" not in repr(session)
