"""The seed 002 URL's SQLAlchemy plugin, without a database: what it does to the engine it is named in."""

from __future__ import annotations

import sqlalchemy
import sqlalchemy.exc

from rotator.client.seed002 import get_database_credentials, register_sqlalchemy_plugin

URL = (
    "postgresql+psycopg://pazpaz:pw-stale@db.internal:5432/pz"
    "?plugin=rotator_client&rotator_environment=production&rotator_secret=unit/seed002&rotator_region=eu-west-1"
    "&sslmode=require"
)


def test_plugin_hooks_the_engine_to_the_named_loader() -> None:
    assert register_sqlalchemy_plugin()
    engine = sqlalchemy.create_engine(URL)
    # The stale login and the plugin's parameters are gone; the rest of the URL stays.
    assert (engine.url.username, engine.url.password) == (None, None)
    assert (engine.url.host, engine.url.port, engine.url.database) == ("db.internal", 5432, "pz")
    assert dict(engine.url.query) == {"sslmode": "require"}
    assert len(engine.dialect.dispatch.do_connect) == 1 and len(engine.pool.dispatch.checkout) == 1
    loader = get_database_credentials.loader("production", "unit/seed002", "eu-west-1")
    assert loader.source.label.endswith("unit/seed002")
    engine.dispose()
