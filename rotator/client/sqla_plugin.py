"""The SQLAlchemy plugin behind the seed 002 drop-in's URL: ``create_engine(get_database_credentials(...))``.

The URL that :data:`rotator.client.seed002.get_database_credentials` returns names this plugin
(``?plugin=rotator_client``) and the loader's arguments (:data:`rotator.client.seed002.LOADER_PARAMS`: names,
never a value). SQLAlchemy calls the plugin when it makes the engine: the plugin takes its parameters and the
URL's user and password out of the engine URL and hooks the engine to that loader with
:func:`rotator.client.sqla.install`, so each new connection logs in with the loader's current credentials (and
retries once on a login failure) instead of the ones frozen in the string.

Imported by SQLAlchemy only, through ``sqlalchemy.dialects.plugins`` (registered by ``rotator.client.seed002``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import CreateEnginePlugin
from sqlalchemy.engine.url import URL

from rotator.client.seed002 import LOADER_PARAMS, get_database_credentials


class RotatingUrlPlugin(CreateEnginePlugin):
    def __init__(self, url: URL, kwargs: dict[str, Any]) -> None:
        super().__init__(url, kwargs)
        self.loader_args: dict[str, str | None] = {
            arg: str(url.query[param]) if param in url.query else None for arg, param in LOADER_PARAMS.items()
        }

    def update_url(self, url: URL) -> URL:
        # The login is the loader's, at each connection; the string's copy goes stale at the first rotation.
        # (URL.set() takes None as "unchanged": _replace, NamedTuple's own API, clears them.)
        return url.difference_update_query(list(LOADER_PARAMS.values()))._replace(username=None, password=None)

    def engine_created(self, engine: Any) -> None:
        from rotator.client import sqla

        sqla.install(engine, get_database_credentials.loader(**self.loader_args))
