"""The pipeline end to end on a real PostgreSQL and a real Dask LocalCluster (SPEC §3–§6).

Real EURUSD bars (HistData, 2017-01..06) are loaded into the test database; every family's
SQL and Parquet output is compared with the whole-series in-memory computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dbutil import load_bars, query, read_table
from pipeline_util import assert_family_equal, make_config, unique_schema

import bqxdask
from bqxdask import compute_features
from bqxdask.features import registry
from bqxdask.pipeline import run_features
from bqxdask.testing import eurusd

SRC = "src_pipeline"


@pytest.fixture(scope="module")
def eurusd_db(pg_url):
    bars = eurusd(6)
    load_bars(pg_url, SRC, "eurusd", bars)
    return bars


@pytest.fixture(scope="module")
def whole_series(eurusd_db):
    """The reference: every registered family over the whole 6-month series, in memory."""
    return compute_features(eurusd_db, list(registry.all_families()))


def _run(pg_url, tmp_path, client, *, start, end, families=None, output_schema=None, **kw):
    out_schema = output_schema or unique_schema("out")
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema=SRC,
        output_schema=out_schema,
        pairs=["eurusd"],
        start=start,
        end=end,
        families=families,
    )
    result = run_features(cfg, client=client, **kw)
    return cfg, result


def _month_slice(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    lo = pd.Timestamp(f"{start}-01", tz="UTC")
    hi = pd.Timestamp(f"{end}-01", tz="UTC") + pd.offsets.MonthBegin(1)
    return frame[(frame.index >= lo) & (frame.index < hi)]


def test_three_months_equal_whole_series_in_sql_and_parquet(pg_url, tmp_path, dask_client, eurusd_db, whole_series):
    families = list(registry.all_families())
    cfg, result = _run(pg_url, tmp_path, dask_client, start="2017-02", end="2017-04")
    assert result.exit_code == 0, result.failures
    assert {r["status"] for r in result.results} == {"done"}
    assert len(result.results) == 3 * len(families)
    for fam in families:
        ref = _month_slice(whole_series[fam], "2017-02", "2017-04")
        sql_out = read_table(pg_url, cfg.database.output_schema, f"{fam}_eurusd")
        assert_family_equal(fam, sql_out, ref, label="SQL")
        pq_out = (
            bqxdask.read_features(fam, ["eurusd"], "2017-02", "2017-04", parquet_dir=cfg.output.parquet_dir)
            .compute()
            .drop(columns="pair")
        )
        pq_out = pq_out.sort_index()
        assert_family_equal(fam, pq_out, ref, label="Parquet")
        # Parquet equals SQL exactly: same floats, NULL ⇔ NaN
        np.testing.assert_array_equal(pq_out.to_numpy(), sql_out.to_numpy())
    summary = result.run_dir / "summary.json"
    assert summary.is_file() and (result.run_dir / "run.log").is_file()
    assert (result.run_dir / "dask-performance-report.html").is_file()


@pytest.mark.parametrize(
    ("start", "end"),
    [("2017-06", "2017-06"), ("2017-04", "2017-06"), ("2017-01", "2017-06")],
    ids=["1-partition", "3-partitions", "6-partitions"],
)
def test_partitionings_agree(pg_url, tmp_path, dask_client, eurusd_db, whole_series, start, end):
    """1, 3 and 6 month partitions, each month with the warm-up read from the months before it.

    A later month alone (1 partition) runs every family; the longer runs the families whose
    partition boundaries are hardest (TA-Lib recursions, the regression's long windows).
    """
    families = (
        list(registry.all_families())
        if start == end
        else ["bqx", *(f for f in registry.all_families() if f.startswith(("technical", "reg")))]
    )
    cfg, result = _run(pg_url, tmp_path, dask_client, start=start, end=end, families=families)
    assert result.exit_code == 0, result.failures
    for fam in families:
        got = read_table(pg_url, cfg.database.output_schema, f"{fam}_eurusd")
        ref = _month_slice(whole_series[fam], start, end)
        assert_family_equal(fam, got, ref, label=f"{start}..{end}")


def test_rerun_skips_and_full_refresh_replaces(pg_url, tmp_path, dask_client, eurusd_db):
    schema = unique_schema("rerun")
    cfg, first = _run(
        pg_url, tmp_path, dask_client, start="2017-03", end="2017-04", families=["bqx"], output_schema=schema
    )
    assert first.exit_code == 0
    count = query(pg_url, f"SELECT count(*), count(DISTINCT time) FROM {schema}.bqx_eurusd")[0]
    written = query(pg_url, f"SELECT run_id, written_at FROM {schema}.checkpoints ORDER BY month")
    pq_files = sorted((tmp_path / "parquet" / "bqx").rglob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in pq_files]

    _, second = _run(
        pg_url, tmp_path, dask_client, start="2017-03", end="2017-04", families=["bqx"], output_schema=schema
    )
    assert {r["status"] for r in second.results} == {"skipped"}
    assert query(pg_url, f"SELECT count(*), count(DISTINCT time) FROM {schema}.bqx_eurusd")[0] == count
    # nothing rewritten: same checkpoint rows, same Parquet files untouched
    assert query(pg_url, f"SELECT run_id, written_at FROM {schema}.checkpoints ORDER BY month") == written
    assert [p.stat().st_mtime_ns for p in pq_files] == mtimes

    _, third = _run(
        pg_url,
        tmp_path,
        dask_client,
        start="2017-03",
        end="2017-04",
        families=["bqx"],
        output_schema=schema,
        full_refresh=True,
    )
    assert {r["status"] for r in third.results} == {"done"}
    assert query(pg_url, f"SELECT count(*), count(DISTINCT time) FROM {schema}.bqx_eurusd")[0] == count
    assert count[0] == count[1] == len(_month_slice(eurusd_db.set_index("time"), "2017-03", "2017-04"))


def test_a_parquet_file_that_cannot_be_written_rolls_its_units_sql_back(pg_url, tmp_path, dask_client, eurusd_db):
    """The Parquet file is written beside the unit's DELETE + COPY (issue 15): when it fails, the
    unit's transaction is not committed (no rows, no checkpoint), the run names the unit, and
    the next run writes it."""
    schema = unique_schema("pqfail")
    blocker = tmp_path / "parquet" / "bqx" / "pair=eurusd" / "year=2017" / "month=04"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # where the April unit's directory must go
    kw = {"start": "2017-03", "end": "2017-04", "families": ["bqx"], "output_schema": schema}
    _, first = _run(pg_url, tmp_path, dask_client, **kw)
    assert first.exit_code == 1
    assert len(first.failures) == 1 and "bqx" in first.failures[0] and "2017-04" in first.failures[0]
    assert {(r["month"], r["status"]) for r in first.results} == {("2017-03", "done"), ("2017-04", "failed")}
    assert query(pg_url, f"SELECT month FROM {schema}.checkpoints") == [("2017-03",)]
    months = f"SELECT DISTINCT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM') FROM {schema}.bqx_eurusd"
    assert query(pg_url, months) == [("2017-03",)]

    blocker.unlink()
    _, second = _run(pg_url, tmp_path, dask_client, **kw)
    assert second.exit_code == 0, second.failures
    assert {(r["month"], r["status"]) for r in second.results} == {("2017-03", "skipped"), ("2017-04", "done")}
    assert sorted(query(pg_url, months)) == [("2017-03",), ("2017-04",)]
    assert (blocker / "part-0.parquet").is_file()


def test_bad_bars_are_quarantined_not_lost(pg_url, tmp_path, dask_client):
    """SPEC §3 on a table without a primary key (so duplicates can exist)."""
    bars = eurusd(1).iloc[:3000].copy()
    t = bars["time"]
    bad = bars.copy()
    bad.loc[100, "close"] = np.nan  # NULL close
    bad.loc[200, "open"] = -1.0  # non-positive
    bad.loc[300, "high"] = bad.loc[300, ["open", "close"]].max() - 0.001  # high below the body
    bad.loc[400, "low"] = bad.loc[400, ["open", "close"]].min() + 0.001  # low above the body
    conflicting = bars.loc[[500]].assign(close=bars.loc[500, "close"] + 0.0001, high=bars.loc[500, "high"] + 0.001)
    identical = bars.loc[[600]]
    frame = pd.concat([bad, conflicting, identical]).sample(frac=1, random_state=1)  # any order
    load_bars(pg_url, "src_quarantine", "eurusd", frame, primary_key=False)
    schema = unique_schema("quar")
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema="src_quarantine",
        output_schema=schema,
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx"],
    )
    result = run_features(cfg, client=dask_client)
    assert result.exit_code == 0, result.failures
    rejected = query(pg_url, f"SELECT time, reason FROM {schema}.rejected_bars ORDER BY time, reason")
    reasons = {pd.Timestamp(r[0]).tz_convert("UTC"): r[1] for r in rejected}
    assert reasons[t[100]] == "close is NULL or NaN"
    assert reasons[t[200]] == "open <= 0"
    assert reasons[t[300]] == "high < max(open, close)"
    assert reasons[t[400]] == "low > min(open, close)"
    assert reasons[t[500]] == "conflicting duplicate time"
    assert len(rejected) == 6  # both rows of the conflicting time
    assert result.rejected == 6 and result.duplicates == 1
    out = read_table(pg_url, schema, "bqx_eurusd")
    assert len(out) == 3000 - 5  # accepted bars only, the identical duplicate once
    assert t[600] in out.index and t[100] not in out.index
    # the features skip the bad bars: equal to the computation on the accepted bars
    accepted = bars.drop(index=[100, 200, 300, 400, 500])
    ref = compute_features(accepted, ["bqx"])["bqx"]
    assert_family_equal("bqx", out, ref)


@pytest.mark.parametrize("npartitions", [1, 3, 7])
def test_compute_features_on_dask_bars_equals_pandas(dask_client, npartitions):
    """The public lazy frames (issue 14): Dask bars in, one Dask DataFrame per family out, the same
    values as the whole series in pandas for every partitioning (the warm-up comes from the
    partition before, ``map_overlap``), with the same partitions and the family's columns."""
    import dask.dataframe as dd

    bars = eurusd(2)
    families = ["bqx", "technical_rate", "statistics_bqx", "reg_rate"]
    ref = compute_features(bars, families)
    frames = compute_features(dd.from_pandas(bars.set_index("time"), npartitions=npartitions), families)
    assert set(frames) == set(families)
    got = dict(zip(families, dask_client.gather(dask_client.compute([frames[f] for f in families]))))
    for fam in families:
        assert isinstance(frames[fam], dd.DataFrame) and frames[fam].npartitions == npartitions
        assert list(frames[fam].columns) == list(ref[fam].columns)
        assert_family_equal(fam, got[fam], ref[fam], label=f"{npartitions} Dask partitions")
    # bars with a time column (the in-memory API's other form) give the same frames
    by_column = compute_features(dd.from_pandas(bars, npartitions=npartitions), ["bqx"])["bqx"]
    assert_family_equal("bqx", dask_client.compute(by_column).result(), ref["bqx"], label="time column")


def test_dry_run_prints_the_plan_and_touches_nothing(pg_url, tmp_path, eurusd_db):
    import io

    schema = unique_schema("dry")
    cfg = make_config(
        pg_url, tmp_path, source_schema=SRC, output_schema=schema, pairs=["eurusd"], start="2017-02", end="2017-03"
    )
    out = io.StringIO()
    result = run_features(cfg, dry_run=True, out=out)
    text = out.getvalue()
    assert "warm-up: 1015 rows" in text  # technical warm-up 1000 + the BQX series' 15
    assert "eurusd  2017-02     28,778  9 / 0" in text
    assert "estimated wall time" in text and "connections: up to 5" in text
    assert result.plan.n_outputs == 18
    assert query(pg_url, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 0
    assert not (tmp_path / "parquet").exists() and not (tmp_path / "runs").exists()


def test_a_plan_over_the_connection_budget_is_refused_before_any_work(pg_url, tmp_path, dask_client, eurusd_db):
    from bqxdask.errors import ConfigError

    schema = unique_schema("budget")
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd"],
        start="2017-02",
        end="2017-02",
        families=["bqx"],
        extra={"database": {"max_connections_per_worker": 80}},
    )
    with pytest.raises(ConfigError, match=r"would open up to 161 connections .*max_connections = 100"):
        run_features(cfg, client=dask_client)
    assert (
        query(
            pg_url,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name LIKE 'bqx_%%'",
            (schema,),
        )[0][0]
        == 0
    )
    assert not (tmp_path / "parquet").exists()


@pytest.mark.slow
def test_seven_month_partitions_on_seeded_bars(pg_url, tmp_path, dask_client):
    """Seven partitions (the real data has six months): synthetic bars from `bqxdask seed`'s model."""
    from bqxdask.ingest.seed import generate_bars

    bars = generate_bars(["usdjpy"], "2024-01", "2024-07", seed=7)["usdjpy"]
    load_bars(pg_url, "src_seven", "usdjpy", bars)
    families = ["bqx", "technical_rate", "technical_bqx", "reg_bqx", "statistics_bqx"]
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema="src_seven",
        output_schema=unique_schema("seven"),
        pairs=["usdjpy"],
        start="2024-01",
        end="2024-07",
        families=families,
    )
    result = run_features(cfg, client=dask_client)
    assert result.exit_code == 0, result.failures
    assert len({(r["pair"], r["month"]) for r in result.results}) == 7
    ref = compute_features(bars, families)
    for fam in families:
        assert_family_equal(
            fam, read_table(pg_url, cfg.database.output_schema, f"{fam}_usdjpy"), ref[fam], label="7 partitions"
        )
