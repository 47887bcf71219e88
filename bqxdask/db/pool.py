"""A small per-process connection pool with a hard cap (SPEC §5, issue: connection budget).

Each Dask worker process keeps at most ``limit`` connections per URL, reused across tasks;
a task that would exceed the cap waits. Connections found broken (the server restarted, a
network blip) are dropped and replaced; :func:`retrying` reruns a database step a few times
before giving up, so a database restart in the middle of a run costs a pause, not the run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from ..errors import ConnectionFailed, DatabaseUnavailable
from .connect import connect, describe
from .urls import scrub

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
#: idle connections per (URL, application_name): a worker of an external cluster serves many runs
_idle: dict[tuple[str, str | None], list[psycopg2.extensions.connection]] = {}
_slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}

TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, ConnectionFailed)
#: a statement we cancelled ourselves (lock wait limit) is an answer, not a lost connection
NOT_TRANSIENT = (psycopg2.errors.QueryCanceled,)


def _slot(url: str, limit: int) -> threading.BoundedSemaphore:
    """The cap for ``url``; a run with another ``max_connections_per_worker`` gets a new one
    (a long-lived worker of an external cluster serves many runs; borrowers of the old cap
    release into the semaphore they took)."""
    with _lock:
        held = _slots.get(url)
        if held is None or held[0] != limit:
            _slots[url] = (limit, threading.BoundedSemaphore(limit))
        return _slots[url][1]


@contextlib.contextmanager
def pooled(
    url: str, limit: int = 2, *, application_name: str | None = None
) -> Iterator[psycopg2.extensions.connection]:
    """Borrow a connection (at most ``limit`` per URL in this process) named ``application_name``."""
    slot = _slot(url, limit)
    slot.acquire()
    conn = None
    key = (url, application_name)
    try:
        with _lock:
            idle = _idle.setdefault(key, [])
            conn = idle.pop() if idle else None
            if conn is None:  # connections another run left idle here are not ours to reuse
                for other in [k for k in _idle if k[0] == url and k != key]:
                    for stale in _idle.pop(other):
                        _discard(stale)
        if conn is None or conn.closed:
            conn = connect(url, application_name=application_name)
        try:
            yield conn
        except BaseException:
            _discard(conn)
            conn = None
            raise
        if conn.closed or conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            _discard(conn)
        else:
            with _lock:
                _idle.setdefault(key, []).append(conn)
    finally:
        slot.release()


def _discard(conn: psycopg2.extensions.connection | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(Exception):
        conn.rollback()
    with contextlib.suppress(Exception):
        conn.close()


def reset(url: str | None = None) -> None:
    """Close idle connections (all URLs, or one)."""
    with _lock:
        for key in [k for k in _idle if url is None or k[0] == url]:
            for conn in _idle.pop(key, []):
                _discard(conn)


def retrying(step: Callable[[], T], *, url: str, attempts: int = 5, what: str = "") -> T:
    """Run ``step`` and retry it on connection-level errors with back-off (1, 2, 4, 8 s).

    When the last attempt fails too, the database is taken to be gone:
    :class:`~bqxdask.errors.DatabaseUnavailable`, one line naming it and the fix.
    """
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except NOT_TRANSIENT:
            raise
        except TRANSIENT as exc:
            if attempt == attempts:
                reset(url)
                first = scrub(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
                raise DatabaseUnavailable(
                    f"{describe(url)} is unreachable{' while ' + what if what else ''} ({first}, {attempts} "
                    "attempts); fix: check that the server runs (bqxdask db start for the embedded one) and "
                    "that the network reaches it, then rerun — finished units are kept"
                ) from None
            log.warning(
                "database connection lost %s (attempt %d/%d): %s; retrying in %.0fs",
                what,
                attempt,
                attempts,
                str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                delay,
            )
            reset(url)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
