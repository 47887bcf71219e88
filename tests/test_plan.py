"""The run plan on hand-built values, no database (SPEC §5, §6): units, warm-up, fingerprints, skips.

Surveys, baselines and checkpoints are what the pipeline would fetch; here they are written
out, so every decision of ``make_plan`` can be checked from its rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from bqxdask.calendar import months_before
from bqxdask.checkpoints import Checkpoint, MonthStats, checkpoint_current, unit_fingerprint
from bqxdask.config import build_config
from bqxdask.features import registry
from bqxdask.plan import (
    WARMUP_SLACK,
    WARMUP_SLACK_ROWS,
    Baseline,
    make_plan,
    survey_start,
    survey_window,
    warmup_read_rows,
)

UTC = dt.timezone.utc


def fingerprint(month: str, stats, warmup: int, baseline: Baseline) -> str:
    """A unit's fingerprint as the plan takes it: over the raw rows its warm-up reads."""
    return unit_fingerprint(month, stats, warmup_read_rows(warmup), baseline.key)


MONTHS = ("2024-01", "2024-02", "2024-03")
FAMILIES = ("bqx", "technical_rate")
BASELINE = Baseline("eurusd", dt.datetime(2023, 11, 1, tzinfo=UTC), 1.0875)


def stats(month: str, rows: int = 40_000, checksum: str = "c0") -> MonthStats:
    y, m = int(month[:4]), int(month[5:])
    first = dt.datetime(y, m, 1, tzinfo=UTC)
    return MonthStats(
        month, rows, first if rows else None, first + dt.timedelta(minutes=rows - 1) if rows else None, checksum
    )


def survey(*changes: MonthStats) -> dict[str, MonthStats]:
    """The months before and of the run, 40,000 rows each; ``changes`` replace some."""
    out = {m: stats(m) for m in ("2023-11", "2023-12", *MONTHS)}
    out.update({c.month: c for c in changes})
    return out


def config(**families):
    return build_config(
        {
            "run": {"pairs": ["eurusd"], "start": MONTHS[0], "end": MONTHS[-1]},
            "families": {"enabled": list(FAMILIES), **families},
        }
    )


def plan(cfg=None, *, surveys=None, checkpoints=None, parquet_ok=None, full_refresh=False):
    cfg = cfg or config()
    return make_plan(
        cfg,
        run_id="test",
        families=FAMILIES,
        surveys={"eurusd": surveys or survey()},
        baselines={"eurusd": BASELINE},
        checkpoints=checkpoints or {},
        parquet_ok=parquet_ok,
        full_refresh=full_refresh,
    )


def written(p, *, sql: bool = True, parquet: bool = True) -> dict[tuple[str, str, str], Checkpoint]:
    """The checkpoints a run of plan ``p`` leaves behind."""
    return {
        (f, u.pair, u.month): Checkpoint(f, u.pair, u.month, p.config_hashes[f], u.fingerprint, u.rows, 0, sql, parquet)
        for u in p.units
        for f in u.todo
    }


def every_parquet_ok(p) -> dict[tuple[str, str, str], bool]:
    return {(f, u.pair, u.month): True for u in p.units for f in FAMILIES}


# --------------------------------------------------------------------------------------------
# warm-up and months
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("warmup", [1, 75, 1000, 20_000])
def test_warmup_read_rows_adds_the_slack(warmup):
    rows = warmup_read_rows(warmup)
    assert rows == warmup + int(warmup * WARMUP_SLACK) + WARMUP_SLACK_ROWS
    assert rows > warmup


def test_no_warmup_reads_nothing_before_the_month():
    assert warmup_read_rows(0) == 0


@pytest.mark.parametrize(
    ("month", "n", "expected"),
    [
        ("2024-03", 0, "2024-03"),
        ("2024-03", 1, "2024-02"),
        ("2024-01", 1, "2023-12"),
        ("2024-01", 13, "2022-12"),
        ("2000-12", 24, "1998-12"),
    ],
)
def test_months_before(month, n, expected):
    assert months_before(month, n) == expected


def test_survey_covers_the_month_before_the_run_and_the_run():
    cfg = config()
    assert survey_start(cfg) == "2023-12"
    assert survey_window(cfg, 2) == (dt.datetime(2023, 11, 1, tzinfo=UTC), dt.datetime(2024, 4, 1, tzinfo=UTC))


def test_the_plan_warmup_is_the_largest_lookback_of_its_families():
    p = plan()
    lookbacks = {f: registry.get(f).total_lookback(config().families) for f in FAMILIES}
    assert p.warmup == max(lookbacks.values())
    assert lookbacks["technical_rate"] != lookbacks["bqx"]  # so that "the largest" is tested


# --------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------
def test_fingerprint_covers_the_month_and_the_baseline():
    base = fingerprint("2024-02", survey(), 100, BASELINE)
    assert fingerprint("2024-02", survey(), 100, BASELINE) == base  # a pure function of its inputs
    assert fingerprint("2024-02", survey(stats("2024-02", checksum="c1")), 100, BASELINE) != base
    assert fingerprint("2024-02", survey(stats("2024-02", rows=39_999)), 100, BASELINE) != base
    moved = dataclasses.replace(BASELINE, close=1.0876)
    assert fingerprint("2024-02", survey(), 100, moved) != base


def test_fingerprint_reaches_back_as_far_as_the_warmup_reads():
    """Warm-up rows within the previous month: that month counts, the one before it does not;
    more warm-up than the previous month holds: the one before it counts too."""
    small = {m: stats(m, rows=500) for m in ("2023-12", "2024-01", "2024-02")}
    changed_jan = {**small, "2024-01": stats("2024-01", rows=500, checksum="c1")}
    changed_dec = {**small, "2023-12": stats("2023-12", rows=500, checksum="c1")}
    short = 100  # warmup_read_rows(100) = 174 ≤ 500
    assert warmup_read_rows(short) <= 500
    fp = fingerprint("2024-02", small, short, BASELINE)
    assert fingerprint("2024-02", changed_jan, short, BASELINE) != fp
    assert fingerprint("2024-02", changed_dec, short, BASELINE) == fp
    long = 600  # 724 rows: all of January and some of December
    assert warmup_read_rows(long) > 500
    fp = fingerprint("2024-02", small, long, BASELINE)
    assert fingerprint("2024-02", changed_dec, long, BASELINE) != fp


def test_fingerprint_ignores_later_months_and_without_warmup_earlier_ones():
    fp = fingerprint("2024-02", survey(), 100, BASELINE)
    assert fingerprint("2024-02", survey(stats("2024-03", checksum="c1")), 100, BASELINE) == fp
    fp0 = fingerprint("2024-02", survey(), 0, BASELINE)
    assert fingerprint("2024-02", survey(stats("2024-01", checksum="c1")), 0, BASELINE) == fp0


def test_fingerprint_of_a_month_without_bars_differs_from_one_with_them():
    empty = {m: s for m, s in survey().items() if m != "2024-02"}
    assert fingerprint("2024-02", empty, 100, BASELINE) != fingerprint("2024-02", survey(), 100, BASELINE)


# --------------------------------------------------------------------------------------------
# checkpoint decisions
# --------------------------------------------------------------------------------------------
CK = Checkpoint("bqx", "eurusd", "2024-02", "hash", "fp", 100, 0, True, True)


@pytest.mark.parametrize(
    ("ck", "kw", "current"),
    [
        (CK, {}, True),
        (None, {}, False),
        (dataclasses.replace(CK, config_hash="other"), {}, False),
        (dataclasses.replace(CK, fingerprint="other"), {}, False),
        (dataclasses.replace(CK, sql_written=False), {}, False),
        (dataclasses.replace(CK, sql_written=False), {"write_sql": False}, True),
        (dataclasses.replace(CK, parquet_written=False), {}, False),
        (dataclasses.replace(CK, parquet_written=False), {"write_parquet": False}, True),
        (CK, {"parquet_ok": False}, False),
        (CK, {"parquet_ok": False, "write_parquet": False}, True),
    ],
)
def test_checkpoint_current(ck, kw, current):
    args = {"write_sql": True, "write_parquet": True, "parquet_ok": True, **kw}
    assert checkpoint_current(ck, "hash", "fp", **args) is current


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------
def test_a_first_plan_computes_every_family_of_every_month():
    p = plan()
    assert [(u.pair, u.month) for u in p.units] == [("eurusd", m) for m in MONTHS]
    assert all(u.todo == FAMILIES and u.skip == () for u in p.units)
    assert (p.n_outputs, p.n_skipped, p.rows_to_compute()) == (6, 0, 120_000)
    assert [u.key for u in p.todo_units] == ["eurusd-2024-01", "eurusd-2024-02", "eurusd-2024-03"]
    assert p.units[1].bounds == (dt.datetime(2024, 2, 1, tzinfo=UTC), dt.datetime(2024, 3, 1, tzinfo=UTC))
    assert set(p.config_hashes) == set(FAMILIES) and p.warnings == ()


def test_a_second_plan_over_the_same_bars_skips_everything():
    first = plan()
    again = plan(checkpoints=written(first), parquet_ok=every_parquet_ok(first))
    assert all(u.todo == () and u.skip == FAMILIES for u in again.units)
    assert (again.n_outputs, again.n_skipped, again.rows_to_compute(), again.todo_units) == (0, 6, 0, [])


def test_full_refresh_recomputes_what_the_checkpoints_cover():
    first = plan()
    again = plan(checkpoints=written(first), parquet_ok=every_parquet_ok(first), full_refresh=True)
    assert all(u.todo == FAMILIES for u in again.units)


def test_new_bars_recompute_their_month_and_the_months_whose_warmup_they_feed():
    first = plan()
    changed = survey(stats("2024-02", rows=40_001))
    again = plan(surveys=changed, checkpoints=written(first), parquet_ok=every_parquet_ok(first))
    assert {u.month: u.todo for u in again.units} == {"2024-01": (), "2024-02": FAMILIES, "2024-03": FAMILIES}
    assert again.units[1].rows == 40_001


def test_a_changed_parameter_recomputes_only_its_family():
    first = plan()
    again = plan(config(bqx={"windows": [15, 30]}), checkpoints=written(first), parquet_ok=every_parquet_ok(first))
    assert again.config_hashes["bqx"] != first.config_hashes["bqx"]
    assert again.config_hashes["technical_rate"] == first.config_hashes["technical_rate"]
    assert all(u.todo == ("bqx",) and u.skip == ("technical_rate",) for u in again.units)


def test_a_missing_or_stale_parquet_file_recomputes_that_output():
    first = plan()
    ok = every_parquet_ok(first)
    ok[("technical_rate", "eurusd", "2024-03")] = False
    del ok[("bqx", "eurusd", "2024-01")]
    again = plan(checkpoints=written(first), parquet_ok=ok)
    assert {u.month: u.todo for u in again.units} == {
        "2024-01": ("bqx",),
        "2024-02": (),
        "2024-03": ("technical_rate",),
    }


def test_checkpoints_written_without_sql_recompute_when_sql_is_wanted():
    first = plan()
    again = plan(checkpoints=written(first, sql=False), parquet_ok=every_parquet_ok(first))
    assert all(u.todo == FAMILIES for u in again.units)


def test_a_month_without_bars_is_planned_with_a_warning_naming_it():
    no_feb = {m: s for m, s in survey().items() if m != "2024-02"}
    p = plan(surveys=no_feb)
    assert [u.rows for u in p.units] == [40_000, 0, 40_000]
    assert len(p.warnings) == 1
    assert p.warnings[0].startswith("eurusd 2024-02: no bars in the source table; fix:")
