"""Synthetic bars for the stage-3 statistics tests: features → Parquet → ``run_select``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bqxdask import compute_features
from bqxdask.config import build_config
from bqxdask.outputs import parquet
from bqxdask.select import run_select

MONTH = "2020-02"


def bars(seed: int, rows: int = 20_000, phi: float = 0.0, sigma: float = 1e-4) -> pd.DataFrame:
    """One-minute bars from 2020-02-01 whose log returns are AR(1) with coefficient ``phi``.

    ``phi = 0`` is a random walk: nothing about the future can be predicted, the path length
    included (constant volatility). Open is the previous close; high/low add a half-normal wick.
    """
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, sigma, rows)
    r = np.empty(rows)
    r[0] = e[0]
    for t in range(1, rows):
        r[t] = phi * r[t - 1] + e[t]
    close = 1.1 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[1.1], close[:-1]])
    wick = np.abs(rng.normal(0.0, sigma / 2, (2, rows)))
    return pd.DataFrame(
        {
            "time": pd.date_range(f"{MONTH}-01", periods=rows, freq="min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick[0]),
            "low": np.minimum(open_, close) * (1 - wick[1]),
            "close": close,
            "volume": 0,
        }
    )


def write_features(frame: pd.DataFrame, root: Path, pair: str = "eurusd") -> None:
    """Every registered family of ``frame`` as the pipeline's Parquet unit for MONTH."""
    for family, out in compute_features(frame).items():
        parquet.write_unit(
            str(root), family, pair, MONTH, out.index.as_unit("us").asi8, list(out.columns), out.to_numpy(), {}
        )


def select(root: Path, client, **select_params) -> tuple[pd.DataFrame, dict]:
    """``run_select`` on the Parquet under ``root``; (ranking.csv, metrics.json)."""
    cfg = build_config(
        {
            "run": {"pairs": ["eurusd"], "start": MONTH, "end": MONTH, "runs_dir": str(root / "runs")},
            "output": {"parquet_dir": str(root)},
            "families": {"select": select_params},
        }
    )
    assert run_select(cfg, out=io.StringIO(), client=client) == 0
    folder = root / "selection" / "pair=eurusd"
    return pd.read_csv(folder / "ranking.csv"), json.loads((folder / "metrics.json").read_text())
