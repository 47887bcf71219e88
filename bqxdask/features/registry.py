"""The one registry of feature families (SPEC §4).

A :class:`Family` says what a table family reads (its input series), which config section
holds its parameters, its columns in SPEC order, how many earlier rows one output row needs
(its *lookback*) and the pure function that computes it. Everything else is derived from here:
the warm-up of a partition (:func:`warmup_rows`), the SQL and Parquet schemas, the config
hash that decides whether a checkpoint is still valid, and the ``[families.*]`` config
section (:data:`SECTIONS`, gathered by :mod:`bqxdask.config`).

Each family module holds its parameters (a frozen ``*Params`` dataclass with its ``check``),
its columns and its kernel; :data:`FAMILIES` below wires them, in SPEC §4 order, in one
explicit tuple — no module registers itself on import.

Inputs are columns of the *prepared frame* (:mod:`bqxdask.features.prepare`):

- ``ohlc``: ``open_idx, high_idx, low_idx, idx``
- ``idx``: the index series (SPEC §4.1)
- ``bqx``: the BQX series ``w{series_window}_bqx_return`` (SPEC §4.2), itself ``series_window``
  rows behind the index; its leading NaNs are cut off before a family sees it.

``families`` arguments below are the ``families`` config section
(:data:`bqxdask.config.FamiliesConfig`), which is built from this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported on use: loading the config reads this module, not frames
    import pandas as pd

    from ..results import FeatureBlock

from ..errors import ConfigError
from . import bollinger, bqx, reg, rolling_stats, technical
from .params import LEVEL, SCALE_FREE

#: bump when a formula changes, so that old checkpoints stop matching
FEATURE_SCHEMA_VERSION = 1

SeriesFn = Callable[..., Mapping[str, np.ndarray]]


def stable_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (used for config hashes)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Family:
    """One table family: ``<name>_<pair>`` in SQL, ``<parquet_dir>/<name>/`` in Parquet."""

    name: str
    input: str  # "ohlc" | "idx" | "bqx"
    section: str  # the config section holding the parameters: families.<section>
    columns: Callable[[Any], list[str]]
    lookback: Callable[[Any], int]  # earlier rows needed by one output row, on its input series
    kernel: SeriesFn  # kernel(x, **params) or kernel(open, high, low, close, **params)
    kwargs: Callable[[Any], dict[str, Any]]  # params -> keyword arguments of the kernel
    summary: str

    def params(self, families: Any) -> Any:
        return getattr(families, self.section)

    def column_names(self, families: Any) -> list[str]:
        return self.columns(self.params(families))

    def total_lookback(self, families: Any) -> int:
        """Rows of *index* history one output row needs, the input series' own lag included."""
        return self.lookback(self.params(families)) + series_lookback(self.input, families)

    def config_hash(self, families: Any, baseline: str) -> str:
        """What the values of this family depend on, besides the bars: a checkpoint key."""
        deps: dict[str, Any] = {
            "family": self.name,
            "params": asdict(self.params(families)),
            "baseline": baseline,
            "schema": FEATURE_SCHEMA_VERSION,
        }
        if self.input == "bqx":
            deps["series_window"] = families.bqx.series_window
        return stable_hash(deps)

    def compute(self, prepared: pd.DataFrame, families: Any) -> pd.DataFrame:
        """Run the family on a prepared frame; one output row per input row."""
        return self.compute_block(prepared, families).frame()

    def compute_block(self, prepared: pd.DataFrame, families: Any) -> FeatureBlock:
        """Run the family on a prepared frame: its columns as one :class:`FeatureBlock`.

        The columns travel as one float64 block (columns × rows): a kernel that fills such a
        block (reg) hands it over without a copy, others are copied in once.
        """
        from ..results import FeatureBlock

        params = self.params(families)
        names = self.columns(params)
        kwargs = self.kwargs(params)
        n = len(prepared)
        first = 0
        if self.input == "ohlc":
            arrays = [prepared[c].to_numpy("float64") for c in ("open_idx", "high_idx", "low_idx", "idx")]
            result = dict(self.kernel(*arrays, **kwargs))
        else:
            x = prepared[self.input].to_numpy("float64")
            finite = np.flatnonzero(np.isfinite(x))
            first = int(finite[0]) if len(finite) else n
            if len(finite) and len(finite) != n - first:
                raise ValueError(f"{self.name}: input series {self.input} has an interior NaN")
            result = dict(self.kernel(x[first:], **kwargs)) if first < n else {}
        missing = [c for c in names if c not in result]
        if missing and (result or self.input == "ohlc"):
            raise AssertionError(f"{self.name} did not produce {missing}")
        return FeatureBlock(prepared.index, tuple(names), _column_block(result, names, n, first))


def _column_block(result: dict, names: Sequence[str], n: int, first: int) -> np.ndarray:
    """``result``'s columns as one C-contiguous (len(names), n) float64 array, NaN before ``first``."""
    arrays = [np.asarray(result[c], dtype="float64") for c in names] if result else []
    base = arrays[0].base if arrays else None
    if (
        first == 0
        and isinstance(base, np.ndarray)
        and base.dtype == np.float64
        and base.flags.c_contiguous
        and base.shape == (len(names), n)
        and all(a.base is base and a.ctypes.data == base.ctypes.data + i * n * 8 for i, a in enumerate(arrays))
    ):
        return base
    block = np.full((len(names), n), np.nan)
    for i, a in enumerate(arrays):
        block[i, first:] = a
    return block


def series_lookback(series: str, families: Any) -> int:
    return families.bqx.series_window if series == "bqx" else 0


# --------------------------------------------------------------------------------------------
# The families, in SPEC §4 order
# --------------------------------------------------------------------------------------------
def _on_both(section: str, module: Any, kernel: SeriesFn, summary: str) -> tuple[Family, ...]:
    """``<section>_rate`` on the index and ``<section>_bqx`` on the BQX series, from one family module."""
    return tuple(
        Family(
            name=f"{section}_{suffix}",
            input=series,
            section=section,
            columns=module.param_columns,
            lookback=module.lookback,
            kernel=kernel,
            kwargs=module.kernel_kwargs,
            summary=summary.format(what),
        )
        for suffix, series, what in (("rate", "idx", "the index"), ("bqx", "bqx", "the BQX series"))
    )


FAMILIES: tuple[Family, ...] = (
    Family(
        name="bqx",
        input="idx",
        section="bqx",
        columns=bqx.param_columns,
        lookback=bqx.lookback,
        kernel=bqx.bqx,
        kwargs=bqx.kernel_kwargs,
        summary="BQX momentum of the index over the W bars before t (SPEC §4.2)",
    ),
    *_on_both(
        "bollinger", bollinger, bollinger.bollinger, "Bollinger bands (SMA ± k·σ, width, %b, slope) of {} (SPEC §4.3)"
    ),
    *_on_both(
        "statistics",
        rolling_stats,
        rolling_stats.statistics,
        "rolling mean, std, quantiles, skew, kurtosis, z-score, lag-1 autocorrelation of {} (SPEC §4.4)",
    ),
    Family(
        name="technical_rate",
        input="ohlc",
        section="technical",
        columns=technical.rate_columns,
        lookback=technical.lookback,
        kernel=technical.technical_rate,
        kwargs=technical.kernel_kwargs,
        summary="TA-Lib RSI, MACD, STOCH, ADX/DI, CCI, WILLR, ROC, ATR of the index bars (SPEC §4.5)",
    ),
    Family(
        name="technical_bqx",
        input="bqx",
        section="technical",
        columns=technical.bqx_columns,
        lookback=technical.lookback,
        kernel=technical.technical_bqx,
        kwargs=technical.kernel_kwargs,
        summary="TA-Lib RSI, MACD, MOM of the BQX series (SPEC §4.5)",
    ),
    *_on_both("reg", reg, reg.reg, "rolling polynomial regression of {} over the last W bars, t included (SPEC §4.6)"),
)

#: the family names, in SPEC §4 order (the default of ``families.enabled``)
NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)

#: the ``[families.<section>]`` parameter classes, each with its SPEC §2 defaults and ``check(key)``
SECTIONS: tuple[tuple[str, type], ...] = (
    ("bqx", bqx.BqxParams),
    ("bollinger", bollinger.BollingerParams),
    ("statistics", rolling_stats.StatisticsParams),
    ("technical", technical.TechnicalParams),
    ("reg", reg.RegParams),
)

_BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def check_names(names: Iterable[str], key: str) -> tuple[str, ...]:
    """``names`` if each is a family of :data:`FAMILIES`, else a ConfigError naming ``key``."""
    names = tuple(names)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ConfigError(f"{key}: unknown family {unknown[0]!r}; fix: use some of {', '.join(NAMES)}")
    return names


def get(name: str) -> Family:
    return _BY_NAME[name]


def all_families() -> dict[str, Family]:
    """The families by name, in SPEC §4 order."""
    return dict(_BY_NAME)


def enabled(families: Any, only: list[str] | tuple[str, ...] | None = None) -> list[Family]:
    names = list(only) if only is not None else list(families.enabled)
    return [_BY_NAME[n] for n in names]


def warmup_rows(families: Any, only: list[str] | tuple[str, ...] | None = None) -> int:
    """Rows of accepted history a partition needs before its first row: max of the lookbacks."""
    return max((f.total_lookback(families) for f in enabled(families, only)), default=0)


# --------------------------------------------------------------------------------------------
# Feature kinds (SPEC §9): is a column a price level or scale-free?
# --------------------------------------------------------------------------------------------
KINDS = (LEVEL, SCALE_FREE)

#: the kind of every column stem, per config section, as each family module declares it; a
#: column whose stem is missing has no kind, and :func:`column_kind` refuses it (a test checks
#: every registered column)
STEM_KINDS: dict[str, dict[str, str]] = {
    section: module.STEM_KINDS
    for section, module in (
        ("bqx", bqx),
        ("bollinger", bollinger),
        ("statistics", rolling_stats),
        ("technical", technical),
        ("reg", reg),
    )
}


def column_stem(column: str) -> str:
    """``bb_middle_20`` → ``bb_middle_{N}``: the column's name with each number written ``{N}``."""
    return re.sub(r"\d+", "{N}", column)


def column_kind(family: str, column: str) -> str:
    """``level`` or ``scale_free`` for one column of a registered family (see :data:`STEM_KINDS`).

    Raises KeyError naming the column when its kind is not declared.
    """
    fam = _BY_NAME[family]
    kind = STEM_KINDS.get(fam.section, {}).get(column_stem(column))
    if kind is None:
        raise KeyError(
            f"{family}.{column} declares no kind; fix: add {column_stem(column)!r} to "
            f"the STEM_KINDS of the module of section {fam.section!r} ({fam.kernel.__module__})"
        )
    return SCALE_FREE if fam.input == "bqx" else kind
