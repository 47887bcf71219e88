"""The feature pipeline: cluster → plan → read → compute → write → summary (SPEC §5, §6).

:func:`run_features` is what ``bqxdask features`` calls. The client does the cheap, serial
part (checks, survey, baselines, checkpoints, DDL: :mod:`.survey`); the workers do the rest,
one Dask graph (:mod:`.graph`) whose outputs are the (family, pair, month) writes. Once the
plan has work, a LocalCluster of the run starts in the background (:class:`.cluster.LocalStart`):
the graph and the tables do not wait for it, and the first task does not wait for the client
(issue 15).

A unit that fails is reported with its message and does not stop the others; the exit code is
non-zero when any did. Re-running finishes the job: valid checkpoints are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..calendar import month_bounds
from ..config import Config
from ..db import database_url, read_url
from ..db.connect import application_name, connection, describe, explain_db_error, identify
from ..db.locks import xact_lock
from ..db.schema import feature_table
from ..db.source import SourceTable
from ..db.writer import ensure_feature_table
from ..errors import BqxError, DatabaseUnavailable
from ..features import registry
from ..outputs import parquet
from ..outputs.locations import check_output_locations
from ..plan import Plan
from ..results import Status, UnitResult
from .cluster import LocalStart, check_connection_budget, cluster
from .dryrun import format_plan
from .graph import unit_outputs
from .progress import Progress, format_summary, summary_rows
from .runlog import new_run_id, setup_logging, write_json
from .survey import plan_run
from .tasks import UnitSpec, event_topic
from .watch import RunWatch

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    plan: Plan
    results: list[UnitResult] = field(default_factory=list)
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
        return sum(r.detail.get("rejected", 0) for r in self.per_unit()) + sum(self.null_time.values())

    @property
    def duplicates(self) -> int:
        return sum(r.detail.get("duplicates", 0) for r in self.per_unit())

    def per_unit(self) -> list[UnitResult]:
        """One done or skipped result per (pair, month): the unit's bar counts, counted once."""
        seen, out = set(), []
        for r in self.results:
            key = (r.pair, r.month)
            if key not in seen and r.status.counted:
                seen.add(key)
                out.append(r)
        return out

    def count(self, *statuses: Status) -> int:
        return sum(r.status in statuses for r in self.results)


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

    result = plan_and_execute(cfg, fams, run_id, run_dir, url, rurl, full_refresh, dry_run, out, client)
    if dry_run:
        return result
    result.wall_seconds = time.perf_counter() - t_start
    finish(cfg, result, out, url)
    return result


def plan_and_execute(
    cfg: Config,
    fams: tuple[str, ...],
    run_id: str,
    run_dir: Path | None,
    url: str,
    rurl: str,
    full_refresh: bool,
    dry_run: bool,
    out: TextIO,
    client: Any,
) -> RunResult:
    """Plan; then, if there is work, the graph and the tables, and the graph run on the cluster.

    A LocalCluster of the run is started once the plan has work, in the background
    (:class:`.cluster.LocalStart`), while the client builds the graph and creates the tables.
    Not before the plan: a rerun with nothing to do, or a plan that fails, would wait for a
    cluster's start only to close it (2 s → 4–7.5 s for a rerun when it started earlier).
    """
    plan, sources, extras = plan_run(cfg, url, rurl, fams, run_id, full_refresh, dry_run)
    for warning in plan.warnings:
        log.warning(warning)
    if dry_run:
        out.write(format_plan(plan, cfg, url, rurl) + "\n")
        return RunResult(run_id, plan)

    result = RunResult(run_id, plan, run_dir=run_dir, null_time=extras["null_time"], started_at=extras["started_at"])
    result.results.extend(UnitResult(f, u.pair, u.month, Status.SKIPPED) for u in plan.units for f in u.skip)
    empty = [u for u in plan.units if u.todo and u.rows == 0]
    for u in empty:
        msg = (
            f"{u.pair} {u.month}: no bars in {cfg.database.source_schema}.m1_{u.pair}; fix: import or seed "
            f"that month, or narrow run.start/run.end"
        )
        result.failures.append(msg)
        result.results.extend(UnitResult(f, u.pair, u.month, Status.EMPTY, {"error": msg}) for f in u.todo)
    work = [u for u in plan.units if u.todo and u.rows > 0]
    if not work:
        return result
    specs = {u.key: unit_spec(cfg, url, rurl, plan, sources[u.pair], u, result.started_at) for u in work}
    starting = None
    if client is None and not cfg.cluster.scheduler_address:
        check_connection_budget(cfg, url, rurl, cfg.cluster.n_workers)
        starting = LocalStart(cfg)
    try:
        graph = unit_outputs(plan, work, specs)
        if starting is not None:  # no worker is needed for the tables: create them while it starts
            prepare_outputs(cfg, url, plan, work)
    except BaseException:
        if starting is not None:
            starting.close()  # the workers go as well
        raise
    with cluster(cfg, client, out, starting) as (dask_client, dashboard):
        if client is not None or cfg.cluster.scheduler_address:
            check_connection_budget(cfg, url, rurl, len(dask_client.scheduler_info()["workers"]))
        if cfg.cluster.scheduler_address:  # workers elsewhere: do they reach what this client reaches? (§11)
            from ..readiness.probes import require_workers_ready

            require_workers_ready(
                dask_client,
                url,
                cfg.output.parquet_dir if cfg.output.write_parquet else None,
                read_url=cfg.database.read_url,
                application_name=application_name(run_id, "worker"),
            )
        if starting is None:
            prepare_outputs(cfg, url, plan, work)
        result.dashboard = dashboard
        execute(dask_client, cfg, url, plan, graph, result, run_dir, out)
    return result


def prepare_outputs(cfg: Config, url: str, plan: Plan, work: Sequence) -> None:
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
                    log.warning(
                        "%s.%s has columns the current config does not produce (%s); they are left NULL "
                        "for recomputed months; fix: drop them if unwanted",
                        cfg.database.output_schema,
                        feature_table(fam, pair),
                        ", ".join(extra[:5]),
                    )
            conn.commit()
    except psycopg2.Error as exc:
        raise explain_db_error(exc, url, "creating the output tables") from None


def unit_spec(cfg: Config, url: str, rurl: str, plan: Plan, src: SourceTable, unit, started_at=None) -> UnitSpec:
    """The plain values the tasks of one unit need (no engine or connection crosses to a worker)."""
    lo, hi = month_bounds(unit.month)
    return UnitSpec(
        url=url,
        read_url=rurl,
        source=src,
        output_schema=cfg.database.output_schema,
        pair=unit.pair,
        month=unit.month,
        lo=lo,
        hi=hi,
        warmup=plan.warmup,
        baseline=plan.baselines[unit.pair].close,
        families=cfg.families,
        run_id=plan.run_id,
        fingerprint=unit.fingerprint,
        config_hashes=dict(plan.config_hashes),
        parquet_dir=cfg.output.parquet_dir if cfg.output.write_parquet else None,
        write_sql=cfg.output.write_sql,
        max_connections=cfg.database.max_connections_per_worker,
        lock_timeout=cfg.database.lock_timeout,
        lock_wait_limit=cfg.database.lock_wait_limit,
        started_at=started_at,
    )


# -- executing --------------------------------------------------------------------------------
def execute(
    client: Any,
    cfg: Config,
    url: str,
    plan: Plan,
    graph: tuple[list, list[tuple[str, str, str]]],
    result: RunResult,
    run_dir: Path | None,
    out: TextIO,
) -> None:
    """Compute the graph's outputs (:func:`.graph.unit_outputs`), one (family, pair, month) write
    each, reporting as they end."""
    from distributed import as_completed, performance_report

    outputs, labels = graph
    report = run_dir / "dask-performance-report.html" if run_dir is not None else None
    progress = Progress(len(outputs), stream=sys.stderr if out is sys.stdout else out)
    watch = RunWatch(
        client, url, topic=event_topic(plan.run_id), progress=progress, stall_seconds=cfg.run.stall_seconds
    )
    with performance_report(filename=str(report)) if report else contextlib.nullcontext(), watch:
        futures = client.compute(outputs)
        index = {f.key: i for i, f in enumerate(futures)}
        pending = set(futures)
        for fut in as_completed(futures):
            pending.discard(fut)
            fam, pair, month = labels[index[fut.key]]
            watch.finished()
            try:
                res: UnitResult = fut.result()
            except Exception as exc:  # one unit's failure must not stop the others
                msg = failure_message(exc, fam, pair, month)
                log.error("%s", msg)
                with contextlib.suppress(Exception):
                    log.debug("traceback of %s %s %s:\n%s", fam, pair, month, "".join(_traceback(fut)))
                result.failures.append(msg)
                result.results.append(UnitResult(fam, pair, month, Status.FAILED, {"error": msg}))
                progress.advance(failed=True)
                if isinstance(exc, DatabaseUnavailable):  # the database is gone: stop, don't fail unit by unit
                    _abandon(client, pending, labels, index, result, exc)
                    break
            else:
                result.results.append(res)
                if res.detail.get("waited_for"):
                    log.info(
                        "%s %s %s: %s",
                        fam,
                        pair,
                        month,
                        res.detail.get("reason") or f"waited for {res.detail['waited_for']}",
                    )
                progress.advance(rows=res.rows)
            fut.release()
    result.stalls.extend(watch.stalls)
    progress.close()


def _abandon(client: Any, pending: set, labels: list, index: dict, result: RunResult, exc: BaseException) -> None:
    """Cancel what has not finished; every abandoned unit is listed as failed with the same cause."""
    with contextlib.suppress(Exception):
        client.cancel(list(pending))
    for fut in pending:
        fam, pair, month = labels[index[fut.key]]
        result.results.append(UnitResult(fam, pair, month, Status.FAILED, {"error": f"not run: {exc}"}))
    if result.failures:
        result.failures[-1] += f" — the run stopped there; {len(pending)} other output(s) not run"
    pending.clear()


def _traceback(fut) -> list[str]:
    import traceback

    return traceback.format_tb(fut.traceback())


def failure_message(exc: BaseException, fam: str, pair: str, month: str) -> str:
    """One line naming the output, the cause and the fix."""
    if isinstance(exc, BqxError):
        return f"{fam} {pair} {month}: {exc}"
    name = type(exc).__name__
    if name == "KilledWorker":
        return (
            f"{fam} {pair} {month}: the worker running it died repeatedly (memory limit?); "
            "fix: raise cluster.memory_limit or lower families.reg.windows, then rerun"
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"{fam} {pair} {month}: {name}: {text} (traceback in the run log); fix: rerun — finished units are kept"


def finish(cfg: Config, result: RunResult, out: TextIO, url: str) -> None:
    """Print the summary table and the failures; write ``summary.json`` into the run directory."""
    rows = summary_rows(result.results, result.plan.families)
    out.write(
        "\n"
        + format_summary(rows, wall=result.wall_seconds, rejected=result.rejected, duplicates=result.duplicates)
        + "\n"
    )
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
                "done": result.count(Status.DONE),
                "skipped": result.count(Status.SKIPPED),
                "failed": result.count(Status.FAILED, Status.EMPTY),
                "rows": sum(r.rows for r in result.results if r.status is Status.DONE),
                "rejected_bars": result.rejected,
                "null_time_rows": sum(result.null_time.values()),
                "duplicates_dropped": result.duplicates,
            },
            "null_time_rows": result.null_time,
            "stalls": result.stalls,
            "per_family": rows,
            "units": [r.as_dict() for r in result.results],
            "failures": result.failures,
            "exit_code": result.exit_code,
        }
        write_json(result.run_dir / "summary.json", summary, url)
        files = ", ".join(p.name for p in sorted(result.run_dir.iterdir()))
        out.write(f"run {result.run_id}: {result.run_dir}/ ({files})\n")
    out.flush()
