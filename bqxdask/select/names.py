"""Stage 3 names: features, lags, targets, feature kinds (SPEC §9, §4.7).

A feature is ``<family>__<column>`` (``bqx__w15_bqx_return``), its lagged copy
``<family>__<column>__lag<k>``; :func:`parse_feature` reads them back. Targets are
``target_h{h}`` (the return target of §4.7) and ``target_vol_h{h}`` (the control target).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import SelectParams
from ..errors import ConfigError

SEP = "__"
LAG_RE = re.compile(r"lag(\d+)")
#: the family that yields the targets (SPEC §4.7) and the index level
TARGET_FAMILY = "bqx"
LEVEL_COLUMN = "rate_index"
RETURN, CONTROL = "return", "control"


def feature_name(family: str, column: str, lag: int = 0) -> str:
    """``bqx__w15_bqx_return`` (lag 0) or ``bqx__w15_bqx_return__lag60``."""
    base = f"{family}{SEP}{column}"
    return base if lag == 0 else f"{base}{SEP}lag{lag}"


def parse_feature(name: str) -> tuple[str, str, int]:
    """Inverse of :func:`feature_name`: ``(family, column, lag)``."""
    parts = name.split(SEP)
    if len(parts) == 3 and LAG_RE.fullmatch(parts[2]):
        return parts[0], parts[1], int(parts[2][3:])
    if len(parts) == 2:
        return parts[0], parts[1], 0
    raise ValueError(f"{name!r} is not a stage-3 feature name (<family>__<column>[__lag<k>])")


def feature_kind(name: str) -> str:
    """``level`` or ``scale_free``, as the registry declares the feature's column (a lag keeps it)."""
    from ..features import registry

    family, column, _ = parse_feature(name)
    return registry.column_kind(family, column)


@dataclass(frozen=True)
class Target:
    """One target column: ``target_h15`` (return) or ``target_vol_h15`` (control)."""

    horizon: int
    kind: str  #: RETURN or CONTROL

    @property
    def name(self) -> str:
        return target_name(self.horizon) if self.kind == RETURN else vol_target_name(self.horizon)


def target_name(horizon: int) -> str:
    return f"target_h{horizon}"


def vol_target_name(horizon: int) -> str:
    return f"target_vol_h{horizon}"


def targets_for(horizons: Sequence[int], control: bool) -> tuple[Target, ...]:
    """The return targets, ascending horizon, then (with ``control``) the control targets."""
    out = [Target(h, RETURN) for h in horizons]
    return tuple(out + ([Target(h, CONTROL) for h in horizons] if control else []))


def validate_horizons(horizons: Sequence[int] | None, params: SelectParams) -> tuple[int, ...]:
    """The horizons to fit, ascending; ConfigError for a non-positive or repeated one."""
    hs = tuple(params.horizons if horizons is None else horizons)
    key = "--horizons" if horizons is not None else "families.select.horizons"
    if not hs:
        raise ConfigError(f"{key} is empty; fix: give at least one horizon in bars, e.g. 15")
    for h in hs:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ConfigError(
                f"{key}: {h!r} is not a horizon; fix: horizons are whole numbers of bars >= 1, e.g. 15,30,45,60,75"
            )
    if len(set(hs)) != len(hs):
        raise ConfigError(f"{key} lists a horizon twice; fix: list each horizon once")
    if not params.lags or len(set(params.lags)) != len(params.lags):
        raise ConfigError(
            "families.select.lags must list each lag once and at least one (0 = the feature "
            "itself); fix: e.g. lags = [0, 60]"
        )
    return tuple(sorted(hs))
