"""The feature pipeline: cluster → plan → read → compute → write → summary (SPEC §5, §6).

:func:`run_features` is what ``bqxdask features`` calls. The client does the cheap, serial
part (checks, survey, baselines, checkpoints, DDL); the workers do the rest, one Dask graph:

    read_month (dd.from_map, month divisions, explicit meta) ─┐
    read_warmup (last `warmup` accepted bars before the month) ─┴→ prepare_unit → compute_and_write × family

A unit that fails is reported with its message and does not stop the others; the exit code is
non-zero when any did. Re-running finishes the job: valid checkpoints are skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from . import __version__
from .calendar import month_bounds
from .checkpoints import MonthStats, load_checkpoints, parquet_checks
from .config import Config
from .db import database_url, read_url
from .db.baseline import resolve_baseline
from .db.budget import connections_needed, describe_need, server_budget, servers
from .db.connect import (
    application_name,
    connection,
    describe,
    explain_db_error,
    identify,
    table_exists,
)
from .db.locks import register_run, xact_lock
from .db.schema import create_output_schema, feature_table
from .db.source import (
    BARS_META,
    SourceTable,
    first_time,
    inspect_source,
    null_time_rows,
    survey,
)
from .db.writer import ensure_feature_table, replace_null_time_rejects
from .errors import BqxError, ConfigError, DatabaseUnavailable
from .features import registry
from .outputs import parquet
from .outputs.locations import check_output_locations
from .plan import Plan, make_plan, survey_window, warmup_read_rows
from .progress import Progress, format_summary, summary_rows
from .runlog import new_run_id, setup_logging, write_json
from .tasks import UnitSpec
from .watch import RunWatch

log = logging.getLogger(__name__)

MAX_SURVEY_MONTHS_BACK = 36

#: Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, so glibc hands every
#: month-long array (~260 KB) back to the OS and maps it afresh: page faults made the feature
#: code ~3× slower inside workers than in a plain process (benchmarks/bench_pipeline.py).
#: A 64 MiB top pad keeps freed memory for reuse while the trim threshold still returns big
#: blocks. Workers of an existing cluster need the same (README: Scaling out).
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TOP_PAD_": str(64 * 2**20)}


@dataclass
class RunResult:
    run_id: str
    plan: Plan
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    run_dir: Path | None = None
    dashboard: str | None = None
    #: source rows with a NULL time, per pair (quarantined: SPEC §3)
    null_time: dict[str, int] = field(default_factory=dict)
    #: what the stall reports said (SPEC §11)
    stalls: list[dict[str, Any]] = field(default_factory=list)
    started_at: Any = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    @property
    def rejected(self) -> int:
        return sum(r.get("rejected", 0) for r in self._per_unit()) + sum(self.null_time.values())

    @property
    def duplicates(self) -> int:
        return sum(r.get("duplicates", 0) for r in self._per_unit())

    def _per_unit(self) -> list[dict[str, Any]]:
        seen, out = set(), []
        for r in self.results:
            key = (r["pair"], r["month"])
            if key not in seen and r["status"] in ("done", "skipped"):
                seen.add(key)
                out.append(r)
        return out


# --------------------------------------------------------------------------------------------
def run_features(
    cfg: Config,
    *,
    families: Sequence[str] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    out: TextIO | None = None,
    client: Any = None,
) -> RunResult:
    """Run the pipeline for ``cfg``; ``client`` is an existing ``distributed.Client`` (tests)."""
    out = out or sys.stdout
    fams = tuple(families) if families is not None else tuple(cfg.families.enabled)
    registry.check_names(fams, "--families")
    if not dry_run:
        check_output_locations(cfg)
    run_id = new_run_id()
    run_dir = None if dry_run else Path(cfg.run.runs_dir) / run_id
    identify(run_id, "client", connect_timeout=cfg.database.connect_timeout)
    url = database_url(cfg)
    rurl = read_url(cfg, url)
    setup_logging(run_dir, secrets_=(url, rurl))
    log.info("bqxdask %s run %s on %s", __version__, run_id, describe(url))
    t_start = time.perf_counter()

    plan, sources, extras = _plan(cfg, url, rurl, fams, run_id, full_refresh, dry_run)
    for warning in plan.warnings:
        log.warning(warning)
    if dry_run:
        out.write(format_plan(plan, cfg, url, rurl) + "\n")
        return RunResult(run_id, plan)

    result = RunResult(run_id, plan, run_dir=run_dir, null_time=extras["null_time"],
                       started_at=extras["started_at"])
    result.results.extend(
        {"family": f, "pair": u.pair, "month": u.month, "status": "skipped"} for u in plan.units for f in u.skip
    )
    empty = [u for u in plan.units if u.todo and u.rows == 0]
    for u in empty:
        msg = (f"{u.pair} {u.month}: no bars in {cfg.database.source_schema}.m1_{u.pair}; fix: import or seed "
               f"that month, or narrow run.start/run.end")
        result.failures.append(msg)
        result.results.extend({"family": f, "pair": u.pair, "month": u.month, "status": "empty", "error": msg}
                              for f in u.todo)
    work = [u for u in plan.units if u.todo and u.rows > 0]
    if work:
        specs = {u.key: _spec(cfg, url, rurl, plan, sources[u.pair], u, result.started_at) for u in work}
        if client is None and not cfg.cluster.scheduler_address:
            check_connection_budget(cfg, url, rurl, cfg.cluster.n_workers)
        with cluster(cfg, client, out) as (dask_client, dashboard):
            if client is not None or cfg.cluster.scheduler_address:
                check_connection_budget(cfg, url, rurl, len(dask_client.scheduler_info()["workers"]))
            if cfg.cluster.scheduler_address:  # workers elsewhere: do they reach what this client reaches? (§11)
                from .readiness.probes import require_workers_ready

                require_workers_ready(dask_client, url,
                                      cfg.output.parquet_dir if cfg.output.write_parquet else None,
                                      read_url=cfg.database.read_url,
                                      application_name=application_name(run_id, "worker"))
            _prepare_outputs(cfg, url, plan, work)
            result.dashboard = dashboard
            _execute(dask_client, cfg, url, plan, work, specs, result, run_dir, out)
    result.wall_seconds = time.perf_counter() - t_start
    _finish(cfg, result, out, url)
    return result


# -- planning ---------------------------------------------------------------------------------
def _plan(cfg: Config, url: str, rurl: str, fams: tuple[str, ...], run_id: str,
          full_refresh: bool, dry_run: bool = False) -> tuple[Plan, dict[str, SourceTable], dict[str, Any]]:
    """Survey the sources, fix the baselines, read the checkpoints; a dry run writes nothing.

    Also returns ``{"null_time": {pair: rows}, "started_at": the database's now()}``: rows that
    have no time are quarantined here, once per pair, since no month can hold them.
    """
    warmup = registry.warmup_rows(cfg.families, fams)
    surveys: dict[str, dict[str, MonthStats]] = {}
    sources: dict[str, SourceTable] = {}
    baselines = {}
    null_time: dict[str, tuple[int, list[str]]] = {}
    started_at = None
    schema = cfg.database.output_schema
    try:
        with connection(url) as conn, connection(rurl) if rurl != url else contextlib.nullcontext(conn) as rconn:
            if not dry_run:
                with conn.cursor() as cur:
                    create_output_schema(cur, schema)
                    register_run(cur, schema, run_id)
                    cur.execute("SELECT now()")
                    started_at = cur.fetchone()[0]
                conn.commit()
            with rconn.cursor() as rcur:
                for pair in cfg.run.pairs:
                    src = inspect_source(rcur, cfg.database.source_schema, pair)
                    sources[pair] = src
                    surveys[pair] = _survey(rcur, src, cfg, warmup)
                    null_time[pair] = null_time_rows(rcur, src)
                rconn.rollback()
            for pair, (count, reasons) in null_time.items():
                if count:
                    log.warning("%s: %d row(s) of %s have a NULL time and cannot be used%s; fix: set their time or "
                                "delete them (SELECT * FROM %s WHERE time IS NULL)", pair, count, sources[pair].label,
                                "" if dry_run else f" — quarantined in {schema}.rejected_bars with time NULL",
                                sources[pair].label)
                if not dry_run:
                    replace_null_time_rejects(conn, schema, pair, reasons, run_id)
            for pair, src in sources.items():
                baselines[pair] = resolve_baseline(conn, src, cfg.database.output_schema, cfg.index.baseline,
                                                   store=not dry_run)
            with conn.cursor() as cur:
                checkpoints = {}
                if table_exists(cur, cfg.database.output_schema, "checkpoints"):
                    checkpoints = load_checkpoints(cur, cfg.database.output_schema, cfg.run.pairs)
                missing_tables = _missing_feature_tables(cur, cfg, fams) if cfg.output.write_sql else set()
            conn.rollback()
    except BqxError:
        raise
    except Exception as exc:
        import psycopg2

        if isinstance(exc, psycopg2.Error):
            raise explain_db_error(exc, url, "planning the run") from None
        raise
    checkpoints = {k: v for k, v in checkpoints.items() if (k[0], k[1]) not in missing_tables}
    parquet_ok = (parquet_checks(cfg.output.parquet_dir, checkpoints, fams, cfg.run.pairs)
                  if cfg.output.write_parquet else {})
    plan = make_plan(cfg, run_id=run_id, families=fams, surveys=surveys, baselines=baselines,
                     checkpoints=checkpoints, parquet_ok=parquet_ok, full_refresh=full_refresh)
    short = [p for p in cfg.run.pairs if sum(s.rows for s in surveys[p].values()) < warmup]
    extra = tuple(f"{p}: fewer bars than the longest lookback ({warmup} rows); early rows will be NULL" for p in short)
    extras = {"null_time": {p: c for p, (c, _) in null_time.items() if c}, "started_at": started_at}
    return dataclasses.replace(plan, warnings=plan.warnings + extra), sources, extras


def _survey(cur, src: SourceTable, cfg: Config, warmup: int) -> dict[str, MonthStats]:
    """Month stats for the run's months and as many months before as the warm-up needs."""
    first = first_time(cur, src)
    need = warmup_read_rows(warmup)
    back = 1
    while True:
        lo, hi = survey_window(cfg, back)
        stats = survey(cur, src, lo, hi)
        before = sum(s.rows for m, s in stats.items() if m < cfg.run.start)
        if before >= need or first is None or first >= lo or back >= MAX_SURVEY_MONTHS_BACK:
            return stats
        back = min(MAX_SURVEY_MONTHS_BACK, back * 2)


def _missing_feature_tables(cur, cfg: Config, fams: Sequence[str]) -> set[tuple[str, str]]:
    return {(f, p) for f in fams for p in cfg.run.pairs
            if not table_exists(cur, cfg.database.output_schema, feature_table(f, p))}


def format_plan(plan: Plan, cfg: Config, url: str, rurl: str) -> str:
    """What ``features --dry-run`` prints: the units, their sizes and a projection of the run."""
    from .estimate import estimate, fmt_bytes, human_seconds

    lines = [f"plan {plan.run_id} on {describe(url)}",
             f"families: {', '.join(plan.families)}",
             f"warm-up: {plan.warmup} rows before each month (largest lookback of the enabled families)"]
    lines.append(f"  {'pair':<8}{'month':<9}{'rows':>9}  compute / skip")
    for u in plan.units:
        lines.append(f"  {u.pair:<8}{u.month:<9}{u.rows:>9,}  {len(u.todo)} / {len(u.skip)}")
    est = estimate(plan, cfg)
    lines.append(f"units: {len(plan.units)} (pair, month) · outputs to compute: {plan.n_outputs} (family, pair, "
                 f"month), skipped: {plan.n_skipped}")
    lines.append(f"rows: {est.rows:,} source rows to compute · {est.values:,} feature values")
    where = []
    if cfg.output.write_sql:
        where.append(f"SQL {cfg.database.output_schema}.<family>_<pair> ≈ {fmt_bytes(est.sql_bytes)}")
    if cfg.output.write_parquet:
        where.append(f"Parquet {cfg.output.parquet_dir}/<family>/pair=…/year=…/month=… ≈ "
                     f"{fmt_bytes(est.parquet_bytes)}")
    lines.append("writes: " + ("; ".join(where) or "nothing (both outputs disabled)"))
    workers, per = cfg.cluster.n_workers, cfg.database.max_connections_per_worker
    for server_url, urls_on_server in servers(url, rurl):
        lines.append(f"connections: up to {describe_need(workers, per, urls_on_server)}"
                     + (f" to {describe(server_url)}" if server_url != url else ""))
    projection = ", ".join(f"{n} worker{'' if n == 1 else 's'} {human_seconds(est.wall_seconds(n))}"
                           for n in sorted({1, 2, 4, 8, workers}))
    lines.append(f"estimated wall time: {projection} ({est.core_seconds:,.0f} core-seconds; throughput "
                 f"{est.throughput_source}; assumes one core per worker and a database that keeps up)")
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


# -- executing --------------------------------------------------------------------------------
def check_connection_budget(cfg: Config, url: str, rurl: str, n_workers: int) -> None:
    """Refuse, before any work, a plan that would open more connections than a server allows."""
    per = cfg.database.max_connections_per_worker
    for server_url, urls_on_server in servers(url, rurl):
        need = connections_needed(n_workers, per, urls_on_server)
        with connection(server_url) as conn, conn.cursor() as cur:
            b = server_budget(cur)
        if need > b.free:
            twice = " × 2 URLs" if urls_on_server == 2 else ""
            capped = f", capped by the {b.capped_by}" if b.capped_by else ""
            raise ConfigError(
                f"the run would open up to {need} connections to {describe(server_url)} ({n_workers} workers × "
                f"database.max_connections_per_worker = {per}{twice}, + {urls_on_server}) but the server has "
                f"{b.free} free (max_connections = {b.max_connections}, {b.reserved} reserved, {b.in_use} in use"
                f"{capped}); fix: lower cluster.n_workers or database.max_connections_per_worker, "
                "or raise max_connections"
            )
        log.info("connection budget on %s: %d needed, %d free", describe(server_url), need, b.free)


def _prepare_outputs(cfg: Config, url: str, plan: Plan, work: Sequence) -> None:
    """Feature tables exist before any task writes (DDL on the client: no CREATE races)."""
    import psycopg2

    if cfg.output.write_parquet:
        removed = parquet.clean_temporary(cfg.output.parquet_dir, plan.families, cfg.run.pairs)
        for path in removed:
            log.warning("removed a temporary file left by an interrupted run: %s", path)
    if not cfg.output.write_sql:
        return
    todo = {(f, u.pair) for u in work for f in u.todo}
    try:
        with connection(url) as conn, conn.cursor() as cur:
            xact_lock(cur, cfg.database.output_schema, "ddl")  # concurrent CREATE TABLE collide in the catalog
            for fam, pair in sorted(todo):
                cols = registry.get(fam).column_names(cfg.families)
                extra = ensure_feature_table(cur, cfg.database.output_schema, feature_table(fam, pair), cols)
                if extra:
                    log.warning("%s.%s has columns the current config does not produce (%s); they are left NULL "
                                "for recomputed months; fix: drop them if unwanted",
                                cfg.database.output_schema, feature_table(fam, pair), ", ".join(extra[:5]))
            conn.commit()
    except psycopg2.Error as exc:
        raise explain_db_error(exc, url, "creating the output tables") from None


def _spec(cfg: Config, url: str, rurl: str, plan: Plan, src: SourceTable, unit, started_at=None) -> UnitSpec:
    lo, hi = month_bounds(unit.month)
    return UnitSpec(
        url=url, read_url=rurl, source=src, output_schema=cfg.database.output_schema,
        pair=unit.pair, month=unit.month, lo=lo, hi=hi, warmup=plan.warmup,
        baseline=plan.baselines[unit.pair].close, families=cfg.families, run_id=plan.run_id,
        fingerprint=unit.fingerprint, config_hashes=dict(plan.config_hashes),
        parquet_dir=cfg.output.parquet_dir if cfg.output.write_parquet else None,
        write_sql=cfg.output.write_sql, max_connections=cfg.database.max_connections_per_worker,
        lock_timeout=cfg.database.lock_timeout, lock_wait_limit=cfg.database.lock_wait_limit, started_at=started_at,
    )


@contextlib.contextmanager
def cluster(cfg: Config, client: Any, out: TextIO):
    """Yield (client, dashboard URL): the given client, an existing scheduler, or a LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    if client is not None:
        link = _dashboard(client)
        out.write(f"Dask dashboard: {link}\n" if link else "Dask dashboard: not available\n")
        out.flush()
        yield client, link
        return
    if cfg.cluster.scheduler_address:
        try:  # the connect timeout is Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
            c = Client(cfg.cluster.scheduler_address, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError) as exc:
            raise BqxError(f"cannot reach the Dask scheduler at {cfg.cluster.scheduler_address} ({exc}); "
                           "fix: check --scheduler / cluster.scheduler_address and that the scheduler runs") from None
        try:
            link = _dashboard(c)
            out.write(f"Dask dashboard: {link or 'not available'} (existing scheduler {cfg.cluster.scheduler_address})\n")
            out.flush()
            yield c, link
        finally:
            c.close()
        return
    with dask.config.set(WORKER_ENVIRON):
        cluster = LocalCluster(
            n_workers=cfg.cluster.n_workers, threads_per_worker=cfg.cluster.threads_per_worker,
            memory_limit=cfg.cluster.memory_limit, dashboard_address=cfg.cluster.dashboard_address,
            # a failing task's "Compute Failed … Traceback" is the run's to tell, in one line (the
            # traceback goes to run.log): the workers' own log stays quiet below CRITICAL
            processes=True, silence_logs=logging.CRITICAL,
        )
    c = Client(cluster)
    try:
        link = _dashboard(c)
        out.write(f"Dask dashboard: {link}  ({cfg.cluster.n_workers} workers × {cfg.cluster.threads_per_worker} "
                  f"thread, {cfg.cluster.memory_limit} each)\n")
        out.flush()
        yield c, link
    finally:
        c.close()
        cluster.close()


def _dashboard(client: Any) -> str | None:
    try:
        return client.dashboard_link
    except Exception:  # no bokeh on a remote scheduler, for instance
        return None


def month_reads(pair_specs: Sequence[UnitSpec], label: str):
    """One pair's bars as a Dask DataFrame: one partition per month (``tasks.read_month``),
    explicit month divisions and meta, so that no task reads to find them out."""
    import dask.dataframe as dd

    from . import tasks

    divisions = tuple(pd.Timestamp(s.lo) for s in pair_specs) + (pd.Timestamp(pair_specs[-1].hi) - pd.Timedelta(1, "us"),)
    return dd.from_map(tasks.read_month, pair_specs, meta=BARS_META, divisions=divisions, label=label,
                       enforce_metadata=False)


def _execute(client: Any, cfg: Config, url: str, plan: Plan, work: Sequence, specs: dict[str, UnitSpec],
             result: RunResult, run_dir: Path | None, out: TextIO) -> None:
    from dask import delayed
    from distributed import as_completed, performance_report

    from . import tasks

    outputs, labels = [], []
    for pair in dict.fromkeys(u.pair for u in work):
        units = [u for u in work if u.pair == pair]
        pair_specs = [specs[u.key] for u in units]
        bars = month_reads(pair_specs, f"read-{pair}")
        for unit, spec, part in zip(units, pair_specs, bars.to_delayed()):
            tag = f"{unit.pair}-{unit.month}-{plan.run_id}"
            warm = delayed(tasks.read_warmup)(spec, dask_key_name=f"warmup-{tag}")
            prep = delayed(tasks.prepare_unit)(part, warm, spec, dask_key_name=f"prepare-{tag}")
            for fam in unit.todo:
                outputs.append(delayed(tasks.compute_and_write)(prep, fam, spec, dask_key_name=f"{fam}-{tag}"))
                labels.append((fam, unit.pair, unit.month))
    report = run_dir / "dask-performance-report.html" if run_dir is not None else None
    progress = Progress(len(outputs), stream=sys.stderr if out is sys.stdout else out)
    watch = RunWatch(client, url, topic=tasks.event_topic(plan.run_id), progress=progress,
                     stall_seconds=cfg.run.stall_seconds)
    with performance_report(filename=str(report)) if report else contextlib.nullcontext(), watch:
        futures = client.compute(outputs)
        index = {f.key: i for i, f in enumerate(futures)}
        pending = set(futures)
        for fut in as_completed(futures):
            pending.discard(fut)
            fam, pair, month = labels[index[fut.key]]
            watch.finished()
            try:
                res = fut.result()
            except Exception as exc:  # one unit's failure must not stop the others
                msg = _failure_message(exc, fam, pair, month)
                log.error("%s", msg)
                with contextlib.suppress(Exception):
                    log.debug("traceback of %s %s %s:\n%s", fam, pair, month, "".join(_tb(fut)))
                result.failures.append(msg)
                result.results.append({"family": fam, "pair": pair, "month": month, "status": "failed", "error": msg})
                progress.advance(failed=True)
                if isinstance(exc, DatabaseUnavailable):  # the database is gone: stop, don't fail unit by unit
                    _abandon(client, pending, labels, index, result, exc)
                    break
            else:
                result.results.append(res)
                if res.get("waited_for"):
                    log.info("%s %s %s: %s", fam, pair, month, res.get("reason") or f"waited for {res['waited_for']}")
                progress.advance(rows=res["rows"])
            fut.release()
    result.stalls.extend(watch.stalls)
    progress.close()


def _abandon(client: Any, pending: set, labels: list, index: dict, result: RunResult, exc: BaseException) -> None:
    """Cancel what has not finished; every abandoned unit is listed as failed with the same cause."""
    with contextlib.suppress(Exception):
        client.cancel(list(pending))
    for fut in pending:
        fam, pair, month = labels[index[fut.key]]
        result.results.append({"family": fam, "pair": pair, "month": month, "status": "failed",
                               "error": f"not run: {exc}"})
    if result.failures:
        result.failures[-1] += f" — the run stopped there; {len(pending)} other output(s) not run"
    pending.clear()


def _tb(fut) -> list[str]:
    import traceback

    return traceback.format_tb(fut.traceback())


def _failure_message(exc: BaseException, fam: str, pair: str, month: str) -> str:
    if isinstance(exc, BqxError):
        return f"{fam} {pair} {month}: {exc}"
    name = type(exc).__name__
    if name == "KilledWorker":
        return (f"{fam} {pair} {month}: the worker running it died repeatedly (memory limit?); "
                "fix: raise cluster.memory_limit or lower families.reg.windows, then rerun")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"{fam} {pair} {month}: {name}: {text} (traceback in the run log); fix: rerun — finished units are kept"


def _finish(cfg: Config, result: RunResult, out: TextIO, url: str) -> None:
    rows = summary_rows(result.results, result.plan.families)
    out.write("\n" + format_summary(rows, wall=result.wall_seconds, rejected=result.rejected,
                                     duplicates=result.duplicates) + "\n")
    for msg in result.failures:
        out.write(f"FAILED {msg}\n")
    if result.run_dir is not None:
        summary = {
            "run_id": result.run_id,
            "bqxdask_version": __version__,
            "database": describe(url),
            "config": cfg.redacted(),
            "families": list(result.plan.families),
            "warmup_rows": result.plan.warmup,
            "wall_seconds": result.wall_seconds,
            "dashboard": result.dashboard,
            "totals": {
                "outputs": len(result.results),
                "done": sum(r["status"] == "done" for r in result.results),
                "skipped": sum(r["status"] == "skipped" for r in result.results),
                "failed": sum(r["status"] in ("failed", "empty") for r in result.results),
                "rows": sum(r.get("rows", 0) for r in result.results if r["status"] == "done"),
                "rejected_bars": result.rejected,
                "null_time_rows": sum(result.null_time.values()),
                "duplicates_dropped": result.duplicates,
            },
            "null_time_rows": result.null_time,
            "stalls": result.stalls,
            "per_family": rows,
            "units": result.results,
            "failures": result.failures,
            "exit_code": result.exit_code,
        }
        write_json(result.run_dir / "summary.json", summary, url)
        files = ", ".join(p.name for p in sorted(result.run_dir.iterdir()))
        out.write(f"run {result.run_id}: {result.run_dir}/ ({files})\n")
    out.flush()
