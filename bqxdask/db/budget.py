"""The connection budget: what a run opens against what a server allows (SPEC §8, issue 9).

Each worker process holds at most ``database.max_connections_per_worker`` connections per URL
(:mod:`bqxdask.db.pool`); with a separate ``read_url`` on the same server that is twice as
many; the client holds one per URL while it plans. ``pipeline`` refuses a plan over the budget
before any work; ``check`` reports the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from .urls import DbTarget


def connections_needed(workers: int, per_worker: int, urls_on_server: int = 1) -> int:
    """Connections a run opens on one server: the workers' pools plus the client's own."""
    return workers * per_worker * urls_on_server + urls_on_server


def describe_need(workers: int, per_worker: int, urls_on_server: int = 1) -> str:
    """``17 (8 workers × 2 + 1 client)``: :func:`connections_needed` with how it adds up."""
    twice = " × 2 URLs" if urls_on_server == 2 else ""
    return (
        f"{connections_needed(workers, per_worker, urls_on_server)} ({workers} workers × {per_worker}{twice} "
        f"+ {urls_on_server} client)"
    )


def same_server(a: str, b: str) -> bool:
    ta, tb = DbTarget.parse(a), DbTarget.parse(b)
    ha = dict(ta.query).get("host") or ta.host
    hb = dict(tb.query).get("host") or tb.host
    return (ha, ta.port, ta.database) == (hb, tb.port, tb.database)


def servers(url: str, read_url: str) -> list[tuple[str, int]]:
    """(a URL of each server the run uses, how many of the run's URLs point at it)."""
    if read_url == url:
        return [(url, 1)]
    if same_server(url, read_url):
        return [(url, 2)]
    return [(url, 1), (read_url, 1)]


@dataclass(frozen=True)
class ServerBudget:
    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections
    in_use: int  # other client backends
    free: int  # what this role may still open, role/database CONNECTION LIMITs included
    role_limit: int  # -1: none
    database_limit: int  # -1: none
    capped_by: str | None  # "role CONNECTION LIMIT 10" when a limit is tighter than the server


def server_budget(cur: psycopg2.extensions.cursor) -> ServerBudget:
    """Read the server's connection limits and current use (other sessions only)."""
    cur.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
        (["max_connections", "superuser_reserved_connections", "reserved_connections"],),
    )
    s = {name: int(value) for name, value in cur.fetchall()}
    max_c = s.get("max_connections", 0)
    reserved = s.get("superuser_reserved_connections", 0) + s.get("reserved_connections", 0)
    cur.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    current = int(cur.fetchone()[0])
    free = max(0, max_c - reserved - current)
    capped_by = None
    cur.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user")
    role_limit = int(cur.fetchone()[0])
    cur.execute("SELECT datconnlimit FROM pg_database WHERE datname = current_database()")
    db_limit = int(cur.fetchone()[0])
    if role_limit >= 0:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()")
        role_free = max(0, role_limit - int(cur.fetchone()[0]))
        if role_free < free:
            free, capped_by = role_free, f"role CONNECTION LIMIT {role_limit}"
    if db_limit >= 0:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        db_free = max(0, db_limit - int(cur.fetchone()[0]))
        if db_free < free:
            free, capped_by = db_free, f"database CONNECTION LIMIT {db_limit}"
    return ServerBudget(max_c, reserved, current, free, role_limit, db_limit, capped_by)
