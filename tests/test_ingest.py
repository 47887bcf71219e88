"""Ingest (SPEC §3, §7 ``seed`` and ``import``, §10) against a real PostgreSQL and real bar files.

Expected values come from independent readings of the files (the plain ``csv`` module, or
:mod:`bqxdask.testing`'s pandas reading), never from the importer itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from psycopg2 import sql

from bqxdask.config import ALL_PAIRS
from bqxdask.db.connect import connection, qualified
from bqxdask.errors import ConfigError, SourceError
from bqxdask.features.index import normalize_bars
from bqxdask.ingest import (
    database_has_bars,
    generate_bars,
    import_files,
    parse_files,
    seed_database,
)
from bqxdask.ingest import report as reasons
from bqxdask.ingest.seed import ANCHOR_USD_VALUE, iter_month_bars
from bqxdask.quality import validate_bars
from bqxdask.testing import data_dir, eurusd, fxcm_mid, histdata_files

_schemas = itertools.count()


@pytest.fixture()
def schema() -> str:
    """A fresh schema name per test (the tables of one test never meet another's)."""
    return f"test_ingest_{next(_schemas)}"


def read_table(url: str, schema: str, pair: str) -> pd.DataFrame:
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT time, open, high, low, close, volume FROM {} ORDER BY time").format(
                qualified(schema, f"m1_{pair}")
            )
        )
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.as_unit("us")
    for c in ("open", "high", "low", "close"):
        frame[c] = frame[c].astype("float64")
    frame["volume"] = frame["volume"].astype("int64")
    return frame


def execute(url: str, statement: sql.Composable, params: tuple = ()) -> None:
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        conn.commit()


def assert_same_bars(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    expected = expected.reset_index(drop=True).copy()
    expected["time"] = pd.to_datetime(expected["time"], utc=True).dt.as_unit("us")
    cols = ["time", "open", "high", "low", "close"]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), expected[cols], check_dtype=False)


def histdata_lines(path) -> list[str]:
    return path.read_text().splitlines()


# --------------------------------------------------------------------------------------------
# import: HistData
# --------------------------------------------------------------------------------------------
def test_histdata_six_files_import_to_utc_and_twice_changes_nothing(pg_url, schema):
    files = histdata_files()
    assert len(files) == 6
    lines = [row for f in files for row in csv.reader(f.open(), delimiter=";")]
    distinct_times = {row[0] for row in lines}

    first = import_files(pg_url, schema, "eurusd", files, "histdata")
    table = read_table(pg_url, schema, "eurusd")
    assert len(table) == len(distinct_times) == first.inserted
    assert first.read == len(lines)
    assert first.read == first.inserted + first.updated + first.unchanged + first.duplicate + first.rejected
    assert table["time"].iloc[0] == pd.Timestamp("2017-01-02 07:00", tz="UTC")  # 02:00 EST + 5 h
    assert_same_bars(table, eurusd(6))
    assert first.summary_line().startswith(
        f"eurusd: read {len(lines):,} rows from 6 files: {len(table):,} inserted, 0 updated"
    )

    second = import_files(pg_url, schema, "eurusd", files, "histdata")
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, len(table))
    assert read_table(pg_url, schema, "eurusd").equals(table)


def test_histdata_shuffled_blocks_and_repeated_hours_import_the_same(pg_url, schema, tmp_path):
    real = histdata_files()[0]
    lines = histdata_lines(real)
    days = [list(g) for _, g in itertools.groupby(lines, key=lambda line: line[:8])]
    rng = np.random.default_rng(7)
    shuffled = [days[i] for i in rng.permutation(len(days))]
    body = [line for day in shuffled for line in day]
    # repeat three whole hours, the way broken HistData files do, at other places in the file
    repeated = [
        [line for line in lines if line.startswith(prefix)] for prefix in ("20170103 10", "20170117 15", "20170131 16")
    ]
    for k, block in enumerate(repeated):
        at = (k + 1) * len(body) // 4
        body[at:at] = block
    messy = tmp_path / "DAT_ASCII_EURUSD_M1_201701_messy.csv"
    messy.write_text("\n".join(body) + "\n")

    clean_schema, messy_schema = schema, f"{schema}_messy"
    import_files(pg_url, clean_schema, "eurusd", [real], "histdata")
    report = import_files(pg_url, messy_schema, "eurusd", [messy], "histdata")
    assert report.duplicate == sum(len(b) for b in repeated) > 100
    assert report.rejected == 0
    assert report.inserted == len(lines)
    assert read_table(pg_url, messy_schema, "eurusd").equals(read_table(pg_url, clean_schema, "eurusd"))


def test_conflicting_duplicates_are_rejected_with_reason_and_not_written(pg_url, schema, tmp_path):
    lines = histdata_lines(histdata_files()[0])[:2000]
    stamp, o, h, lo, c, v = lines[500].split(";")
    other = f"{stamp};{o};{float(h) + 0.001:.6f};{lo};{float(h) + 0.0005:.6f};{v}"  # valid, different close
    path = tmp_path / "conflict.csv"
    path.write_text("\n".join([*lines, other, lines[500]]) + "\n")

    report = import_files(pg_url, schema, "eurusd", [path], "histdata")
    # the identical copy is a duplicate; then both different bars at that time are rejected
    assert report.rejected_reasons == {reasons.R_CONFLICT: 2}
    assert report.duplicate == 1
    assert report.rejected == 2 and report.inserted == len(lines) - 1
    assert "conflicting duplicate time" in report.summary_line() and "conflict.csv:501" in report.summary_line()
    table = read_table(pg_url, schema, "eurusd")
    bad_time = pd.Timestamp(dt.datetime.strptime(stamp, "%Y%m%d %H%M%S"), tz="UTC") + pd.Timedelta(hours=5)
    assert bad_time not in set(table["time"])
    assert len(table) == len(lines) - 1


def test_malformed_lines_and_spec3_violations_are_rejected_with_reasons(tmp_path):
    good = histdata_lines(histdata_files()[0])[:1000]
    bad = [
        "20170103 230000;1.04;1.03;1.02;1.035;0",  # high < max(open, close)
        "20170103 230100;1.04;1.05;1.041;1.045;0",  # low > min(open, close)
        "20170103 230200;-1.04;1.05;1.03;1.04;0",  # price <= 0
        "20170103 230300;nan;1.05;1.03;1.04;0",  # NaN
        "20170103 230400;1.04;inf;1.03;1.04;0",  # infinite
        "20170103 230500;1.04;1.05;1.03;0",  # a field short
        "20170199 230600;1.04;1.05;1.03;1.04;0",  # no such day
        "20170103 230700;1.04;1.05;1.03;1.04;-3",  # negative volume
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(good + bad) + "\n\n")
    parsed = parse_files([path], "histdata")
    assert parsed.rejected_reasons == {
        reasons.R_HIGH: 1,
        reasons.R_LOW: 1,
        reasons.R_PRICE_VALUE: 2,
        reasons.R_PRICE_TEXT: 1,
        reasons.R_FIELDS: 1,
        reasons.R_TIME: 1,
        reasons.R_VOLUME: 1,
    }
    assert parsed.examples[reasons.R_HIGH] == "bad.csv:1001"
    assert len(parsed.bars) == len(good) and parsed.read == len(good) + len(bad)


def test_import_and_the_pipeline_quarantine_the_same_bars(tmp_path):
    """One SPEC §3 rule: a bar the importer keeps is a bar validate_bars accepts, and the reverse,
    also right at the 1e-9 tolerance of the high/low checks (issue 14)."""
    rows = []
    for i, (high_factor, low_factor) in enumerate(
        [(1 - 2e-9, 1.0), (1 - 0.5e-9, 1.0), (1.0, 1 + 2e-9), (1.0, 1 + 0.5e-9), (1.0, 1.0)] * 40
    ):
        o, c = 1.1 + i * 1e-5, 1.1 + i * 1e-5 + 3e-5
        stamp = (pd.Timestamp("2024-07-01", tz="UTC") + pd.Timedelta(minutes=i)).isoformat()
        rows.append(f"{stamp},{o!r},{max(o, c) * high_factor!r},{min(o, c) * low_factor!r},{c!r},1")
    rows += [
        "2024-07-02T00:00:00+00:00,1.1,1.2,1.0,1.15,1",
        "2024-07-02T00:00:00+00:00,1.1,1.2,1.0,1.16,1",
        "2024-07-02T00:01:00+00:00,1.1,1.2,1.0,0,1",
    ]
    path = tmp_path / "edge.csv"
    path.write_text("time,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    parsed = parse_files([path], "csv")
    frame = pd.read_csv(path, parse_dates=["time"]).set_index("time")
    accepted, rejected = validate_bars(normalize_bars(frame))
    assert list(parsed.bars["time"]) == list(accepted.index)
    assert parsed.rejected == len(rejected) == 40 + 40 + 2 + 1


# --------------------------------------------------------------------------------------------
# import: FXCM (csv, bid + ask → mid) and MT4
# --------------------------------------------------------------------------------------------
def test_fxcm_bid_and_ask_import_as_mid_and_bid_alone_as_csv(pg_url, schema):
    folder = data_dir() / "fxcm"
    bid, ask = folder / "fxcm-gbpusd-m1-bid-2012.csv", folder / "fxcm-gbpusd-m1-ask-2012.csv"
    report = import_files(pg_url, schema, "gbpusd", [bid], "csv", ask_files=[ask])
    expected = fxcm_mid("gbpusd")
    assert report.mid and report.inserted == len(expected) and report.rejected == 0
    table = read_table(pg_url, schema, "gbpusd")
    assert_same_bars(table, expected)  # exactly (bid + ask) / 2
    assert (table["volume"] == 0).all()

    bid_schema = f"{schema}_bid"
    import_files(pg_url, bid_schema, "gbpusd", bid, "csv")
    raw = pd.read_csv(bid)
    raw["time"] = pd.to_datetime(raw.pop("timestamp"), utc=True)
    assert_same_bars(read_table(pg_url, bid_schema, "gbpusd"), raw)


def test_one_sided_bid_ask_times_are_rejected(tmp_path):
    folder = data_dir() / "fxcm"
    ask_lines = (folder / "fxcm-usdjpy-m1-ask-2013.csv").read_text().splitlines()
    ask = tmp_path / "ask.csv"
    ask.write_text("\n".join(ask_lines[:100] + ask_lines[101:3001]) + "\n")
    parsed = parse_files(folder / "fxcm-usdjpy-m1-bid-2013.csv", "csv", ask_files=ask)
    assert parsed.rejected_reasons[reasons.R_BID_ONLY] == 1 + (len(ask_lines) - 3001)
    assert reasons.R_ASK_ONLY not in parsed.rejected_reasons
    assert len(parsed.bars) == 2999


def test_mt4_broker_time_with_tz_offset(pg_url, schema, tmp_path):
    bars = eurusd(1).iloc[:5000]
    broker = bars["time"] + pd.Timedelta(hours=2)
    path = tmp_path / "EURUSD1.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        for t, row in zip(broker, bars.itertuples(index=False), strict=True):
            out.writerow(
                [
                    t.strftime("%Y.%m.%d"),
                    t.strftime("%H:%M"),
                    repr(row.open),
                    repr(row.high),
                    repr(row.low),
                    repr(row.close),
                    17,
                ]
            )
    report = import_files(pg_url, schema, "eurusd", [path], "mt4", tz_offset="+02:00")
    assert report.inserted == len(bars)
    table = read_table(pg_url, schema, "eurusd")
    assert_same_bars(table, bars)
    assert table["time"].iloc[0] == pd.Timestamp("2017-01-02 07:00", tz="UTC")
    assert (table["volume"] == 17).all()


def test_csv_times_naive_offset_and_aware(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text(
        "Volume;Close;Low;High;Open;Time\n"
        "5;1.1;1.0;1.2;1.1;2024-03-01 10:00\n"
        "6;1.1;1.0;1.2;1.1;2024-03-01T10:01:00+01:00\n"
        "7;1.1;1.0;1.2;1.1;2024-03-01T10:02:00Z\n"
    )
    parsed = parse_files(path, "csv", tz_offset="+02:00")
    assert list(parsed.bars["time"]) == [
        pd.Timestamp(t, tz="UTC") for t in ("2024-03-01 08:00", "2024-03-01 09:01", "2024-03-01 10:02")
    ]
    assert list(parsed.bars["volume"]) == [5, 6, 7]

    mt4_with_header = tmp_path / "mt4.csv"
    mt4_with_header.write_text(
        "Date,Time,Open,High,Low,Close,Volume\n2017.01.02,02:00,1.05155,1.05197,1.05155,1.0519,0\n"
    )
    parsed = parse_files(mt4_with_header, "csv", tz_offset="-05:00")
    assert list(parsed.bars["time"]) == [pd.Timestamp("2017-01-02 07:00", tz="UTC")]


# --------------------------------------------------------------------------------------------
# import: a table someone else created, without a primary key
# --------------------------------------------------------------------------------------------
def test_import_into_existing_table_without_primary_key_is_idempotent(pg_url, schema, tmp_path):
    execute(pg_url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    execute(
        pg_url,
        sql.SQL(
            "CREATE TABLE {} (time timestamp, open numeric, high numeric, low numeric, close numeric,"
            " volume integer, note text)"
        ).format(qualified(schema, "m1_eurusd")),
    )
    lines = histdata_lines(histdata_files()[1])[:3000]
    path = tmp_path / "feb.csv"
    path.write_text("\n".join(lines) + "\n")

    first = import_files(pg_url, schema, "eurusd", [path], "histdata")
    second = import_files(pg_url, schema, "eurusd", [path], "histdata")
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (3000, 0, 0, 3000)
    table = read_table(pg_url, schema, "eurusd")
    assert len(table) == 3000
    assert_same_bars(table, parse_files(path, "histdata").bars)

    stamp, o, h, lo, c, v = lines[10].split(";")
    path.write_text("\n".join([*lines[:10], f"{stamp};{o};{h};{lo};{o};{v}", *lines[11:]]) + "\n")
    third = import_files(pg_url, schema, "eurusd", [path], "histdata")
    assert (third.inserted, third.updated, third.unchanged) == (0, 1, 2999)
    assert read_table(pg_url, schema, "eurusd")["close"].iloc[10] == float(o)


# --------------------------------------------------------------------------------------------
# import: bad input → one line naming the object and the fix
# --------------------------------------------------------------------------------------------
def _fxcm_bid():
    return data_dir() / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv"


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        (lambda tmp: {"files": [tmp / "nope.csv"], "fmt": "histdata"}, SourceError, "does not exist"),
        (lambda tmp: {"files": [tmp], "fmt": "histdata"}, SourceError, "is not a file"),
        (lambda tmp: {"files": [_fxcm_bid()], "fmt": "histdata"}, SourceError, "use --format csv"),
        (lambda tmp: {"files": [histdata_files()[0]], "fmt": "csv"}, SourceError, "use --format histdata"),
        (lambda tmp: {"files": [histdata_files()[0]], "fmt": "mt4"}, SourceError, "use --format histdata"),
        (lambda tmp: {"files": [_fxcm_bid()], "fmt": "csv", "tz_offset": "+2"}, ConfigError, "±HH:MM"),
        (lambda tmp: {"files": [_fxcm_bid()], "fmt": "csv", "tz_offset": "+25:00"}, ConfigError, "14:00"),
        (
            lambda tmp: {"files": [histdata_files()[0]], "fmt": "histdata", "tz_offset": "+02:00"},
            ConfigError,
            "UTC-05:00",
        ),
        (lambda tmp: {"files": [_fxcm_bid()], "fmt": "xls"}, ConfigError, "histdata, csv, mt4"),
        (lambda tmp: {"files": [_fxcm_bid()], "fmt": "csv", "pair": "EUR/USD"}, ConfigError, "6 lower-case letters"),
        (lambda tmp: {"files": [_fxcm_bid()], "fmt": "csv", "schema": "x; drop table y"}, ConfigError, "schema"),
    ],
)
def test_bad_input_is_one_line_naming_the_object_and_fix(pg_url, tmp_path, kwargs, error, needle):
    args = {"pair": "eurusd", "schema": "test_ingest_errors", **kwargs(tmp_path)}
    with pytest.raises(error) as info:
        import_files(pg_url, **args)
    message = str(info.value)
    assert needle in message and "fix:" in message and "\n" not in message


def test_unreadable_and_binary_files(tmp_path):
    binary = tmp_path / "bars.parquet"
    binary.write_bytes(b"PAR1\x00\x01\x02" * 100)
    with pytest.raises(SourceError, match="binary file"):
        parse_files(binary, "csv")
    locked = tmp_path / "locked.csv"
    locked.write_text("time,open,high,low,close\n")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads mode-000 files; /proc/self/mem fails with EIO instead
        locked = Path("/proc/self/mem")
    with pytest.raises(SourceError, match="cannot be read") as info:
        parse_files(locked, "csv")
    assert str(locked) in str(info.value) and "fix:" in str(info.value)


def test_gzip_and_zip_files_are_read(tmp_path):
    import gzip
    import zipfile

    real = histdata_files()[0]
    gz = tmp_path / "m1.csv.gz"
    gz.write_bytes(gzip.compress(real.read_bytes()))
    zp = tmp_path / "HISTDATA_COM_ASCII_EURUSD_M1201701.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.write(real, real.name)
    expected = parse_files(real, "histdata").bars
    pd.testing.assert_frame_equal(parse_files(gz, "histdata").bars, expected)
    pd.testing.assert_frame_equal(parse_files(zp, "histdata").bars, expected)


# --------------------------------------------------------------------------------------------
# seed: pure generation
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quarter() -> dict[str, pd.DataFrame]:
    return generate_bars(["eurusd", "usdjpy", "eurjpy", "gbpusd", "audnzd"], "2024-01", "2024-03", seed=3)


def test_seed_is_deterministic_and_seed_dependent(quarter):
    again = generate_bars(["eurusd", "usdjpy", "eurjpy", "gbpusd", "audnzd"], "2024-01", "2024-03", seed=3)
    for pair, frame in quarter.items():
        pd.testing.assert_frame_equal(frame, again[pair])
    other = generate_bars(["eurusd"], "2024-01", "2024-01", seed=4)["eurusd"]
    assert not np.array_equal(other["close"].to_numpy()[:1000], quarter["eurusd"]["close"].to_numpy()[:1000])


def test_seed_pair_does_not_depend_on_other_pairs_or_on_the_range(quarter):
    alone = generate_bars(["gbpusd"], "2024-02", "2024-02", seed=3)["gbpusd"]
    feb = quarter["gbpusd"][quarter["gbpusd"]["time"].dt.month == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, feb)
    # and months join up: the first February bar opens at the last January close
    jan_last = quarter["gbpusd"][quarter["gbpusd"]["time"].dt.month == 1].iloc[-1]
    assert jan_last["time"] == pd.Timestamp("2024-01-31 23:59", tz="UTC")
    assert feb["time"].iloc[0] == pd.Timestamp("2024-02-01 00:00", tz="UTC")
    assert feb["open"].iloc[0] == jan_last["close"]


def test_seed_crosses_are_consistent(quarter):
    eu, uj, ej = (quarter[p].set_index("time")["close"] for p in ("eurusd", "usdjpy", "eurjpy"))
    common = eu.index.intersection(uj.index).intersection(ej.index)
    assert len(common) > 0.99 * len(ej)
    implied = eu[common] * uj[common]
    assert (np.abs(ej[common] / implied - 1) < 1e-4).all()


def test_seed_calendar_weekend_gap_and_few_missing_minutes(quarter):
    t = quarter["eurusd"]["time"]
    weekday, hour = t.dt.day_of_week, t.dt.hour
    in_weekend = ((weekday == 4) & (hour >= 22)) | (weekday == 5) | ((weekday == 6) & (hour < 22))
    assert not in_weekend.any()
    assert ((weekday == 6) & (hour == 22)).any() and ((weekday == 4) & (hour == 21)).any()
    step = t.diff().dt.total_seconds().div(60).iloc[1:]
    missing = int((step[step < 60] - 1).sum())  # minute gaps inside trading days
    assert 0 < missing < 0.002 * len(t)


def test_seed_bars_are_valid_rounded_quotes_with_realistic_levels(quarter):
    for pair, f in quarter.items():
        o, h, lo, c = (f[k].to_numpy() for k in ("open", "high", "low", "close"))
        assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all() and (lo > 0).all()
        decimals = 3 if pair.endswith("jpy") else 5
        for x in (o, h, lo, c):
            assert np.array_equal(np.round(x, decimals), x)
        assert f["volume"].dtype == np.int64 and (f["volume"] >= 1).all()
        assert f["time"].is_monotonic_increasing and f["time"].is_unique
        assert str(f["time"].dt.tz) == "UTC"
        anchor = ANCHOR_USD_VALUE[pair[:3]] / ANCHOR_USD_VALUE[pair[3:]]
        assert abs(o[0] / anchor - 1) < 1e-4  # 2024-01 opens at the anchor quote
        assert 0.8 < c.min() / anchor and c.max() / anchor < 1.25
    eurusd_open = quarter["eurusd"]["open"].iloc[0]
    assert 1.07 < eurusd_open < 1.09


def test_seed_levels_of_all_pairs_stay_plausible_over_a_year():
    lows, highs, rows = {}, {}, dict.fromkeys(ALL_PAIRS, 0)
    for _month, frames in iter_month_bars(
        ALL_PAIRS, "2024-07", "2025-06", seed=0
    ):  # month by month: ~0.5 GB at once otherwise
        for pair, f in frames.items():
            lows[pair] = min(lows.get(pair, np.inf), f["low"].min())
            highs[pair] = max(highs.get(pair, 0.0), f["high"].max())
            rows[pair] += len(f)
    for pair in ALL_PAIRS:
        anchor = ANCHOR_USD_VALUE[pair[:3]] / ANCHOR_USD_VALUE[pair[3:]]
        assert 0.6 < lows[pair] / anchor and highs[pair] / anchor < 1.6, pair
        assert 350_000 < rows[pair] < 380_000, pair  # ~261 trading days × 1,440 minutes


def test_seed_statistics_are_realistic(quarter):
    real = eurusd(3)
    # one-minute steps by duration, not by int64 ticks: the unit is µs on pandas 3 but ns on 2.2
    one_minute = (real["time"].diff().dt.total_seconds() == 60).to_numpy()[1:]
    real_r = np.diff(np.log(real["close"].to_numpy()))[one_minute]
    assert len(real_r) > 0.9 * len(real)

    def minute_returns(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        consecutive = (f["time"].diff().dt.total_seconds() == 60).to_numpy()[1:]
        r = np.diff(np.log(f["close"].to_numpy()))[consecutive]
        return r, f["time"].dt.hour.to_numpy()[1:][consecutive], f["volume"].to_numpy()[1:][consecutive]

    r, hour, volume = minute_returns(quarter["eurusd"])
    assert 0.5 < r.std() / real_r.std() < 2.0  # real HistData EURUSD 2017: 1.3e-4 per minute
    for pair in ("eurusd", "usdjpy", "audnzd"):
        rp, hp, _ = minute_returns(quarter[pair])
        busy = rp[(hp >= 13) & (hp < 16)].std()
        quiet = rp[(hp >= 22) | (hp < 1)].std()
        assert busy > 1.5 * quiet, pair
    a = np.abs(r)
    assert np.corrcoef(a[:-60], a[60:])[0, 1] > 0.05  # volatility clustering an hour apart
    assert np.corrcoef(volume, a)[0, 1] > 0.3  # tick volume follows volatility
    assert pd.Series(r).kurt() > 3  # fat tails


def test_seed_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="xauusd"):
        generate_bars(["xauusd"], "2024-01", "2024-01")
    with pytest.raises(ConfigError, match="before --start"):
        generate_bars(["eurusd"], "2024-03", "2024-01")
    with pytest.raises(ConfigError, match="--seed"):
        generate_bars(["eurusd"], "2024-01", "2024-01", seed=-1)
    with pytest.raises(ConfigError, match="YYYY-MM"):
        generate_bars(["eurusd"], "2024-1", "2024-01")


# --------------------------------------------------------------------------------------------
# seed: into PostgreSQL
# --------------------------------------------------------------------------------------------
def test_seed_database_is_idempotent_and_never_overwrites(pg_url, schema):
    pairs = ["eurusd", "usdjpy"]
    expected = generate_bars(pairs, "2024-02", "2024-02", seed=1)
    # a bar already in the table (say, imported real data) at a time the seed would write
    from bqxdask.db.schema import create_source_table

    with connection(pg_url) as conn, conn.cursor() as cur:
        create_source_table(cur, schema, "eurusd")
        cur.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, 2, 2, 2, 2, 0)").format(qualified(schema, "m1_eurusd")),
            (expected["eurusd"]["time"].iloc[100].to_pydatetime(),),
        )
        conn.commit()

    first = seed_database(pg_url, schema, pairs, "2024-02", "2024-02", seed=1)
    assert first.inserted == {"eurusd": len(expected["eurusd"]) - 1, "usdjpy": len(expected["usdjpy"])}
    assert first.existing == {"eurusd": 1, "usdjpy": 0}
    second = seed_database(pg_url, schema, pairs, "2024-02", "2024-02", seed=1)
    assert second.inserted == {"eurusd": 0, "usdjpy": 0}
    assert database_has_bars(pg_url, schema, ["usdjpy"])
    assert not database_has_bars(pg_url, schema, ["gbpusd"])
    assert second.existing == {p: len(expected[p]) for p in pairs}
    assert "0 rows inserted" in second.summary_line()

    usdjpy = read_table(pg_url, schema, "usdjpy")
    assert_same_bars(usdjpy, expected["usdjpy"])
    assert np.array_equal(usdjpy["volume"].to_numpy(), expected["usdjpy"]["volume"].to_numpy())
    eurusd_table = read_table(pg_url, schema, "eurusd")
    assert len(eurusd_table) == len(expected["eurusd"])
    assert eurusd_table["close"].iloc[100] == 2.0  # the existing bar is kept
