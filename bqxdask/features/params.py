"""What the family modules share: the check of a list of window lengths (SPEC §2) and the feature kinds.

Each family module holds its own frozen ``*Params`` dataclass (the SPEC §2 defaults) with a
``check(key)`` method; :mod:`bqxdask.config` gathers them into the ``[families.*]`` section
through :data:`bqxdask.features.registry.SECTIONS`. Nothing here imports the config.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

#: Feature kinds (SPEC §9): each family module declares the kind of every column *stem* (its
#: name with each number written ``{N}``) in its ``STEM_KINDS``, for the family computed on the
#: index (input ``idx`` or ``ohlc``). A ``level`` moves with where the price is (a mean, a band,
#: a quantile, a regression's constant or prediction): over months it wanders, so a forest can
#: learn the training period's price range from it. A ``scale_free`` column measures how the
#: price moves (returns, spreads, widths, oscillators, slopes, r²). Families on the BQX series
#: (input ``bqx``) are scale-free whole: that series is itself a return.
LEVEL = "level"
SCALE_FREE = "scale_free"


def check_windows(windows: Sequence[int], key: str, *, minimum: int, maximum: int | None = None) -> None:
    """A non-empty list of distinct windows within ``minimum``..``maximum``, else a ConfigError naming ``key``."""
    if not windows:
        raise ConfigError(f"{key} is empty; fix: list at least one window")
    bad = [w for w in windows if w < minimum]
    if bad:
        raise ConfigError(f"{key} contains {bad[0]}, below the minimum {minimum}; fix: use windows >= {minimum}")
    if maximum is not None:
        bad = [w for w in windows if w > maximum]
        if bad:
            raise ConfigError(f"{key} contains {bad[0]}, above the maximum {maximum}; fix: use windows <= {maximum}")
    if len(set(windows)) != len(windows):
        raise ConfigError(f"{key} lists a window twice; fix: list each window once")
