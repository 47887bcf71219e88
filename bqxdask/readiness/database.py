"""The database group: reachable, server version, connections, privileges (SPEC §8, §11).

It opens check's own connection (``application_name`` ``bqxdask/check``) and, on it, also
assesses the neighbours (:mod:`.neighbours`) and — unless ``database.read_url`` points
elsewhere — the source tables (:mod:`.sources`).

- ``check`` never initialises or starts the embedded PostgreSQL (``bqxdask features`` does that
  on demand): a stopped one is a ⚠️ telling the operator to ``bqxdask db start`` and check again,
  and the database lines are then not assessed.
- Connections the plan opens (per server): every worker process keeps up to
  ``database.max_connections_per_worker`` connections per URL (:mod:`bqxdask.db.pool`), twice
  that when a separate ``read_url`` points at the same server, plus the client's own one (two
  with a read URL). A ``read_url`` on another server is assessed on that server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dask.utils import format_bytes

from ..config import Config
from ..db.budget import connections_needed, describe_need, server_budget, servers
from ..db.urls import describe_url
from ..errors import BqxError
from .cluster import PlanFacts
from .findings import CHECK_APPLICATION, FAIL, OK, WARN, Check, failed, guard, pct
from .neighbours import LONG_TRANSACTION_SECONDS, neighbour_checks
from .sources import sources_group

GROUP = "database"
#: connection budget: ❌ above the free connections, ⚠️ above this share of them
CONNECTIONS_WARN = 0.80


@dataclass(frozen=True)
class DatabaseFacts:
    """What the database group learned for the later groups."""

    embedded: bool = False
    #: why the source tables were not assessed ("" when they were, or for no known reason)
    reason: str = ""
    #: source rows per requested month, per pair (a pair is absent when its table was not read)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the neighbours group's record for the JSON report (None when not assessed)
    neighbours: dict[str, Any] | None = None


def database_group(
    cfg: Config, plan: PlanFacts, *, long_transaction_seconds: float = LONG_TRANSACTION_SECONDS
) -> tuple[DatabaseFacts, list[Check]]:
    """The database, neighbours and source tables lines, on check's own connection."""
    from ..db.connect import connect

    url = cfg.database.url
    checks: list[Check] = []
    if not url:
        from ..db import embedded_server

        server = embedded_server(cfg)
        status = server.status()
        if not status.initialized or not status.running:
            state = "not initialised" if not status.initialized else "stopped"
            return DatabaseFacts(True, f"the embedded PostgreSQL is {state}"), [
                Check(
                    GROUP,
                    "embedded server",
                    WARN,
                    f"embedded PostgreSQL in {status.data_dir} is {state}; bqxdask "
                    "features starts it on demand, check does not (it changes nothing); fix: bqxdask db start, then "
                    "bqxdask check again to assess the database and the source tables",
                    {"running": False, "state": state},
                )
            ]
        url = server.url
        checks.append(
            Check(
                GROUP,
                "embedded server",
                OK,
                status.describe().split(": ", 1)[1],
                {"running": True, "pid": status.pid, "port": status.port},
            )
        )
    embedded = not cfg.database.url
    t0 = time.perf_counter()
    try:
        conn = connect(url, application_name=CHECK_APPLICATION, connect_timeout=5, autocommit=True)
    except BqxError as exc:
        return DatabaseFacts(embedded, "the database is not reachable"), [
            *checks,
            Check(GROUP, "reachable", FAIL, str(exc), {"reachable": False}),
        ]
    try:
        ms = 1000 * (time.perf_counter() - t0)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '120s'")
            # check must never queue behind the locks it is about to report
            cur.execute("SET lock_timeout = '5s'")
            cur.execute(
                "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
                " pg_database_size(current_database())"
            )
            user, superuser, size = cur.fetchone()
            checks.append(
                Check(
                    GROUP,
                    "reachable",
                    OK,
                    f"{describe_url(url)} in {ms:.0f} ms, role {user}"
                    f"{' (superuser)' if superuser else ''}; database size {format_bytes(size)}",
                    {
                        "reachable": True,
                        "connect_ms": round(ms, 1),
                        "user": user,
                        "superuser": bool(superuser),
                        "database_bytes": size,
                    },
                )
            )
            # each line guards itself: one refused catalog query must not hide the others
            checks += guard(GROUP, "server", server_version_check, cur)
            rurl = cfg.database.read_url or url
            urls_on = dict(servers(url, rurl))  # the run's URLs per server, as the run counts them
            checks += guard(
                GROUP,
                "connections",
                connection_budget_check,
                cur,
                cfg,
                plan,
                label="connections",
                urls_on_server=urls_on[url],
            )
            checks += guard(GROUP, "privileges", output_privileges_check, cur, cfg, user)
            try:
                lines, record = neighbour_checks(cur, cfg.database.output_schema, long_seconds=long_transaction_seconds)
            except Exception as exc:
                lines, record = [failed("neighbours", "neighbours", exc)], None
            checks += lines
            if rurl != url:
                try:
                    rows, lines = read_replica_group(cfg, plan, rurl, same_server=rurl not in urls_on)
                except Exception as exc:
                    rows, lines = {}, [failed(GROUP, "read_url", exc)]
            else:
                rows, lines = sources_group(cur, cfg)
            checks += lines
    finally:
        conn.close()
    return DatabaseFacts(embedded, "", rows, record), checks


def server_version_check(cur: Any) -> Check:
    cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, version()")
    short, num, full = cur.fetchone()
    major = num // 10000
    values = {"server_version": short, "server_version_num": num, "version": full}
    platform_ = full.split(",")[0]
    if major < 13:
        return Check(
            GROUP,
            "server",
            WARN,
            f"{platform_}: older than PostgreSQL 13, which bqxdask is not tested "
            "on; fix: upgrade the server (production runs Aurora PostgreSQL 16)",
            values,
        )
    return Check(GROUP, "server", OK, platform_, values)


def connection_budget_check(cur: Any, cfg: Config, plan: PlanFacts, *, label: str, urls_on_server: int) -> Check:
    """The connections the run opens on this server against what the server has free."""
    b = server_budget(cur)
    max_c, reserved, current, free = b.max_connections, b.reserved, b.in_use, b.free
    limits = [b.capped_by] if b.capped_by else []
    workers = plan.workers or cfg.cluster.n_workers
    per = cfg.database.max_connections_per_worker
    need = connections_needed(workers, per, urls_on_server)
    values = {
        "max_connections": max_c,
        "reserved": reserved,
        "in_use": current,
        "free": free,
        "needed": need,
        "workers": workers,
        "per_worker": per,
        "urls_on_server": urls_on_server,
        "role_connection_limit": b.role_limit,
        "database_connection_limit": b.database_limit,
    }
    run = f"the run opens {describe_need(workers, per, urls_on_server)}"
    server = f"max_connections {max_c} − {reserved} reserved − {current} in use = {free} free" + (
        f" (capped by the {limits[0]})" if limits else ""
    )
    fix_workers = max(1, (int(free * CONNECTIONS_WARN) - urls_on_server) // max(1, per * urls_on_server))
    fix = (
        f"fix: lower database.max_connections_per_worker or --workers (e.g. --workers {fix_workers}), "
        "or raise max_connections on the server"
    )
    if need > free:
        return Check(GROUP, label, FAIL, f"{run} > {server}: tasks would fail with 'too many clients'; {fix}", values)
    if need > CONNECTIONS_WARN * free:
        return Check(
            GROUP,
            label,
            WARN,
            f"{run} = {pct(need, free)} of {server}: other clients may push the server over; {fix}",
            values,
        )
    return Check(GROUP, label, OK, f"{run} of {server}", values)


def output_privileges_check(cur: Any, cfg: Config, user: str) -> Check:
    """The output schema: creatable, or USAGE and CREATE on it and read/write on its tables."""
    schema = cfg.database.output_schema
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,))
    exists = bool(cur.fetchone()[0])
    values: dict[str, Any] = {"output_schema": schema, "exists": exists}
    if not exists:
        cur.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
        ok = bool(cur.fetchone()[0])
        values["create_on_database"] = ok
        if ok:
            return Check(
                GROUP,
                "privileges",
                OK,
                f"role {user} may create the output schema {schema} (it does not exist yet; the first run creates it)",
                values,
            )
        return Check(
            GROUP,
            "privileges",
            FAIL,
            f"output schema {schema} does not exist and role {user} may not "
            f"create it (no CREATE on the database); fix: CREATE SCHEMA {schema} AUTHORIZATION {user}, or "
            f"GRANT CREATE ON DATABASE … TO {user}",
            values,
        )
    cur.execute("SELECT has_schema_privilege(%s, 'CREATE'), has_schema_privilege(%s, 'USAGE')", (schema, schema))
    create, usage = (bool(v) for v in cur.fetchone())
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT ("
        " has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')"
        " AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE'))"
        " ORDER BY 1",
        (schema,),
    )
    locked = [r[0] for r in cur.fetchall()]
    values.update({"create": create, "usage": usage, "tables_without_write": locked})
    if not (create and usage):
        return Check(
            GROUP,
            "privileges",
            FAIL,
            f"role {user} lacks {'CREATE' if not create else 'USAGE'} on "
            f"schema {schema}; fix: GRANT USAGE, CREATE ON SCHEMA {schema} TO {user}",
            values,
        )
    if locked:
        shown = ", ".join(f"{schema}.{t}" for t in locked[:4]) + (f" (+{len(locked) - 4})" if len(locked) > 4 else "")
        return Check(
            GROUP,
            "privileges",
            FAIL,
            f"role {user} cannot write {shown}; fix: GRANT SELECT, INSERT, "
            f"UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {user} (or run as their owner)",
            values,
        )
    return Check(
        GROUP,
        "privileges",
        OK,
        f"role {user}: USAGE and CREATE on schema {schema}, read/write on its existing tables",
        values,
    )


def read_replica_group(
    cfg: Config, plan: PlanFacts, rurl: str, *, same_server: bool
) -> tuple[dict[str, dict[str, int]], list[Check]]:
    """``database.read_url``: reachable, its own connection budget on another server, the source tables."""
    from ..db.connect import connect

    try:
        conn = connect(rurl, application_name=CHECK_APPLICATION, connect_timeout=5, autocommit=True)
    except BqxError as exc:
        return {}, [Check(GROUP, "read_url", FAIL, f"database.read_url: {exc}", {"reachable": False})]
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '120s'")
            cur.execute("SELECT pg_is_in_recovery()")
            replica = bool(cur.fetchone()[0])
            checks = [
                Check(
                    GROUP,
                    "read_url",
                    OK,
                    f"{describe_url(rurl)}: reachable{', a read replica' if replica else ''}",
                    {"reachable": True, "replica": replica},
                )
            ]
            if not same_server:
                checks += guard(
                    GROUP,
                    "read connections",
                    connection_budget_check,
                    cur,
                    cfg,
                    plan,
                    label="read connections",
                    urls_on_server=1,
                )
            rows, lines = sources_group(cur, cfg)
    finally:
        conn.close()
    return rows, checks + lines
