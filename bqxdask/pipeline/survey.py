"""Planning a run on the client: survey the sources, fix the baselines, read the checkpoints (SPEC §5, §6).

Cheap and serial, before any worker starts; a dry run writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from ..checkpoints import MonthStats, load_checkpoints, parquet_checks
from ..config import Config
from ..db.baseline import resolve_baseline
from ..db.connect import connection, explain_db_error, table_exists
from ..db.locks import register_run
from ..db.schema import create_output_schema, feature_table
from ..db.source import SourceTable, first_time, inspect_source, null_time_rows, survey
from ..db.writer import replace_null_time_rejects
from ..errors import BqxError
from ..features import registry
from ..plan import Plan, make_plan, survey_window, warmup_read_rows

log = logging.getLogger(__name__)

MAX_SURVEY_MONTHS_BACK = 36


def plan_run(
    cfg: Config, url: str, rurl: str, fams: tuple[str, ...], run_id: str, full_refresh: bool, dry_run: bool = False
) -> tuple[Plan, dict[str, SourceTable], dict[str, Any]]:
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
                    surveys[pair] = survey_pair(rcur, src, cfg, warmup)
                    null_time[pair] = null_time_rows(rcur, src)
                rconn.rollback()
            for pair, (count, reasons) in null_time.items():
                if count:
                    log.warning(
                        "%s: %d row(s) of %s have a NULL time and cannot be used%s; fix: set their time or "
                        "delete them (SELECT * FROM %s WHERE time IS NULL)",
                        pair,
                        count,
                        sources[pair].label,
                        "" if dry_run else f" — quarantined in {schema}.rejected_bars with time NULL",
                        sources[pair].label,
                    )
                if not dry_run:
                    replace_null_time_rejects(conn, schema, pair, reasons, run_id)
            for pair, src in sources.items():
                baselines[pair] = resolve_baseline(
                    conn, src, cfg.database.output_schema, cfg.index.baseline, store=not dry_run
                )
            with conn.cursor() as cur:
                checkpoints = {}
                if table_exists(cur, cfg.database.output_schema, "checkpoints"):
                    checkpoints = load_checkpoints(cur, cfg.database.output_schema, cfg.run.pairs)
                missing_tables = missing_feature_tables(cur, cfg, fams) if cfg.output.write_sql else set()
            conn.rollback()
    except BqxError:
        raise
    except Exception as exc:
        import psycopg2

        if isinstance(exc, psycopg2.Error):
            raise explain_db_error(exc, url, "planning the run") from None
        raise
    checkpoints = {k: v for k, v in checkpoints.items() if (k[0], k[1]) not in missing_tables}
    parquet_ok = (
        parquet_checks(cfg.output.parquet_dir, checkpoints, fams, cfg.run.pairs) if cfg.output.write_parquet else {}
    )
    plan = make_plan(
        cfg,
        run_id=run_id,
        families=fams,
        surveys=surveys,
        baselines=baselines,
        checkpoints=checkpoints,
        parquet_ok=parquet_ok,
        full_refresh=full_refresh,
    )
    short = [p for p in cfg.run.pairs if sum(s.rows for s in surveys[p].values()) < warmup]
    extra = tuple(f"{p}: fewer bars than the longest lookback ({warmup} rows); early rows will be NULL" for p in short)
    extras = {"null_time": {p: c for p, (c, _) in null_time.items() if c}, "started_at": started_at}
    return dataclasses.replace(plan, warnings=plan.warnings + extra), sources, extras


def survey_pair(cur, src: SourceTable, cfg: Config, warmup: int) -> dict[str, MonthStats]:
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


def missing_feature_tables(cur, cfg: Config, fams: Sequence[str]) -> set[tuple[str, str]]:
    return {
        (f, p)
        for f in fams
        for p in cfg.run.pairs
        if not table_exists(cur, cfg.database.output_schema, feature_table(f, p))
    }
