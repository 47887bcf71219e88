"""Benchmark of the ``statistics_rate`` family (SPEC §4.4) against pandas' rolling equivalents.

Run ``.venv/bin/python benchmarks/bench_stats.py``. One run measures, on EURUSD 2017-01..02
(HistData, 60,279 one-minute bars, through ``bqxdask.testing``), windows 15, 30, 60, 120:

1. ``bqxdask.compute_features(bars, families=["statistics_rate"])`` (bars in, DataFrame
   out: bar checks, the index, the kernel, the frame) against pandas on the index it
   computes: ``Series.rolling(N)`` ``mean, std, min, max, median, quantile(.25/.75,
   'linear'), skew, kurt``, ``corr`` with ``shift(1)``, and iqr and zscore from those — the
   same 48 columns. Target (issue 15 goal 3): ≤ 0.33× pandas' time.
2. what numba replaces: the kernel against the per-window numpy code it replaced (sorted
   blocks of ``sliding_window_view``, two-pass moments).
3. accuracy against the tests' exact reference (``bqxdask.testing.reference_statistics``:
   numpy and scipy on every window): worst |Δ|/tolerance per column, tolerance as SPEC §4.9,
   for bqxdask and for pandas, and the rows where a column is NaN in one but not the other.
4. cold start in fresh processes: ``import numba``, and the first call with an empty
   numba cache (compilation) and with a filled one (cache load). Every process that computes
   statistics pays one of them once (the CLI's Dask workers included).

Timings are medians of interleaved repetitions in this one process, wall clock and CPU time
(``time.process_time``: on a shared machine it is the less disturbed of the two).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from bqxdask import compute_features
from bqxdask.features import rolling_stats
from bqxdask.testing import STATISTICS_WINDOWS as WINDOWS
from bqxdask.testing import eurusd, reference_statistics, tolerance, tolerance_ratio

REPO = Path(__file__).resolve().parents[1]

TARGET = 0.33
REPEAT = 9
FAMILY = "statistics_rate"


def pandas_statistics(x: pd.Series) -> dict[str, pd.Series]:
    """The 48 columns of SPEC §4.4 from pandas' rolling built-ins."""
    out = {}
    lagged = x.shift(1)
    for n in WINDOWS:
        r = x.rolling(n)
        mean, std = r.mean(), r.std()
        q25, q75 = r.quantile(0.25, interpolation="linear"), r.quantile(0.75, interpolation="linear")
        out.update(
            {
                f"mean_{n}": mean,
                f"std_{n}": std,
                f"min_{n}": r.min(),
                f"max_{n}": r.max(),
                f"median_{n}": r.median(),
                f"q25_{n}": q25,
                f"q75_{n}": q75,
                f"iqr_{n}": q75 - q25,
                f"skew_{n}": r.skew(),
                f"kurt_{n}": r.kurt(),
                f"zscore_{n}": (x - mean) / std,
                f"autocorr1_{n}": r.corr(lagged),
            }
        )
    return out


def _quantile(s: np.ndarray, q: float) -> np.ndarray:
    h = (s.shape[1] - 1) * q
    j = int(np.floor(h))
    g = h - j
    if g == 0.0:
        return s[:, j].copy()
    a, b = s[:, j], s[:, j + 1]
    return a + (b - a) * g if g < 0.5 else b - (b - a) * (1.0 - g)


def numpy_statistics(x: np.ndarray, block: int = 2048) -> dict[str, np.ndarray]:
    """The kernel numba replaced (bqxdask before issue 15), condensed: per block of windows
    a sort for the order statistics and two-pass moments relative to the last value."""
    out = {}
    for n in WINDOWS:
        cols = {s: np.full(len(x), np.nan) for s in rolling_stats.STATS}
        for j0 in range(0, len(x) - n + 1, block):
            v = sliding_window_view(x, n)[j0 : j0 + block]
            rows = slice(j0 + n - 1, j0 + n - 1 + len(v))
            s = np.sort(v, axis=1)
            last = v[:, -1]
            d = v - last[:, None]
            d_mean = d.mean(axis=1)
            dev = d - d_mean[:, None]
            dev2 = dev * dev
            m2 = dev2.sum(axis=1) / n
            m3 = np.einsum("ij,ij->i", dev2, dev) / n
            m4 = np.einsum("ij,ij->i", dev2, dev2) / n
            m2_live = np.where(s[:, 0] == s[:, -1], np.nan, m2)
            with np.errstate(divide="ignore", invalid="ignore"):
                cols["skew"][rows] = m3 / m2_live**1.5 * (np.sqrt(n * (n - 1.0)) / (n - 2.0))
                cols["kurt"][rows] = ((n * n - 1.0) * (m4 / m2_live**2) - 3.0 * (n - 1.0) ** 2) / ((n - 2) * (n - 3))
                cols["zscore"][rows] = -d_mean / np.sqrt(m2_live * (n / (n - 1)))
            cols["mean"][rows], cols["std"][rows] = last + d_mean, np.sqrt(m2 * (n / (n - 1)))
            cols["min"][rows], cols["max"][rows], cols["median"][rows] = s[:, 0], s[:, -1], _quantile(s, 0.5)
            cols["q25"][rows], cols["q75"][rows] = _quantile(s, 0.25), _quantile(s, 0.75)
            cols["iqr"][rows] = cols["q75"][rows] - cols["q25"][rows]
        for j0 in range(0, len(x) - n, block):
            v = sliding_window_view(x, n + 1)[j0 : j0 + block]
            ca, cb = v[:, 1:] - v[:, -1:], v[:, :-1] - v[:, -2:-1]
            ca -= ca.mean(axis=1)[:, None]
            cb -= cb.mean(axis=1)[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                cols["autocorr1"][j0 + n : j0 + n + len(v)] = np.einsum("ij,ij->i", ca, cb) / np.sqrt(
                    np.einsum("ij,ij->i", ca, ca) * np.einsum("ij,ij->i", cb, cb)
                )
        out.update({f"{s}_{n}": c for s, c in cols.items()})
    return out


def timed(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each function, the functions interleaved."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    return {k: (float(np.median(wall[k])), float(np.median(cpu[k]))) for k in fns}


def worst_ratio(got: np.ndarray, ref: np.ndarray, name: str) -> tuple[float, int]:
    """(worst |Δ|/tolerance where both are numbers, rows NaN in exactly one)."""
    both = np.isfinite(got) & np.isfinite(ref)
    ratio = tolerance_ratio(got[both], ref[both], tolerance(FAMILY, name, ref[both]))
    return float(ratio.max(initial=0.0)), int((np.isnan(got) != np.isnan(ref)).sum())


COLD = """
import time
t0 = time.perf_counter()
import numba
t1 = time.perf_counter()
import numpy as np
from bqxdask.features import rolling_stats
t2 = time.perf_counter()
rolling_stats.statistics(np.linspace(100.0, 101.0, 500), windows={windows})
t3 = time.perf_counter()
print(t1 - t0, t3 - t2)
"""


def cold_start() -> dict[str, float]:
    """Seconds of ``import numba`` and of the first call, compiling and loading the cache."""
    code = COLD.format(windows=tuple(WINDOWS))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="bqx-numba-cache-") as cache:
        env["NUMBA_CACHE_DIR"] = cache
        runs = []
        for _ in range(2):  # an empty cache, then the one the first run filled
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            runs.append([float(v) for v in res.stdout.split()])
    return {"import_numba": runs[1][0], "compile": runs[0][1], "cache_load": runs[1][1]}


def main() -> dict[str, float]:
    bars = eurusd(2)
    results: dict[str, float] = {}
    t0 = time.perf_counter()
    ours = compute_features(bars, [FAMILY])[FAMILY]
    first = time.perf_counter() - t0
    idx = compute_features(bars, ["bqx"])["bqx"]["rate_index"]
    x = idx.to_numpy()
    series = pd.Series(x)
    n = len(x)
    print(
        f"bench_stats: EURUSD 2017-01..02, {n} rows, windows {', '.join(map(str, WINDOWS))}; "
        f"medians of {REPEAT} interleaved repetitions\n"
    )

    t = timed(
        {
            "bqxdask": lambda: compute_features(bars, [FAMILY]),
            "pandas": lambda: pandas_statistics(series),
            "kernel": lambda: rolling_stats.statistics(x, windows=WINDOWS),
            "numpy": lambda: numpy_statistics(x),
        },
        REPEAT,
    )
    rows = [
        ("compute_features(bars, ['statistics_rate'])", "bqxdask", "48 columns, bars in, DataFrame out"),
        ("pandas rolling equivalents on the index", "pandas", "the same 48 columns"),
        ("statistics kernel alone (numba)", "kernel", "what compute_features spends in the family"),
        ("the per-window numpy kernel numba replaced", "numpy", "kernel only, as before issue 15"),
    ]
    width = max(len(label) for label, _, _ in rows)
    print(f"{'measurement':<{width}}  {'wall s':>8}  {'CPU s':>8}  {'rows/s':>11}  note")
    for label, key, note in rows:
        wall, cpu = t[key]
        print(f"{label:<{width}}  {wall:8.4f}  {cpu:8.4f}  {n / wall:11,.0f}  {note}")
    results["ratio_wall"] = t["bqxdask"][0] / t["pandas"][0]
    results["ratio_cpu"] = t["bqxdask"][1] / t["pandas"][1]
    results["numba_over_numpy_cpu"] = t["numpy"][1] / t["kernel"][1]
    results["first_call_in_process"] = first
    print(f"\nnumba kernel vs the numpy kernel it replaced: {results['numba_over_numpy_cpu']:.1f}x faster (CPU)")

    cold = cold_start()
    results.update({f"cold_{k}": v for k, v in cold.items()})
    print(
        f"cold start in a fresh process: import numba {cold['import_numba']:.2f} s; first call "
        f"{cold['compile']:.2f} s with an empty cache (compiling), {cold['cache_load']:.2f} s with "
        f"the cache filled; in this process the first compute_features took {first:.2f} s"
    )

    ref = reference_statistics(x)
    theirs = pandas_statistics(series)
    print(
        "\naccuracy against the tests' reference (numpy/scipy per window), worst |Δ|/tolerance "
        "(SPEC §4.9: ≤ 1); NaN≠ = rows NaN in one of the two only"
    )
    print(f"{'column':<14} {'tol':>6}  {'bqxdask':>10} {'NaN≠':>5}  {'pandas':>12} {'NaN≠':>5}")
    worst_ours = worst_pandas = 0.0
    misses = []
    for name, expected in ref.items():
        rel = float(tolerance(FAMILY, name, 0.0))  # the relative bound: rel·max(1, |ref|)
        ro, no = worst_ratio(ours[name].to_numpy(), expected, name)
        rp, npd = worst_ratio(theirs[name].to_numpy(), expected, name)
        worst_ours, worst_pandas = max(worst_ours, ro), max(worst_pandas, rp)
        if rp > 1 or npd:
            misses.append(name)
        print(f"{name:<14} {rel:6.0e}  {ro:10.2e} {no:5d}  {rp:12.3g} {npd:5d}")
    results["worst_tol_ratio_bqxdask"] = worst_ours
    results["worst_tol_ratio_pandas"] = worst_pandas
    print(
        f"\npandas misses SPEC §4.9 in {len(misses)} of {len(ref)} columns (worst {worst_pandas:.3g}x the "
        f"tolerance){': ' + ', '.join(misses) if misses else ''}; bqxdask worst {worst_ours:.2g}x"
    )
    ok = results["ratio_cpu"] <= TARGET and results["ratio_wall"] <= TARGET
    print(
        f"statistics_rate / pandas time: {results['ratio_wall']:.2f} wall, {results['ratio_cpu']:.2f} CPU "
        f"(target <= {TARGET}: {'ok' if ok else 'NOT MET'})"
    )
    return results


if __name__ == "__main__":
    main()
