"""The client's eye on a running graph: notices from workers and the stall report (SPEC §11).

* Workers tell the client about waits (another run's unit lock, a session's lock) through a
  Dask event topic; each notice becomes a line in the console and ``run.log`` and the note of
  the progress line.
* When no unit has finished for ``run.stall_seconds``, the client asks every worker what its
  task threads are doing (:func:`bqxdask.pipeline.tasks.busy`, run by ``Client.run`` on the workers'
  event loops, so a stuck task does not keep it from answering) and looks up the database
  wait event of the backends they hold; one line per busy task, also into ``summary.json``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from ..db.connect import connection

log = logging.getLogger(__name__)


class RunWatch:
    """Context manager around ``as_completed``; call :meth:`finished` when a unit ends."""

    def __init__(self, client: Any, url: str, *, topic: str, progress: Any, stall_seconds: float) -> None:
        self.client, self.url, self.topic, self.progress = client, url, topic, progress
        self.stall_seconds = stall_seconds
        self.stalls: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="bqxdask stall watch", daemon=True)

    def __enter__(self) -> RunWatch:
        with contextlib.suppress(Exception):
            self.client.subscribe_topic(self.topic, self._notice)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.topic)

    def finished(self) -> None:
        self._last = time.monotonic()
        self.progress.note("")

    # -- notices ---------------------------------------------------------------------------------
    def _notice(self, event: Any) -> None:
        message = event[1] if isinstance(event, (tuple, list)) and len(event) == 2 else event
        log.warning("%s", message)
        self.progress.note(str(message))

    # -- stalls ----------------------------------------------------------------------------------
    def _monitor(self) -> None:
        while not self._stop.wait(1.0):
            idle = time.monotonic() - self._last
            if idle < self.stall_seconds:
                continue
            try:
                self._report(idle)
            except Exception as exc:  # the report must never break the run it reports on
                log.debug("stall report failed: %s", exc)
            self._last = time.monotonic()  # again after another stall_seconds without progress

    def _report(self, idle: float) -> None:
        from . import tasks

        per_worker = self.client.run(tasks.busy)
        pids = [e["backend_pid"] for entries in per_worker.values() for e in entries if e.get("backend_pid")]
        waits = _wait_events(self.url, pids) if pids else {}
        lines = []
        for worker, entries in sorted(per_worker.items()):
            for e in entries:
                wait = waits.get(e.get("backend_pid"))
                db = f", database: {wait}" if wait else ""
                lines.append(
                    {
                        "worker": worker,
                        "unit": e["unit"],
                        "stage": e["stage"],
                        "seconds": round(float(e["seconds"]), 1),
                        "wait_event": wait,
                    }
                )
                log.warning(
                    "stalled %.0f s (no unit finished): worker %s is in %s of %s for %.0f s%s",
                    idle,
                    worker,
                    e["stage"],
                    e["unit"],
                    e["seconds"],
                    db,
                )
        if not lines:
            log.warning(
                "stalled %.0f s (no unit finished) and no worker is busy: the scheduler may be waiting for "
                "workers or memory; see the dashboard",
                idle,
            )
        self.stalls.append({"after_seconds": round(idle, 1), "at": time.time(), "busy": lines})


def _wait_events(url: str, pids: list[int]) -> dict[int, str]:
    """``wait_event_type/wait_event`` (and state) of the given backends."""
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        out = {}
        for pid, state, wtype, wevent in cur.fetchall():
            out[pid] = f"{state or '?'}" + (f", waiting on {wtype}/{wevent}" if wtype else ", not waiting")
        conn.rollback()
        return out
