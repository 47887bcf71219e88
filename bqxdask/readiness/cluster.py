"""The plan group: what the planned cluster asks of this machine (SPEC §8).

For a LocalCluster: workers × ``memory_limit`` against the memory available, worker threads
against the CPUs. With ``cluster.scheduler_address``: what the existing scheduler offers and
whether its workers reach what this client reaches (:mod:`.scheduler`). Then the enabled
families, and — once the source tables are counted — a rough per-unit memory estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dask.utils import format_bytes

from ..config import Config
from .findings import FAIL, OK, WARN, Check, pct
from .machine import MachineFacts
from .scheduler import scheduler_group

GROUP = "plan"
#: memory thresholds of the plan: ❌ above what is available, ⚠️ above this share of it
MEMORY_WARN = 0.80
#: what a worker process weighs before it holds any data (Python, pandas, numpy, TA-Lib, Dask)
WORKER_BASELINE_BYTES = 200 * 2**20
#: live copies of a unit's frame while a family runs (prepared, result, values, COPY buffer)
UNIT_COPIES = 4
#: columns of the prepared frame besides the family's output (idx, ohlc_idx, bqx series …)
PREPARED_COLUMNS = 8
#: a worker spills to disk above 60 % of memory_limit and is restarted above 95 %
SPILL_SHARE = 0.60
#: bars in one pair-month when the database cannot tell (FX trades 24 h × 5 days: ~31,000)
ASSUMED_BARS_PER_MONTH = 31_000
#: rows of a unit when no source table was counted: a whole 31-day month of minutes
UNKNOWN_UNIT_ROWS = 44_640


@dataclass(frozen=True)
class PlanFacts:
    """The cluster the run gets and the families it computes (None: not known)."""

    workers: int | None = None
    threads_per_worker: int | None = None
    worker_memory: int | None = None
    families: tuple[str, ...] = ()
    warmup: int = 0


def plan_group(cfg: Config, machine: MachineFacts) -> tuple[PlanFacts, list[Check]]:
    """The plan lines: the cluster against ``machine`` (or the existing scheduler), the families."""
    c = cfg.cluster
    if c.scheduler_address:
        workers, checks = scheduler_group(cfg)
        n, threads, memory = workers.n, workers.threads_per_worker, workers.memory
    else:
        n, threads, memory = c.n_workers, c.threads_per_worker, cfg.memory_limit_bytes
        checks = [local_memory_check(cfg, memory, machine.mem_available), local_cpus_check(cfg, machine.cpus or 1)]
    families, warmup, line = families_check(cfg)
    return PlanFacts(n, threads, memory, families, warmup), [*checks, line]


def short_bytes(n: float) -> str:
    """Bytes with one decimal (``64.0 GiB``): the plan's memory line is read, and tested, this way
    (:func:`dask.utils.format_bytes` writes two)."""
    for prefix, k in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= k:
            return f"{n / k:.1f} {prefix}B"
    return f"{n:.0f} B"


def local_memory_check(cfg: Config, limit: int, avail: int | None) -> Check:
    """workers × memory_limit against the memory available (None: the machine check failed)."""
    workers = cfg.cluster.n_workers
    need = workers * limit
    values = {"workers": workers, "memory_limit_bytes": limit, "needed_bytes": need, "available_bytes": avail}
    base = f"{workers} workers × {short_bytes(limit)} = {short_bytes(need)}"
    if avail is None:
        return Check(GROUP, "memory", WARN, f"{base}; available memory unknown (machine check failed)", values)
    fit = max(1, int(MEMORY_WARN * avail // limit))
    share = f"{pct(need, avail)} of {short_bytes(avail)} available"
    fix = f"fix: --workers {fit} or --memory-limit {suggest_limit(avail, workers)}"
    if need > avail:
        return Check(
            GROUP,
            "memory",
            FAIL,
            f"{base} > {short_bytes(avail)} available ({share}): workers would be "
            f"killed or the machine would swap; {fix}",
            values,
        )
    if need > MEMORY_WARN * avail:
        db = " and the embedded database" if not cfg.database.url else ""
        return Check(
            GROUP,
            "memory",
            WARN,
            f"{base} = {share}: under {100 - 100 * MEMORY_WARN:.0f} % headroom "
            f"left for the scheduler, the client{db} and the OS; {fix}",
            values,
        )
    return Check(GROUP, "memory", OK, f"{base} = {share}", values)


def suggest_limit(avail: int, workers: int) -> str:
    """A ``--memory-limit`` that fits ``workers`` in the warn share of ``avail`` (256 MiB steps)."""
    per = MEMORY_WARN * avail / max(1, workers)
    mib = max(256, int(per // 2**20) // 256 * 256)
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


def local_cpus_check(cfg: Config, cpus: int) -> Check:
    """Worker threads against the CPUs: more threads than CPUs only time-share them."""
    c = cfg.cluster
    threads = c.n_workers * c.threads_per_worker
    values = {"workers": c.n_workers, "threads_per_worker": c.threads_per_worker, "threads": threads, "cpus": cpus}
    base = (
        f"{c.n_workers} workers × {c.threads_per_worker} thread{'s' * (c.threads_per_worker != 1)} "
        f"= {threads} on {cpus} CPUs"
    )
    if threads > cpus:
        return Check(
            GROUP,
            "CPUs",
            WARN,
            f"{base}: threads time-share the CPUs, so nothing runs faster past {cpus}, "
            f"while each extra worker still reserves {c.memory_limit} and holds up to "
            f"{cfg.database.max_connections_per_worker} database connections; fix: --workers "
            f"{max(1, cpus // c.threads_per_worker)}",
            values,
        )
    idle = f" ({cpus - threads} CPU{'s' * (cpus - threads != 1)} left idle)" if threads < cpus else ""
    return Check(GROUP, "CPUs", OK, base + idle, values)


def families_check(cfg: Config) -> tuple[tuple[str, ...], int, Check]:
    """(the enabled families this build has, their warm-up rows, the families line)."""
    from ..features import registry  # the families' kernels import TA-Lib: only when assessed

    known = registry.all_families()
    enabled = list(cfg.families.enabled)
    missing = [f for f in enabled if f not in known]
    available = tuple(f for f in enabled if f in known)
    warmup = registry.warmup_rows(cfg.families, list(available)) if available else 0
    cols = sum(len(known[f].column_names(cfg.families)) for f in available)
    values = {"enabled": enabled, "unavailable": missing, "columns": cols, "warmup_rows": warmup}
    if missing:
        return (
            available,
            warmup,
            Check(
                GROUP,
                "families",
                FAIL,
                f"{', '.join(missing)} enabled but not in this build of bqxdask (it has "
                f"{', '.join(known)}); the run would stop at once; fix: remove them from families.enabled or update "
                "bqxdask",
                values,
            ),
        )
    return (
        available,
        warmup,
        Check(
            GROUP,
            "families",
            OK,
            f"{len(enabled)} families, {cols} output columns; warm-up {warmup:,} rows before each month",
            values,
        ),
    )


def unit_memory_check(cfg: Config, plan: PlanFacts, rows: Mapping[str, Mapping[str, int]]) -> list[Check]:
    """The per-unit memory estimate against ``memory_limit``, from the counted source ``rows``."""
    if not plan.families or not plan.worker_memory:
        return []
    # bqxdask.plan imports every family (TA-Lib…): only when assessed
    from ..features import registry
    from ..plan import warmup_read_rows

    known = registry.all_families()
    widest = max(plan.families, key=lambda f: len(known[f].column_names(cfg.families)))
    cols = len(known[widest].column_names(cfg.families)) + PREPARED_COLUMNS
    per_month = [r for months in rows.values() for r in months.values()]
    n_rows = (max(per_month, default=0) or UNKNOWN_UNIT_ROWS) + warmup_read_rows(plan.warmup)
    threads = plan.threads_per_worker or 1
    need = WORKER_BASELINE_BYTES + threads * n_rows * cols * 8 * UNIT_COPIES
    limit = plan.worker_memory
    values = {
        "estimate_bytes": need,
        "memory_limit_bytes": limit,
        "rows": n_rows,
        "widest_family": widest,
        "columns": cols,
    }
    base = (
        f"≈ {format_bytes(need)} per worker at most ({n_rows:,} rows incl. warm-up × {widest}'s {cols} columns"
        f"{f' × {threads} threads' if threads > 1 else ''}) of {format_bytes(limit)} memory_limit"
    )
    if need > SPILL_SHARE * limit:
        return [
            Check(
                GROUP,
                "unit memory",
                WARN,
                f"{base}: above the {SPILL_SHARE:.0%} where Dask starts spilling "
                f"and pausing (rough estimate); fix: --memory-limit {format_bytes(int(need / SPILL_SHARE))} "
                "or more",
                values,
            )
        ]
    return [Check(GROUP, "unit memory", OK, base + " (rough estimate)", values)]


def planned_rows(cfg: Config, rows: Mapping[str, Mapping[str, int]]) -> tuple[int, dict[str, int], list[str]]:
    """(source rows of the requested months, the counted ones per pair, the pairs assumed)."""
    measured = {p: sum(rows[p].values()) for p in cfg.run.pairs if p in rows}
    assumed = [p for p in cfg.run.pairs if p not in rows]
    return sum(measured.values()) + len(assumed) * len(cfg.months) * ASSUMED_BARS_PER_MONTH, measured, assumed
