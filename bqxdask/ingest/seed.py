"""Deterministic synthetic 1-minute bars and ``bqxdask seed`` (SPEC §7 ``seed``).

The model
---------
Every currency ``c`` of :data:`~bqxdask.config.CURRENCIES` has a log value ``f_c(t)`` against an
outside numeraire; a pair ``AB`` is ``exp(f_A - f_B)``. Crosses are therefore consistent by
construction (EURJPY = EURUSD · USDJPY up to the rounding of the quotes), and all eight
factors are always simulated, so a pair's bars never depend on which other pairs were asked for.

- **Levels**: at 2024-01 the factors sit at early-2024 quotes (EURUSD 1.08, USDJPY 150, …).
  Month-start levels follow a slowly mean-reverting monthly AR(1) walked outwards from that
  anchor; inside a month the minute path is a random walk bridged onto the next month's start
  level. Each month therefore depends only on ``(seed, month)`` — not on the requested range —
  so seeding 2024-01..03 and later 2024-01..06 agree on the shared months.
- **Volatility**: daily vols and correlations close to 2017-2024 majors (EURUSD ≈ 0.5 %/day,
  per-minute ≈ 1.3e-4 like the HistData 2017 file in the shared test data); Student-t(5)
  shocks; volatility clustering from a stochastic log-volatility (a daily regime AR(1) common
  to the market plus an intraday AR(1) per currency, half-life ≈ 3 h); random USD news
  spikes at 12:30/14:00 UTC; intraday seasonality by UTC hour (Asian session quiet, the
  London/New York overlap 13–16 UTC busiest; Asian hours livelier for JPY/AUD/NZD).
- **Calendar**: no bars from Friday 22:00 to Sunday 22:00 UTC; the Sunday open gaps by about
  half an hour's worth of moves; about 0.05 % of minutes are missing per pair.
- **Bars**: open = previous close; high/low drawn from the exact law of a Brownian bridge's
  maximum/minimum between open and close; quotes rounded to 5 decimals (3 when the pair
  trades near 100, i.e. JPY pairs); integer tick volume grows with the minute's volatility.

Randomness comes from numpy ``Generator`` streams keyed by ``(seed, purpose, month[, pair])``
(PCG64; numpy keeps these streams stable across releases in practice, but does not promise it:
bars are reproducible for a given numpy version).
"""

from __future__ import annotations

import functools
import math
import time as _time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg2
from psycopg2 import sql
from scipy.signal import lfilter

from ..calendar import month_bounds, month_index, month_range
from ..config import CURRENCIES, validate_identifier, validate_pair
from ..db.connect import connection, explain_db_error, qualified, table_exists
from ..db.schema import source_table
from ..errors import ConfigError
from .merge import merge_bars, prepare_target
from .report import plural

__all__ = [
    "SeedReport",
    "database_has_bars",
    "generate_bars",
    "iter_month_bars",
    "seed_database",
    "validate_seed_pairs",
]

# --------------------------------------------------------------------------------------------
# Parameters of the model (why: calibrated on the real bars in shared/data/fx and 2024 quotes)
# --------------------------------------------------------------------------------------------
#: value of one unit of each currency in USD at the anchor month (early 2024)
ANCHOR_USD_VALUE = {
    "aud": 0.66,
    "cad": 1 / 1.36,
    "chf": 1 / 0.88,
    "eur": 1.08,
    "gbp": 1.27,
    "jpy": 1 / 150.0,
    "nzd": 0.61,
    "usd": 1.0,
}
ANCHOR_MONTH = "2024-01"
#: daily log-vol of each currency factor against the numeraire
DAILY_VOL = {
    "aud": 0.0050,
    "cad": 0.0036,
    "chf": 0.0042,
    "eur": 0.0035,
    "gbp": 0.0040,
    "jpy": 0.0055,
    "nzd": 0.0050,
    "usd": 0.0035,
}
#: factor correlations (the rest 0): the European bloc, the commodity bloc, the havens
_CORRELATION_PAIRS = {
    ("eur", "chf"): 0.55,
    ("eur", "gbp"): 0.55,
    ("gbp", "chf"): 0.35,
    ("aud", "nzd"): 0.75,
    ("aud", "cad"): 0.35,
    ("nzd", "cad"): 0.30,
    ("jpy", "chf"): 0.30,
    ("jpy", "usd"): 0.15,
}
MINUTES_PER_DAY = 1440
MONTH_AR = 0.98  #: monthly mean reversion of the level deviations (stationary sd ≈ 5 months of moves)
TRADING_DAYS_PER_MONTH = 21.7
T_DF = 5.0  #: Student-t degrees of freedom of the minute shocks
INTRADAY_VOL_SD, INTRADAY_VOL_HALFLIFE = 0.35, 180.0  #: per-currency log-vol AR(1), minutes
REGIME_VOL_SD, REGIME_VOL_AR = 0.30, 0.75  #: market-wide daily log-vol regime AR(1)
WEEKEND_GAP_MINUTES = 30.0  #: variance of the Sunday-open jump, in typical minutes
INTRABAR_VAR = 0.6  #: share of the minute variance seen inside a bar (ticks are discrete)
MISSING_RATE = 0.0005  #: share of trading minutes without a bar (doubled in quiet hours)
NEWS_PROB, NEWS_BOOST, NEWS_DECAY = 0.35, 3.0, 4.0  #: per day; vol × (1+boost·e^{-k/decay})

#: market activity by UTC hour (from the HistData EURUSD 2017 file: std ratio per hour)
# fmt: off
_HOURLY = np.array([0.75, 0.75, 0.68, 0.60, 0.50, 0.52, 0.70, 1.03, 1.20, 1.10, 1.00, 1.00,
                    1.15, 1.60, 1.40, 1.40, 1.15, 0.95, 0.90, 0.95, 0.80, 0.60, 0.65, 0.65])
# fmt: on
_ASIA_CURRENCIES = ("aud", "jpy", "nzd")  #: livelier 23–07 UTC
_EUROPE_CURRENCIES = ("chf", "eur", "gbp")  #: livelier 07–16 UTC

_TAG_MONTH_LEVEL, _TAG_PATH, _TAG_PAIR = 1, 2, 3
_NC = len(CURRENCIES)
_CI = {c: i for i, c in enumerate(CURRENCIES)}
_EPOCH_MINUTE = np.datetime64("1970-01-01T00:00", "m")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def validate_seed_pairs(pairs: Iterable[str]) -> list[str]:
    """Deduplicated pairs, each six letters made of two different known currencies."""
    if isinstance(pairs, str):
        pairs = [p.strip() for p in pairs.split(",") if p.strip()]
    out: list[str] = []
    for pair in pairs:
        validate_pair(pair, "--pairs")
        base, quote = pair[:3], pair[3:]
        if base not in _CI or quote not in _CI or base == quote:
            raise ConfigError(
                f"--pairs: cannot synthesise {pair!r}: seed models the currencies "
                f"{', '.join(c.upper() for c in CURRENCIES)}; fix: use two different ones, e.g. eurusd"
            )
        if pair not in out:
            out.append(pair)
    if not out:
        raise ConfigError("--pairs is empty; fix: name at least one pair, e.g. --pairs eurusd,usdjpy")
    return out


def generate_bars(
    pairs: Iterable[str], start: str = "2024-01", end: str = "2024-01", seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Synthetic 1-minute bars of ``pairs`` for the months ``start``..``end`` (inclusive).

    Pure and deterministic: the same ``(pairs, start, end, seed)`` gives identical frames, and
    each pair's frame is the same whichever other pairs are requested.

    Returns
    -------
    dict
        pair → DataFrame with columns ``time`` (datetime64[us, UTC], bar open time, ascending),
        ``open``, ``high``, ``low``, ``close`` (float64, rounded quotes) and ``volume`` (int64).
    """
    pairs = validate_seed_pairs(pairs)
    parts: dict[str, list[pd.DataFrame]] = {p: [] for p in pairs}
    for _month, frames in iter_month_bars(pairs, start, end, seed):
        for pair, frame in frames.items():
            parts[pair].append(frame)
    return {p: pd.concat(parts[p], ignore_index=True) for p in pairs}


def iter_month_bars(
    pairs: Iterable[str], start: str, end: str, seed: int = 0
) -> Iterator[tuple[str, dict[str, pd.DataFrame]]]:
    """Yield ``(month, {pair: bars})`` month by month (what :func:`seed_database` streams)."""
    pairs = validate_seed_pairs(pairs)
    months = _months(start, end)
    seed = _validate_seed(seed)
    for month in months:
        path = _month_path(seed, month)
        yield month, {pair: _pair_bars(path, pair, seed) for pair in pairs}


@dataclass
class SeedReport:
    """What :func:`seed_database` wrote: rows inserted and rows already present, per pair."""

    schema: str
    months: list[str]
    seed: int
    inserted: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_inserted(self) -> int:
        return sum(self.inserted.values())

    @property
    def total_rows(self) -> int:
        return self.total_inserted + sum(self.existing.values())

    def summary_line(self) -> str:
        span = self.months[0] if len(self.months) == 1 else f"{self.months[0]}..{self.months[-1]}"
        kept = sum(self.existing.values())
        rate = f", {self.total_rows / self.seconds:,.0f} rows/s" if self.seconds > 0 else ""
        return (
            f"seeded {plural(len(self.inserted), 'pair')} × {plural(len(self.months), 'month')} ({span}, seed {self.seed}) "
            f"into {self.schema}: {self.total_inserted:,} rows inserted, {kept:,} already present "
            f"in {self.seconds:.1f} s{rate}"
        )

    def pair_lines(self) -> list[str]:
        return [f"{p}: {n:,} inserted, {self.existing.get(p, 0):,} already present" for p, n in self.inserted.items()]


def seed_database(url: str, schema: str, pairs: Iterable[str], start: str, end: str, seed: int = 0) -> SeedReport:
    """Write synthetic bars into ``<schema>.m1_<pair>`` (created if missing) through COPY.

    Idempotent and safe next to real data: only times the table does not hold yet are
    inserted; existing bars (seeded or imported) are never changed. Each month is one
    transaction, so an interrupted run keeps whole months and a rerun completes it.
    """
    validate_identifier(schema, "database.source_schema")
    pairs = validate_seed_pairs(pairs)
    months = _months(start, end)
    seed = _validate_seed(seed)
    report = SeedReport(schema, months, seed, {p: 0 for p in pairs}, {p: 0 for p in pairs})
    began = _time.perf_counter()
    with connection(url, application_name="bqxdask/seed") as conn:
        try:
            with conn.cursor() as cur:
                for pair in pairs:
                    prepare_target(cur, schema, pair)
            conn.commit()
            for _month, frames in iter_month_bars(pairs, start, end, seed):
                with conn.cursor() as cur:
                    for pair, frame in frames.items():
                        counts = merge_bars(cur, schema, pair, frame, update_existing=False)
                        report.inserted[pair] += counts.inserted
                        report.existing[pair] += counts.unchanged + counts.updated
                conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise explain_db_error(exc, url, f"seeding {schema}") from None
    report.seconds = _time.perf_counter() - began
    return report


def database_has_bars(url: str, schema: str, pairs: Iterable[str]) -> bool:
    """Whether any ``<schema>.m1_<pair>`` of ``pairs`` exists with at least one row (``seed --if-empty``)."""
    validate_identifier(schema, "database.source_schema")
    pairs = [validate_pair(p, "--pairs") for p in pairs]
    with connection(url, application_name="bqxdask/seed") as conn, conn.cursor() as cur:
        try:
            for pair in pairs:
                if table_exists(cur, schema, source_table(pair)):
                    cur.execute(
                        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(qualified(schema, source_table(pair)))
                    )
                    if cur.fetchone()[0]:
                        return True
        except psycopg2.Error as exc:
            raise explain_db_error(exc, url, f"looking for bars in {schema}") from None
    return False


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def _months(start: str, end: str) -> list[str]:
    months = month_range(start, end, keys=("--start", "--end"))
    if not months:
        raise ConfigError(
            f"--end {end} is before --start {start}; fix: give months in order, e.g. --start {end} --end {start}"
        )
    for m in (months[0], months[-1]):
        if not 1971 <= int(m[:4]) <= 2199:
            raise ConfigError(f"month {m} is outside the seedable years 1971..2199; fix: pick a month in that range")
    return months


def _validate_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed {seed!r} is not a non-negative integer; fix: e.g. --seed 0")
    return int(seed)


# --------------------------------------------------------------------------------------------
# The factor model
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _model() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(anchor log levels, daily vols, correlation matrix, its Cholesky factor)."""
    anchor = np.log([ANCHOR_USD_VALUE[c] for c in CURRENCIES])
    vol = np.array([DAILY_VOL[c] for c in CURRENCIES])
    corr = np.eye(_NC)
    for (a, b), rho in _CORRELATION_PAIRS.items():
        corr[_CI[a], _CI[b]] = corr[_CI[b], _CI[a]] = rho
    return anchor, vol, corr, np.linalg.cholesky(corr)


@functools.lru_cache(maxsize=1)
def _season() -> np.ndarray:
    """Volatility multiplier per (minute of the UTC day, currency), mean square 1 per currency."""
    minute = np.arange(MINUTES_PER_DAY) + 0.5
    base = np.interp(minute, np.arange(24) * 60.0 + 30.0, _HOURLY, period=MINUTES_PER_DAY)
    hour = minute / 60.0
    out = np.empty((MINUTES_PER_DAY, _NC))
    asia = (hour >= 23) | (hour < 7)
    europe = (hour >= 7) & (hour < 16)
    for c, i in _CI.items():
        prof = base.copy()
        if c in _ASIA_CURRENCIES:
            prof[asia] *= 1.35
        if c in _EUROPE_CURRENCIES:
            prof[europe] *= 1.10
        out[:, i] = prof / np.sqrt(np.mean(prof**2))
    return out


@functools.lru_cache(maxsize=8)
def _level_table(seed: int, lo: int, hi: int) -> dict[int, np.ndarray]:
    """Log-level deviation from the anchor at the start of each month index in [lo, hi].

    A monthly AR(1) walked outwards from the anchor month in both directions (time-reversible),
    with innovations drawn from a stream keyed by (seed, month): each month's start level is a
    function of the seed and the month only.
    """
    _, vol, _, chol = _model()
    month_sd = vol * math.sqrt(TRADING_DAYS_PER_MONTH)
    anchor = month_index(ANCHOR_MONTH)
    levels = {anchor: np.zeros(_NC)}

    def innovation(m: int) -> np.ndarray:
        z = np.random.default_rng([seed, _TAG_MONTH_LEVEL, m]).standard_normal(_NC)
        return month_sd * (chol @ z)

    for m in range(anchor + 1, max(hi, anchor) + 1):
        levels[m] = MONTH_AR * levels[m - 1] + innovation(m)
    for m in range(anchor - 1, min(lo, anchor) - 1, -1):
        levels[m] = MONTH_AR * levels[m + 1] + innovation(m)
    return {m: levels[m] for m in range(lo, hi + 1)}


def _month_levels(seed: int, m_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """Log levels (anchor included) at the start of month ``m_idx`` and of the next month."""
    anchor, *_ = _model()
    table = _level_table(seed, m_idx - m_idx % 120, m_idx - m_idx % 120 + 120)  # cache per decade
    return anchor + table[m_idx], anchor + table[m_idx + 1]


def _trading_minutes(month: str) -> np.ndarray:
    """Minutes (datetime64[m], UTC) of the month outside the Fri 22:00 → Sun 22:00 weekend."""
    lo, hi = (np.datetime64(t.replace(tzinfo=None), "m") for t in month_bounds(month))
    minutes = np.arange(lo, hi)
    # 1970-01-01 was a Thursday: weekday 0 = Monday
    day = (minutes - _EPOCH_MINUTE).astype("int64") // MINUTES_PER_DAY
    weekday = (day + 3) % 7
    hour = ((minutes - _EPOCH_MINUTE).astype("int64") % MINUTES_PER_DAY) // 60
    weekend = ((weekday == 4) & (hour >= 22)) | (weekday == 5) | ((weekday == 6) & (hour < 22))
    return minutes[~weekend]


@dataclass(frozen=True)
class _MonthPath:
    """The eight factors over one month's trading minutes (log values)."""

    month_index: int
    minutes: np.ndarray  #: datetime64[m], bar open times
    open: np.ndarray  #: (n, 8) log value at the bar open
    close: np.ndarray  #: (n, 8) log value at the bar close
    sigma: np.ndarray  #: (n, 8) per-minute volatility of each factor
    gap: np.ndarray  #: (n,) bool: first bar after a weekend


@functools.lru_cache(maxsize=2)
def _month_path(seed: int, month: str) -> _MonthPath:
    _, vol, _, chol = _model()
    m_idx = month_index(month)
    rng = np.random.default_rng([seed, _TAG_PATH, m_idx])
    minutes = _trading_minutes(month)
    n = len(minutes)
    since_epoch = (minutes - _EPOCH_MINUTE).astype("int64")
    minute_of_day = since_epoch % MINUTES_PER_DAY
    day = since_epoch // MINUTES_PER_DAY

    # volatility: seasonality × market regime (daily AR(1)) × per-currency intraday AR(1) × news
    days, day_pos = np.unique(day, return_inverse=True)
    regime = lfilter(
        [math.sqrt(1 - REGIME_VOL_AR**2)],
        [1, -REGIME_VOL_AR],
        rng.standard_normal(len(days)),
        zi=[REGIME_VOL_AR * rng.standard_normal()],
    )[0]
    phi = 0.5 ** (1.0 / INTRADAY_VOL_HALFLIFE)
    eps = rng.standard_normal((n, _NC))
    zi = phi * rng.standard_normal((1, _NC))
    intraday = lfilter([math.sqrt(1 - phi**2)], [1, -phi], eps, axis=0, zi=zi)[0]
    log_vol = REGIME_VOL_SD * regime[day_pos][:, None] + INTRADAY_VOL_SD * intraday
    log_vol -= REGIME_VOL_SD**2 + INTRADAY_VOL_SD**2  # keeps E[multiplier²] = 1
    news = np.ones(n)
    event_days = days[rng.random(len(days)) < NEWS_PROB]
    event_minute = np.where(rng.random(len(event_days)) < 0.6, 12 * 60 + 30, 14 * 60)
    event_at = np.searchsorted(since_epoch, event_days * MINUTES_PER_DAY + event_minute)
    for k in range(30):
        at = event_at + k
        at = at[at < n]
        news[at] += NEWS_BOOST * math.exp(-k / NEWS_DECAY)
    sigma = (vol / math.sqrt(MINUTES_PER_DAY)) * _season()[minute_of_day] * np.exp(log_vol)
    sigma[:, _CI["usd"]] *= news
    sigma[:, _CI["cad"]] *= np.sqrt(news)

    # shocks: correlated Student-t; the Sunday open jumps by ~WEEKEND_GAP_MINUTES of variance
    t = rng.standard_t(T_DF, size=(n, _NC)) / math.sqrt(T_DF / (T_DF - 2))
    step = sigma * (t @ chol.T)
    gap = np.zeros(n, dtype=bool)
    if n:
        gap[1:] = np.diff(since_epoch) > 1
    jump = np.zeros((n, _NC))
    jump[gap] = (
        (rng.standard_normal((int(gap.sum()), _NC)) @ chol.T)
        * (vol / math.sqrt(MINUTES_PER_DAY))
        * math.sqrt(WEEKEND_GAP_MINUTES)
    )

    # bridge the walk onto the next month's start level (weights ∝ each minute's variance)
    level, level_next = _month_levels(seed, m_idx)
    var = sigma**2
    shortfall = (level_next - level) - step.sum(axis=0) - jump.sum(axis=0)
    step += var / var.sum(axis=0) * shortfall
    close = level + np.cumsum(step + jump, axis=0)
    open_ = close - step
    return _MonthPath(m_idx, minutes, open_, close, sigma, gap)


def _decimals(pair: str) -> int:
    """5 decimals, or 3 for pairs trading near 100 (the JPY pairs): ≈ 6 significant digits."""
    anchor, *_ = _model()
    level = math.exp(anchor[_CI[pair[:3]]] - anchor[_CI[pair[3:]]])
    return max(0, 5 - round(math.log10(level)))


def _pair_bars(path: _MonthPath, pair: str, seed: int) -> pd.DataFrame:
    """One pair's bars for one month, from the factor path and a pair-keyed random stream."""
    a, b = _CI[pair[:3]], _CI[pair[3:]]
    _, _, corr, _ = _model()
    rng = np.random.default_rng([seed, _TAG_PAIR, int.from_bytes(pair.encode(), "big"), path.month_index])
    n = len(path.minutes)
    o = path.open[:, a] - path.open[:, b]
    c = path.close[:, a] - path.close[:, b]
    sa, sb = path.sigma[:, a], path.sigma[:, b]
    var = INTRABAR_VAR * (sa**2 + sb**2 - 2 * corr[a, b] * sa * sb)
    # extremes of a Brownian bridge from 0 to d with variance var: P(max > m) = exp(-2m(m-d)/var)
    d = c - o
    u = 1.0 - rng.random((2, n))  # in (0, 1]
    high = o + 0.5 * (d + np.sqrt(d**2 - 2 * var * np.log(u[0])))
    low = o + 0.5 * (d - np.sqrt(d**2 - 2 * var * np.log(u[1])))

    scale = 10.0 ** _decimals(pair)
    po, ph, pl, pc = (np.round(np.exp(x) * scale) / scale for x in (o, high, low, c))
    ph = np.maximum(ph, np.maximum(po, pc))
    pl = np.minimum(pl, np.minimum(po, pc))

    # tick volume: more ticks in busier minutes and in bigger moves; majors tick more than crosses
    sd = np.sqrt(var / INTRABAR_VAR)
    base = 60.0 if "usd" in (pair[:3], pair[3:]) else 30.0
    lam = base * (sd / np.median(sd)) * (0.7 + 0.3 * np.minimum(np.abs(d) / sd, 5.0))
    volume = rng.poisson(lam) + 1

    minute_of_day = (path.minutes - _EPOCH_MINUTE).astype("int64") % MINUTES_PER_DAY
    quiet = (minute_of_day < 6 * 60) | (minute_of_day >= 20 * 60)
    keep = rng.random(n) >= MISSING_RATE * np.where(quiet, 2.0, 1.0)
    times = pd.DatetimeIndex(path.minutes[keep].astype("datetime64[us]")).tz_localize("UTC")
    return pd.DataFrame(
        {
            "time": times,
            "open": po[keep],
            "high": ph[keep],
            "low": pl[keep],
            "close": pc[keep],
            "volume": volume[keep].astype("int64"),
        }
    )
