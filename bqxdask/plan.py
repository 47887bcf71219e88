"""The run plan: units (pair, month), their warm-up, fingerprints and checkpoint decisions (SPEC §5, §6).

Pure: everything here works on values the pipeline fetched (surveys, baselines, checkpoints),
so a plan can be printed (``--dry-run``) and tested without a database; nothing here imports
``bqxdask.db``. What a checkpoint and a fingerprint are is :mod:`bqxdask.checkpoints`.

- The warm-up of every partition is :func:`bqxdask.features.registry.warmup_rows` — the largest
  lookback of the enabled families, their input series' lag included. It is never typed twice.
- A unit's *fingerprint* covers its own month and the months its warm-up reads from (plus the
  baseline), so new bars recompute the units they touch and the units whose warm-up they feed.
- A (family, pair, month) output is skipped when the checkpoint has the same config hash and
  fingerprint; ``full_refresh`` recomputes everything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .calendar import month_bounds, month_range, months_before
from .checkpoints import Checkpoint, MonthStats, checkpoint_current, unit_fingerprint
from .config import Config
from .features import registry

#: extra raw rows read (and fingerprinted) beyond the warm-up, so bars quarantined in the
#: warm-up region do not leave it short
WARMUP_SLACK = 0.10
WARMUP_SLACK_ROWS = 64


@dataclass(frozen=True)
class Baseline:
    """SPEC §4.1: the close B of the pair's first accepted bar at or after ``index.baseline``."""

    pair: str
    time: dt.datetime
    close: float

    @property
    def key(self) -> str:
        return f"{self.time.isoformat()}|{self.close!r}"


@dataclass(frozen=True)
class Unit:
    """One (pair, month) partition and what to do with each family."""

    pair: str
    month: str
    rows: int  # raw source rows in the month (before quarantine)
    fingerprint: str
    todo: tuple[str, ...]  # families to compute
    skip: tuple[str, ...]  # families whose checkpoint is still valid

    @property
    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        return month_bounds(self.month)

    @property
    def key(self) -> str:
        return f"{self.pair}-{self.month}"


@dataclass(frozen=True)
class Plan:
    run_id: str
    families: tuple[str, ...]
    warmup: int
    config_hashes: Mapping[str, str]
    baselines: Mapping[str, Baseline]
    units: tuple[Unit, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def todo_units(self) -> list[Unit]:
        return [u for u in self.units if u.todo]

    @property
    def n_outputs(self) -> int:
        """(family, pair, month) outputs to compute."""
        return sum(len(u.todo) for u in self.units)

    @property
    def n_skipped(self) -> int:
        return sum(len(u.skip) for u in self.units)

    def rows_to_compute(self) -> int:
        return sum(u.rows for u in self.units if u.todo)


def warmup_read_rows(warmup: int) -> int:
    """Raw rows to read before a month to be left with ``warmup`` accepted ones."""
    return warmup + int(warmup * WARMUP_SLACK) + WARMUP_SLACK_ROWS if warmup else 0


def make_plan(
    cfg: Config,
    *,
    run_id: str,
    families: Sequence[str],
    surveys: Mapping[str, Mapping[str, MonthStats]],
    baselines: Mapping[str, Baseline],
    checkpoints: Mapping[tuple[str, str, str], Checkpoint],
    parquet_ok: Mapping[tuple[str, str, str], bool] | None = None,
    full_refresh: bool = False,
) -> Plan:
    """Decide, for every (pair, month) of the run, which families to compute.

    ``parquet_ok[(family, pair, month)]`` says that the unit's Parquet file exists and carries
    the checkpoint's config hash and fingerprint (checked by the caller, which can read files).
    """
    fam_cfg = cfg.families
    warmup = registry.warmup_rows(fam_cfg, families)
    hashes = {f: registry.get(f).config_hash(fam_cfg, cfg.index.baseline) for f in families}
    units, warnings = [], []
    for pair in cfg.run.pairs:
        stats = surveys[pair]
        baseline = baselines[pair]
        for month in month_range(cfg.run.start, cfg.run.end):
            own = stats.get(month)
            rows = own.rows if own else 0
            if rows == 0:
                warnings.append(
                    f"{pair} {month}: no bars in the source table; fix: import or seed that month, "
                    "or narrow run.start/run.end"
                )
            fp = unit_fingerprint(month, stats, warmup_read_rows(warmup), baseline.key)
            todo, skip = [], []
            for fam in families:
                valid = not full_refresh and checkpoint_current(
                    checkpoints.get((fam, pair, month)),
                    hashes[fam],
                    fp,
                    write_sql=cfg.output.write_sql,
                    write_parquet=cfg.output.write_parquet,
                    parquet_ok=(parquet_ok or {}).get((fam, pair, month), False),
                )
                (skip if valid else todo).append(fam)
            units.append(Unit(pair, month, rows, fp, tuple(todo), tuple(skip)))
    return Plan(run_id, tuple(families), warmup, hashes, dict(baselines), tuple(units), tuple(warnings))


def survey_start(cfg: Config) -> str:
    """First month the survey must cover: one month before the run (extended by the caller)."""
    return months_before(cfg.run.start, 1)


def survey_window(cfg: Config, months_back: int) -> tuple[dt.datetime, dt.datetime]:
    lo, _ = month_bounds(months_before(cfg.run.start, months_back))
    _, hi = month_bounds(cfg.run.end)
    return lo, hi
