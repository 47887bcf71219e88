"""The Parquet layout as analysts read it (SPEC §6): every reader the README names sees the same
rows, with ``pair`` a string and ``year``/``month`` integers (issue 14: DuckDB reads ``month=07``
as text unless told its type, which the README's DuckDB line does)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bqxdask.outputs import parquet

MONTHS = ("2024-07", "2024-10")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers") / "features"
    rng = np.random.default_rng(3)
    frames = []
    for pair in ("eurusd", "usdjpy"):
        for month in MONTHS:
            times = pd.date_range(f"{month}-01", periods=50, freq="min", tz="UTC")
            values = rng.normal(size=(50, 2))
            values[0, 1] = np.nan  # undefined → NaN
            parquet.write_unit(str(root), "bqx", pair, month, times.as_unit("us").asi8, ["a", "b"], values, {})
            frames.append(
                pd.DataFrame(
                    {
                        "time": times,
                        "a": values[:, 0],
                        "b": values[:, 1],
                        "pair": pair,
                        "year": int(month[:4]),
                        "month": int(month[5:]),
                    }
                )
            )
    expected = pd.concat(frames).sort_values(["pair", "time"]).reset_index(drop=True)
    return root, expected


def _check(frame: pd.DataFrame, expected: pd.DataFrame, reader: str) -> None:
    frame = frame.sort_values(["pair", "time"]).reset_index(drop=True)
    assert pd.api.types.is_integer_dtype(frame["year"]), f"{reader}: year is {frame['year'].dtype}"
    assert pd.api.types.is_integer_dtype(frame["month"]), f"{reader}: month is {frame['month'].dtype}"
    assert sorted(frame["month"].unique()) == [7, 10], reader
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    cols = ["time", "a", "b", "pair", "year", "month"]
    pd.testing.assert_frame_equal(
        frame[cols].astype({"pair": str, "year": "int64", "month": "int64"}),
        expected[cols].astype({"pair": str}),
        check_dtype=False,
        obj=reader,
    )


def test_pyarrow_dataset(layout):
    import pyarrow.dataset as ds

    root, expected = layout
    _check(
        ds.dataset(str(root / "bqx"), format="parquet", partitioning="hive").to_table().to_pandas(), expected, "pyarrow"
    )


def test_duckdb_with_the_readmes_hive_types(layout):
    import duckdb  # a test extra (setup.cfg): missing means a broken test environment, not a skip

    root, expected = layout
    frame = duckdb.sql(
        f"SELECT * FROM read_parquet('{root}/bqx/*/*/*/*.parquet', hive_partitioning = true, "
        "hive_types = {'year': INTEGER, 'month': INTEGER})"
    ).df()
    _check(frame, expected, "duckdb")
    # without the types DuckDB reads month=07 as text: the README line is there for a reason
    untyped = duckdb.sql(
        f"SELECT month FROM read_parquet('{root}/bqx/*/*/*/*.parquet', hive_partitioning = true) LIMIT 1"
    ).df()
    assert not pd.api.types.is_integer_dtype(untyped["month"])


def test_polars_scan(layout):
    import polars as pl

    root, expected = layout
    _check(
        pl.scan_parquet(f"{root}/bqx/**/*.parquet", hive_partitioning=True).collect().to_pandas(), expected, "polars"
    )


@pytest.mark.parametrize(
    ("pairs", "start", "end", "want"),
    [
        (None, None, None, {("eurusd", 7), ("eurusd", 10), ("usdjpy", 7), ("usdjpy", 10)}),
        (["usdjpy"], "2024-08", "2024-10", {("usdjpy", 10)}),
        ("eurusd", "2023-12", "2024-07", {("eurusd", 7)}),
        (None, "2024-10", None, {("eurusd", 10), ("usdjpy", 10)}),
        (["eurusd", "usdjpy"], None, "2024-09", {("eurusd", 7), ("usdjpy", 7)}),
    ],
)
def test_read_features_filters_the_hive_partitions(layout, pairs, start, end, want):
    """``read_features`` is ``dd.read_parquet`` with filters on pair/year/month (issue 14): the
    rows of exactly the selected (pair, month) files, ``pair`` a string column, one partition each."""
    from bqxdask import read_features

    root, expected = layout
    frame = read_features("bqx", pairs, start, end, parquet_dir=str(root))
    assert frame.npartitions == len(want)
    got = frame.compute()
    assert list(got.columns) == ["pair", "a", "b"]
    got = got.reset_index()
    assert pd.api.types.is_string_dtype(got["pair"]) and str(got["time"].dt.tz) == "UTC"
    ref = expected[[(p, m) in want for p, m in zip(expected["pair"], expected["month"])]]
    got = got.sort_values(["pair", "time"]).reset_index(drop=True)
    cols = ["time", "a", "b", "pair"]
    pd.testing.assert_frame_equal(
        got[cols].astype({"pair": str}), ref[cols].astype({"pair": str}).reset_index(drop=True), check_dtype=False
    )


def test_feature_block_round_trip_through_parquet(tmp_path):
    """A FeatureBlock written by ``write_block`` reads back as the same times, columns and floats."""
    from bqxdask.results import FeatureBlock

    times = pd.date_range("2024-07-01", periods=40, freq="min", tz="UTC", name="time")
    values = np.random.default_rng(5).normal(size=(3, 40))
    values[1, :4] = np.nan  # warm-up rows are NaN
    block = FeatureBlock(times, ("x", "y", "z"), values).tail(2)
    parquet.write_block(str(tmp_path), "bqx", "eurusd", "2024-07", block, {"k": 1})
    back = parquet.read_unit(str(tmp_path), "bqx", "eurusd", "2024-07")
    assert back.index.equals(times[2:]) and list(back.columns) == ["x", "y", "z"]
    np.testing.assert_array_equal(back.to_numpy().T, values[:, 2:])
    # in the file itself an undefined value is NaN, not a null (SPEC §2), whatever reads it
    raw = pq.read_table(parquet.unit_path(str(tmp_path), "bqx", "eurusd", "2024-07"))
    assert [raw.column(c).null_count for c in ("x", "y", "z")] == [0, 0, 0]
    assert np.isnan(raw.column("y").to_numpy()).sum() == 2
    assert parquet.unit_metadata(str(tmp_path), "bqx", "eurusd", "2024-07") == {"k": 1}
