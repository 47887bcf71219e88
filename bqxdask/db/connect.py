"""Connections: psycopg2 from a URL string, UTC sessions, errors that name the fix (SPEC §10, §11).

Every connection says who it is (``application_name`` = ``bqxdask/<run_id>/<role>``, so an
operator finds the run in ``pg_stat_activity``), gives up connecting after a timeout, and has
TCP keepalives with a user timeout, so a database that vanishes (an Aurora failover, a cut
network) surfaces as an error in seconds instead of a socket that hangs for hours.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from ..errors import ConnectionFailed, DatabaseError, SourceError
from .urls import DbTarget, scrub

#: every session reads and writes times in UTC, whatever the server's default
SESSION_OPTIONS = "-c TimeZone=UTC -c statement_timeout=0"

#: libpq keepalives: a silent peer is probed after 10 s idle, every 5 s, given up after 3 misses;
#: unacknowledged data is given up after 30 s (tcp_user_timeout) — a dead server ends a statement
#: in well under a minute (README: Troubleshooting). A URL's own query parameters win.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
DEFAULT_CONNECT_TIMEOUT = 10
MAX_APPLICATION_NAME = 63  # PostgreSQL truncates application_name at NAMEDATALEN - 1 bytes

_identity = {"application_name": "bqxdask", "connect_timeout": DEFAULT_CONNECT_TIMEOUT}


def application_name(run_id: str | None, role: str) -> str:
    """``bqxdask/<run_id>/<role>`` (role: client, worker, check …), at most 63 bytes."""
    name = f"bqxdask/{run_id}/{role}" if run_id else f"bqxdask/{role}"
    return name.encode()[:MAX_APPLICATION_NAME].decode(errors="ignore")


def parse_application_name(name: str | None) -> tuple[str, str] | None:
    """``(run_id, role)`` of a run's ``bqxdask/<run_id>/<role>`` (:func:`application_name`), else None."""
    parts = (name or "").split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "bqxdask" else None


def identify(run_id: str | None, role: str, *, connect_timeout: int | None = None) -> None:
    """Name this process's connections from now on (the client and each worker call it once per run)."""
    _identity["application_name"] = application_name(run_id, role)
    if connect_timeout is not None:
        _identity["connect_timeout"] = int(connect_timeout)


def connect(
    url: str, *, application_name: str | None = None, connect_timeout: int | None = None, autocommit: bool = False
) -> psycopg2.extensions.connection:
    """Open a psycopg2 connection to ``url``; failures become one-line :class:`DatabaseError`."""
    target = DbTarget.parse(url)
    kwargs = {
        **KEEPALIVES,
        **target.connect_kwargs(
            options=SESSION_OPTIONS,
            application_name=application_name or _identity["application_name"],
            connect_timeout=connect_timeout or _identity["connect_timeout"],
        ),
    }
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        raise ConnectionFailed(
            f"cannot connect to {target.describe()}: {_first_line(exc, target)}; "
            "fix: check that the server runs (bqxdask db start for the embedded one) and BQX_DATABASE_URL"
        ) from None
    conn.autocommit = autocommit
    return conn


@contextlib.contextmanager
def connection(url: str, **kwargs: Any) -> Iterator[psycopg2.extensions.connection]:
    """A connection that is closed on exit (commits are the caller's business)."""
    conn = connect(url, **kwargs)
    try:
        yield conn
    finally:
        conn.close()


def _first_line(exc: BaseException, target: DbTarget | None = None) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return scrub(line, target.password if target else None)


def explain_db_error(exc: BaseException, url: str | None = None, what: str = "") -> DatabaseError:
    """Turn a psycopg2 error raised mid-work into a one-line DatabaseError."""
    target = DbTarget.parse(url) if url else None
    where = target.describe() if target else "the database"
    doing = f" while {what}" if what else ""
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return DatabaseError(
            f"permission denied{doing} on {where}: {_first_line(exc, target)}; "
            "fix: grant SELECT on the source schema and CREATE on the output schema (README: Production)"
        )
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return DatabaseError(
            f"lost the connection to {where}{doing}: {_first_line(exc, target)}; "
            "fix: check the server, then rerun (finished units are kept)"
        )
    return DatabaseError(f"database error{doing} on {where}: {_first_line(exc, target)}")


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def table_exists(cur: psycopg2.extensions.cursor, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',))
    return bool(cur.fetchone()[0])


def table_columns(cur: psycopg2.extensions.cursor, schema: str, table: str) -> dict[str, str]:
    """Column name → data type, in table order."""
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    )
    return {name: dtype for name, dtype in cur.fetchall()}


def require_table(cur: psycopg2.extensions.cursor, schema: str, table: str, *, fix: str) -> None:
    if not table_exists(cur, schema, table):
        raise SourceError(f"table {schema}.{table} does not exist; fix: {fix}")


@functools.lru_cache(maxsize=32)
def describe(url: str) -> str:
    return DbTarget.parse(url).describe()
