"""What ``features --dry-run`` prints: the units, their sizes and a projection of the run (SPEC §5)."""

from __future__ import annotations

from dask.utils import format_bytes, format_time

from ..config import Config
from ..db.budget import describe_need, servers
from ..db.connect import describe
from ..plan import Plan
from .estimate import estimate


def format_plan(plan: Plan, cfg: Config, url: str, rurl: str) -> str:
    """The plan as ``features --dry-run`` prints it."""
    lines = [
        f"plan {plan.run_id} on {describe(url)}",
        f"families: {', '.join(plan.families)}",
        f"warm-up: {plan.warmup} rows before each month (largest lookback of the enabled families)",
    ]
    lines.append(f"  {'pair':<8}{'month':<9}{'rows':>9}  compute / skip")
    for u in plan.units:
        lines.append(f"  {u.pair:<8}{u.month:<9}{u.rows:>9,}  {len(u.todo)} / {len(u.skip)}")
    est = estimate(plan, cfg)
    lines.append(
        f"units: {len(plan.units)} (pair, month) · outputs to compute: {plan.n_outputs} (family, pair, "
        f"month), skipped: {plan.n_skipped}"
    )
    lines.append(f"rows: {est.rows:,} source rows to compute · {est.values:,} feature values")
    where = []
    if cfg.output.write_sql:
        where.append(f"SQL {cfg.database.output_schema}.<family>_<pair> ≈ {format_bytes(est.sql_bytes)}")
    if cfg.output.write_parquet:
        where.append(
            f"Parquet {cfg.output.parquet_dir}/<family>/pair=…/year=…/month=… ≈ {format_bytes(est.parquet_bytes)}"
        )
    lines.append("writes: " + ("; ".join(where) or "nothing (both outputs disabled)"))
    workers, per = cfg.cluster.n_workers, cfg.database.max_connections_per_worker
    for server_url, urls_on_server in servers(url, rurl):
        lines.append(
            f"connections: up to {describe_need(workers, per, urls_on_server)}"
            + (f" to {describe(server_url)}" if server_url != url else "")
        )
    projection = ", ".join(
        f"{n} worker{'' if n == 1 else 's'} {format_time(est.wall_seconds(n))}" for n in sorted({1, 2, 4, 8, workers})
    )
    lines.append(
        f"estimated wall time: {projection} ({est.core_seconds:,.0f} core-seconds; throughput "
        f"{est.throughput_source}; assumes one core per worker and a database that keeps up)"
    )
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
