"""Who else is on the database: ``bqxdask check``'s neighbours group (SPEC §11, §8).

A run shares its database with other bqxdask runs and with whatever else the operators do.
Before it starts, ``check`` lists, from ``pg_stat_activity`` and ``pg_locks``:

- **other runs** — sessions whose ``application_name`` is ``bqxdask/<run_id>/<client|worker>``
  (SPEC §11), grouped by run: run id, host (``client_addr``, or "local socket"), sessions,
  since when, roles. A ⚠️ each: runs overlap safely (advisory lock per unit) but share the
  CPUs, the connections and the I/O of the server.
- **locks** — sessions holding (or queued for) a lock on a table of the output schema: ❌ for
  an ``ACCESS EXCLUSIVE`` or ``EXCLUSIVE`` lock — or a ``SHARE`` one, which stops the run's
  writes just as well — on a table or its index (every write of the run would wait behind it),
  ⚠️ for weaker ones.
- **long transactions** — sessions of any database of the server with a transaction open
  longer than :data:`LONG_TRANSACTION_SECONDS` (they hold back vacuum, and their locks last as
  long as they do): a ⚠️ each.

Every line names the pid, user, application, age and the first characters of the query, and
the fix — which may suggest ``SELECT pg_terminate_backend(<pid>)``; check never runs it.

A role that is neither superuser nor a member of ``pg_read_all_stats`` sees other roles'
sessions without their query, client address and times: the lines say so ("query hidden")
rather than guessing. ``pg_locks`` is visible to every role, so the locks are never hidden.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from .findings import FAIL, OK, WARN, Check, age

GROUP = "neighbours"
#: a transaction open longer than this is reported (SPEC §11: five minutes)
LONG_TRANSACTION_SECONDS = 300.0
#: characters of a session's query shown in a line
QUERY_CHARS = 80
#: lock modes that conflict with the ROW EXCLUSIVE lock of the run's COPY/DELETE: every write of
#: the run to the table waits behind them (CREATE INDEX takes SHARE, LOCK TABLE … EXCLUSIVE …)
EXCLUSIVE_MODES = ("AccessExclusiveLock", "ExclusiveLock", "ShareRowExclusiveLock", "ShareLock")
#: relation kinds whose locks stop the writes: tables, partitioned tables and their indexes
WRITTEN_KINDS = ("r", "p", "i", "I")
#: ``application_name`` of a bqxdask run's sessions (SPEC §11)
RUN_APPLICATION = re.compile(r"^bqxdask/(?P<run_id>[^/]+)/(?P<role>[a-z]+)$")
HIDDEN = "query hidden (not superuser / pg_read_all_stats)"
_SECRET = re.compile(r"((?:password|secret|token)\s*=?\s*)('[^']*'|\S+)", re.I)

_SESSIONS = """
SELECT a.pid, a.usename, a.application_name, a.datname, host(a.client_addr), a.client_hostname,
       a.backend_start, a.xact_start, a.state, a.query, a.backend_type,
       extract(epoch FROM now() - a.xact_start)::float8, extract(epoch FROM now() - a.backend_start)::float8,
       a.datname = current_database(),
       -- pg_blocking_pids walks the lock table: only for sessions that may be waiting on a lock
       CASE WHEN a.wait_event_type IS NULL OR a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid)
            ELSE '{}'::int[] END
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid() AND a.datname IS NOT NULL
ORDER BY a.pid
"""
_LOCKS = """
SELECT l.pid, c.relname, c.relkind, l.mode, l.granted
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid() AND n.nspname = %s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY l.pid, c.relname, l.mode
"""
_COLUMNS = (
    "pid",
    "user",
    "application_name",
    "database",
    "client_addr",
    "client_hostname",
    "backend_start",
    "xact_start",
    "state",
    "query",
    "backend_type",
    "xact_seconds",
    "backend_seconds",
    "this_database",
    "blocked_by",
)


def neighbour_checks(
    cur: Any, output_schema: str, *, long_seconds: float = LONG_TRANSACTION_SECONDS
) -> tuple[list[Check], dict[str, Any]]:
    """The neighbours lines and their JSON record, from the cursor of check's own connection.

    Parameters
    ----------
    cur : psycopg2 cursor
        Of the connection check opened (its own pid is left out of everything).
    output_schema : str
        ``database.output_schema``: the schema whose table locks matter.
    long_seconds : float
        Report transactions open longer than this (tests pass 0).
    """
    cur.execute(
        "SELECT current_database(), CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
        "'pg_read_all_stats') THEN pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') "
        "ELSE (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) END"
    )
    database, sees_all = cur.fetchone()
    cur.execute(_SESSIONS)
    rows = [dict(zip(_COLUMNS, row)) for row in cur.fetchall()]
    # autovacuum and other server processes give way by themselves: no terminate advice for them
    # (NULL: another role's session, whose type is hidden)
    server_processes = {r["pid"] for r in rows if r["backend_type"] not in (None, "client backend")}
    sessions = {r["pid"]: _session(r) for r in rows if r["pid"] not in server_processes}
    cur.execute(_LOCKS, (output_schema,))
    locks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for pid, table, kind, mode, granted in cur.fetchall():
        if pid in server_processes:
            continue
        locks[pid].append({"table": f"{output_schema}.{table}", "kind": kind, "mode": mode, "granted": bool(granted)})
    blocks: dict[int, list[int]] = defaultdict(list)
    for s in sessions.values():
        for holder in s["blocked_by"]:
            blocks[holder].append(s["pid"])

    runs = _runs([s for s in sessions.values() if s["this_database"]])
    locked = [
        _lock_record(sessions.get(pid) or _session({"pid": pid}), found, blocks[pid])
        for pid, found in sorted(locks.items())
    ]
    shown = {r["pid"] for r in locked}
    long_ = [
        _long_record(s, blocks[s["pid"]])
        for s in sessions.values()
        if s["xact_seconds"] is not None and s["xact_seconds"] >= long_seconds and s["pid"] not in shown
    ]
    hidden = sum(s["hidden"] for s in sessions.values())
    record = {
        "database": database,
        "output_schema": output_schema,
        "long_transaction_seconds": long_seconds,
        "sees_all_sessions": bool(sees_all),
        "hidden_sessions": hidden,
        "runs": runs,
        "sessions": locked + long_,
    }

    checks = [_run_check(r) for r in runs] or [
        Check(GROUP, "other runs", OK, f"no other bqxdask run on database {database}", {"runs": 0})
    ]
    checks += [_lock_check(r) for r in locked] or [
        Check(GROUP, "locks", OK, f"no other session locks a table of schema {output_schema}", {"locks": 0})
    ]
    note = ""
    if hidden:
        note = (
            f"; {hidden} session{'s' * (hidden != 1)} of other roles not visible ({HIDDEN}; fix: GRANT "
            "pg_read_all_stats to this role to see them)"
        )
    checks += [_long_check(r, database) for r in long_] or [
        Check(
            GROUP,
            "long transactions",
            OK,
            f"no transaction open longer than {age(long_seconds)} on this "
            f"server ({len(sessions)} other sessions){note}",
            {"long_transactions": 0, "hidden_sessions": hidden},
        )
    ]
    return checks, record


def _session(row: dict[str, Any]) -> dict[str, Any]:
    query = row.get("query")
    hidden = query == "<insufficient privilege>"
    # another session's statement may carry a secret (ALTER ROLE … PASSWORD '…')
    text = _SECRET.sub(r"\1***", " ".join((query or "").split()))
    return {
        "pid": row["pid"],
        "user": row.get("user"),
        "application_name": row.get("application_name") or "",
        "database": row.get("database"),
        "client_addr": row.get("client_addr"),
        "client_hostname": row.get("client_hostname"),
        "state": row.get("state"),
        "backend_start": row.get("backend_start"),
        "xact_start": row.get("xact_start"),
        "xact_seconds": row.get("xact_seconds"),
        "backend_seconds": row.get("backend_seconds"),
        "query": None if hidden else (text[:QUERY_CHARS] + ("…" if len(text) > QUERY_CHARS else "")),
        "hidden": hidden,
        "this_database": bool(row.get("this_database")),
        "blocked_by": list(row.get("blocked_by") or []),
    }


def _host(s: dict[str, Any]) -> str:
    if s["hidden"]:
        return "host hidden"
    if s["client_addr"] is None:
        return "local socket"
    return s["client_hostname"] or s["client_addr"]


def _who(s: dict[str, Any]) -> str:
    """``pid 4242 (user etl, application 'psql', idle in transaction, transaction open 12m03s)``."""
    app = s["application_name"]
    parts = [f"user {s['user'] or '?'}", f"application '{app}'" if app else "no application_name"]
    if s["hidden"]:
        parts.append("state hidden")
    else:
        parts.append(s["state"] or "?")
        if s["xact_seconds"] is not None:
            parts.append(f"transaction open {age(s['xact_seconds'])}")
    return f"pid {s['pid']} ({', '.join(parts)})"


def _query(s: dict[str, Any]) -> str:
    if s["hidden"]:
        return HIDDEN
    return f"query: {s['query']}" if s["query"] else "no query yet"


def _terminate(pid: int) -> str:
    return f"SELECT pg_terminate_backend({pid})"


def _public(s: dict[str, Any]) -> dict[str, Any]:
    """A session as JSON: times as ISO strings, seconds rounded."""
    out = {k: s[k] for k in ("pid", "user", "application_name", "database", "state", "query", "hidden", "blocked_by")}
    out["host"] = _host(s)
    out["xact_seconds"] = None if s["xact_seconds"] is None else round(s["xact_seconds"], 1)
    out["xact_start"] = s["xact_start"].isoformat() if s["xact_start"] else None
    return out


# -- other runs -------------------------------------------------------------------------------
def _runs(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sessions:
        m = RUN_APPLICATION.match(s["application_name"])
        if m:
            by_run[m["run_id"]].append({**s, "role": m["role"]})
    out = []
    for run_id, members in sorted(by_run.items()):
        starts = [s["backend_start"] for s in members if s["backend_start"] is not None]
        ages = [s["backend_seconds"] for s in members if s["backend_seconds"] is not None]
        roles: dict[str, int] = defaultdict(int)
        for s in members:
            roles[s["role"]] += 1
        out.append(
            {
                "run_id": run_id,
                "sessions": len(members),
                "roles": dict(sorted(roles.items())),
                "hosts": sorted({_host(s) for s in members}),
                "users": sorted({s["user"] or "?" for s in members}),
                "since": min(starts).isoformat() if starts else None,
                "age_seconds": round(max(ages), 1) if ages else None,
                "pids": sorted(s["pid"] for s in members),
            }
        )
    return out


def _run_check(r: dict[str, Any]) -> Check:
    roles = ", ".join(f"{n} {role}{'s' * (n != 1)}" for role, n in r["roles"].items())
    since = f"since {r['since'][11:16]} UTC ({age(r['age_seconds'])} ago)" if r["since"] else "since: hidden"
    detail = (
        f"run {r['run_id']}: {r['sessions']} session{'s' * (r['sessions'] != 1)} ({roles}) from "
        f"{', '.join(r['hosts'])}, user {', '.join(r['users'])}, {since}: it shares the server's CPUs, "
        "connections and I/O with this run (units are locked one run at a time, so they do not collide); "
        "fix: none needed if it is meant to run; a stale one is stopped on its host, or as a last resort "
        f"with SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
        f"'bqxdask/{r['run_id']}/%' (check does not run it)"
    )
    return Check(GROUP, "other runs", WARN, detail, {"kind": "run", **r})


# -- locks ------------------------------------------------------------------------------------
def _lock_record(s: dict[str, Any], found: list[dict[str, Any]], blocks: list[int]) -> dict[str, Any]:
    exclusive = [lk for lk in found if lk["mode"] in EXCLUSIVE_MODES and lk["kind"] in WRITTEN_KINDS]
    return {
        "kind": "lock",
        **_public(s),
        "locks": found,
        "blocks": sorted(blocks),
        "severity": FAIL if exclusive else WARN,
        "fix_sql": _terminate(s["pid"]),
    }


def _lock_check(r: dict[str, Any]) -> Check:
    held = [lk for lk in r["locks"] if lk["granted"]]
    waiting = [lk for lk in r["locks"] if not lk["granted"]]

    def listed(items: list[dict[str, Any]]) -> str:
        by_mode: dict[str, list[str]] = defaultdict(list)
        for lk in items:
            by_mode[lk["mode"]].append(lk["table"])
        return "; ".join(
            f"{mode} on {', '.join(tables[:4])}{' …' if len(tables) > 4 else ''}" for mode, tables in by_mode.items()
        )

    what = []
    if held:
        what.append(f"holds {listed(held)}")
    if waiting:
        what.append(f"waits for {listed(waiting)} (and queues every later lock on it)")
    effect = (
        "every write of the run to that table would wait for it"
        if r["severity"] == FAIL
        else "DDL on that table would wait for it"
    )
    blocking = f"; blocks pids {', '.join(map(str, r['blocks']))}" if r["blocks"] else ""
    detail = (
        f"{_who(r)} {' and '.join(what)}: {effect}{blocking}; {_query(r)}; fix: end that transaction "
        f"(COMMIT or ROLLBACK in that session), or as a last resort {r['fix_sql']} (check does not run it)"
    )
    return Check(GROUP, "locks", r["severity"], detail, r)


# -- long transactions ------------------------------------------------------------------------
def _long_record(s: dict[str, Any], blocks: list[int]) -> dict[str, Any]:
    return {
        "kind": "long transaction",
        **_public(s),
        "blocks": sorted(blocks),
        "severity": WARN,
        "fix_sql": _terminate(s["pid"]),
    }


def _long_check(r: dict[str, Any], database: str) -> Check:
    where = "this database" if r["database"] == database else f"database {r['database']}"
    blocking = f"; blocks pids {', '.join(map(str, r['blocks']))}" if r["blocks"] else ""
    detail = (
        f"{_who(r)} on {where} from {r['host']}: a long transaction holds back vacuum and keeps its locks"
        f"{blocking}; {_query(r)}; fix: COMMIT or ROLLBACK it in that session, or as a last resort "
        f"{r['fix_sql']} (check does not run it)"
    )
    return Check(GROUP, "long transactions", WARN, detail, r)
