"""Real FX bars from ../shared/data/fx (read in place; never copied into the repository)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The shared real-data folder: $BQX_FX_DATA, else ../shared/data/fx next to the checkout."""
    candidates = []
    if os.environ.get("BQX_FX_DATA"):
        candidates.append(Path(os.environ["BQX_FX_DATA"]))
    candidates += [p / "shared" / "data" / "fx" for p in REPO.parents]
    candidates.append(Path("/work/shared/data/fx"))
    for c in candidates:
        if (c / "histdata").is_dir():
            return c
    raise FileNotFoundError(
        "real FX data not found: set BQX_FX_DATA to the shared/data/fx folder (looked in ../shared/data/fx)"
    )


def histdata_files() -> list[Path]:
    return sorted((data_dir() / "histdata").glob("DAT_ASCII_EURUSD_M1_*.csv"))


def eurusd(months: int = 6) -> pd.DataFrame:
    """EURUSD 2017-01.. (HistData, fixed UTC-05:00 converted to UTC), first ``months`` files.

    A fresh copy on every call: the parsed files are cached, but a test that edits its bars
    in place must not change what the tests after it read (no dependence on test order).
    """
    return _eurusd(months).copy()


@functools.cache
def _eurusd(months: int) -> pd.DataFrame:
    frames = []
    for path in histdata_files()[:months]:
        raw = pd.read_csv(path, sep=";", header=None, names=["t", "open", "high", "low", "close", "volume"])
        t = pd.to_datetime(raw.pop("t"), format="%Y%m%d %H%M%S") + pd.Timedelta(hours=5)
        raw.insert(0, "time", t.dt.tz_localize("UTC"))
        frames.append(raw)
    out = pd.concat(frames, ignore_index=True).sort_values("time", kind="stable")
    return out.drop_duplicates("time").reset_index(drop=True)


def fxcm_mid(pair: str) -> pd.DataFrame:
    """FXCM GBPUSD 2012-02 or USDJPY 2013-02, mid of bid and ask (a fresh copy, as :func:`eurusd`)."""
    return _fxcm_mid(pair).copy()


@functools.cache
def _fxcm_mid(pair: str) -> pd.DataFrame:
    folder = data_dir() / "fxcm"
    (bid_path,) = folder.glob(f"fxcm-{pair}-m1-bid-*.csv")
    (ask_path,) = folder.glob(f"fxcm-{pair}-m1-ask-*.csv")
    bid, ask = pd.read_csv(bid_path), pd.read_csv(ask_path)
    assert (bid["timestamp"] == ask["timestamp"]).all()
    out = pd.DataFrame({"time": pd.to_datetime(bid["timestamp"], utc=True)})
    for c in ("open", "high", "low", "close"):
        out[c] = (bid[c].to_numpy() + ask[c].to_numpy()) / 2
    out["volume"] = 0
    return out


def close_enough(actual: np.ndarray, expected: np.ndarray, rel: float, *, floor: float = 1.0) -> np.ndarray:
    """Elementwise SPEC §4.9 check: |Δ| ≤ rel·max(floor, |ref|), NaN only where ref is NaN."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    both_nan = np.isnan(actual) & np.isnan(expected)
    tol = rel * np.maximum(floor, np.abs(expected))
    with np.errstate(invalid="ignore"):
        ok = np.abs(actual - expected) <= tol
    return both_nan | ok


def assert_close(actual, expected, rel: float, *, floor: float = 1.0, name: str = "") -> None:
    ok = close_enough(actual, expected, rel, floor=floor)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        i = bad[0]
        a, e = np.asarray(actual, float)[i], np.asarray(expected, float)[i]
        raise AssertionError(
            f"{name}: {len(bad)} of {len(ok)} values outside tolerance {rel}; first at row {i}: "
            f"got {a!r}, expected {e!r} (|Δ| = {abs(a - e):.3g})"
        )
