"""The SPEC §3 bar rule (``bqxdask.quality.validate_bars``) against a row-by-row reading of §3.

The reference below walks the bars one at a time, exactly as §3 reads: the first failing check
names a bad bar; bars sharing a time with a *different* good bar are all bad; identical
duplicates are one bar. Hypothesis draws small frames from a few prices (NaN, ±inf, 0, < 0,
highs below the open, lows above the close) and a few times (NaT, repeats), so every branch
meets every other.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bqxdask.quality import HL_TOLERANCE, PRICE_COLUMNS, validate_bars

PRICES = [1.1, 1.2, 1.3, 0.0, -1.0, math.nan, math.inf, -math.inf]
TIMES = [pd.NaT, *pd.date_range("2024-07-01", periods=4, freq="min", tz="UTC")]


def reference(rows: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """(accepted (time, o, h, l, c, v) sorted, rejected (time, reason) sorted) by §3, row by row."""
    reasons: list[str | None] = []
    for t, *prices, _v in rows:
        reason = None
        if t is pd.NaT:
            reason = "time is NULL"
        for col, p in zip(PRICE_COLUMNS, prices):
            if reason is None and math.isnan(p):
                reason = f"{col} is NULL or NaN"
            if reason is None and math.isinf(p):
                reason = f"{col} is infinite"
            if reason is None and p <= 0:
                reason = f"{col} <= 0"
        o, h, lo, c = prices
        if reason is None and h < max(o, c) * (1 - HL_TOLERANCE):
            reason = "high < max(open, close)"
        if reason is None and lo > min(o, c) * (1 + HL_TOLERANCE):
            reason = "low > min(open, close)"
        reasons.append(reason)
    for t in {r[0] for r, why in zip(rows, reasons) if why is None}:
        at_t = [i for i, (r, why) in enumerate(zip(rows, reasons)) if why is None and r[0] == t]
        if len({rows[i][1:] for i in at_t}) > 1:
            for i in at_t:
                reasons[i] = "conflicting duplicate time"
    accepted, seen = [], set()
    for r, why in zip(rows, reasons):
        if why is None and r[0] not in seen:
            seen.add(r[0])
            accepted.append(r)
    rejected = [(r[0], why) for r, why in zip(rows, reasons) if why is not None]
    return sorted(accepted, key=lambda r: r[0]), sorted(rejected, key=lambda r: (r[0] is pd.NaT, r[0]))


any_bar = st.tuples(st.sampled_from(TIMES), *[st.sampled_from(PRICES)] * 4, st.sampled_from([0.0, 5.0]))


@st.composite
def good_bar(draw) -> tuple:
    """A bar that passes the price checks, so that good bars meet (and conflict with) each other."""
    o, c = draw(st.sampled_from([1.1, 1.2])), draw(st.sampled_from([1.1, 1.2]))
    h = max(o, c) + draw(st.sampled_from([0.0, 0.1]))
    lo = min(o, c) - draw(st.sampled_from([0.0, 0.1]))
    return draw(st.sampled_from(TIMES)), o, h, lo, c, draw(st.sampled_from([0.0, 5.0]))


bar = st.one_of(any_bar, good_bar())


def frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["time", *PRICE_COLUMNS, "volume"]
    df = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})
    df["time"] = pd.DatetimeIndex(df["time"], tz="UTC") if rows else pd.DatetimeIndex([], tz="UTC")
    return df.astype({c: "float64" for c in cols[1:]}).set_index("time")


@settings(max_examples=300, deadline=None)
@given(st.lists(bar, max_size=12))
def test_validate_bars_follows_spec_3_row_by_row(rows):
    accepted, rejected = validate_bars(frame(rows))
    want_acc, want_rej = reference(rows)
    got_acc = [
        (t, *vals) for t, vals in zip(accepted.index, accepted[[*PRICE_COLUMNS, "volume"]].itertuples(index=False))
    ]
    assert [r[0] for r in got_acc] == [r[0] for r in want_acc]
    np.testing.assert_array_equal(
        np.array([r[1:] for r in got_acc], dtype=float).reshape(-1, 5),
        np.array([r[1:] for r in want_acc], dtype=float).reshape(-1, 5),
    )
    assert accepted.index.is_monotonic_increasing and accepted.index.is_unique
    got_rej = sorted(zip(rejected["time"], rejected["reason"]), key=lambda r: (r[0] is pd.NaT, r[0]))
    assert [(str(t), why) for t, why in got_rej] == [(str(t), why) for t, why in want_rej]
    assert len(rejected) + len(accepted) <= len(rows)


@pytest.mark.parametrize("shuffle", [False, True])
def test_good_bars_come_back_whole_and_sorted(shuffle):
    times = pd.date_range("2024-07-01", periods=500, freq="min", tz="UTC")
    close = 1.1 + np.cumsum(np.random.default_rng(3).normal(0, 1e-4, len(times)))
    bars = pd.DataFrame(
        {"open": close, "high": close + 1e-4, "low": close - 1e-4, "close": close, "volume": 1.0},
        index=pd.Index(times, name="time"),
    )
    given_bars = bars.sample(frac=1.0, random_state=1) if shuffle else bars
    accepted, rejected = validate_bars(given_bars)
    assert len(rejected) == 0
    pd.testing.assert_frame_equal(accepted, bars, check_freq=False)
