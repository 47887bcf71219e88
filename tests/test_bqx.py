"""bqx family (SPEC §4.2) against an independent whole-series computation on real bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqxdask import compute_features
from bqxdask.config import FamiliesConfig
from bqxdask.features import registry
from bqxdask.testing import assert_spec, eurusd, fxcm_mid

WINDOWS = (15, 30, 45, 60, 75)


def reference_bqx(close: np.ndarray, windows=WINDOWS) -> dict[str, np.ndarray]:
    """Plain pandas rolling over the shifted index: an independent formulation of §4.2."""
    idx = pd.Series(100.0 * close / close[0])
    out = {}
    for w in windows:
        past = idx.shift(1)
        s = past.rolling(w).sum()
        out[f"w{w}_bqx_return"] = ((s - w * idx) / idx).to_numpy()
        out[f"w{w}_bqx_endpoint"] = ((idx.shift(w) - idx) / idx).to_numpy()
        out[f"w{w}_bqx_max"] = past.rolling(w).max().to_numpy()
        out[f"w{w}_bqx_min"] = past.rolling(w).min().to_numpy()
        out[f"w{w}_bqx_avg"] = past.rolling(w).mean().to_numpy()
        out[f"w{w}_bqx_std"] = past.rolling(w).apply(lambda a: np.std(a, ddof=1), raw=True).to_numpy()
    m = max(windows)
    out["agg_bqx_range"] = (out[f"w{m}_bqx_max"] - out[f"w{m}_bqx_min"]) / idx.to_numpy()
    out["agg_bqx_volatility"] = out[f"w{m}_bqx_std"] / idx.to_numpy()
    out["rate_index"] = idx.to_numpy()
    return out


@pytest.mark.parametrize(
    "bars",
    [pytest.param(lambda: eurusd(2), id="eurusd-histdata"), pytest.param(lambda: fxcm_mid("usdjpy"), id="usdjpy-fxcm")],
)
def test_bqx_equals_independent_whole_series(bars):
    frame = bars()
    got = compute_features(frame, ["bqx"])["bqx"]
    ref = reference_bqx(frame["close"].to_numpy())
    assert list(got.columns) == registry.get("bqx").column_names(FamiliesConfig())
    assert len(got) == len(frame)
    for name, expected in ref.items():
        assert_spec(got[name].to_numpy(), expected, "bqx", name, name=name)
    # warm-up rows are NaN, the first full window is defined
    for w in WINDOWS:
        col = got[f"w{w}_bqx_return"].to_numpy()
        assert np.isnan(col[:w]).all() and np.isfinite(col[w:]).all()


def test_bqx_rows_depend_only_on_the_past():
    frame = eurusd(1).iloc[:5000].copy()
    base = compute_features(frame, ["bqx"])["bqx"]
    perturbed = frame.copy()
    perturbed.loc[3000:, ["open", "high", "low", "close"]] *= 1.01
    after = compute_features(perturbed, ["bqx"])["bqx"]
    pd.testing.assert_frame_equal(base.iloc[:3000], after.iloc[:3000])
    assert not np.allclose(base.iloc[3000:].to_numpy(), after.iloc[3000:].to_numpy(), equal_nan=True)
