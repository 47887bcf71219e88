"""Database URLs: parse once, connect with psycopg2, print without secrets (SPEC §10).

A URL crosses process boundaries as a plain string (Dask workers receive it with each task)
and is turned into psycopg2 keyword arguments where it is used. Nothing here ever returns the
password in a printable form: :func:`describe_url` is what logs and messages show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)


@dataclass(frozen=True)
class DbTarget:
    """A parsed database URL. ``url`` is the secret-bearing original; never print it."""

    url: str
    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, url: str) -> DbTarget:
        # SQLAlchemy's URL parser, imported here: the package costs ~0.4 s at every process start
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            u = make_url(url)
        except (ArgumentError, ValueError):
            raise ConfigError(
                "database.url is not a valid database URL; fix: use postgresql+psycopg2://user:password@host:5432/dbname"
            ) from None
        if not u.drivername.startswith(("postgresql", "postgres")):
            raise ConfigError(
                f"database.url uses driver {u.drivername!r}; fix: bqxdask needs PostgreSQL, e.g. postgresql+psycopg2://…"
            )
        query = tuple(sorted((k, v if isinstance(v, str) else v[-1]) for k, v in u.query.items()))
        return cls(url, u.drivername, u.username, u.password, u.host, u.port, u.database, query)

    def connect_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg2.connect`."""
        kw: dict[str, Any] = {}
        if self.host:
            kw["host"] = self.host
        if self.port:
            kw["port"] = self.port
        if self.username:
            kw["user"] = self.username
        if self.password:
            kw["password"] = self.password
        if self.database:
            kw["dbname"] = self.database
        kw.update(dict(self.query))  # e.g. host=/socket/dir, sslmode=require
        kw.update(extra)
        return kw

    def describe(self) -> str:
        """Where we connect, safe to print: no password, no full URL."""
        query = dict(self.query)
        where = query.get("host") or self.host or "localhost"
        if self.port and not where.startswith("/"):
            where = f"{where}:{self.port}"
        elif where.startswith("/"):
            where = f"socket {where}"
        user = f" as {self.username}" if self.username else ""
        return f"database {self.database or '(default)'} at {where}{user}"

    def without_password(self) -> str:
        """The URL with the password removed (``bqxdask db url``)."""
        from sqlalchemy.engine import URL, make_url

        u = make_url(self.url)
        clean = URL.create(
            u.drivername,
            username=u.username,
            password=None,
            host=u.host,
            port=u.port,
            database=u.database,
            query=u.query,
        )
        return clean.render_as_string(hide_password=False)


def describe_url(url: str | None) -> str:
    if not url:
        return "no database URL"
    try:
        return DbTarget.parse(url).describe()
    except ConfigError:
        return "an unparsable database URL"


def redact_url(url: str) -> str:
    """A URL reduced to what is safe to print."""
    return describe_url(url)


def scrub(text: str, *secrets: str | None) -> str:
    """Remove passwords and URLs with credentials from an arbitrary message."""
    out = _PASSWORD_IN_URL.sub(r"\1***\3", text)
    out = _PASSWORD_KV.sub(r"\1***", out)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out
