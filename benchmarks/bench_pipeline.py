"""End-to-end benchmark of ``bqxdask features`` against the database floor (issue 6, SPEC §5, §6).

Run ``.venv/bin/python benchmarks/bench_pipeline.py`` (``make bench`` runs it after
``bench_reg``). In one process it starts a scratch embedded PostgreSQL in a temporary
directory (destroyed at the end), seeds 2 pairs (eurusd, usdjpy) × 2024-06..2024-10 with
``bqxdask seed``'s model, and measures on 2 pairs × 3 months (2024-07..09, all 9 families):

- **the floor** — what PostgreSQL itself needs to move the bytes, one session:
  (a) ``COPY (SELECT time, open, high, low, close, volume …) TO STDOUT (FORMAT binary)`` of the
  source bars the run reads (each month and its warm-up rows), into memory;
  (b) binary ``COPY … FROM STDIN`` of exactly the rows and columns the run wrote, dumped from
  its feature tables (not timed) into empty tables with the same primary key, one
  transaction per (family, pair, month) as the run. Floor = (a) + (b). The same load over
  2 sessions is reported too (the run uses 2 workers).
- **the run** — ``run_features`` with a LocalCluster created beforehand (``client=``, the
  cluster start-up excluded), with ``client=None`` (start-up included) and as the user runs it
  (``python -m bqxdask features`` in a subprocess). The stage breakdown is the sum of the task
  seconds each unit reports (core-seconds over the 2 workers, not wall time); plan time is a
  dry run; read time is ``tasks.read_month`` + ``tasks.read_warmup`` for all units in-process
  and the same partitions through Dask (``from_map(…).compute()``).
- **one unit alone** — compute, ``copy_buffer`` and Parquet write of one pair-month, best of N,
  on an idle Dask worker and in this process: the compute target is judged on the worker.
- **CPU accounting** of the run: core-seconds used by the PostgreSQL backends, the Dask
  workers (user, system, page faults), this process (client + scheduler) and everything else
  on the machine.
- **memory** — peak RSS per worker (``ru_maxrss`` of fresh workers after the run and the
  peak sampled by psutil during it) against ``memory_limit``; spill counters of each worker.
- **the old way** (:mod:`_baseline`): timed on the first pair-month — the vectorised parts in
  full, ``rolling().apply``, rolling ``np.polyfit`` and row-by-row INSERT on a sample of rows —
  and extrapolated to the run's rows (the table says so).
- **scaling** — the run at 1×, 2× and 4× the rows (2 pairs × 1, 2, 4 months) and 1 vs 2 workers.

Timings are wall-clock, best of N repetitions where it is cheap; floor and run alternate so that
both see the same load. The machine is shared: the CPU accounting says how much of it other
processes took during the run. Results go to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
from psycopg2 import sql  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _baseline as old  # noqa: E402

from bqxdask import __version__  # noqa: E402
from bqxdask.config import ALL_FAMILIES, ClusterConfig, build_config, month_bounds, month_range  # noqa: E402
from bqxdask.db import database_url, read_url  # noqa: E402
from bqxdask.db.connect import connect, qualified  # noqa: E402
from bqxdask.db.embedded import EmbeddedPostgres  # noqa: E402
from bqxdask.db.schema import feature_table, source_table  # noqa: E402
from bqxdask.db.source import copy_out  # noqa: E402
from bqxdask.db.writer import BARS_ROW, ensure_feature_table  # noqa: E402
from bqxdask.features import registry  # noqa: E402
from bqxdask.features.index import validate_bars  # noqa: E402
from bqxdask.features.prepare import prepare  # noqa: E402
from bqxdask.ingest.seed import seed_database  # noqa: E402
from bqxdask.pipeline import run_features  # noqa: E402
from bqxdask.plan import warmup_read_rows  # noqa: E402

SRC = "bench_src"
#: bytes of a binary COPY stream that are not rows: the 19-byte header and the 2-byte trailer
COPY_FRAME_BYTES = 21
RESULTS = HERE / "results" / "latest.json"
TARGET_E2E = 2.0  # end to end ≤ 2× floor
TARGET_READ = 2.0  # Dask read ≤ 2× COPY-out floor
TARGET_COMPUTE = 0.5  # "well under" the write floor: at most half of it
TARGET_HEADROOM = 2.0  # peak RSS ≤ memory_limit / 2
LINEAR_SLACK = 1.2  # t(k×)/t(1×) ≤ 1.2·k counts as linear
MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")


@dataclass(frozen=True)
class Setup:
    """The sizes of one benchmark: full (``make bench``) or quick (the smoke test)."""

    pairs: tuple[str, ...]
    seed_start: str
    seed_end: str
    start: str
    end: str
    families: tuple[str, ...]
    scale_months: tuple[tuple[str, str], ...]  # (start, end) of the 1×, 2×, 4× runs
    one_worker_scale: int  # index into scale_months for the 1-vs-2-workers comparison
    repeat_run: int
    repeat_floor: int
    sample_rows: int
    insert_rows: int
    cli: bool = True
    repeat_small: int = 3  # best-of for the cheap measurements (plan, reads, one unit alone)


FULL = Setup(pairs=("eurusd", "usdjpy"), seed_start="2024-06", seed_end="2024-10", start="2024-07",
             end="2024-09", families=ALL_FAMILIES,
             scale_months=(("2024-07", "2024-07"), ("2024-07", "2024-08"), ("2024-07", "2024-10")),
             one_worker_scale=1, repeat_run=2, repeat_floor=2, sample_rows=2000, insert_rows=2000)
QUICK = Setup(pairs=("eurusd",), seed_start="2024-06", seed_end="2024-08", start="2024-07", end="2024-07",
              families=("bqx", "statistics_bqx", "technical_rate", "reg_rate"),
              scale_months=(("2024-07", "2024-07"), ("2024-07", "2024-08")),
              one_worker_scale=0, repeat_run=1, repeat_floor=1, sample_rows=150, insert_rows=150, cli=False, repeat_small=1)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def say(msg: str) -> None:
    """Progress on stderr, so that stdout is the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t, res = timed(fn)
        if t < best:
            best, out = t, res
    return best, out


def mib(n: float) -> float:
    return n / 2**20


def execute(url: str, *statements: sql.Composable | str) -> None:
    conn = connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def drop_schema(url: str, schema: str) -> None:
    execute(url, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --------------------------------------------------------------------------------------------
# CPU and memory accounting
# --------------------------------------------------------------------------------------------
def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def _machine_busy() -> float:
    t = psutil.cpu_times()  # guest time is already inside user on Linux
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuMeter:
    """Core-seconds used by PostgreSQL, the Dask processes, this process and the rest, over a span."""

    def __init__(self, pg_pid: int | None, dask_pids: Iterable[int]) -> None:
        self.pg = psutil.Process(pg_pid) if pg_pid else None
        self.dask = [psutil.Process(p) for p in dask_pids]
        self.me = psutil.Process()

    def _pg(self) -> float:
        if self.pg is None:
            return 0.0
        total = _cpu(self.pg)
        with contextlib.suppress(psutil.Error):
            t = self.pg.cpu_times()
            total += t.children_user + t.children_system  # backends that have exited
            total += sum(_cpu(c) for c in self.pg.children(recursive=True))
        return total

    def snapshot(self) -> dict[str, float]:
        return {"postgres": self._pg(), "dask": sum(_cpu(p) for p in self.dask), "client": _cpu(self.me),
                "machine": _machine_busy(), "t": time.perf_counter()}

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        d = {k: b[k] - a[k] for k in a}
        d["other"] = max(0.0, d["machine"] - d["postgres"] - d["dask"] - d["client"])
        d["wall"] = d.pop("t")
        d["capacity"] = d["wall"] * (psutil.cpu_count() or 1)
        return d


class RssSampler:
    """Peak RSS of each worker process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pids: Iterable[int], interval: float = 0.1) -> None:
        self.procs = {p: psutil.Process(p) for p in pids}
        self.peak = {p: 0 for p in self.procs}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _spill(dask_worker) -> dict[str, float]:
    data = dask_worker.data
    metrics = getattr(data, "cumulative_metrics", {})
    spilled = getattr(data, "spilled_total", None)
    return {"disk_write_count": float(metrics.get(("disk-write", "count"), 0)),
            "disk_write_bytes": float(metrics.get(("disk-write", "bytes"), 0)),
            "on_disk_now_bytes": float(spilled.disk if spilled is not None else 0),
            "memory_limit": float(dask_worker.memory_manager.memory_limit or 0)}


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
@dataclass
class Bench:
    setup: Setup
    tmp: Path
    url: str
    pg: EmbeddedPostgres
    environ: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def config(self, tag: str, start: str, end: str, *, workers: int = 2):
        raw = {
            "database": {"url": self.url, "source_schema": SRC, "output_schema": f"out_{tag}"},
            "cluster": {"n_workers": workers, "threads_per_worker": 1, "memory_limit": ClusterConfig().memory_limit,
                        "dashboard_address": ":0"},
            "run": {"pairs": list(self.setup.pairs), "start": start, "end": end, "runs_dir": str(self.tmp / "runs")},
            "output": {"parquet_dir": str(self.tmp / f"parquet_{tag}")},
            "families": {"enabled": list(self.setup.families)},
        }
        return build_config(raw, source="bench_pipeline")

    def fresh_tag(self, name: str) -> str:
        self.counter += 1
        return f"{name}{self.counter}"

    def cleanup(self, cfg) -> None:
        drop_schema(self.url, cfg.database.output_schema)
        shutil.rmtree(cfg.output.parquet_dir, ignore_errors=True)

    def checkpoint(self) -> None:
        execute(self.url, "CHECKPOINT")


def start_cluster(stack: contextlib.ExitStack, cfg) -> Any:
    """A LocalCluster made exactly as ``run_features`` makes one (``pipeline.cluster``); its client."""
    from bqxdask.pipeline.cluster import cluster

    client, _ = stack.enter_context(cluster(cfg, None, io.StringIO()))
    return client


def run_once(bench: Bench, cfg, client) -> tuple[float, Any]:
    """``run_features`` on ``client``; its printed output is kept out of the report."""
    out = io.StringIO()
    bench.checkpoint()
    t, result = timed(lambda: run_features(cfg, client=client, out=out))
    if result.exit_code != 0:
        raise RuntimeError(f"the benchmarked run failed: {result.failures[:3]}")
    return t, result


def summarise(result) -> dict[str, Any]:
    """Task seconds per stage and per family, rows and values, from ``RunResult.results``."""
    done = [r for r in result.results if r["status"] == "done"]
    fam: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    units: dict[str, dict[str, float]] = {}
    for r in done:
        f = fam[r["family"]]
        for k in ("seconds_compute", "seconds_parquet", "seconds_sql", "seconds", "rows", "sql_bytes"):
            f[k] += r[k]
        f["values"] += r["rows"] * r["columns"]
        u = units.setdefault(f"{r['pair']} {r['month']}", {"rows": r["rows"], "prepare": r["seconds_prepare"],
                                                        "compute": 0.0, "values": 0.0})
        u["compute"] += r["seconds_compute"]
        u["values"] += r["rows"] * r["columns"]
    total = {k: sum(f[k] for f in fam.values()) for k in ("seconds_compute", "seconds_parquet", "seconds_sql",
                                                           "seconds", "values", "sql_bytes")}
    total["rows"] = sum(u["rows"] for u in units.values())
    total["prepare"] = sum(u["prepare"] for u in units.values())
    return {"families": {k: dict(v) for k, v in fam.items()}, "units": units, "total": total}


# --------------------------------------------------------------------------------------------
# the floor
# --------------------------------------------------------------------------------------------
def unit_list(pairs: Sequence[str], start: str, end: str) -> list[tuple[str, str]]:
    return [(p, m) for p in pairs for m in month_range(start, end)]


def floor_copy_out(url: str, units: Sequence[tuple[str, str]], warmup: int) -> tuple[int, int]:
    """Binary COPY TO STDOUT of every month and its warm-up rows; returns (rows, bytes)."""
    conn = connect(url)
    rows = nbytes = 0
    try:
        with conn.cursor() as cur:
            for pair, month in units:
                lo, hi = month_bounds(month)
                table = qualified(SRC, source_table(pair))
                cols = sql.SQL("SELECT time, open, high, low, close, volume FROM {}").format(table)
                for q in (sql.SQL("{} WHERE time >= {} AND time < {}").format(cols, sql.Literal(lo), sql.Literal(hi)),
                          sql.SQL("{} WHERE time < {} ORDER BY time DESC LIMIT {}").format(
                              cols, sql.Literal(lo), sql.Literal(warmup_read_rows(warmup)))):
                    data = copy_out(cur, q)
                    nbytes += len(data)
                    rows += (len(data) - COPY_FRAME_BYTES) // BARS_ROW.itemsize
        conn.rollback()
    finally:
        conn.close()
    return rows, nbytes


@dataclass(frozen=True)
class Dump:
    family: str
    pair: str
    month: str
    table: str
    path: Path
    rows: int
    columns: int
    nbytes: int


def dump_outputs(url: str, cfg, result, dump_dir: Path, floor_schema: str) -> list[Dump]:
    """Binary COPY TO files of every unit the run wrote; empty floor tables LIKE the run's."""
    dump_dir.mkdir(parents=True, exist_ok=True)
    schema = cfg.database.output_schema
    dumps = []
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(floor_schema)))
            done = sorted((r for r in result.results if r["status"] == "done"),
                          key=lambda r: (r["family"], r["pair"], r["month"]))
            tables = sorted({feature_table(r["family"], r["pair"]) for r in done})
            for t in tables:
                cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)").format(
                    qualified(floor_schema, t), qualified(schema, t)))
            conn.commit()
            for r in done:
                lo, hi = month_bounds(r["month"])
                table = feature_table(r["family"], r["pair"])
                path = dump_dir / f"{table}_{r['month']}.bin"
                q = sql.SQL("SELECT * FROM {} WHERE time >= {} AND time < {}").format(
                    qualified(schema, table), sql.Literal(lo), sql.Literal(hi))
                with open(path, "wb") as fh:
                    cur.copy_expert(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(q).as_string(conn), fh)
                cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE time >= %s AND time < %s").format(
                    qualified(schema, table)), (lo, hi))
                n = cur.fetchone()[0]
                if n != r["rows"]:
                    raise RuntimeError(f"{schema}.{table} {r['month']}: {n} rows in SQL, the run reported {r['rows']}")
                dumps.append(Dump(r["family"], r["pair"], r["month"], table, path, n, r["columns"],
                                  path.stat().st_size))
        conn.rollback()
    finally:
        conn.close()
    return dumps


def _copy_in(conn, schema: str, dump: Dump) -> float:
    t0 = time.perf_counter()
    with conn.cursor() as cur, open(dump.path, "rb") as fh:
        cur.copy_expert(sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(qualified(schema, dump.table))
                        .as_string(conn), fh, size=1 << 20)
    conn.commit()
    return time.perf_counter() - t0


def _truncate(url: str, schema: str, dumps: Sequence[Dump]) -> None:
    tables = sorted({d.table for d in dumps})
    execute(url, sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(qualified(schema, t) for t in tables)),
            "CHECKPOINT")


def settle(url: str, schema: str, dumps: Sequence[Dump]) -> None:
    """VACUUM (ANALYZE) the floor's freshly loaded tables, not timed.

    Otherwise the autovacuum they trigger (ANALYZE of 9 wide tables: ~2.7 core-s per 600 MiB,
    issue 15) runs during whatever is measured next — the run — and is charged to it. The
    run's own tables are dropped right after it, so they leave nothing behind.
    """
    tables = sorted({d.table for d in dumps})
    execute(url, sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(qualified(schema, t) for t in tables)))


def floor_copy_in(url: str, schema: str, dumps: Sequence[Dump]) -> tuple[float, dict[Dump, float]]:
    """One session, one transaction per (family, pair, month) dump, into empty tables."""
    _truncate(url, schema, dumps)
    conn = connect(url)
    try:
        per = {d: _copy_in(conn, schema, d) for d in dumps}
    finally:
        backend = conn.get_backend_pid()
        conn.close()
        _reaped(backend)
    return sum(per.values()), per


def _reaped(pid: int, timeout: float = 5.0) -> None:
    """Wait until the server has reaped backend ``pid``: only then is its CPU in the
    postmaster's children times (a snapshot taken before missed the floor's whole session)."""
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def floor_copy_in_parallel(url: str, schema: str, dumps: Sequence[Dump], sessions: int) -> float:
    """The same COPYs spread over ``sessions`` connections (threads); wall seconds."""
    _truncate(url, schema, dumps)
    order = sorted(dumps, key=lambda d: -d.nbytes)
    lanes: list[list[Dump]] = [order[i::sessions] for i in range(sessions)]
    errors: list[BaseException] = []

    def lane(items: list[Dump]) -> None:
        try:
            conn = connect(url)
            try:
                for d in items:
                    _copy_in(conn, schema, d)
            finally:
                conn.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(items,)) for items in lanes]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# reads
# --------------------------------------------------------------------------------------------
def unit_specs(cfg) -> dict[str, list]:
    """The run's ``UnitSpec`` of every unit, per pair, planned as the pipeline plans them."""
    from bqxdask.pipeline import (  # the benchmark times the pipeline's own read tasks
        plan_run,
        unit_spec,
    )

    url = database_url(cfg)
    rurl = read_url(cfg, url)
    plan, sources, _ = plan_run(cfg, url, rurl, tuple(cfg.families.enabled), "bench", True, dry_run=True)
    out: dict[str, list] = defaultdict(list)
    for u in plan.units:
        out[u.pair].append(unit_spec(cfg, url, rurl, plan, sources[u.pair], u))
    return dict(out)


def read_in_process(specs: dict[str, list]) -> int:
    from bqxdask.pipeline import tasks

    rows = 0
    for pair_specs in specs.values():
        for s in pair_specs:
            rows += len(tasks.read_month(s)) + len(tasks.read_warmup(s))
    return rows


def read_dask(client, specs: dict[str, list]) -> int:
    """The pipeline's read graph (``from_map`` with month divisions + warm-up reads), computed.

    The bars stay on the workers, as in the pipeline (they feed ``prepare_unit`` there); only
    the row counts come back, so the client's deserialisation is not timed as "read".
    """
    from dask import delayed

    from bqxdask.pipeline import month_reads, tasks

    tag = uuid.uuid4().hex[:12]  # fresh keys: a repetition must not find the last one's results
    parts, warm = [], []
    for pair, pair_specs in specs.items():
        parts.append(month_reads(pair_specs, f"bench-read-{pair}-{tag}"))  # the pipeline's read graph
        warm += [delayed(len)(delayed(tasks.read_warmup)(s, dask_key_name=f"bench-warmup-{s.pair}-{s.month}-{tag}"))
                 for s in pair_specs]
    # two compute calls: mixing expression-backed frames and delayed objects in one would
    # materialise the expressions first (dask warns about it)
    counts = [p.map_partitions(len, meta=(None, "int64")) for p in parts]
    frames_f, warm_f = client.compute(counts), client.compute(warm)
    return sum(int(c.sum()) for c in client.gather(frames_f)) + sum(client.gather(warm_f))


def unit_cost(spec, families: Sequence[str], repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` seconds of one unit's compute, copy_buffer and Parquet write, per family.

    Runs where it is called: in this process, or on an otherwise idle Dask worker
    (``client.submit``), which shows what the worker process itself costs.
    """
    from bqxdask.db.writer import copy_buffer
    from bqxdask.outputs import parquet
    from bqxdask.pipeline import tasks

    raw, warm = tasks.read_month(spec), tasks.read_warmup(spec)
    accepted, _ = validate_bars(raw)
    frame = prepare(pd.concat([warm, accepted]), spec.baseline, spec.families)
    out: dict[str, Any] = {"compute": {}, "copy_buffer": {}, "parquet": {}, "rows": len(accepted)}
    r0 = _rusage()
    scratch = tempfile.mkdtemp(prefix="bqx-bench-unit-")
    try:
        for name in families:
            fam = registry.get(name)
            cols = fam.column_names(spec.families)
            fam.compute(frame, spec.families)  # first call: per-window constants, imports
            t, res = best_of(lambda fam=fam: fam.compute(frame, spec.families).iloc[len(warm):], repeat)
            times, values = res.index.as_unit("us").asi8, res.to_numpy(dtype="float64")
            out["compute"][name] = t
            out["copy_buffer"][name] = best_of(lambda t=times, v=values: copy_buffer(t, v), repeat)[0]
            out["parquet"][name] = best_of(lambda n=name, c=cols, t=times, v=values: parquet.write_unit(
                scratch, n, spec.pair, spec.month, t, c, v, {}), repeat)[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    r1 = _rusage()
    out["rusage"] = {k: r1[k] - r0[k] for k in ("user", "sys", "minflt")}
    return out


def _rusage() -> dict[str, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": r.ru_utime, "sys": r.ru_stime, "minflt": float(r.ru_minflt), "maxrss": r.ru_maxrss * 1024.0}


def _malloc_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in MALLOC_VARS}


# --------------------------------------------------------------------------------------------
# the old way
# --------------------------------------------------------------------------------------------
def old_way(bench: Bench, specs: dict[str, list], total_rows: int, sample: int,
            insert_sample: int) -> dict[str, Any]:
    """Time the old per-partition scripts (see :mod:`_baseline`) and extrapolate to the run."""
    from bqxdask.features.bqx import bqx_return

    s = bench.setup
    all_specs = [sp for pair_specs in specs.values() for sp in pair_specs]
    spec = all_specs[0]
    eng = old.engine(bench.url)
    fc = spec.families
    try:
        # 1. read, every unit, in full
        def read_all() -> list[tuple[pd.DataFrame, int]]:
            return [old.read_partition(eng, SRC, sp.pair, sp.lo, sp.hi, warmup_read_rows(sp.warmup))
                    for sp in all_specs]

        t_read, frames = timed(read_all)
        bars, n_warm = frames[0]
        rows_unit = len(bars) - n_warm
        scale = total_rows / rows_unit
        ix = old.index_frame(bars, spec.baseline)
        idx = ix["idx"]
        series = pd.Series(bqx_return(idx.to_numpy(), fc.bqx.series_window), index=idx.index)
        n = len(idx)
        start = max(n_warm, n - sample)  # the last `sample` rows of the month: every window is full
        fam_t: dict[str, dict[str, Any]] = {}
        frames_new: dict[str, pd.DataFrame] = {}

        # 2. features: vectorised parts on the whole unit, the slow ones on `sample` rows
        for name in s.families:
            whole, sampled, assemble = old.family_parts(name, ix, series, fc, start, n)
            full_s, whole_out = timed(whole) if whole else (0.0, None)
            sample_s, sampled_out = timed(sampled) if sampled else (0.0, None)
            out = assemble(whole_out, sampled_out)[registry.get(name).column_names(fc)]
            out = out.iloc[-(n - start):] if len(out) > n - start else out
            frames_new[name] = out
            extrapolated = full_s * scale + sample_s / (n - start) * total_rows
            fam_t[name] = {"seconds": extrapolated, "measured_full_unit": full_s, "measured_sample": sample_s,
                           "sample_rows": (n - start) if sample_s else 0}

        # agreement with bqxdask on the sampled rows
        agree = _agreement(frames_new, spec, bars, n_warm, start)

        # 3. write: row-by-row INSERT (and the two reference paths) on `insert_sample` rows per family
        schema = "old_way"
        conn = connect(bench.url)
        write: dict[str, dict[str, float]] = {}
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                for name in s.families:
                    ensure_feature_table(cur, schema, feature_table(name, spec.pair),
                                         registry.get(name).column_names(fc))
            conn.commit()
            for name in s.families:
                frame = frames_new[name].iloc[-insert_sample:]
                table = feature_table(name, spec.pair)
                truncate = sql.SQL("TRUNCATE {}").format(qualified(schema, table))
                t_ins, _ = timed(lambda f=frame, t=table: old.insert_rows(conn, schema, t, f))
                execute(bench.url, truncate)
                t_sql, _ = timed(lambda f=frame, t=table: old.to_sql_default(eng, schema, t, f))
                execute(bench.url, truncate)
                t_csv, _ = timed(lambda f=frame, t=table: old.csv_copy(conn, schema, t, f))
                execute(bench.url, truncate)
                k = total_rows / len(frame)
                write[name] = {"insert": t_ins * k, "to_sql": t_sql * k, "csv_copy": t_csv * k,
                               "rows": len(frame)}
        finally:
            conn.close()
            drop_schema(bench.url, schema)
    finally:
        eng.dispose()
    return {
        "read": t_read, "families": fam_t, "write": write, "agreement": agree,
        "sample_unit": f"{spec.pair} {spec.month}", "rows_unit": rows_unit, "sample_rows": n - start,
        "insert_rows": insert_sample, "total_rows": total_rows,
    }


def _agreement(frames_old: dict[str, pd.DataFrame], spec, bars: pd.DataFrame, n_warm: int, start: int) -> dict[str, float]:
    """Worst |old − bqxdask| / max(1, |bqxdask|) per family on the rows the old way computed."""
    accepted, _ = validate_bars(bars.iloc[n_warm:])
    frame = prepare(pd.concat([bars.iloc[:n_warm], accepted]), spec.baseline, spec.families)
    out = {}
    for name, got in frames_old.items():
        ref = registry.get(name).compute(frame, spec.families).loc[got.index, list(got.columns)]
        a, e = got.to_numpy(float), ref.to_numpy(float)
        both = np.isfinite(a) & np.isfinite(e)
        mismatch_nan = int((np.isfinite(a) != np.isfinite(e)).sum())
        rel = np.abs(a - e)[both] / np.maximum(1.0, np.abs(e[both]))
        out[name] = float(rel.max()) if rel.size else 0.0
        if mismatch_nan:
            out[f"{name}_nan_mismatch"] = float(mismatch_nan)
    return out


# --------------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_toml(cfg, path: Path) -> None:
    d = cfg.to_dict()
    lines = []
    for section in ("database", "cluster", "run", "output"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in d[section].items() if v is not None]
    lines.append("[families]")
    lines.append(f"enabled = {_toml_value(d['families']['enabled'])}")
    # database.url carries the embedded server's password: readable by this user only (§11)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def run_cli(bench: Bench, cfg) -> float:
    path = bench.tmp / f"{cfg.database.output_schema}.toml"
    write_toml(cfg, path)
    # the environment this process started with: not the variables the Nannies wrote into it
    env = {k: v for k, v in bench.environ.items() if not k.startswith("BQX_")}
    bench.checkpoint()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bqxdask", "features", "--config", str(path)], cwd=bench.tmp,
                          env=env, capture_output=True, text=True, timeout=1800)
    t = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bqxdask features exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
    return t


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 pair × 1 month, 4 families (the smoke test)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the numbers (default {RESULTS})")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    t_begin = time.perf_counter()
    environ = dict(os.environ)  # before any Nanny writes its pre-spawn variables into it
    tmp = Path(tempfile.mkdtemp(prefix="bqx-bench-"))
    pg = EmbeddedPostgres(tmp / "pgdata")
    try:
        with contextlib.ExitStack() as stack:
            say(f"scratch PostgreSQL in {tmp}")
            pg.start()
            bench = Bench(setup, tmp, pg.url, pg, environ=environ)
            t_seed, rep = timed(lambda: seed_database(pg.url, SRC, setup.pairs, setup.seed_start, setup.seed_end,
                                                      seed=0))
            say(rep.summary_line())
            report = measure(bench, stack)
            report["seconds_seed"] = t_seed
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
        for k in MALLOC_VARS:  # what the Nannies wrote into this process's environment
            if k in environ:
                os.environ[k] = environ[k]
            else:
                os.environ.pop(k, None)
    report["seconds_benchmark"] = time.perf_counter() - t_begin
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    print(f"\nnumbers written to {args.json}; benchmark wall time {report['seconds_benchmark']:.0f} s")
    return report


def measured_run(bench: Bench, cfg, client, dask_pids: Sequence[int], *, sample_rss: bool = False
                 ) -> dict[str, Any]:
    """One ``run_features`` on ``client`` with CPU accounting (and RSS sampling); outputs left in place."""
    meter = CpuMeter(bench.pg.status().pid, dask_pids)
    worker_pids = client.run(os.getpid)
    r0 = client.run(_rusage)
    with RssSampler(worker_pids.values()) if sample_rss else contextlib.nullcontext() as rss:
        c0 = meter.snapshot()
        t_run, result = run_once(bench, cfg, client)
        c1 = meter.snapshot()
    r1 = client.run(_rusage)
    workers = {k: sum(r1[w][k] - r0[w][k] for w in r0) for k in ("user", "sys", "minflt")}
    out = {"seconds": t_run, "summary": summarise(result), "cpu": CpuMeter.delta(c0, c1), "workers": workers,
           "result": result}
    if rss is not None:
        out["rss_peak"] = {str(k): v for k, v in rss.peak.items()}
    return out


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "result"}


def measure(bench: Bench, stack: contextlib.ExitStack) -> dict[str, Any]:
    s = bench.setup
    units = unit_list(s.pairs, s.start, s.end)
    r: dict[str, Any] = {"setup": {"pairs": list(s.pairs), "start": s.start, "end": s.end,
                                   "families": list(s.families), "units": len(units),
                                   "quick": s is QUICK, "repeat_small": s.repeat_small},
                         "machine": {"cpus": psutil.cpu_count(), "memory_gib": psutil.virtual_memory().total / 2**30,
                                     "python": platform.python_version(), "bqxdask": __version__,
                                     "load_at_start": os.getloadavg()}}
    cfg_a = bench.config(bench.fresh_tag("a"), s.start, s.end)
    warmup = registry.warmup_rows(cfg_a.families)

    say("starting the pipeline's LocalCluster (2 workers)")
    t_cluster, client = timed(lambda: start_cluster(stack, cfg_a))
    r["seconds_cluster_start"] = t_cluster
    worker_pids = client.run(os.getpid)
    dask_pids = [*worker_pids.values(), *{psutil.Process(p).ppid() for p in worker_pids.values()}]
    r["worker_env"] = next(iter(client.run(_malloc_env).values()))

    say("plan (dry run)")
    r["plan"] = best_of(lambda: run_features(cfg_a, dry_run=True, out=io.StringIO()), s.repeat_small)[0]

    say("floor (a): COPY TO of the source bars")
    t_out, (rows_out, bytes_out) = best_of(lambda: floor_copy_out(bench.url, units, warmup), 5)
    r["floor_out"] = {"seconds": t_out, "rows": rows_out, "bytes": bytes_out}

    say("reads: in-process and through Dask")
    specs = unit_specs(cfg_a)
    t_rd_local, n_local = best_of(lambda: read_in_process(specs), s.repeat_small)
    read_dask(client, specs)  # the workers import the read path once
    t_rd_dask, n_dask = best_of(lambda: read_dask(client, specs), s.repeat_small)
    r["read"] = {"in_process": t_rd_local, "dask": t_rd_dask, "rows": n_local, "rows_dask": n_dask}

    say("one unit alone: on an idle worker and in this process (best of 3)")
    first = next(iter(specs.values()))[0]
    r["unit_worker"] = client.submit(unit_cost, first, s.families, s.repeat_small, pure=False).result()
    r["unit_process"] = unit_cost(first, s.families, s.repeat_small)

    # run #1 on fresh workers: memory and CPU accounting; then the floor from its outputs
    say(f"run 1/{s.repeat_run}: run_features on {len(units)} units, cluster given")
    run1 = measured_run(bench, cfg_a, client, dask_pids, sample_rss=True)
    maxrss = client.run(_rusage)
    spill = client.run(_spill)
    logs = client.get_worker_logs()
    memory_msgs = [msg for entries in logs.values() for level, msg in entries
                   if level in ("WARNING", "ERROR", "CRITICAL")
                   and any(w in msg.lower() for w in ("memory", "spill", "pausing", "paused"))]
    r["memory"] = {"ru_maxrss": {str(k): v["maxrss"] for k, v in maxrss.items()},
                   "sampled_peak": run1["rss_peak"], "spill": {str(k): v for k, v in spill.items()},
                   "log_messages": memory_msgs[:10], "memory_limit": ClusterConfig().memory_limit}
    runs = [run1]

    say("dumping the run's outputs for the floor (not timed)")
    floor_schema = "bench_floor"
    dumps = dump_outputs(bench.url, cfg_a, run1["result"], bench.tmp / "dumps", floor_schema)
    bench.cleanup(cfg_a)
    floors = []
    pg_meter = CpuMeter(bench.pg.status().pid, [])

    def floor_in() -> None:
        c0 = pg_meter.snapshot()
        total, per = floor_copy_in(bench.url, floor_schema, dumps)
        floors.append((total, per, CpuMeter.delta(c0, pg_meter.snapshot())))
        settle(bench.url, floor_schema, dumps)

    say("floor (b): COPY FROM of the run's rows, one session")
    floor_in()
    for i in range(1, s.repeat_run):
        cfg = bench.config(bench.fresh_tag("a"), s.start, s.end)
        say(f"run {i + 1}/{s.repeat_run}")
        runs.append(measured_run(bench, cfg, client, dask_pids))
        bench.cleanup(cfg)
        say("floor (b) again")
        floor_in()
    while len(floors) < s.repeat_floor:
        floor_in()
    say("floor (b) over 2 sessions")
    t_par = floor_copy_in_parallel(bench.url, floor_schema, dumps, 2)
    settle(bench.url, floor_schema, dumps)
    _truncate(bench.url, floor_schema, dumps)
    best_run = min(runs, key=lambda x: x["seconds"])
    t_in, per_dump, floor_cpu = min(floors, key=lambda f: f[0])
    r["runs"] = [_public(x) for x in runs]
    r["best_run"] = _public(best_run)
    r["floor_in"] = {"seconds": t_in, "all": [f[0] for f in floors], "parallel_2_sessions": t_par,
                     "postgres_cpu": floor_cpu["postgres"], "other_cpu": floor_cpu["other"],
                     "bytes": sum(d.nbytes for d in dumps), "rows": sum(d.rows for d in dumps),
                     "values": sum(d.rows * d.columns for d in dumps),
                     "per_family": _floor_by(per_dump, lambda d: d.family),
                     "per_unit": {f"{p} {m}": v for (p, m), v in _floor_by(per_dump, lambda d: (d.pair, d.month)).items()}}
    r["floor"] = t_out + t_in

    say("run with the LocalCluster start-up included (client=None)")
    cfg = bench.config(bench.fresh_tag("c"), s.start, s.end)
    t_with, _ = run_once(bench, cfg, None)  # no client: run_features starts its own LocalCluster
    bench.cleanup(cfg)
    r["e2e_with_cluster"] = t_with
    if s.cli:
        say("python -m bqxdask features (subprocess)")
        cfg = bench.config(bench.fresh_tag("cli"), s.start, s.end)
        r["e2e_cli"] = run_cli(bench, cfg)
        bench.cleanup(cfg)

    say("scaling: 1×, 2×, 4× the rows; 1 vs 2 workers")
    scaling = []
    for k, (start, end) in enumerate(s.scale_months):
        if (start, end) == (s.start, s.end):  # the main run is this size already
            t, sm = best_run["seconds"], best_run["summary"]
        else:
            cfg = bench.config(bench.fresh_tag("s"), start, end)
            t, res = run_once(bench, cfg, client)
            sm = summarise(res)
            bench.cleanup(cfg)
        scaling.append({"factor": 2**k, "months": f"{start}..{end}", "units": len(sm["units"]),
                        "rows": sm["total"]["rows"], "seconds": t, "task_seconds": sm["total"]["seconds"]})
    r["scaling"] = scaling
    start, end = s.scale_months[s.one_worker_scale]
    cfg = bench.config(bench.fresh_tag("w"), start, end, workers=1)
    with contextlib.ExitStack() as one:
        client1 = start_cluster(one, cfg)
        t1, res1 = run_once(bench, cfg, client1)
    bench.cleanup(cfg)
    r["workers"] = {"months": f"{start}..{end}", "one": t1, "two": scaling[s.one_worker_scale]["seconds"],
                    "rows": summarise(res1)["total"]["rows"]}

    say(f"the old way: sample of {s.sample_rows} rows (compute) and {s.insert_rows} rows (INSERT) per family")
    r["old"] = old_way(bench, specs, best_run["summary"]["total"]["rows"], s.sample_rows, s.insert_rows)
    return r


def _floor_by(per_dump: dict[Dump, float], key: Callable[[Dump], Any]) -> dict[Any, float]:
    """The floor's COPY seconds summed per ``key(dump)`` (a family, a (pair, month) unit)."""
    out: dict[Any, float] = defaultdict(float)
    for d, t in per_dump.items():
        out[key(d)] += t
    return dict(out)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
def _fmt_rate(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if x >= scale:
            return f"{x / scale:.2f}{unit}" if scale > 1e3 else f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x >= 1000 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _fmt_x(x: float | None) -> str:
    if not x:
        return "—"
    return f"{x:,.0f}×" if x >= 10 else f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def build_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The main table: stage, seconds, rows/s, values/s, ratio to floor, before, speed-up."""
    best = r["best_run"]["summary"]
    tot = best["total"]
    rows_n, values_n = tot["rows"], tot["values"]
    floor_out, floor_in = r["floor_out"]["seconds"], r["floor_in"]["seconds"]
    floor = floor_out + floor_in
    o = r["old"]
    fam_floor = r["floor_in"]["per_family"]
    old_compute = sum(f["seconds"] for f in o["families"].values())
    old_write = sum(w["insert"] for w in o["write"].values())
    old_total = o["read"] + old_compute + old_write
    rows: list[dict[str, Any]] = []

    def add(stage: str, seconds: float | None, *, values: float | None = None, floor_s: float | None = None,
            before: float | None = None, rows_: float | None = rows_n) -> None:
        rows.append({"stage": stage, "seconds": seconds,
                     "rows_s": rows_ / seconds if seconds and rows_ else None,
                     "values_s": values / seconds if seconds and values else None,
                     "ratio": seconds / floor_s if seconds and floor_s else None,
                     "before": before, "speedup": before / seconds if before and seconds else None})

    add("plan (dry run, wall)", r["plan"])
    add("read, in-process (wall)", r["read"]["in_process"], floor_s=floor_out, before=o["read"])
    add("read, through Dask (wall)", r["read"]["dask"], floor_s=floor_out, before=o["read"])
    add("prepare: quarantine + index (task s)", tot["prepare"])
    for name, f in best["families"].items():
        add(f"compute {name} (task s)", f["seconds_compute"], values=f["values"], floor_s=fam_floor.get(name),
            before=o["families"].get(name, {}).get("seconds"))
    add("compute, all families (task s)", tot["seconds_compute"], values=values_n, floor_s=floor_in,
        before=old_compute)
    add("SQL write: copy_buffer + COPY (task s)", tot["seconds_sql"], values=values_n, floor_s=floor_in,
        before=old_write)
    add("Parquet write (task s)", tot["seconds_parquet"], values=values_n, floor_s=floor_in)
    add("end to end, cluster given (wall)", r["best_run"]["seconds"], values=values_n, floor_s=floor, before=old_total)
    add("end to end, incl. LocalCluster (wall)", r["e2e_with_cluster"], values=values_n, floor_s=floor,
        before=old_total)
    if "e2e_cli" in r:
        add("end to end, CLI subprocess (wall)", r["e2e_cli"], values=values_n, floor_s=floor, before=old_total)
    add("floor (a): COPY TO, source bars", floor_out, floor_s=floor_out, rows_=r["floor_out"]["rows"])
    add("floor (b): COPY FROM, features", floor_in, values=values_n, floor_s=floor_in)
    add("floor = (a) + (b)", floor, values=values_n, floor_s=floor)
    r["old_total"] = old_total
    return rows


def _unit_line(u: dict[str, Any]) -> str:
    c, b, p = (sum(u[k].values()) for k in ("compute", "copy_buffer", "parquet"))
    ru = u["rusage"]
    return (f"compute {c:.3f} s, copy_buffer {b:.3f} s, Parquet {p:.3f} s (CPU user {ru['user']:.1f} s, sys "
            f"{ru['sys']:.1f} s, {ru['minflt'] / 1e6:.2f} M page faults over the loop)")


def print_report(r: dict[str, Any]) -> None:
    s = r["setup"]
    best = r["best_run"]
    tot = best["summary"]["total"]
    o = r["old"]
    floor, floor_in = r["floor"], r["floor_in"]["seconds"]
    cpus = r["machine"]["cpus"]
    print(f"bench_pipeline: bqxdask {r['machine']['bqxdask']}, {len(s['pairs'])} pairs ({', '.join(s['pairs'])}) × "
          f"{s['start']}..{s['end']} = {s['units']} units, {len(s['families'])} families; "
          f"{tot['rows']:,} rows, {tot['values']:,.0f} values written; {cpus} CPUs, load average at start "
          f"{r['machine']['load_at_start'][0]:.1f}" + (" [QUICK]" if s["quick"] else ""))
    print("(wall) = elapsed; (task s) = sum of the seconds the units' tasks report = core-seconds over the 2 "
          "workers, not wall time. Ratios: reads to floor (a), compute/writes to floor (b) (per family: to that "
          "family's tables), end to end to (a) + (b). Best of "
          f"{len(r['runs'])} runs; the floor measured between them.")
    print(f"before = the old per-partition scripts (benchmarks/_baseline.py), run once, timed on {o['sample_unit']} "
          f"— vectorised parts on the whole month, rolling apply and rolling np.polyfit on {o['sample_rows']:,} "
          f"rows, row-by-row INSERT on {o['insert_rows']:,} rows per family — and EXTRAPOLATED to the run's "
          f"{o['total_rows']:,} rows; reads in full. The old scripts wrote no Parquet.\n")
    rows = build_rows(r)
    width = max(len(x["stage"]) for x in rows)
    head = (f"{'stage':<{width}}  {'seconds':>8}  {'rows/s':>8}  {'values/s':>8}  {'ratio to floor':>14}  "
            f"{'before (old way)':>16}  {'speed-up':>8}")
    print(head)
    print("-" * len(head))
    for x in rows:
        print(f"{x['stage']:<{width}}  {_fmt_s(x['seconds']):>8}  {_fmt_rate(x['rows_s']):>8}  "
              f"{_fmt_rate(x['values_s']):>8}  {_fmt_x(x['ratio']):>14}  {_fmt_s(x['before']):>16}  "
              f"{_fmt_x(x['speedup']):>8}")
    fo = r["floor_out"]
    fi = r["floor_in"]
    print(f"floor (a) {fo['rows']:,} rows, {mib(fo['bytes']):.1f} MiB; floor (b) "
          f"{mib(fi['bytes']):.0f} MiB, {len(fi['per_unit']) * len(s['families'])} COPYs (table rows {fi['rows']:,}), 1 session "
          f"(repetitions {', '.join(f'{x:.2f}' for x in fi['all'])} s; PostgreSQL CPU {fi['postgres_cpu']:.1f} s); "
          f"over 2 sessions {fi['parallel_2_sessions']:.2f} s")

    ow = o["write"]
    t_sql = sum(w["to_sql"] for w in ow.values())
    t_csv = sum(w["csv_copy"] for w in ow.values())
    t_ins = sum(w["insert"] for w in ow.values())
    print(f"\nwrite paths for the run's rows (sampled on {o['insert_rows']:,} rows per family, extrapolated): "
          f"row-by-row INSERT {t_ins:,.0f} s = {t_ins / floor_in:,.0f}× floor (b); pandas to_sql default "
          f"{t_sql:,.0f} s = {t_sql / floor_in:,.0f}×; to_csv + COPY {t_csv:,.0f} s = {t_csv / floor_in:,.0f}×; "
          f"bqxdask {tot['seconds_sql']:.1f} task s = {tot['seconds_sql'] / floor_in:.1f}×")
    agree = {k: v for k, v in o["agreement"].items() if not k.endswith("_nan_mismatch")}
    worst = max(agree.items(), key=lambda kv: kv[1])
    nan_mis = {k: v for k, v in o["agreement"].items() if k.endswith("_nan_mismatch")}
    print(f"the old way computes the same values: worst |old − bqxdask|/max(1,|bqxdask|) on its sample = "
          f"{worst[1]:.1e} ({worst[0]})" + (f"; NaN placement differs: {nan_mis}" if nan_mis else ""))

    # where the time goes
    cpu, wk = best["cpu"], best["workers"]
    print(f"\nwhere the run's time went (best run; CPU accounting over {cpu['wall']:.1f} s × {cpus} CPUs = "
          f"{cpu['capacity']:.1f} core-s): PostgreSQL {cpu['postgres']:.1f}, Dask workers {cpu['dask']:.1f} (user "
          f"{wk['user']:.1f}, sys {wk['sys']:.1f}, {wk['minflt'] / 1e6:.1f} M minor page faults), client + scheduler "
          f"{cpu['client']:.1f}, other processes {cpu['other']:.1f}, idle "
          f"{max(0.0, cpu['capacity'] - cpu['machine']):.1f} core-s")
    fi_cpu = r["floor_in"]["postgres_cpu"]
    print(f"server work: PostgreSQL {cpu['postgres']:.1f} core-s inside the run (reads, plan, DELETE + COPY + "
          f"checkpoint per unit, autovacuum that ran meanwhile) vs {fi_cpu:.1f} core-s for floor (b)'s COPY of the "
          f"same rows = {cpu['postgres'] / max(fi_cpu, 1e-9):.2f}×")
    if cpu["other"] > 0.1 * cpu["capacity"]:
        print(f"NOTE: the machine was busy — other processes took {cpu['other'] / cpu['capacity']:.0%} of it during "
              "the run (the floor's single session needs one core, the run both): ratios are pessimistic")
    tasks = tot["seconds_compute"] + tot["seconds_sql"] + tot["seconds_parquet"] + tot["prepare"]
    print(f"task seconds: compute {tot['seconds_compute']:.1f}, SQL {tot['seconds_sql']:.1f}, Parquet "
          f"{tot['seconds_parquet']:.1f}, prepare {tot['prepare']:.1f} = {tasks:.1f} over 2 workers "
          f"(= {tasks / 2:.1f} s if perfectly parallel; wall {best['seconds']:.1f} s)")
    uw, up = r["unit_worker"], r["unit_process"]
    print(f"one pair-month alone ({uw['rows']:,} rows, best of {s['repeat_small']}): on an idle Dask worker "
          f"{_unit_line(uw)}")
    print(f"                                   in the benchmark process {_unit_line(up)}")
    print(f"  worker malloc environment: {r['worker_env']}")
    print("  per family, worker / process (s): " + ", ".join(
        f"{k} {uw['compute'][k]:.3f}/{up['compute'][k]:.3f}" for k in uw["compute"]))

    # compute per unit vs write floor
    units = best["summary"]["units"]
    per_unit_floor = r["floor_in"]["per_unit"]
    ratios = sorted(u["compute"] / per_unit_floor[key] for key, u in units.items())
    med_ratio = statistics.median(ratios)
    first_unit = next(iter(per_unit_floor))
    unit_floor = per_unit_floor[first_unit]
    w_ratio = sum(uw["compute"].values()) / unit_floor
    p_ratio = sum(up["compute"].values()) / unit_floor
    print(f"\ncompute of one pair-month (all families) against floor (b) of its rows ({first_unit}: {unit_floor:.2f} s): "
          f"alone on a worker {w_ratio:.2f}×, alone in this process {p_ratio:.2f}×; inside the run (task s, sharing "
          f"the cores) median {med_ratio:.2f}× (range {ratios[0]:.2f}–{ratios[-1]:.2f})")

    # scaling
    print("\nscaling (cluster given, 2 workers)")
    print(f"  {'size':>4}  {'months':<18}{'units':>5}  {'rows':>9}  {'wall s':>7}  {'t/t(1×)':>8}  "
          f"{'task s':>7}  {'task/task(1×)':>13}  {'µs/row (wall)':>13}")
    base = r["scaling"][0]
    for x in r["scaling"]:
        print(f"  {str(x['factor']) + '×':>4}  {x['months']:<18}{x['units']:>5}  {x['rows']:>9,}  {x['seconds']:>7.2f}  "
              f"{x['seconds'] / base['seconds']:>8.2f}  {x['task_seconds']:>7.1f}  "
              f"{x['task_seconds'] / base['task_seconds']:>13.2f}  {x['seconds'] / x['rows'] * 1e6:>13.1f}")
    w = r["workers"]
    print(f"  workers, {w['months']} ({w['rows']:,} rows): 1 worker {w['one']:.2f} s, 2 workers {w['two']:.2f} s → "
          f"speed-up {w['one'] / w['two']:.2f}× (PostgreSQL's COPY runs on the same 2 cores)")

    # memory
    mem = r["memory"]
    from bqxdask.config import parse_memory

    limit = parse_memory(mem["memory_limit"], "memory_limit")
    peak_ru = max(mem["ru_maxrss"].values())
    spilled = sum(v["disk_write_count"] for v in mem["spill"].values())
    print("\nmemory: peak RSS per worker (ru_maxrss of the benchmark's workers after run 1): "
          + ", ".join(f"{mib(v):.0f} MiB" for v in mem["ru_maxrss"].values())
          + "; sampled every 0.1 s during run 1: " + ", ".join(f"{mib(v):.0f} MiB" for v in mem["sampled_peak"].values())
          + f"; memory_limit {mem['memory_limit']} → headroom {limit / max(peak_ru, 1):.1f}×")
    print(f"spilling: {spilled:.0f} keys written to disk by the workers' SpillBuffer"
          + (f"; worker log: {mem['log_messages'][:3]}" if mem["log_messages"] else
             "; no memory warnings in the worker logs"))

    # estimate.py numbers
    fam = best["summary"]["families"]
    print("\nmeasured task seconds per source row (compute + Parquet + SQL, inside the run), for "
          "bqxdask/pipeline/estimate.py DEFAULT_SECONDS_PER_ROW:")
    print("    " + ", ".join(f'"{k}": {v["seconds"] / v["rows"]:.1e}' for k, v in fam.items()))
    prep_row = (tot["prepare"] + r["read"]["in_process"]) / tot["rows"]
    print(f"    DEFAULT_PREPARE_SECONDS_PER_ROW (read in-process + quarantine + prepare): {prep_row:.1e}")

    # verdicts
    e2e = best["seconds"]
    print("\ntargets (issue 6)")
    verdicts = {}

    def verdict(key: str, ok: bool, text: str) -> None:
        verdicts[key] = {"pass": bool(ok), "text": text}
        print(f"  {'PASS' if ok else 'MISS'}  {text}")

    two = r["floor_out"]["seconds"] + r["floor_in"]["parallel_2_sessions"]
    verdict("end_to_end", e2e <= TARGET_E2E * floor,
            f"end to end (cluster given) {e2e:.2f} s = {e2e / floor:.2f}× the floor {floor:.2f} s (target ≤ "
            f"{TARGET_E2E:.1f}×" + ("" if e2e <= TARGET_E2E * floor else
                                    f"; missed by {e2e - TARGET_E2E * floor:.2f} s = {e2e / (TARGET_E2E * floor) - 1:.0%}")
            + f"); incl. LocalCluster {r['e2e_with_cluster'] / floor:.2f}×"
            + (f", CLI {r['e2e_cli'] / floor:.2f}×" if "e2e_cli" in r else "")
            + f"; to the 2-session floor {e2e / two:.2f}×")
    t_read = r["read"]["dask"]
    fo_s = r["floor_out"]["seconds"]
    verdict("read", t_read <= TARGET_READ * fo_s,
            f"read through Dask {t_read:.3f} s = {t_read / fo_s:.2f}× the COPY-out floor {fo_s:.3f} s (target ≤ "
            f"{TARGET_READ:.0f}×" + ("" if t_read <= TARGET_READ * fo_s else
                                     f"; missed by {t_read - TARGET_READ * fo_s:.3f} s")
            + f"); in-process {r['read']['in_process'] / fo_s:.2f}×")
    verdict("compute", w_ratio <= TARGET_COMPUTE,
            f"compute of one pair-month, all families, alone on a worker = {w_ratio:.3f}× the write floor of its "
            f"rows (target: well under, ≤ {TARGET_COMPUTE:.1f}×); in this process {p_ratio:.2f}×, inside "
            f"the run {med_ratio:.2f}×")
    verdict("memory", peak_ru * TARGET_HEADROOM <= limit and spilled == 0,
            f"peak RSS per worker {mib(peak_ru):.0f} MiB vs memory_limit {mem['memory_limit']}: headroom "
            f"{limit / max(peak_ru, 1):.1f}× (target ≥ {TARGET_HEADROOM:.0f}×), {spilled:.0f} keys spilled")
    sc = r["scaling"]
    lin = all(x["seconds"] / base["seconds"] <= LINEAR_SLACK * x["factor"] for x in sc[1:])
    verdict("scaling", lin, "cost grows linearly: " + ", ".join(
        f"t({x['factor']}×)/t(1×) = {x['seconds'] / base['seconds']:.2f} (task s "
        f"{x['task_seconds'] / base['task_seconds']:.2f})" for x in sc[1:])
        + f" (linear: ≤ {LINEAR_SLACK}·k); 1→2 workers {w['one'] / w['two']:.2f}×")
    r["verdicts"] = verdicts


if __name__ == "__main__":
    main()
