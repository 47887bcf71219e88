"""Database access: the embedded server, URLs, connections, source reads and COPY writes."""

from __future__ import annotations

from ..config import Config


def embedded_server(cfg: Config):
    from .embedded import EmbeddedPostgres

    return EmbeddedPostgres(cfg.database.embedded_dir, listen_addresses=cfg.database.embedded_listen_addresses)


def database_url(cfg: Config, *, start_embedded: bool = True) -> str:
    """The URL to use: ``database.url`` (or ``BQX_DATABASE_URL``), else the embedded PostgreSQL.

    The embedded server is started on demand, so ``bqxdask features`` works from a fresh clone.
    The returned URL carries the embedded server's password: print it only through
    :func:`bqxdask.db.urls.describe_url`.
    """
    if cfg.database.url:
        return cfg.database.url
    server = embedded_server(cfg)
    if start_embedded:
        server.start()
    return server.url


def read_url(cfg: Config, url: str) -> str:
    """Where source bars are read from: ``database.read_url`` (a read replica) or ``url``."""
    return cfg.database.read_url or url
