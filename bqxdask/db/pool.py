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

from ..errors import ConnectionFailed
from .connect import connect

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_idle: dict[str, list[psycopg2.extensions.connection]] = {}
_slots: dict[str, threading.BoundedSemaphore] = {}

TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, ConnectionFailed)


def _slot(url: str, limit: int) -> threading.BoundedSemaphore:
    with _lock:
        if url not in _slots:
            _slots[url] = threading.BoundedSemaphore(limit)
        return _slots[url]


@contextlib.contextmanager
def pooled(url: str, limit: int = 2) -> Iterator[psycopg2.extensions.connection]:
    """Borrow a connection (at most ``limit`` per URL in this process)."""
    slot = _slot(url, limit)
    slot.acquire()
    conn = None
    try:
        with _lock:
            idle = _idle.setdefault(url, [])
            conn = idle.pop() if idle else None
        if conn is None or conn.closed:
            conn = connect(url, application_name="bqxdask-worker")
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
                _idle.setdefault(url, []).append(conn)
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
        urls = [url] if url else list(_idle)
        for u in urls:
            for conn in _idle.pop(u, []):
                _discard(conn)


def retrying(step: Callable[[], T], *, url: str, attempts: int = 5, what: str = "") -> T:
    """Run ``step`` and retry it on connection-level errors with back-off (1, 2, 4, 8 s)."""
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except TRANSIENT as exc:
            if attempt == attempts:
                raise
            log.warning("database connection lost %s (attempt %d/%d): %s; retrying in %.0fs",
                        what, attempt, attempts, str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                        delay)
            reset(url)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
