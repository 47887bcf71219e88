"""Helpers for pipeline tests: configs pointing at the test database, tolerance-aware comparisons."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bqxdask.config import build_config
from bqxdask.testing import assert_spec

_counter = itertools.count()


def unique_schema(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}"


def make_config(
    url: str,
    tmp: Path,
    *,
    source_schema: str,
    output_schema: str,
    pairs,
    start: str,
    end: str,
    families: list[str] | None = None,
    extra: dict[str, Any] | None = None,
):
    raw: dict[str, Any] = {
        "database": {"url": url, "source_schema": source_schema, "output_schema": output_schema},
        "cluster": {"n_workers": 2, "dashboard_address": ":0"},
        "run": {"pairs": list(pairs), "start": start, "end": end, "runs_dir": str(tmp / "runs")},
        "output": {"parquet_dir": str(tmp / "parquet")},
    }
    if families is not None:
        raw["families"] = {"enabled": families}
    for section, values in (extra or {}).items():
        raw.setdefault(section, {}).update(values)
    return build_config(raw)


def assert_family_equal(family: str, got: pd.DataFrame, ref: pd.DataFrame, *, label: str = "") -> None:
    """Every column of ``got`` within SPEC §4.9 of ``ref`` (same index, NaN exactly where ref is NaN)."""
    assert list(got.columns) == list(ref.columns), f"{label} {family}: columns differ"
    assert got.index.equals(ref.index), f"{label} {family}: rows differ ({len(got)} vs {len(ref)})"
    for col in ref.columns:
        a, e = got[col].to_numpy(float), ref[col].to_numpy(float)
        noise = None
        if family.startswith("reg") and col.endswith("_rmse"):  # rmse near 0: 1e-12 of the column's scale
            noise = 1e-12 * max(1.0, float(np.nanmedian(np.abs(e))) if np.isfinite(e).any() else 1.0)
        assert_spec(a, e, family, col, noise=noise, name=f"{label} {family}.{col}")
