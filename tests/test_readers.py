"""The Parquet layout as analysts read it (SPEC §6): every reader the README names sees the same
rows, with ``pair`` a string and ``year``/``month`` integers (issue 14: DuckDB reads ``month=07``
as text unless told its type, which the README's DuckDB line does)."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
            frames.append(pd.DataFrame({"time": times, "a": values[:, 0], "b": values[:, 1], "pair": pair,
                                        "year": int(month[:4]), "month": int(month[5:])}))
    expected = pd.concat(frames).sort_values(["pair", "time"]).reset_index(drop=True)
    return root, expected


def _check(frame: pd.DataFrame, expected: pd.DataFrame, reader: str) -> None:
    frame = frame.sort_values(["pair", "time"]).reset_index(drop=True)
    assert pd.api.types.is_integer_dtype(frame["year"]), f"{reader}: year is {frame['year'].dtype}"
    assert pd.api.types.is_integer_dtype(frame["month"]), f"{reader}: month is {frame['month'].dtype}"
    assert sorted(frame["month"].unique()) == [7, 10], reader
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    cols = ["time", "a", "b", "pair", "year", "month"]
    pd.testing.assert_frame_equal(frame[cols].astype({"pair": str, "year": "int64", "month": "int64"}),
                                  expected[cols].astype({"pair": str}), check_dtype=False, obj=reader)


def test_pyarrow_dataset(layout):
    import pyarrow.dataset as ds

    root, expected = layout
    _check(ds.dataset(str(root / "bqx"), format="parquet", partitioning="hive").to_table().to_pandas(),
           expected, "pyarrow")


def test_duckdb_with_the_readmes_hive_types(layout):
    import duckdb  # a test extra (setup.cfg): missing means a broken test environment, not a skip
    root, expected = layout
    frame = duckdb.sql(f"SELECT * FROM read_parquet('{root}/bqx/*/*/*/*.parquet', hive_partitioning = true, "
                       "hive_types = {'year': INTEGER, 'month': INTEGER})").df()
    _check(frame, expected, "duckdb")
    # without the types DuckDB reads month=07 as text: the README line is there for a reason
    untyped = duckdb.sql(f"SELECT month FROM read_parquet('{root}/bqx/*/*/*/*.parquet', "
                         "hive_partitioning = true) LIMIT 1").df()
    assert not pd.api.types.is_integer_dtype(untyped["month"])


def test_polars_scan(layout):
    import polars as pl
    root, expected = layout
    _check(pl.scan_parquet(f"{root}/bqx/**/*.parquet", hive_partitioning=True).collect().to_pandas(),
           expected, "polars")
