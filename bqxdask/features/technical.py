"""Technical indicators by TA-Lib (SPEC §4.5), tables ``technical_rate_<pair>``, ``technical_bqx_<pair>``.

The values are *defined* as the pinned TA-Lib applied to the pair's whole series; nothing is
re-implemented here. ``technical_rate`` reads (open_idx, high_idx, low_idx, idx)::

    rsi_14, rsi_21                     RSI(idx, 14), RSI(idx, 21)               Wilder smoothing
    macd, macd_signal, macd_hist       MACD(idx, 12, 26, 9)                     EMAs
    stoch_k, stoch_d                   STOCH(high, low, idx, 14, 3 SMA, 3 SMA)  finite window
    adx_14, plus_di_14, minus_di_14    ADX / PLUS_DI / MINUS_DI(high, low, idx, 14)  Wilder
    cci_20                             CCI(high, low, idx, 20)                  finite window
    willr_14                           WILLR(high, low, idx, 14)                finite window
    roc_12                             ROC(idx, 12)                             finite window
    atr_14                             ATR(high, low, idx, 14)                  Wilder

``technical_bqx`` reads the BQX series from its first defined value: ``rsi_14``, ``rsi_21``,
``macd``, ``macd_signal``, ``macd_hist`` and ``mom_12`` (MOM(x, 12)).

The recursive indicators (RSI, MACD, ADX/DI, ATR) depend on where their input starts, but
forget it geometrically: Wilder smoothing of period n keeps ((n−1)/n)^k of its start after
k rows, an EMA of period n keeps ((n−1)/(n+1))^k. A partition is therefore computed from
``families.technical.warmup`` rows before its first row (the family's lookback), which
brings it within SPEC §4.9 (|Δ| ≤ 1e-7·max(1, |ref|)) of the whole-series values; see
:data:`MIN_WARMUP` for the measured margin. TA-Lib turns an interior NaN silently into
RSI = 0 or a frozen ADX, so every input is checked to be finite first.

Warm-up: TA-Lib's own leading NaNs (e.g. 33 rows for MACD, 27 for ADX); lookback is
``warmup`` rows.

References: https://ta-lib.org/functions/ ,
https://ta-lib.github.io/ta-lib-python/func_groups/momentum_indicators.html .
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# talib is imported by the functions that call it: it imports pandas and polars, which loading
# the config (TechnicalParams, through the registry) does not need
from ..errors import ConfigError
from .params import SCALE_FREE as S

RSI_PERIODS = (14, 21)
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
STOCH_FASTK, STOCH_SLOWK, STOCH_SLOWD = 14, 3, 3
ADX_PERIOD = ATR_PERIOD = WILLR_PERIOD = 14
CCI_PERIOD = 20
ROC_PERIOD = MOM_PERIOD = 12
SMA = 0  # talib.MA_Type.SMA

RATE_COLUMNS = (
    "rsi_14",
    "rsi_21",
    "macd",
    "macd_signal",
    "macd_hist",
    "stoch_k",
    "stoch_d",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "cci_20",
    "willr_14",
    "roc_12",
    "atr_14",
)
BQX_COLUMNS = ("rsi_14", "rsi_21", "macd", "macd_signal", "macd_hist", "mom_12")

#: Smallest ``families.technical.warmup`` accepted. The longest memory is Wilder's period 21
#: (RSI 21 keeps 20/21 of its start-up error per row; Wilder 14 keeps 13/14, EMA 26 keeps 25/27).
#: After k rows the start-up difference in RSI is ≈ 100·R·(20/21)^k, R the ratio of the average
#: move where the partition starts to the one at the cut; §4.9 wants ≤ 1e-7·50, so
#: k ≥ (ln(2e7) + ln R)/ln(21/20) ≈ 345 + 47·log10(R). Measured on the real EURUSD, GBPUSD and
#: USDJPY bars (worst |Δ|/tolerance, always rsi_21): 4.4 at 350 rows, 0.38 at 400, 0.053 at 450,
#: 0.0018 at 500; at 1000 the recursive columns are bit-identical to the whole series.
MIN_WARMUP = 500


@dataclass(frozen=True)
class TechnicalParams:
    """``[families.technical]``: the periods are fixed by SPEC §4.5; only the warm-up is a choice."""

    #: rows of history fed to TA-Lib before the first output row of a partition; recursive
    #: indicators (RSI, MACD, ADX, ATR) forget their start geometrically, and this many rows
    #: bring the partitioned result within SPEC §4.9 of the whole-series one.
    warmup: int = 1000

    def check(self, key: str = "families.technical") -> None:
        if self.warmup < MIN_WARMUP:
            raise ConfigError(
                f"{key}.warmup = {self.warmup} is below {MIN_WARMUP}, too short for partitions to match the "
                "whole series within SPEC §4.9; fix: leave the default 1000"
            )


#: TA-Lib functions whose global "unstable period" would change the values used here
_UNSTABLE = ("RSI", "EMA", "ADX", "PLUS_DI", "MINUS_DI", "DX", "PLUS_DM", "MINUS_DM", "ATR")


def talib_version() -> str:
    """TA-Lib versions that define the values, for output metadata: ``"0.8.2 (TA-Lib C 0.8.1)"``."""
    import talib

    c_version = talib.__ta_version__
    if isinstance(c_version, bytes):
        c_version = c_version.decode("ascii", "replace")
    return f"{talib.__version__} (TA-Lib C {c_version.split(' (')[0]})"


def rate_columns(params: TechnicalParams | None = None) -> list[str]:
    """``technical_rate`` columns in SPEC §4.5 order (the periods are fixed by the SPEC)."""
    return list(RATE_COLUMNS)


def bqx_columns(params: TechnicalParams | None = None) -> list[str]:
    """``technical_bqx`` columns in SPEC §4.5 order."""
    return list(BQX_COLUMNS)


def _finite(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` as contiguous float64; a NaN/inf would silently corrupt TA-Lib's recursions."""
    arr = np.ascontiguousarray(values, dtype="float64")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise ValueError(
            f"TA-Lib input {name} has {len(bad)} non-finite values (first at row {bad[0]} of {len(arr)}); "
            "fix: feed only accepted bars and cut the series' leading NaNs"
        )
    return arr


def _check_talib_settings() -> None:
    """TA-Lib's process-global settings must be its defaults, or values silently change."""
    import talib

    changed = [f for f in _UNSTABLE if talib.get_unstable_period(f) != 0]
    if changed or talib.get_compatibility() != 0:
        raise RuntimeError(
            f"TA-Lib global settings changed (unstable period of {changed}, compatibility "
            f"{talib.get_compatibility()}); fix: reset them with talib.set_unstable_period(name, 0) "
            "and talib.set_compatibility(0)"
        )


def _momentum(close: np.ndarray) -> dict[str, np.ndarray]:
    """The columns shared by both families: RSI 14/21 and MACD 12/26/9 of ``close``."""
    import talib

    out = {f"rsi_{n}": talib.RSI(close, timeperiod=n) for n in RSI_PERIODS}
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(
        close, fastperiod=MACD_FAST, slowperiod=MACD_SLOW, signalperiod=MACD_SIGNAL
    )
    return out


def technical_rate(
    open_idx: np.ndarray, high_idx: np.ndarray, low_idx: np.ndarray, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """``technical_rate`` columns (SPEC §4.5): TA-Lib on the index bars.

    Parameters
    ----------
    open_idx, high_idx, low_idx, idx
        The index OHLC (SPEC §4.1), finite, oldest first. ``open_idx`` is read by no
        indicator but checked like the others.

    Returns
    -------
    dict
        Column → array of ``len(idx)``; TA-Lib's warm-up rows are NaN.
    """
    import talib

    _check_talib_settings()
    _finite("open_idx", open_idx)
    high, low, close = _finite("high_idx", high_idx), _finite("low_idx", low_idx), _finite("idx", idx)
    out = _momentum(close)
    out["stoch_k"], out["stoch_d"] = talib.STOCH(
        high,
        low,
        close,
        fastk_period=STOCH_FASTK,
        slowk_period=STOCH_SLOWK,
        slowk_matype=SMA,
        slowd_period=STOCH_SLOWD,
        slowd_matype=SMA,
    )
    out["adx_14"] = talib.ADX(high, low, close, timeperiod=ADX_PERIOD)
    out["plus_di_14"] = talib.PLUS_DI(high, low, close, timeperiod=ADX_PERIOD)
    out["minus_di_14"] = talib.MINUS_DI(high, low, close, timeperiod=ADX_PERIOD)
    out["cci_20"] = talib.CCI(high, low, close, timeperiod=CCI_PERIOD)
    out["willr_14"] = talib.WILLR(high, low, close, timeperiod=WILLR_PERIOD)
    out["roc_12"] = talib.ROC(close, timeperiod=ROC_PERIOD)
    out["atr_14"] = talib.ATR(high, low, close, timeperiod=ATR_PERIOD)
    return {c: out[c] for c in RATE_COLUMNS}


def technical_bqx(x: np.ndarray) -> dict[str, np.ndarray]:
    """``technical_bqx`` columns (SPEC §4.5): TA-Lib on the BQX series from its first value.

    Parameters
    ----------
    x
        The BQX series with its leading NaNs cut off (finite, oldest first).

    Returns
    -------
    dict
        Column → array of ``len(x)``; TA-Lib's warm-up rows are NaN.
    """
    import talib

    _check_talib_settings()
    close = _finite("bqx", x)
    out = _momentum(close)
    out["mom_12"] = talib.MOM(close, timeperiod=MOM_PERIOD)
    return {c: out[c] for c in BQX_COLUMNS}


#: the kind (SPEC §9, :mod:`.params`) of each column stem
# MACD and ATR are differences and ranges of the index, not levels
STEM_KINDS = {
    "rsi_{N}": S,
    "macd": S,
    "macd_signal": S,
    "macd_hist": S,
    "stoch_k": S,
    "stoch_d": S,
    "adx_{N}": S,
    "plus_di_{N}": S,
    "minus_di_{N}": S,
    "cci_{N}": S,
    "willr_{N}": S,
    "roc_{N}": S,
    "atr_{N}": S,
    "mom_{N}": S,
}


def lookback(p: TechnicalParams) -> int:
    return p.warmup


def kernel_kwargs(p: TechnicalParams) -> dict:
    return {}
