"""Helpers for pipeline tests: configs pointing at the test database, tolerance-aware comparisons."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fxdata import assert_close

from bqxdask.config import build_config

_counter = itertools.count()


def unique_schema(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}"


def make_config(url: str, tmp: Path, *, source_schema: str, output_schema: str, pairs, start: str, end: str,
                families: list[str] | None = None, extra: dict[str, Any] | None = None):
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


def tolerance(family: str, column: str) -> tuple[float, str]:
    """SPEC §4.9 relative tolerance and its kind for one output column."""
    if family.startswith("technical"):
        return 1e-7, "abs1"
    if family.startswith("statistics") and (column.startswith("skew") or column.startswith("kurt")):
        return 1e-6, "abs1"
    if family.startswith("reg"):
        if column.endswith("_r2"):
            return 1e-8, "absolute"
        if column.endswith("_rmse"):
            return 1e-7, "relative"
        return 1e-9, "scale"
    return 1e-9, "abs1"


def assert_family_equal(family: str, got: pd.DataFrame, ref: pd.DataFrame, *, label: str = "") -> None:
    """Every column of ``got`` within SPEC §4.9 of ``ref`` (same index, NaN exactly where ref is NaN)."""
    assert list(got.columns) == list(ref.columns), f"{label} {family}: columns differ"
    assert got.index.equals(ref.index), f"{label} {family}: rows differ ({len(got)} vs {len(ref)})"
    for col in ref.columns:
        rel, kind = tolerance(family, col)
        a, e = got[col].to_numpy(float), ref[col].to_numpy(float)
        if kind == "abs1":
            assert_close(a, e, rel, floor=1.0, name=f"{label} {family}.{col}")
        elif kind == "absolute":
            assert_close(a, e, rel, floor=1.0, name=f"{label} {family}.{col}")  # max(1,|r2|)=1 for r2 ≤ 1
        elif kind == "relative":
            floor = 1e-12 * max(1.0, float(np.nanmedian(np.abs(e))) if np.isfinite(e).any() else 1.0)
            assert_close(a, e, rel, floor=floor / rel, name=f"{label} {family}.{col}")
        else:
            finite = np.abs(e[np.isfinite(e)])
            s = float(np.median(finite)) if len(finite) else 1.0
            assert_close(a, e, rel, floor=s, name=f"{label} {family}.{col}")
