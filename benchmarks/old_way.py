"""The old way: the per-partition pandas scripts bqxdask replaces ("before" column of ``make bench``).

One pandas script per partition (pair, month), run one after another in one process:

1. **read** — ``pandas.read_sql`` through a SQLAlchemy engine: the month's bars, plus the
   warm-up rows before it (``ORDER BY time DESC LIMIT n``);
2. **features** — pandas, the way such scripts are written:

   - ``bqx`` and ``bollinger_*``: pandas' built-in rolling aggregations (sum, mean, std, min,
     max), vectorised — these are not slow;
   - ``statistics_*``: built-ins for mean, std, min, max, median and the quantiles;
     ``rolling(N).apply(raw=True)`` with ``scipy.stats.skew/kurtosis(bias=False)`` for skew and
     kurtosis (pandas' own rolling skew/kurt are running-sum estimates that lose the digits of
     an index near 100) and with ``np.corrcoef`` for the lag-1 autocorrelation (pandas has no
     rolling autocorrelation);
   - ``technical_*``: the same TA-Lib calls as bqxdask (nothing to gain or lose there);
   - ``reg_*``: one ``np.polyfit`` per row and window, the 11 columns derived from it (SPEC §4.6
     calls this the naive baseline). One fit per row serves all of a window's columns, which
     is kinder to the old way than one ``rolling().apply(polyfit)`` per column;
3. **write** — row-by-row ``INSERT`` (one ``cursor.execute`` per row), NaN → NULL, one commit
   per partition. The old scripts wrote no Parquet.

Each function here computes the same values as bqxdask (the benchmark checks that on its
sample); the slow parts take ``start``/``stop`` so the benchmark can time them on a sample of
rows and extrapolate — :mod:`before` does, and the report says so wherever it does.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import talib

PRICES = ("open", "high", "low", "close")


# -- 1. read -------------------------------------------------------------------------------
def engine(url: str):
    """A SQLAlchemy engine, as the old scripts created one per script."""
    import sqlalchemy as sa

    return sa.create_engine(url)


def read_partition(
    eng, schema: str, pair: str, lo: dt.datetime, hi: dt.datetime, warmup: int
) -> tuple[pd.DataFrame, int]:
    """The month's bars and the ``warmup`` bars before it, by ``pandas.read_sql``.

    Returns the frame (indexed by time, oldest first) and the number of warm-up rows.
    """
    import sqlalchemy as sa

    table = f'"{schema}"."m1_{pair}"'  # schema and pair are the benchmark's own constants
    cols = "time, open, high, low, close, volume"
    month = pd.read_sql(
        sa.text(f"SELECT {cols} FROM {table} WHERE time >= :lo AND time < :hi ORDER BY time"),
        eng,
        params={"lo": lo, "hi": hi},
    )
    warm = pd.read_sql(
        sa.text(f"SELECT {cols} FROM {table} WHERE time < :lo ORDER BY time DESC LIMIT :n"),
        eng,
        params={"lo": lo, "n": warmup},
    )
    frame = pd.concat([warm.iloc[::-1], month], ignore_index=True)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.set_index("time").astype("float64"), len(warm)


# -- 2. features ---------------------------------------------------------------------------
def index_frame(bars: pd.DataFrame, baseline: float) -> pd.DataFrame:
    """SPEC §4.1 index columns, ``100·price/B`` in that order (ADX's +DM/−DM ties flip on 1 ulp)."""
    return pd.DataFrame({f"{c}_idx" if c != "close" else "idx": 100.0 * bars[c] / baseline for c in PRICES})


def bqx(idx: pd.Series, windows: Sequence[int]) -> pd.DataFrame:
    """SPEC §4.2 with pandas rolling built-ins over the W bars before t."""
    prev = idx.shift(1)
    out = {}
    for w in windows:
        r = prev.rolling(w)
        out[f"w{w}_bqx_return"] = (r.sum() - w * idx) / idx
        out[f"w{w}_bqx_endpoint"] = (idx.shift(w) - idx) / idx
        out[f"w{w}_bqx_max"] = r.max()
        out[f"w{w}_bqx_min"] = r.min()
        out[f"w{w}_bqx_avg"] = r.mean()
        out[f"w{w}_bqx_std"] = r.std()
    m = max(windows)
    out["agg_bqx_range"] = (out[f"w{m}_bqx_max"] - out[f"w{m}_bqx_min"]) / idx
    out["agg_bqx_volatility"] = out[f"w{m}_bqx_std"] / idx
    out["rate_index"] = idx
    return pd.DataFrame(out)


def bollinger(x: pd.Series, periods: Sequence[int], k: float) -> pd.DataFrame:
    """SPEC §4.3 with pandas rolling mean and population std."""
    out = {}
    for n in periods:
        r = x.rolling(n)
        middle, sd = r.mean(), r.std(ddof=0)
        upper, lower = middle + k * sd, middle - k * sd
        width = upper - lower
        out[f"bb_middle_{n}"], out[f"bb_upper_{n}"], out[f"bb_lower_{n}"] = middle, upper, lower
        out[f"bb_width_{n}"] = width
        out[f"bb_percent_b_{n}"] = (x - lower) / width.where(width > 0)
        out[f"bb_slope_{n}"] = width.diff()
    return pd.DataFrame(out)


def statistics_builtin(x: pd.Series, windows: Sequence[int]) -> pd.DataFrame:
    """SPEC §4.4 columns pandas has built-ins for (vectorised)."""
    out = {}
    for n in windows:
        r = x.rolling(n)
        mean, std = r.mean(), r.std()
        q25, q75 = r.quantile(0.25), r.quantile(0.75)
        out[f"mean_{n}"], out[f"std_{n}"], out[f"min_{n}"], out[f"max_{n}"] = mean, std, r.min(), r.max()
        out[f"median_{n}"], out[f"q25_{n}"], out[f"q75_{n}"], out[f"iqr_{n}"] = r.median(), q25, q75, q75 - q25
        out[f"zscore_{n}"] = (x - mean) / std.where(std > 0)
    return pd.DataFrame(out)


def _skew(w: np.ndarray) -> float:
    return scipy.stats.skew(w, bias=False)


def _kurt(w: np.ndarray) -> float:
    return scipy.stats.kurtosis(w, bias=False)


def _autocorr1(w: np.ndarray) -> float:
    a, b = w[1:], w[:-1]
    if a.std() == 0 or b.std() == 0:
        return np.nan
    return np.corrcoef(a, b)[0, 1]


def statistics_apply(x: pd.Series, windows: Sequence[int], start: int, stop: int) -> pd.DataFrame:
    """SPEC §4.4 skew, kurt and autocorr1 by ``rolling().apply`` for output rows ``[start, stop)``."""
    out = {}
    for n in windows:
        seg = x.iloc[max(0, start - n) : stop]
        keep = stop - start
        out[f"skew_{n}"] = seg.rolling(n).apply(_skew, raw=True).iloc[-keep:]
        out[f"kurt_{n}"] = seg.rolling(n).apply(_kurt, raw=True).iloc[-keep:]
        out[f"autocorr1_{n}"] = seg.rolling(n + 1).apply(_autocorr1, raw=True).iloc[-keep:]
    return pd.DataFrame(out)


def technical_rate(ix: pd.DataFrame) -> pd.DataFrame:
    """SPEC §4.5 ``technical_rate`` with TA-Lib, as now."""
    h, lo, c = (ix[col].to_numpy() for col in ("high_idx", "low_idx", "idx"))
    macd, sig, hist = talib.MACD(c, 12, 26, 9)
    k, d = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    cols = {
        "rsi_14": talib.RSI(c, 14),
        "rsi_21": talib.RSI(c, 21),
        "macd": macd,
        "macd_signal": sig,
        "macd_hist": hist,
        "stoch_k": k,
        "stoch_d": d,
        "adx_14": talib.ADX(h, lo, c, 14),
        "plus_di_14": talib.PLUS_DI(h, lo, c, 14),
        "minus_di_14": talib.MINUS_DI(h, lo, c, 14),
        "cci_20": talib.CCI(h, lo, c, 20),
        "willr_14": talib.WILLR(h, lo, c, 14),
        "roc_12": talib.ROC(c, 12),
        "atr_14": talib.ATR(h, lo, c, 14),
    }
    return pd.DataFrame(cols, index=ix.index)


def technical_bqx(series: pd.Series) -> pd.DataFrame:
    """SPEC §4.5 ``technical_bqx`` with TA-Lib on the BQX series from its first value."""
    s = series.dropna()
    c = s.to_numpy()
    macd, sig, hist = talib.MACD(c, 12, 26, 9)
    cols = {
        "rsi_14": talib.RSI(c, 14),
        "rsi_21": talib.RSI(c, 21),
        "macd": macd,
        "macd_signal": sig,
        "macd_hist": hist,
        "mom_12": talib.MOM(c, 12),
    }
    return pd.DataFrame(cols, index=s.index).reindex(series.index)


REG_OUTPUTS = ("quad", "lin", "const", "quad_term", "lin_term", "pred", "resid", "slope", "forecast", "r2", "rmse")


def reg_polyfit(y: np.ndarray, windows: Sequence[int], start: int, stop: int) -> dict[str, np.ndarray]:
    """SPEC §4.6 (degree 2) by one ``np.polyfit`` per row and window, for rows ``[start, stop)``."""
    out = {f"w{w}_{name}": np.full(stop - start, np.nan) for w in windows for name in REG_OUTPUTS}
    for w in windows:
        x = np.arange(w, dtype=float)
        cols = [out[f"w{w}_{name}"] for name in REG_OUTPUTS]
        for i, t in enumerate(range(start, stop)):
            if t < w - 1:
                continue
            v = y[t - w + 1 : t + 1]
            a, b, c = np.polyfit(x, v, 2)
            fit = np.polyval((a, b, c), x)
            r = v - fit
            sse = float(r @ r)
            dv = v - v.mean()
            sst = float(dv @ dv)
            pred = fit[-1]
            vals = (
                a,
                b,
                c,
                a * (w - 1) ** 2,
                b * (w - 1),
                pred,
                v[-1] - pred,
                2 * a * (w - 1) + b,
                a * w * w + b * w + c,
                1 - sse / sst if sst > 0 else np.nan,
                np.sqrt(sse / w),
            )
            for col, val in zip(cols, vals):
                col[i] = val
    return out


def family_parts(
    name: str, ix: pd.DataFrame, series: pd.Series, fc, start: int, stop: int
) -> tuple[Callable[[], object] | None, Callable[[], object] | None, Callable[[object, object], pd.DataFrame]]:
    """How the old scripts computed one family, for rows ``[start, stop)`` of ``ix``.

    ``(whole, sampled, assemble)``: ``whole()`` is the part they ran on the whole partition
    (vectorised pandas/TA-Lib), ``sampled()`` the slow part (rolling apply, rolling polyfit)
    run only on rows ``[start, stop)``; either may be None. ``assemble(whole_out, sampled_out)``
    gives the family's frame (its columns may still include earlier rows). The benchmark times
    the two parts apart; the smoke test compares the assembled frame with bqxdask.
    """
    from bqxdask.features import registry  # which series a family reads: the index or BQX

    idx = ix["idx"]
    x = {"idx": idx, "bqx": series}.get(registry.get(name).input)
    if name == "bqx":
        return (lambda: bqx(idx, fc.bqx.windows)), None, lambda whole, _: whole
    if name.startswith("bollinger"):
        return (lambda: bollinger(x, fc.bollinger.periods, fc.bollinger.k)), None, lambda whole, _: whole
    if name.startswith("statistics"):
        return (
            (lambda: statistics_builtin(x, fc.statistics.windows)),
            (lambda: statistics_apply(x, fc.statistics.windows, start, stop)),
            lambda whole, sampled: whole.iloc[start:stop].join(sampled),
        )
    if name == "technical_rate":
        return (lambda: technical_rate(ix)), None, lambda whole, _: whole
    if name == "technical_bqx":
        return (lambda: technical_bqx(series)), None, lambda whole, _: whole
    if name.startswith("reg"):
        y = x.to_numpy()
        first = int(np.flatnonzero(np.isfinite(y))[0])
        return (
            None,
            (lambda: reg_polyfit(y[first:], fc.reg.windows, start - first, stop - first)),
            lambda _, sampled: pd.DataFrame(sampled, index=ix.index[start:stop]),
        )
    raise ValueError(f"no old way for family {name!r}")


# -- 3. write ------------------------------------------------------------------------------
def _insert_sql(schema: str, table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in ("time", *columns))
    marks = ", ".join(["%s"] * (len(columns) + 1))
    return f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({marks})'


def insert_rows(conn, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Row-by-row INSERT of ``frame`` (indexed by time), NaN → NULL, one commit."""
    stmt = _insert_sql(schema, table, list(frame.columns))
    rows = frame.astype(object).where(frame.notna(), None)
    with conn.cursor() as cur:
        for t, *values in rows.itertuples(name=None):
            cur.execute(stmt, (t, *values))
    conn.commit()


def to_sql_default(eng, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Today's ``DataFrame.to_sql`` with its defaults (reference line, not the old way)."""
    frame.to_sql(table, eng, schema=schema, if_exists="append", index=True, index_label="time")


def csv_copy(conn, schema: str, table: str, frame: pd.DataFrame) -> None:
    """``to_csv`` into ``COPY … FROM STDIN (FORMAT csv)`` (reference line, not the old way)."""
    buf = io.StringIO()
    frame.to_csv(buf, header=False, na_rep="")
    buf.seek(0)
    names = ", ".join(f'"{c}"' for c in ("time", *frame.columns))
    with conn.cursor() as cur:
        cur.copy_expert(f'COPY "{schema}"."{table}" ({names}) FROM STDIN (FORMAT csv)', buf)
    conn.commit()
