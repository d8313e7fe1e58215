"""inspect_user, mark_user and admin_problems against the real servers (PostgreSQL 15, MariaDB 10.11)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from rotator.db.base import Endpoint, TlsConfig, UserInfo
from rotator.db.mysql import MySQLAdminSession, MySQLEngine, marker_role
from rotator.db.postgres import PostgresAdminSession, PostgresEngine
from rotator.passwords import PasswordPolicy
from tests.harness import DbEnv, MySqlServer, PgServer

Session = MySQLAdminSession | PostgresAdminSession


def new_password() -> str:
    return PasswordPolicy().generate()


def endpoint(db: DbEnv) -> Endpoint:
    return Endpoint(host=db.host, port=db.port, dbname=db.dbname, tls=TlsConfig(mode="disable"))


def admin(db: DbEnv, *, user: str | None = None, password: str | None = None, user_host: str = "%") -> Session:
    engine = PostgresEngine() if db.engine == "postgres" else MySQLEngine(user_host=user_host)
    return engine.admin_session(endpoint(db), user or db.admin_user, password or db.admin_password)


def as_root(db: DbEnv, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run statements as the harness superuser (PostgreSQL: psycopg placeholders; MySQL: pymysql ones)."""
    if isinstance(db.server, PgServer):
        with db.server.connect(db.dbname) as pg_conn:
            for query, params in statements:
                pg_conn.execute(query, params)
        return
    conn = db.server.connect()
    try:
        with conn.cursor() as cur:
            for query, params in statements:
                cur.execute(query, params)
    finally:
        conn.close()


@pytest.fixture
def marker_dbs(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Database names whose MySQL marker role the test may create: dropped afterwards (the harness drops
    users and databases only)."""
    names: list[str] = []
    yield names
    for fixture in ("mysql", "db"):
        if fixture in request.fixturenames:
            env = request.getfixturevalue(fixture)
            if isinstance(env, DbEnv) and isinstance(env.server, MySqlServer):
                for dbname in [env.dbname, *names]:
                    as_root(env, ("DROP ROLE IF EXISTS %s", (marker_role(dbname),)))


def pg_plain_role(db: DbEnv, suffix: str, attributes: str = "", *, login: bool = True) -> str:
    name = db.user(suffix)
    options = ("LOGIN " if login else "NOLOGIN ") + attributes
    assert isinstance(db.server, PgServer)
    with db.server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} " + options + " PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(new_password())
            )
        )
    return name


def mysql_plain_user(db: DbEnv, suffix: str, host: str = "%") -> str:
    name = db.user(suffix)
    as_root(db, ("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, new_password())))
    return name


# ---------------------------------------------------------------- inspect_user


def test_a_missing_user(db: DbEnv, marker_dbs: list[str]) -> None:
    with admin(db) as session:
        assert session.inspect_user(f"{db.prefix}_nobody", dbname=db.dbname) == UserInfo(exists=False)


def test_a_user_made_by_create_user_is_marked_and_has_no_privileges(db: DbEnv, marker_dbs: list[str]) -> None:
    name = db.user("slot_a")
    with admin(db) as session:
        before = session.inspect_user(name, dbname=db.dbname)
        session.create_user(name, new_password(), dbname=db.dbname, grants_from=None)
        info = session.inspect_user(name, dbname=db.dbname)
    assert before == UserInfo(exists=False)
    assert info.exists and info.marked
    assert info.privileges == ()
    assert info.owner_member is (db.engine == "postgres")
    assert info.hosts == (() if db.engine == "postgres" else ("%",))


def test_create_user_twice_is_idempotent_and_stays_marked(db: DbEnv, marker_dbs: list[str]) -> None:
    name, password = db.user("slot_a"), new_password()
    with admin(db) as session:
        session.create_user(name, new_password(), dbname=db.dbname, grants_from=None)
        first = session.inspect_user(name, dbname=db.dbname)
        session.create_user(name, password, dbname=db.dbname, grants_from=None)
        assert session.inspect_user(name, dbname=db.dbname) == first
    assert first.marked
    assert db.login_works(name, password)


def test_the_admin_itself_has_privileges_and_is_not_marked(db: DbEnv, marker_dbs: list[str]) -> None:
    with admin(db) as session:
        session.create_user(db.user("slot_a"), new_password(), dbname=db.dbname, grants_from=None)
        info = session.inspect_user(db.admin_user, dbname=db.dbname)
    assert info.exists
    # MariaDB: the admin created the marker role, so it holds it WITH ADMIN OPTION: that is not a mark.
    assert not info.marked
    if db.engine == "postgres":
        assert info.privileges == ("CREATEROLE",)
        assert not info.owner_member
    else:
        assert "ALL PRIVILEGES ON *.*" in info.privileges
        assert "GRANT OPTION ON *.*" in info.privileges


def test_an_unrelated_user_exists_but_is_not_marked(db: DbEnv, marker_dbs: list[str]) -> None:
    name = pg_plain_role(db, "app") if db.engine == "postgres" else mysql_plain_user(db, "app")
    with admin(db) as session:
        info = session.inspect_user(name, dbname=db.dbname)
    assert info.exists and not info.marked and not info.owner_member
    assert info.privileges == ()


def test_a_slot_user_of_another_database_is_not_marked_for_this_one(db: DbEnv, marker_dbs: list[str]) -> None:
    other = f"{db.prefix}_other_db"
    marker_dbs.append(other)
    name = db.user("slot_a")
    with admin(db) as session:
        session.create_user(name, new_password(), dbname=db.dbname, grants_from=None)
        unrelated = pg_plain_role(db, "app") if db.engine == "postgres" else mysql_plain_user(db, "app")
        session.mark_user(unrelated, dbname=other)
        assert session.inspect_user(unrelated, dbname=other).marked
        assert not session.inspect_user(unrelated, dbname=db.dbname).marked
        assert not session.inspect_user(name, dbname=other).marked
        # One user may serve two databases: marking it for the second keeps the first.
        session.mark_user(name, dbname=other)
        assert session.inspect_user(name, dbname=other).marked
        assert session.inspect_user(name, dbname=db.dbname).marked


def test_mark_user_is_idempotent(db: DbEnv, marker_dbs: list[str]) -> None:
    name = pg_plain_role(db, "legacy") if db.engine == "postgres" else mysql_plain_user(db, "legacy")
    with admin(db) as session:
        assert not session.inspect_user(name, dbname=db.dbname).marked
        session.mark_user(name, dbname=db.dbname)
        first = session.inspect_user(name, dbname=db.dbname)
        session.mark_user(name, dbname=db.dbname)
        assert session.inspect_user(name, dbname=db.dbname) == first
    assert first.exists and first.marked and first.privileges == ()


def test_mark_user_of_a_missing_user_fails_clearly(db: DbEnv, marker_dbs: list[str]) -> None:
    from rotator.errors import DatabaseError

    with admin(db) as session, pytest.raises(DatabaseError, match="does not exist"):
        session.mark_user(f"{db.prefix}_nobody", dbname=db.dbname)


def test_postgres_a_foreign_comment_is_no_mark_and_mark_user_replaces_it(pg: DbEnv) -> None:
    name = pg_plain_role(pg, "legacy")
    as_root(pg, ("COMMENT ON ROLE " + name + " IS 'rotator slot user of database " + pg.dbname + "'", ()))
    with admin(pg) as session:
        assert not session.inspect_user(name, dbname=pg.dbname).marked
        session.mark_user(name, dbname=pg.dbname)
        assert session.inspect_user(name, dbname=pg.dbname).marked


@pytest.mark.parametrize("attribute", ["SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"])
def test_postgres_dangerous_attributes(pg: DbEnv, attribute: str) -> None:
    direct = pg_plain_role(pg, "direct", attribute)
    group = pg_plain_role(pg, "group", attribute, login=False)
    member = pg_plain_role(pg, "member")
    as_root(pg, (f"GRANT {group} TO {member}", ()))
    with admin(pg) as session:
        assert session.inspect_user(direct, dbname=pg.dbname).privileges == (attribute,)
        assert session.inspect_user(member, dbname=pg.dbname).privileges == (f"{attribute} (via role {group})",)


def test_postgres_membership_in_an_administrative_role(pg: DbEnv) -> None:
    name = pg_plain_role(pg, "reader")
    as_root(pg, (f"GRANT pg_read_all_data TO {name}", ()))
    with admin(pg) as session:
        assert session.inspect_user(name, dbname=pg.dbname).privileges == ("MEMBER OF pg_read_all_data",)


def test_postgres_legacy_slot_user_is_an_owner_member_without_a_mark(pg: DbEnv) -> None:
    owner, name = f"{pg.dbname}_owner", pg_plain_role(pg, "legacy")
    as_root(pg, (f"CREATE ROLE {owner} NOLOGIN", ()), (f"GRANT {owner} TO {name}", ()))
    with admin(pg) as session:
        info = session.inspect_user(name, dbname=pg.dbname)
    assert (info.exists, info.owner_member, info.marked, info.privileges) == (True, True, False, ())


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        ("GRANT SELECT ON *.* TO %s@'%%'", ("SELECT ON *.*",)),
        ("GRANT USAGE ON *.* TO %s@'%%' WITH GRANT OPTION", ("GRANT OPTION ON *.*",)),
        ("GRANT SELECT, PROCESS ON *.* TO %s@'%%'", ("SELECT ON *.*", "PROCESS ON *.*")),
        ("GRANT INSERT ON `mysql`.* TO %s@'%%'", ("INSERT ON `mysql`.*",)),
    ],
)
def test_mysql_global_privileges(mysql: DbEnv, marker_dbs: list[str], grant: str, expected: tuple[str, ...]) -> None:
    name = mysql_plain_user(mysql, "priv")
    as_root(mysql, (f"GRANT ALL ON `{mysql.dbname}`.* TO %s@'%%'", (name,)), (grant, (name,)))
    with admin(mysql) as session:
        info = session.inspect_user(name, dbname=mysql.dbname)
    assert info.privileges == expected


def test_mysql_global_privileges_through_a_role(mysql: DbEnv, marker_dbs: list[str]) -> None:
    name, role = mysql_plain_user(mysql, "member"), f"{mysql.prefix}_role"
    try:
        as_root(
            mysql,
            ("CREATE ROLE %s", (role,)),
            ("GRANT SUPER ON *.* TO %s", (role,)),
            ("GRANT %s TO %s@'%%'", (role, name)),
        )
        with admin(mysql) as session:
            info = session.inspect_user(name, dbname=mysql.dbname)
        assert info.privileges == (f"SUPER ON *.* (via role {role})",)
        assert not info.marked
    finally:
        as_root(mysql, ("DROP ROLE IF EXISTS %s", (role,)))


def test_mysql_hosts_and_the_user_host_setting(mysql: DbEnv, marker_dbs: list[str]) -> None:
    name = mysql_plain_user(mysql, "elsewhere", host="localhost")
    with admin(mysql) as session:
        info = session.inspect_user(name, dbname=mysql.dbname)
    assert (info.exists, info.hosts) == (False, ("localhost",))  # only with another host part: not ours
    with admin(mysql, user_host="localhost") as session:
        assert session.inspect_user(name, dbname=mysql.dbname).exists
        slot = mysql.user("slot_a")
        session.create_user(slot, new_password(), dbname=mysql.dbname, grants_from=None)
        info = session.inspect_user(slot, dbname=mysql.dbname)
    assert (info.exists, info.marked, info.hosts) == (True, True, ("localhost",))
    with admin(mysql) as session:
        assert session.inspect_user(slot, dbname=mysql.dbname) == UserInfo(exists=False, hosts=("localhost",))


def test_mysql_grants_copied_from_a_marked_peer_carry_the_marker(mysql: DbEnv, marker_dbs: list[str]) -> None:
    a, b = mysql.user("slot_a"), mysql.user("slot_b")
    with admin(mysql) as session:
        session.create_user(a, new_password(), dbname=mysql.dbname, grants_from=None)
        session.create_user(b, new_password(), dbname=mysql.dbname, grants_from=a)
        grants_a, grants_b = session.show_grants(a), session.show_grants(b)
        assert session.inspect_user(b, dbname=mysql.dbname).marked
    role = marker_role(mysql.dbname)
    assert f"GRANT `{role}` TO `{b}`@`%`" in grants_b
    assert sorted(g.replace(f"`{a}`@", "`USER`@") for g in grants_a) == sorted(
        g.replace(f"`{b}`@", "`USER`@") for g in grants_b
    )


def test_marker_role_names_fit_mysql_8() -> None:
    assert marker_role("openemr") == "rotator_slot_openemr"
    long = marker_role("x" * 64)
    assert len(long) == 32 and long.startswith("rotator_slot_")
    assert long != marker_role("x" * 63)


# ---------------------------------------------------------------- admin_problems


def test_the_harness_admin_has_no_problems(db: DbEnv, marker_dbs: list[str]) -> None:
    with admin(db) as session:
        assert session.admin_problems(dbname=db.dbname) == []
        session.create_user(db.user("slot_a"), new_password(), dbname=db.dbname, grants_from=None)
        assert session.admin_problems(dbname=db.dbname) == []


def test_postgres_admin_without_createrole(pg: DbEnv) -> None:
    weak, password = pg.user("weak_admin"), new_password()
    as_root(
        pg,
        (f"CREATE ROLE {weak} LOGIN NOCREATEROLE PASSWORD '{password}'", ()),
    )
    with admin(pg, user=weak, password=password) as session:
        problems = session.admin_problems(dbname=pg.dbname)
    assert any("CREATEROLE" in p and f"ALTER ROLE {weak} CREATEROLE" in p for p in problems), problems
    assert any("owner role" in p for p in problems), problems  # nor may it grant the owner role its rights
    assert password not in " ".join(problems)


def test_postgres_admin_connected_to_another_database(pg: DbEnv) -> None:
    with admin(pg) as session:
        problems = session.admin_problems(dbname=f"{pg.prefix}_elsewhere")
    assert len(problems) == 1 and "connected to database" in problems[0]


def test_mysql_admin_with_database_rights_only(mysql: DbEnv, marker_dbs: list[str]) -> None:
    weak, password = mysql.user("weak_admin"), new_password()
    as_root(
        mysql,
        ("CREATE USER %s@'%%' IDENTIFIED BY %s", (weak, password)),
        (f"GRANT ALL ON `{mysql.dbname}`.* TO %s@'%%'", (weak,)),
    )
    with admin(mysql, user=weak, password=password) as session:
        problems = session.admin_problems(dbname=mysql.dbname)
    assert len(problems) == 2, problems
    assert "CREATE USER" in problems[0] and "GRANT CREATE USER ON *.*" in problems[0]
    assert "GRANT OPTION" in problems[1]


def test_mysql_second_admin_without_the_marker_roles_admin_option(mysql: DbEnv, marker_dbs: list[str]) -> None:
    """MariaDB: only holders of a role's ADMIN OPTION may grant it, whatever their global privileges."""
    other, password = mysql.user("admin2"), new_password()
    as_root(
        mysql,
        ("CREATE USER %s@'%%' IDENTIFIED BY %s", (other, password)),
        ("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (other,)),
    )
    with admin(mysql) as session:  # the harness admin creates the marker role
        session.create_user(mysql.user("slot_a"), new_password(), dbname=mysql.dbname, grants_from=None)
    with admin(mysql, user=other, password=password) as session:
        problems = session.admin_problems(dbname=mysql.dbname)
    role = marker_role(mysql.dbname)
    assert problems == [
        f"admin '{other}'@'%' may not grant the slot-user marker role {role!r} of database {mysql.dbname!r} "
        f"(only holders of its ADMIN OPTION may): as its creator (or root) run "
        f"GRANT `{role}` TO '{other}'@'%' WITH ADMIN OPTION"
    ]
