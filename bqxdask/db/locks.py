"""Operating beside other runs and other users of the database (SPEC §11).

* **Unit locks.** Each (output schema, family, pair, month) unit is written under a
  session-level PostgreSQL advisory lock, so two runs — on one machine or on two, on a
  LocalCluster or an external cluster — never write the same unit at once. The database is
  what every run shares, so it is the one place such a lock can live.
* **Who holds it.** A run records itself in ``<output_schema>.runs`` (run id, host, pid) and
  names its connections ``bqxdask/<run_id>/<role>``; a waiter turns the holder's backend into
  "run 20261201T…-ab12 on host h, pid 4242".
* **No silent waits.** :class:`LockWatch` runs beside a transaction: once a statement has
  waited ``lock_timeout`` seconds on a lock, it reports the blocking sessions
  (``pg_blocking_pids``, ``pg_stat_activity``); after ``lock_wait_limit`` it cancels the
  statement and the unit fails with that report and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from ..errors import BqxError
from .connect import connect, parse_application_name, qualified

log = logging.getLogger(__name__)

#: how often a waiter tries the lock again / the watch looks at a waiting statement
POLL_SECONDS = 0.5


class LockWaitExceeded(BqxError):
    """A unit waited longer than ``database.lock_wait_limit`` on another session's lock."""


def lock_key(schema: str, *parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``(schema, *parts)``."""
    digest = hashlib.blake2b("|".join(("bqxdask", schema, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def xact_lock(cur: psycopg2.extensions.cursor, schema: str, *parts: str) -> None:
    """Serialise this transaction with every other one taking the same key (DDL, rejected bars)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, *parts),))


# -- who is who ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """A database session as an operator needs to see it."""

    pid: int
    user: str | None
    application: str | None
    xact_seconds: float | None
    state: str | None
    query: str | None

    def describe(self) -> str:
        age = "no open transaction" if self.xact_seconds is None else f"transaction open {_age(self.xact_seconds)}"
        query = (self.query or "").replace("\n", " ").strip()
        query = f", query: {query[:80]!r}" if query else ""
        return (
            f"pid {self.pid} (user {self.user or '?'}, application {self.application or '-'!r}, {age}, "
            f"{self.state or '?'}{query})"
        )


_SESSION_COLUMNS = (
    "a.pid, a.usename, a.application_name, extract(epoch FROM now() - a.xact_start)::float8, "
    "a.state, left(a.query, 200)"
)


def blockers(cur: psycopg2.extensions.cursor, pid: int) -> list[Session]:
    """The sessions that keep backend ``pid`` waiting on a lock (empty when it is not waiting)."""
    cur.execute(
        f"SELECT {_SESSION_COLUMNS} FROM unnest(pg_blocking_pids(%s)) AS b(pid) "
        "JOIN pg_stat_activity a ON a.pid = b.pid ORDER BY a.pid",
        (pid,),
    )
    return [Session(*row) for row in cur.fetchall()]


def waiting_seconds(cur: psycopg2.extensions.cursor, pid: int) -> float | None:
    """How long backend ``pid`` has waited for a lock not yet granted (None: not waiting)."""
    cur.execute(
        "SELECT extract(epoch FROM now() - min(waitstart))::float8 FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)
    )
    row = cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    host: str | None = None
    pid: int | None = None

    def describe(self) -> str:
        where = f" on host {self.host}" if self.host else ""
        pid = f", pid {self.pid}" if self.pid else ""
        return f"run {self.run_id}{where}{pid}"


def register_run(cur: psycopg2.extensions.cursor, schema: str, run_id: str) -> None:
    """Record this run (host, pid) so that others can say whom they wait for."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (run_id, host, pid, started_at) VALUES (%s, %s, %s, now()) ON CONFLICT (run_id) DO NOTHING"
        ).format(qualified(schema, "runs")),
        (run_id, socket.gethostname(), os.getpid()),
    )


def run_of(cur: psycopg2.extensions.cursor, schema: str, application: str | None) -> RunInfo | None:
    """The bqxdask run behind an ``application_name`` such as ``bqxdask/<run_id>/worker``."""
    parsed = parse_application_name(application)
    if parsed is None:
        return None
    run_id = parsed[0]
    cur.execute("SAVEPOINT bqx_run_of")  # a missing runs table (an older schema) must not abort the caller
    try:
        cur.execute(sql.SQL("SELECT host, pid FROM {} WHERE run_id = %s").format(qualified(schema, "runs")), (run_id,))
        row = cur.fetchone()
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT bqx_run_of")
        return RunInfo(run_id)
    cur.execute("RELEASE SAVEPOINT bqx_run_of")
    return RunInfo(run_id, row[0], row[1]) if row else RunInfo(run_id)


def advisory_holder(cur: psycopg2.extensions.cursor, key: int) -> Session | None:
    """The session holding advisory lock ``key`` (None when it is free again)."""
    cur.execute(
        f"SELECT {_SESSION_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s LIMIT 1",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    )
    row = cur.fetchone()
    return Session(*row) if row else None


def holder_description(cur: psycopg2.extensions.cursor, schema: str, session: Session | None) -> str:
    if session is None:
        return "another session (gone now)"
    run = run_of(cur, schema, session.application)
    return run.describe() if run else f"session {session.describe()}"


# -- the unit lock ------------------------------------------------------------------------------
@contextlib.contextmanager
def unit_lock(
    conn: psycopg2.extensions.connection,
    schema: str,
    family: str,
    pair: str,
    month: str,
    *,
    limit: float,
    report: Callable[[str], None],
) -> Iterator[str | None]:
    """Hold the unit's advisory lock for the block; yields whom we waited for (None: nobody).

    While another session holds it, says so through ``report`` at once and every
    ``lock_timeout``-independent 30 s, and tries again every :data:`POLL_SECONDS`; gives up
    after ``limit`` seconds with :class:`LockWaitExceeded`.
    """
    key = lock_key(schema, family, pair, month)
    label = f"{pair} {month} {family}"
    waited_for, t0, last_report = None, time.monotonic(), -1e9
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            got = cur.fetchone()[0]
            conn.commit()  # the lock is the session's; leave no transaction open while waiting
            if got:
                break
            now = time.monotonic()
            if waited_for is None or now - last_report >= 30:
                waited_for = holder_description(cur, schema, advisory_holder(cur, key))
                conn.commit()
                report(f"waiting for {waited_for}: {label} (it holds the unit's lock)")
                last_report = now
            if now - t0 > limit:
                raise LockWaitExceeded(
                    f"{label}: waited {_age(now - t0)} for {waited_for} to finish this unit; fix: let that run "
                    "finish (or stop it), then rerun — finished units are kept"
                )
            time.sleep(POLL_SECONDS)
    try:
        yield waited_for
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg2.Error), conn.cursor() as cur:
                conn.rollback()
                cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
                conn.commit()


# -- lock waits of our own statements -------------------------------------------------------------
class LockWatch:
    """Watch ``conn`` from another thread while the block runs (see the module docstring).

    The watch opens its own short connection only once a statement has run for
    ``lock_timeout`` seconds, so the usual fast transaction costs nothing but a timer.
    """

    def __init__(
        self,
        conn: psycopg2.extensions.connection,
        url: str,
        what: str,
        *,
        lock_timeout: float,
        limit: float,
        report: Callable[[str], None],
        application_name: str | None = None,
    ) -> None:
        self.conn, self.url, self.what, self.application_name = conn, url, what, application_name
        self.lock_timeout, self.limit, self.report = lock_timeout, limit, report
        self.exceeded: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"lockwatch {what}", daemon=True)

    def __enter__(self) -> LockWatch:
        self.pid = self.conn.get_backend_pid()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.exceeded and exc_type is not None and issubclass(exc_type, psycopg2.errors.QueryCanceled):
            with contextlib.suppress(psycopg2.Error):
                self.conn.rollback()
            raise LockWaitExceeded(self.exceeded) from None

    def _watch(self) -> None:
        if self._stop.wait(self.lock_timeout):
            return
        watcher = None
        reported = -1e9
        try:
            watcher = connect(self.url, autocommit=True, application_name=self.application_name)
            with watcher.cursor() as cur:
                while not self._stop.is_set():
                    waited = waiting_seconds(cur, self.pid)
                    if waited is not None and waited >= self.lock_timeout:
                        who = "; ".join(s.describe() for s in blockers(cur, self.pid)) or "a session that just left"
                        message = f"{self.what}: waiting {_age(waited)} on a lock held by {who}"
                        if waited >= self.limit:
                            self.exceeded = (
                                f"{message}; gave up after database.lock_wait_limit = "
                                f"{self.limit:g} s; fix: end that session's transaction (COMMIT or "
                                "ROLLBACK there, or SELECT pg_terminate_backend(<pid>) as an "
                                "administrator), then rerun — finished units are kept"
                            )
                            self.conn.cancel()
                            return
                        if waited - reported >= self.lock_timeout:
                            self.report(message)
                            reported = waited
                    self._stop.wait(min(1.0, self.lock_timeout))
        except Exception as exc:  # the watch must never break the unit it watches
            log.debug("lock watch of %s stopped: %s", self.what, exc)
        finally:
            if watcher is not None:
                with contextlib.suppress(Exception):
                    watcher.close()


def _age(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
