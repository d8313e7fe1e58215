"""``rotator adopt``: turn an existing single-user set-up into a slot secret, safely and idempotently.

Input: the existing user's credentials (a seed 002 secret ``{username, password, host, port, database}``, an RDS
secret ``{engine, host, port, username, password, dbname}``, or flags with the password in an environment
variable), the admin secret, and the name of the new slot secret. Slot A is the existing user with its password
kept; slot B is a new user with the same rights.

- PostgreSQL: the owner role (``<dbname>_owner`` or ``--pg-owner-role``) is created with its rights on the
  database and schema public; ``REASSIGN OWNED BY <existing> TO <owner>`` (run in that database) moves every
  table, sequence, view, function, type and schema the existing user owns there; the rights the existing user
  holds on objects it does not own (and its role memberships) are given to the owner role too, because slot
  users act as the owner role; both slots become members of the owner role with it as their default role
  (``ALTER ROLE .. SET role``), are marked as managed, and slot B gets every right and setting slot A holds.
- MySQL/MariaDB: slot B is created at ``--mysql-user-host`` with every grant the existing user holds, from every
  host part it exists with; both are given the marker role.

Every statement is computed from what the server says now, each only when still needed, and run one at a
time: a re-run after a crash anywhere computes the rest (a second run computes nothing). ``--dry-run`` prints
the same statements, runs none, writes no secret. Passwords never reach SQL: slot B's goes as a SCRAM verifier
(PostgreSQL) or the stored hash (MySQL), shown as a placeholder. The slot secret is written before slot B's
user is created (write-ahead): a new secret is created (or an existing ``{}`` filled) holding slot A's
existing credentials and slot B's generated password; a slot secret that already describes the same two users
is used as it is; one that describes others is refused.

Refused (exit 2, nothing changed): the existing user is the admin, holds dangerous rights (superuser,
CREATEROLE, global ``*.*`` grants, ...), does not log in with the given password; slot B's name exists and
was not made by the rotator; the slot secret names other users; the admin lacks rights to manage users.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rotator.db import get_engine
from rotator.db.base import AdminSession, Endpoint, Engine, Statement, TlsConfig
from rotator.errors import BadInput, DatabaseError, Locked, RotatorError, SecretNotFound
from rotator.live import LiveSecret
from rotator.log import get_logger, register_secret
from rotator.passwords import PasswordPolicy
from rotator.secrets import AdminSecret, Credentials, SlotSecret, normalize_engine
from rotator.store.base import SecretStore

log = get_logger("rotator")

PG_VERIFIER = "'<SCRAM-SHA-256 verifier of slot B''s password>'"
MYSQL_HASH = "'<hash of slot B''s password>'"
AfterStatement = Callable[[int, Statement], None]  # (1-based index, statement); 0: the slot secret is written


@dataclass(frozen=True)
class AdoptSettings:
    slot_secret: str
    admin_secret: str
    existing_secret: str | None = None
    existing: Credentials | None = field(default=None, repr=False)  # from flags (password from the environment)
    slot_b_username: str | None = None
    engine: str | None = None
    dry_run: bool = False
    tls: TlsConfig = field(default_factory=TlsConfig)
    mysql_user_host: str = "%"
    pg_owner_role: str | None = None
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)


@dataclass
class AdoptReport:
    dry_run: bool
    outcome: str = "ok"
    exit_code: int = 0
    error: str | None = None
    engine: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    slot_secret: str = ""  # created | filled | exists | would be created | would be filled
    statements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "adopt_report", **self.__dict__}
        if out["error"] is None:
            del out["error"]
        return out


# ---------------------------------------------------------------- inputs


def existing_from_secret(text: str, what: str = "existing secret") -> tuple[Credentials, str | None]:
    """The existing user's credentials from a seed 002 or RDS-format secret, and the engine it names."""
    live = LiveSecret.parse(text, what)
    missing = [
        key
        for key, value in (
            ("username", live.username),
            ("password", live.password),
            ("host", live.host),
            ("port", live.port),
            ("dbname (or database)", live.dbname),
        )
        if not value
    ]
    if missing:
        raise BadInput(f"{what} lacks {', '.join(missing)}: it must hold the existing user's full credentials")
    assert live.host is not None and live.port is not None and live.dbname is not None
    creds = Credentials(live.username, live.password, live.host, live.port, live.dbname, port_as_str=live.port_as_str)
    return creds, normalize_engine(live.engine, what) if live.engine else None


@dataclass(frozen=True)
class _SlotSecretState:
    state: str  # missing | empty | exists
    secret: SlotSecret | None = None
    pending: SlotSecret | None = None  # a pending version (only looked at for an empty secret)
    pending_version: str | None = None


def _read_slot_secret(store: SecretStore, name: str) -> _SlotSecretState:
    try:
        versions = store.read(name)
    except SecretNotFound:
        return _SlotSecretState("missing")
    text = versions.current.value
    if text.strip() in ("", "{}"):
        pending = None
        if versions.pending is not None:
            pending = SlotSecret.parse(versions.pending.value, "slot secret (AWSPENDING)")
            register_secret(*pending.passwords())
        return _SlotSecretState("empty", None, pending, versions.pending.version_id if versions.pending else None)
    secret = SlotSecret.parse(text, "slot secret (AWSCURRENT)")
    register_secret(*secret.passwords())
    if versions.pending is not None:
        raise BadInput(
            "the slot secret has a pending version (a rotation was interrupted): run rotator rotate to finish it, "
            "then re-run adopt. Nothing was changed"
        )
    return _SlotSecretState("exists", secret)


def _same_users(secret: SlotSecret, a: Credentials, b_username: str) -> bool:
    return (
        secret.a.username == a.username
        and secret.b.username == b_username
        and all((c.host, c.port, c.dbname) == (a.host, a.port, a.dbname) for c in (secret.a, secret.b))
    )


# ---------------------------------------------------------------- PostgreSQL statements


def _pg_statements(
    session: Any, admin_user: str, a: str, b: str, b_password: str, *, b_exists: bool, b_password_ok: bool, dbname: str
) -> list[Statement]:
    """What is still needed, from what the server says now (reads only)."""
    from psycopg import sql

    from rotator.db.postgres import marked_databases, marker_comment

    conn = session.connection
    ident = sql.Identifier
    owner = session.owner_role_of(dbname)
    out: list[Statement] = []

    def add(query: Any, text: str | None = None) -> None:
        out.append(Statement(text or query.as_string(conn), query))

    def one(query: Any, params: tuple[Any, ...]) -> Any:
        row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def member(user: str, role: str) -> bool:
        return bool(
            one(
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s",
                (role, user),
            )
        )

    owner_exists = one("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)) is not None
    owner_keys = set(session.grant_items(owner)) if owner_exists else set()
    if not owner_exists:
        add(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(owner)))
    have_db = {
        r[0]
        for r in conn.execute(
            "SELECT a.privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() "
            "AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (owner,),
        ).fetchall()
    }
    if {"CONNECT", "CREATE", "TEMPORARY"} - have_db:
        add(sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(ident(dbname), ident(owner)))
        on_db = ident(dbname).as_string(conn)
        owner_keys |= {f"{p} ON DATABASE {on_db}" for p in ("CONNECT", "CREATE", "TEMPORARY")}
    have_schema = {
        r[0]
        for r in conn.execute(
            "SELECT a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'public' "
            "AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (owner,),
        ).fetchall()
    }
    if {"USAGE", "CREATE"} - have_schema:
        add(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(ident(owner)))
        owner_keys |= {'USAGE ON SCHEMA "public"', 'CREATE ON SCHEMA "public"'}
    # Everything the existing user owns in this database (and shared objects: a database it owns).
    owns = one(
        "SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND deptype = 'o' "
        "AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s) "
        "AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
        (a,),
    )
    if owns:
        if not one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", ()):
            # REASSIGN OWNED needs the privileges of both roles; the admin stays a member (it manages both).
            if not member(admin_user, a):
                add(sql.SQL("GRANT {} TO {}").format(ident(a), ident(admin_user)))
            if not owner_exists or not member(admin_user, owner):
                add(sql.SQL("GRANT {} TO {}").format(ident(owner), ident(admin_user)))
        add(sql.SQL("REASSIGN OWNED BY {} TO {}").format(ident(a), ident(owner)))
    # Slot users act as the owner role: the existing user's rights on what it does not own, and its role
    # memberships, must be the owner role's too, or the app would lose them.
    a_items = session.grant_items(a, owned=False)
    for key, make in sorted(a_items.items()):
        if key.startswith("SET ") or key in (f"MEMBER OF {owner}", f"MEMBER OF {owner} WITH ADMIN OPTION"):
            continue
        if key in owner_keys:
            continue
        add(make(target=ident(owner)))
    # Slot A: member of the owner role, acting as it by default, marked.
    if not member(a, owner):
        add(sql.SQL("GRANT {} TO {}").format(ident(owner), ident(a)))
    if f"SET role={owner}" not in a_items:
        add(sql.SQL("ALTER ROLE {} SET role = {}").format(ident(a), sql.Literal(owner)))
    comment = one("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (a,))
    databases = marked_databases(comment)
    if databases is None or dbname not in databases:
        add(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                ident(a), sql.Literal(marker_comment([*(databases or []), dbname]))
            )
        )
    # Slot B: created with its marker in one transaction (never a role of ours without it).
    if not b_exists:
        verifier = session.verifier(b, b_password)
        create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
        mark = sql.SQL("COMMENT ON ROLE {} IS {}").format(ident(b), sql.Literal(marker_comment([dbname])))
        shown = create.format(ident(b), sql.SQL(PG_VERIFIER)).as_string(conn) + "; " + mark.as_string(conn)
        add((create.format(ident(b), sql.Literal(verifier)), mark), shown)
    elif not b_password_ok:
        verifier = session.verifier(b, b_password)
        alter = sql.SQL("ALTER ROLE {} PASSWORD {}")
        add(alter.format(ident(b), sql.Literal(verifier)), alter.format(ident(b), sql.SQL(PG_VERIFIER)).as_string(conn))
    # ... with every right and setting slot A holds (what rotate's sync_grants keeps equal from then on).
    b_items = session.grant_items(b) if b_exists else {}
    for key, make in sorted(a_items.items()):
        if key not in b_items:
            add(make(target=ident(b)))
    if f"MEMBER OF {owner}" not in a_items and f"MEMBER OF {owner}" not in b_items:
        add(sql.SQL("GRANT {} TO {}").format(ident(owner), ident(b)))
    if f"SET role={owner}" not in a_items and f"SET role={owner}" not in b_items:
        add(sql.SQL("ALTER ROLE {} SET role = {}").format(ident(b), sql.Literal(owner)))
    return out


# ---------------------------------------------------------------- MySQL statements


def _mysql_statements(
    session: Any, a: str, b: str, b_password: str, *, b_exists: bool, b_password_ok: bool, dbname: str
) -> list[Statement]:
    from rotator.db.mysql import marker_role

    host = session.user_host
    out: list[Statement] = []
    if not b_exists or not b_password_ok:
        verb = "CREATE" if not b_exists else "ALTER"
        clause, hashed = session.identified(b_password)
        query = f"{verb} USER %s@%s {clause}"
        shown = session.mogrify(f"{verb} USER %s@%s ", (b, host)) + clause.replace("%s", MYSQL_HASH)
        out.append(Statement(shown, query, (b, host, hashed)))
    role = marker_role(dbname)
    mariadb = session.is_mariadb()
    unmarked = [
        u for u in (a, b) if not (u == b and not b_exists) and not session.inspect_user(u, dbname=dbname).marked
    ]
    if not b_exists:
        unmarked.append(b)
    if unmarked:
        if not session.marker_role_exists(dbname):
            create = "CREATE ROLE IF NOT EXISTS %s" if mariadb else "CREATE ROLE IF NOT EXISTS %s@'%%'"
            out.append(Statement(session.mogrify(create, (role,)), create, (role,)))
        grant = "GRANT %s TO %s@%s" if mariadb else "GRANT %s@'%%' TO %s@%s"
        for user in unmarked:
            out.append(Statement(session.mogrify(grant, (role, user, host)), grant, (role, user, host)))
    marker_right = f"GRANT `{role}`"
    for statement in session.grant_statements(a, b, source_hosts=session.hosts_of(a)):
        if not statement.right.startswith(marker_right):
            out.append(statement)
    return out


# ---------------------------------------------------------------- the run


class Adoption:
    def __init__(
        self,
        settings: AdoptSettings,
        store: SecretStore,
        *,
        engine_for: Callable[[str], Engine] | None = None,
        after_statement: AfterStatement | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine_for = engine_for or (
            lambda name: get_engine(
                name, mysql_user_host=settings.mysql_user_host, pg_owner_role=settings.pg_owner_role
            )
        )
        self.after_statement = after_statement
        self.report = AdoptReport(dry_run=settings.dry_run)

    def run(self) -> AdoptReport:
        try:
            self._run()
        except RotatorError as exc:
            self.report.outcome = type(exc).__name__
            self.report.exit_code = int(exc.exit_code)
            self.report.error = str(exc)
        return self.report

    def _existing(self) -> tuple[Credentials, str | None]:
        s = self.settings
        if s.existing_secret:
            versions = self.store.read(s.existing_secret)
            creds, engine = existing_from_secret(versions.current.value)
        elif s.existing is not None:
            creds, engine = s.existing, None
        else:
            raise BadInput("no existing user: pass --existing-secret, or --existing-username/--existing-host/...")
        register_secret(creds.password)
        return creds, engine

    def _run(self) -> None:
        s, r = self.settings, self.report
        existing, secret_engine = self._existing()
        engine_name = s.engine or secret_engine
        if engine_name is None:
            raise BadInput('no database engine: pass --engine mysql|postgres or add "engine" to the existing secret')
        if s.engine and secret_engine and s.engine != secret_engine:
            raise BadInput(
                f"the existing secret says engine {secret_engine} but --engine is {s.engine}: make them agree"
            )
        r.engine = engine_name
        admin = AdminSecret.parse(self.store.read(s.admin_secret).current.value, "admin secret (AWSCURRENT)")
        register_secret(admin.password)
        slot_state = _read_slot_secret(self.store, s.slot_secret)
        a = existing
        b_username = s.slot_b_username
        if slot_state.secret is not None:
            known = slot_state.secret
            if existing.username not in (known.a.username, known.b.username):
                raise BadInput(
                    f"the slot secret {s.slot_secret} already describes users {known.a.username!r} and "
                    f"{known.b.username!r}, not the existing user {existing.username!r}: name a new slot secret. "
                    "Nothing was changed"
                )
            b_username = b_username or known.b.username
            a = known.a  # adopted earlier: the slot secret is the truth now (its passwords may have rotated)
            if not _same_users(known, a, b_username) or (existing.host, existing.port, existing.dbname) != (
                a.host,
                a.port,
                a.dbname,
            ):
                raise BadInput(
                    f"the slot secret {s.slot_secret} describes other users, server or database than this adoption "
                    f"(slot B {known.b.username!r}): name a new slot secret. Nothing was changed"
                )
        b_username = b_username or f"{existing.username}_b"
        r.slots = {"A": a.username, "B": b_username}
        if b_username == a.username:
            raise BadInput("slot B's user name is the existing user's: pass another --slot-b-username")
        if admin.username in (a.username, b_username):
            raise BadInput(
                f"the existing user {admin.username!r} is the admin user: the rotator manages two users of the "
                "app's own, never the admin; adopt the app's own user. Nothing was changed"
            )
        engine = self.engine_for(engine_name)
        host, port = admin.endpoint(a)
        ep = Endpoint(host, port, a.dbname, s.tls)
        session = engine.admin_session(ep, admin.username, admin.password)
        lock = f"rotator:{a.dbname}"
        try:
            if not session.try_lock(lock):
                raise Locked("a rotation or adoption of this database holds the lock: nothing was changed; re-run")
            try:
                self._locked(engine, session, admin, a, b_username, slot_state, ep)
            finally:
                session.unlock(lock)
        finally:
            session.close()

    def _locked(
        self,
        engine: Engine,
        session: AdminSession,
        admin: AdminSecret,
        a: Credentials,
        b_username: str,
        slot_state: _SlotSecretState,
        ep: Endpoint,
    ) -> None:
        s, r = self.settings, self.report
        dbname = a.dbname
        a_info = session.inspect_user(a.username, dbname=dbname)
        if not a_info.exists:
            hosts = f" (it exists with host {', '.join(a_info.hosts)}: pass --mysql-user-host)" if a_info.hosts else ""
            raise BadInput(f"the existing user {a.username!r} does not exist{hosts}. Nothing was changed")
        if a_info.privileges:
            raise BadInput(
                f"the existing user {a.username!r} holds {', '.join(a_info.privileges)}: the rotator manages only "
                "unprivileged users; revoke those rights first (or adopt another user). Nothing was changed"
            )
        login = engine.check_login(ep, a.username, a.password)
        if not login.ok and not login.auth_failed:
            raise RotatorError(f"cannot reach the database at {ep.host}:{ep.port}: {login.reason}; check the network")
        if not login.ok:
            raise BadInput(
                f"the existing password does not log in as {a.username!r}: check the existing secret. Nothing was "
                "changed"
            )
        b_info = session.inspect_user(b_username, dbname=dbname)
        # MySQL: slot B's password is proven without a default database (it may not hold its grants yet).
        b_ep = replace(ep, dbname="") if engine.name == "mysql" else ep
        known = slot_state.secret or (slot_state.pending if slot_state.state == "empty" else None)
        if b_info.exists and not b_info.marked and known is not None and known.b.username == b_username:
            # MySQL: a crash between CREATE USER and granting the marker role: ours if the password we wrote
            # ahead logs in (as rotate's planner proves a half-made slot user).
            if engine.check_login(b_ep, b_username, known.b.password).ok:
                b_info = replace(b_info, marked=True)
        if b_info.exists and not b_info.marked:
            raise BadInput(
                f"slot B's user {b_username!r} already exists and was not made by the rotator: pass another "
                "--slot-b-username. Nothing was changed"
            )
        if not b_info.exists and b_info.hosts:
            raise BadInput(
                f"slot B's user {b_username!r} exists with host {', '.join(b_info.hosts)} only: pass another "
                "--slot-b-username. Nothing was changed"
            )
        problems = session.admin_problems(dbname=dbname)
        if problems:
            raise BadInput("the admin cannot manage the slot users: " + "; ".join(problems) + ". Nothing was changed")
        secret = self._target_secret(slot_state, a, b_username, engine.name)
        b = secret.b
        b_ok = b_info.exists and engine.check_login(b_ep, b.username, b.password).ok
        statements = self._statements(engine, session, admin, a.username, b, b_exists=b_info.exists, b_ok=b_ok)
        r.statements = [st.text for st in statements]
        if other_hosts := [h for h in a_info.hosts if engine.name == "mysql" and h != s.mysql_user_host]:
            r.notes.append(
                f"{a.username!r} also exists with host {', '.join(other_hosts)}: slot B gets those accounts' grants "
                f"at {s.mysql_user_host!r}; the rotator changes passwords of the {s.mysql_user_host!r} accounts only"
            )
        memberships = [st.text for st in statements if st.text.endswith(f' TO "{admin.username}"')]
        if memberships:
            r.notes.append(
                f"the admin {admin.username!r} becomes a member of the existing user's role and of the owner role "
                "(REASSIGN OWNED needs the privileges of both) and stays one; revoke it by hand if unwanted"
            )
        if s.existing_secret:
            r.notes.append(
                f"keep the app on its secret: pass --live-secret {s.existing_secret} to rotator rotate, and each "
                "rotation writes the slot the app should use into it (it names slot A now)"
            )
        if s.dry_run:
            r.slot_secret = {"missing": "would be created", "empty": "would be filled"}.get(slot_state.state, "exists")
            return
        r.slot_secret = self._write_slot_secret(slot_state, secret)  # write-ahead: before slot B exists
        if self.after_statement is not None:
            self.after_statement(0, Statement("-- the slot secret is written", None))
        done: list[str] = []
        for _ in range(3):  # a statement's effect may make another needed (e.g. after REASSIGN OWNED)
            if not statements:
                break
            for statement in statements:
                session.execute([statement])
                done.append(statement.text)
                if self.after_statement is not None:
                    self.after_statement(len(done), statement)
            b_ok = engine.check_login(b_ep, b.username, b.password).ok
            statements = self._statements(engine, session, admin, a.username, b, b_exists=True, b_ok=b_ok)
        if statements:
            raise DatabaseError(
                "adoption did not converge: still needed: " + "; ".join(st.text for st in statements) + "; re-run"
            )
        r.statements = done
        for slot, creds in (("A", a), ("B", b)):
            if not engine.check_login(ep, creds.username, creds.password).ok:
                raise DatabaseError(f"slot {slot}'s user {creds.username!r} does not log in after adoption: re-run")

    def _statements(
        self,
        engine: Engine,
        session: AdminSession,
        admin: AdminSecret,
        a: str,
        b: Credentials,
        *,
        b_exists: bool,
        b_ok: bool,
    ) -> list[Statement]:
        try:
            if engine.name == "postgres":
                return _pg_statements(
                    session,
                    admin.username,
                    a,
                    b.username,
                    b.password,
                    b_exists=b_exists,
                    b_password_ok=b_ok,
                    dbname=b.dbname,
                )
            return _mysql_statements(
                session, a, b.username, b.password, b_exists=b_exists, b_password_ok=b_ok, dbname=b.dbname
            )
        except RotatorError:
            raise
        except Exception as exc:  # a driver error while reading: one line, no statement text
            raise DatabaseError(f"reading what adoption needs failed: {type(exc).__name__}") from None

    def _target_secret(self, st: _SlotSecretState, a: Credentials, b_username: str, engine: str) -> SlotSecret:
        if st.secret is not None:
            return st.secret
        if st.pending is not None and _same_users(st.pending, a, b_username):
            return st.pending  # an interrupted fill of an empty secret: finish it with its own password
        b = Credentials(
            b_username, self.settings.password_policy.generate(), a.host, a.port, a.dbname, port_as_str=a.port_as_str
        )
        register_secret(b.password)
        return SlotSecret(active_slot="A", a=a, b=b, engine=engine)

    def _write_slot_secret(self, st: _SlotSecretState, secret: SlotSecret) -> str:
        name = self.settings.slot_secret
        if st.state == "exists":
            return "exists"
        value = secret.to_json()
        token = str(uuid.uuid4())
        if st.state == "missing":
            create = getattr(self.store, "create", None)
            if create is None:
                raise BadInput(f"this store cannot create secrets: create {name} holding {{}} first, then re-run")
            create(name, value, token)
            return "created"
        version = st.pending_version if st.pending == secret and st.pending_version else None
        if version is None:
            version = self.store.put_pending(name, value, token)
        self.store.promote(name, version)
        return "filled"
