"""The Vault sources without a server: hvac stays optional, and configuration errors name the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
        ({"addr": "http://v:8200"}, {"VAULT_ROLE_ID": "r"}, "both role_id and secret_id"),
        ({"addr": "http://v:8200"}, {"VAULT_TOKEN_FILE": "/nonexistent/token"}, "VAULT_TOKEN_FILE: cannot read"),
    ],
)
def test_session_configuration_errors(kwargs: dict[str, str], environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        VaultSession(**kwargs, environ=environ)  # type: ignore[arg-type]


def test_session_from_environment() -> None:
    session = VaultSession(environ={"VAULT_ADDR": "http://v:8200", "VAULT_TOKEN": "s.x"})
    assert session.addr == "http://v:8200" and session.auth_method == "token"
    assert "s.x" not in repr(session)


def test_session_approle_and_files_from_environment(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret-id"
    secret_file.write_text("sid-from-file\n")
    environ = {
        "VAULT_ADDR": "http://v:8200",
        "VAULT_ROLE_ID": "rid",
        "VAULT_SECRET_ID_FILE": str(secret_file),
        "VAULT_APPROLE_MOUNT": "apps",
        "VAULT_TOKEN": "ignored-when-approle",
    }
    session = VaultSession(environ=environ)
    assert (session.auth_method, session.approle_mount) == ("approle", "apps")
    assert session._secret_id == "sid-from-file"
    token_file = tmp_path / "token"
    token_file.write_text("s.file\n")
    session = VaultSession(environ={"VAULT_ADDR": "http://v:8200", "VAULT_TOKEN_FILE": str(token_file)})
    assert (session.auth_method, session._token) == ("token", "s.file")
    # An explicit token wins over AppRole in the environment.
    assert VaultSession(token="t", environ=environ).auth_method == "token"


def test_from_environment_picks_the_vault_kv_path() -> None:
    from rotator.client import from_environment
    from rotator.client.vault import VaultKvSource

    environ = {
        "ENVIRONMENT": "production",
        "VAULT_ADDR": "http://v:8200",
        "VAULT_TOKEN": "s.x",
        "ROTATOR_CLIENT_VAULT_PATH": "prod/app/db",
        "ROTATOR_CLIENT_VAULT_MOUNT": "kv",
    }
    loader = from_environment(environ=environ)
    assert isinstance(loader.source, VaultKvSource)
    assert loader.source.label == "vault:kv/data/prod/app/db"
    with pytest.raises(ConfigurationError, match="a secret and a Vault path are configured: keep one"):
        from_environment(environ={**environ, "ROTATOR_CLIENT_SECRET_ID": "prod/db"})
