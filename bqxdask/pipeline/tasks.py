"""What runs on the Dask workers: read → quarantine → prepare → compute → write (SPEC §3–§6).

Everything a task needs travels in a :class:`UnitSpec` of plain values (URL strings, numbers,
frozen config dataclasses): no engine, connection or open file crosses a process boundary,
so the same graph runs on a LocalCluster or on any existing Dask cluster.

Each function is idempotent — a task that a killed worker leaves half done is simply run
again: SQL units are replaced in one transaction, Parquet files renamed into place, the
checkpoint written last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .. import __version__, _faults
from ..checkpoints import Checkpoint, load_checkpoint, unit_current
from ..config import FamiliesConfig
from ..db import pool
from ..db.connect import application_name
from ..db.locks import LockWatch, unit_lock
from ..db.schema import feature_table
from ..db.source import BARS_META, SourceTable, read_before, read_range
from ..db.writer import copy_buffer, replace_rejected, replace_unit
from ..features import registry
from ..features.prepare import prepare
from ..outputs import parquet
from ..plan import warmup_read_rows
from ..quality import validate_bars
from ..results import FeatureBlock, Status, UnitResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitSpec:
    """Everything the tasks of one (pair, month) unit need, as plain picklable values."""

    url: str
    read_url: str
    source: SourceTable
    output_schema: str
    pair: str
    month: str
    lo: dt.datetime
    hi: dt.datetime
    warmup: int
    baseline: float
    families: FamiliesConfig
    run_id: str
    fingerprint: str
    config_hashes: dict[str, str] = field(hash=False)
    parquet_dir: str | None
    write_sql: bool
    max_connections: int
    lock_timeout: float = 30.0
    lock_wait_limit: float = 600.0
    #: when the run started, by the database's clock: a unit another run wrote since then is
    #: not written again, even under --full-refresh (SPEC §11)
    started_at: dt.datetime | None = None

    @property
    def application_name(self) -> str:
        return application_name(self.run_id, "worker")

    @property
    def topic(self) -> str:
        return event_topic(self.run_id)


def event_topic(run_id: str) -> str:
    """The Dask event topic on which a run's workers tell its client about waits."""
    return f"bqxdask-{run_id}"


# -- what each worker is doing (the client's stall report asks for it, SPEC §11) ----------------
_activity_lock = threading.Lock()
_activity: dict[int, dict[str, Any]] = {}


@contextlib.contextmanager
def activity(unit: str, stage: str, conn: Any = None) -> Iterator[None]:
    """Mark this thread as busy with ``unit`` in ``stage`` (read, compute, Parquet, SQL, lock)."""
    entry = {
        "unit": unit,
        "stage": stage,
        "since": time.time(),
        "backend_pid": conn.get_backend_pid() if conn is not None and not conn.closed else None,
    }
    key = threading.get_ident()
    with _activity_lock:
        previous = _activity.get(key)
        _activity[key] = entry
    try:
        yield
    finally:
        with _activity_lock:
            if previous is None:
                _activity.pop(key, None)
            else:
                _activity[key] = previous


def busy() -> list[dict[str, Any]]:
    """What this worker's task threads are doing now (run on the worker by ``Client.run``)."""
    now = time.time()
    with _activity_lock:
        return [{**e, "seconds": now - e["since"]} for e in _activity.values()]


def notifier(spec: UnitSpec) -> Callable[[str], None]:
    """A callable that sends one-line notices (a lock wait, say) to the client's progress line
    and run log. Make it in the task's thread: it may then be called from any thread (the
    lock watch has its own), which ``get_worker`` alone could not serve."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not inside a Dask worker (compute_features, tests)
        worker = None

    def tell(message: str) -> None:
        if worker is None:
            log.warning("%s", message)
        else:
            log.info("%s", message)
            worker.log_event(spec.topic, message)

    return tell


@dataclass(frozen=True)
class UnitCounts:
    """What preparing a unit found: warm-up rows, accepted, rejected and duplicate bars, seconds.

    It travels with the unit's frames in ``DataFrame.attrs[COUNTS]``, from the prepared frame to
    the feature frames and the writers.
    """

    n_warm: int
    rows: int
    rejected: int
    duplicates: int
    seconds: float


COUNTS = "bqxdask_unit"
#: the prepared frame's columns (SPEC §4.1, §4.2): what every family reads
PREPARED_COLUMNS = ("open_idx", "high_idx", "low_idx", "idx", "bqx")
PREPARED_META = pd.DataFrame(
    {c: pd.Series([], dtype="float64") for c in PREPARED_COLUMNS}, index=pd.DatetimeIndex([], tz="UTC", name="time")
)


def counts_of(frame: pd.DataFrame) -> UnitCounts:
    return frame.attrs[COUNTS]


# -- reading ----------------------------------------------------------------------------------
def read_month(spec: UnitSpec) -> pd.DataFrame:
    """Raw bars of the unit's month (the body of the Dask ``from_map`` partitions)."""

    def step() -> pd.DataFrame:
        with (
            pool.pooled(spec.read_url, spec.max_connections, application_name=spec.application_name) as conn,
            activity(f"{spec.pair} {spec.month}", "read", conn),
            conn.cursor() as cur,
        ):
            frame = read_range(cur, spec.source, spec.lo, spec.hi)
            conn.rollback()
            return frame

    return pool.retrying(step, url=spec.read_url, what=f"reading {spec.source.label} {spec.month}")


def read_warmup(spec: UnitSpec) -> pd.DataFrame:
    """The last ``spec.warmup`` *accepted* bars before the month (fewer at the series start)."""
    if spec.warmup == 0:
        return read_range_empty()
    limit = warmup_read_rows(spec.warmup)

    def step() -> pd.DataFrame:
        nonlocal limit
        with (
            pool.pooled(spec.read_url, spec.max_connections, application_name=spec.application_name) as conn,
            activity(f"{spec.pair} {spec.month} warm-up", "read", conn),
            conn.cursor() as cur,
        ):
            while True:
                raw, full = read_before(cur, spec.source, spec.lo, limit)
                if full and len(raw):
                    # the oldest time may have more rows beyond the limit: judge it another time
                    raw = raw[raw.index > raw.index[0]]
                accepted, _ = validate_bars(raw)
                if len(accepted) >= spec.warmup or not full:
                    conn.rollback()
                    return accepted.iloc[-spec.warmup :]
                limit *= 2

    return pool.retrying(step, url=spec.read_url, what=f"reading the warm-up of {spec.source.label} {spec.month}")


def read_range_empty() -> pd.DataFrame:
    return BARS_META.copy()


# -- preparing --------------------------------------------------------------------------------
def prepare_unit(raw: pd.DataFrame, warm: pd.DataFrame, spec: UnitSpec) -> pd.DataFrame:
    """Quarantine the month's bad bars (SPEC §3), then build the prepared frame with warm-up.

    The frame holds the warm-up rows, then the month's accepted bars; its :class:`UnitCounts`
    are in ``attrs``.
    """
    t0 = time.perf_counter()
    accepted, rejected = validate_bars(raw)
    duplicates = len(raw) - len(accepted) - len(rejected)

    def record() -> None:
        with (
            pool.pooled(spec.url, spec.max_connections, application_name=spec.application_name) as conn,
            activity(f"{spec.pair} {spec.month} rejected bars", "SQL", conn),
            _watch(conn, spec, f"recording the rejected bars of {spec.pair} {spec.month}", notifier(spec)),
        ):
            replace_rejected(
                conn,
                spec.output_schema,
                spec.pair,
                spec.lo,
                spec.hi,
                [t.to_pydatetime() for t in rejected["time"]],
                list(rejected["reason"]),
                spec.run_id,
            )

    pool.retrying(record, url=spec.url, what=f"recording rejected bars of {spec.pair} {spec.month}")
    bars = pd.concat([warm, accepted]) if len(warm) else accepted
    frame = prepare(bars, spec.baseline, spec.families) if len(bars) else PREPARED_META.copy()
    frame.attrs[COUNTS] = UnitCounts(len(warm), len(accepted), len(rejected), duplicates, time.perf_counter() - t0)
    return frame


# -- computing ------------------------------------------------------------------------------
def compute_and_write(prepared: pd.DataFrame, family_name: str, spec: UnitSpec) -> UnitResult:
    """One family of the unit: its :class:`FeatureBlock` (warm-up rows dropped, a view), the COPY
    payload, then :func:`write_block`."""
    counts = counts_of(prepared)
    t0 = time.perf_counter()
    with activity(f"{spec.pair} {spec.month} {family_name}", "compute"):
        _faults.point("compute")
        block = registry.get(family_name).compute_block(prepared, spec.families).tail(counts.n_warm)
        payload = copy_buffer(block.times_us, block.rows) if spec.write_sql else None
    return write_block(block, payload, counts, family_name, spec, seconds_compute=time.perf_counter() - t0)


# -- writing ----------------------------------------------------------------------------------
def write_block(
    block: FeatureBlock,
    payload: bytes | memoryview | None,
    counts: UnitCounts,
    family_name: str,
    spec: UnitSpec,
    *,
    seconds_compute: float,
) -> UnitResult:
    """Holding the unit's advisory lock (SPEC §11), write the Parquet file beside the SQL
    (DELETE + COPY), then record the checkpoint, in one transaction; return the outcome. A unit
    that another run wrote while this one waited for the lock is not written again."""
    label = f"{spec.pair} {spec.month} {family_name}"
    columns = list(block.columns)
    checkpoint = Checkpoint(
        family_name,
        spec.pair,
        spec.month,
        spec.config_hashes[family_name],
        spec.fingerprint,
        len(block),
        counts.rejected,
        spec.write_sql,
        spec.parquet_dir is not None,
    )
    timings: dict[str, float] = {}

    tell = notifier(spec)

    def write_parquet() -> str:
        t0 = time.perf_counter()
        with activity(label, "Parquet"):
            parquet.clean_unit_temporary(spec.parquet_dir, family_name, spec.pair, spec.month)
            path = parquet.write_block(
                spec.parquet_dir, family_name, spec.pair, spec.month, block, _metadata(family_name, spec)
            )
        timings["parquet"] = time.perf_counter() - t0
        return path

    def step() -> tuple[str | None, str | None]:
        with pool.pooled(spec.url, spec.max_connections, application_name=spec.application_name) as conn:
            with (
                activity(label, "lock", conn),
                unit_lock(
                    conn,
                    spec.output_schema,
                    family_name,
                    spec.pair,
                    spec.month,
                    limit=spec.lock_wait_limit,
                    report=tell,
                ) as waited_for,
            ):
                if _written_by_another(conn, spec, family_name):
                    return None, waited_for
                t_lock = time.perf_counter()
                # the Parquet file is written beside the DELETE + COPY, under the same lock: this
                # worker encodes while the server ingests. The checkpoint is recorded once both are
                # done; leaving the side thread waits for the file even when the SQL failed.
                with _side_thread() as side:
                    job = side.submit(write_parquet) if spec.parquet_dir is not None else None

                    def parquet_done() -> None:
                        t0 = time.perf_counter()
                        if job is not None:
                            job.result()
                        timings["parquet_wait"] = time.perf_counter() - t0

                    with (
                        activity(label, "SQL", conn),
                        _watch(conn, spec, f"writing {family_name}_{spec.pair} {spec.month}", tell),
                    ):
                        replace_unit(
                            conn,
                            spec.output_schema,
                            feature_table(family_name, spec.pair),
                            spec.lo,
                            spec.hi,
                            columns,
                            payload,
                            checkpoint,
                            spec.run_id,
                            before_checkpoint=parquet_done,
                        )
                timings["write"] = time.perf_counter() - t_lock
                timings["sql"] = timings["write"] - timings["parquet_wait"]
                return (job.result() if job is not None else None), waited_for

    t_write = time.perf_counter()
    parquet_path, waited_for = pool.retrying(step, url=spec.url, what=f"writing {family_name}_{spec.pair} {spec.month}")
    t3 = time.perf_counter()
    stats = {
        "rows": len(block),
        "columns": len(columns),
        "rejected": counts.rejected,
        "duplicates": counts.duplicates,
        "warmup_rows": counts.n_warm,
        "seconds_compute": seconds_compute,
        "seconds_parquet": timings.get("parquet", 0.0),
        "seconds_sql": timings.get("sql", 0.0),
        "seconds_lock": (t3 - t_write) - timings.get("write", 0.0),
        "seconds_prepare": counts.seconds,
        "seconds": t3 - t_write + seconds_compute,
        "parquet": parquet_path,
        "sql_bytes": len(payload) if payload is not None else 0,
    }
    if waited_for is not None:
        stats["waited_for"] = waited_for
    status = Status.DONE
    if "write" not in timings:  # another run wrote it while we waited: nothing of ours was written
        status = Status.SKIPPED
        stats.update(rows=0, reason=f"written by {waited_for or 'another run'} meanwhile")
    return UnitResult(family_name, spec.pair, spec.month, status, stats)


def _side_thread() -> ThreadPoolExecutor:
    """One thread beside the task's, for the unit's Parquet file; leaving it waits for the file."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="bqxdask-parquet")


def _written_by_another(conn: Any, spec: UnitSpec, family_name: str) -> bool:
    """Under the unit's lock: did another run write this unit, for this config and these bars?"""
    with conn.cursor() as cur:
        ck = load_checkpoint(
            cur, spec.output_schema, family_name, spec.pair, spec.month, other_than=spec.run_id, since=spec.started_at
        )
    conn.commit()
    return unit_current(
        ck, spec.config_hashes[family_name], spec.fingerprint, write_sql=spec.write_sql, parquet_dir=spec.parquet_dir
    )


def _watch(conn: Any, spec: UnitSpec, what: str, tell: Callable[[str], None]) -> LockWatch:
    return LockWatch(
        conn,
        spec.url,
        what,
        lock_timeout=spec.lock_timeout,
        limit=spec.lock_wait_limit,
        report=tell,
        application_name=spec.application_name,
    )


def _metadata(family_name: str, spec: UnitSpec) -> dict[str, Any]:
    """The Parquet file's ``bqxdask`` metadata (SPEC §6)."""
    return {
        "bqxdask_version": __version__,
        "family": family_name,
        "pair": spec.pair,
        "month": spec.month,
        "config_hash": spec.config_hashes[family_name],
        "fingerprint": spec.fingerprint,
        "params": _params(family_name, spec.families),
        "talib_version": _talib_version(),
        "run_id": spec.run_id,
        "baseline": spec.baseline,
    }


def _params(family_name: str, families: FamiliesConfig) -> dict[str, Any]:
    from dataclasses import asdict

    fam = registry.get(family_name)
    out = {"section": fam.section, **asdict(fam.params(families))}
    if fam.input == "bqx":
        out["series_window"] = families.bqx.series_window
    return out


def _talib_version() -> str:
    from ..features.technical import talib_version

    return talib_version()
