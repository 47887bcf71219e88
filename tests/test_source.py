"""The source survey (SPEC §6 fingerprints) against a row-by-row reading of the table (issue 15)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
from dbutil import load_bars, query
from pipeline_util import unique_schema

from bqxdask.db.connect import connection
from bqxdask.db.source import inspect_source, survey
from bqxdask.testing import eurusd

UTC = dt.timezone.utc


def _by_rows(url: str, schema: str, lo: dt.datetime, hi: dt.datetime, volume: str) -> dict[str, tuple]:
    """Per month: rows, first, last, sum of each row's hash — every row fetched and summed here."""
    rows = query(
        url,
        f"SELECT time, hashtextextended(concat_ws(',', time, open, high, low, close, {volume})::text, 0) "
        f"FROM {schema}.m1_eurusd WHERE time >= %s AND time < %s",
        (lo, hi),
    )
    out: dict[str, list] = defaultdict(lambda: [0, None, None, 0])
    for t, h in rows:
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        m = out[f"{t.year:04d}-{t.month:02d}"]
        m[0] += 1
        m[1] = t if m[1] is None else min(m[1], t)
        m[2] = t if m[2] is None else max(m[2], t)
        m[3] += h
    return {k: (n, first, last, str(total)) for k, (n, first, last, total) in out.items()}


@pytest.mark.parametrize(
    ("time_type", "volume", "lo", "hi"),
    [
        ("timestamptz", True, dt.datetime(2017, 1, 1, tzinfo=UTC), dt.datetime(2017, 7, 1, tzinfo=UTC)),
        # the window's ends inside a month, and a source without volume in local-free timestamps
        ("timestamp", False, dt.datetime(2017, 1, 17, 9, tzinfo=UTC), dt.datetime(2017, 5, 3, 12, 30, tzinfo=UTC)),
    ],
)
def test_survey_equals_a_row_by_row_reading(pg_url, time_type, volume, lo, hi):
    schema = unique_schema("survey")
    bars = eurusd(6)
    march = (bars["time"] >= "2017-03-01") & (bars["time"] < "2017-04-01")
    load_bars(pg_url, schema, "eurusd", bars[~march], time_type=time_type)  # a month with no bars
    if not volume:
        query(pg_url, f"ALTER TABLE {schema}.m1_eurusd DROP COLUMN volume")
    with connection(pg_url) as conn, conn.cursor() as cur:
        src = inspect_source(cur, schema, "eurusd")
        got = survey(cur, src, lo, hi)
        conn.rollback()
    want = _by_rows(pg_url, schema, lo, hi, "volume" if volume else "0")
    assert "2017-03" not in want and want
    assert {m: (s.rows, s.first, s.last, s.checksum) for m, s in got.items()} == want
    assert list(got) == sorted(want)
