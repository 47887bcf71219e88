"""Benchmark of the rolling polynomial regression kernel (SPEC §4.6) on one real pair.

Run ``.venv/bin/python benchmarks/bench_reg.py``. One run measures, on EURUSD 2017-01..02
(HistData, 60,279 one-minute bars, through ``bqxdask.testing``):

1. the kernel against rolling ``np.polyfit`` (the naive baseline) for the default windows
   and degree 2. A polyfit per row over the whole series takes ~20 s, so the baseline is
   timed on a random sample of rows per window and extrapolated to every row: once for the
   ``np.polyfit`` call alone (a lower bound on the naive cost; the requirement, ≥ 1000×
   since issue 15, is judged on it) and once with the columns a naive implementation
   derives from it; the kernel is timed alone and through ``bqxdask.compute_features``
   (bars in, the ``reg_rate`` DataFrame out: validation, index, 110 columns into a frame);
2. degree 1 against TA-Lib LINEARREG + LINEARREG_SLOPE + LINEARREG_INTERCEPT (same windows;
   TA-Lib returns 3 columns per window, the kernel 9);
3. the cost per row against W, and the ratio t(W=2880)/t(W=15) for the full column set
   (required ≤ 1.5);
4. what the compiled kernel replaces: the double-double numpy kernel on the same windows, and
   the share of rows the compiled kernel hands back to it (``_reg_fast.fallback_rows``);
5. numba's cost in a fresh process: ``import numba``, the first call with an empty cache
   (compile and write) and with the cache filled (load), in a temporary NUMBA_CACHE_DIR.

Timings are the best of several repetitions (the machine is shared). rows/s counts input
rows (one output row each, all of the family's columns for the windows listed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bqxdask import compute_features
from bqxdask.features import reg
from bqxdask.features._reg_fast import fallback_rows
from bqxdask.features._reg_kernel import rolling_polyfit_dd
from bqxdask.features.reg import RegParams
from bqxdask.testing import eurusd

REPO = Path(__file__).resolve().parents[1]

DEFAULT_WINDOWS = RegParams().windows
POLYFIT_SAMPLE_ROWS = 300
SCALING_WINDOWS = (15, 60, 240, 630, 2880, 10_000)
MONTHS = 2
TARGET_SPEEDUP = 1000
TARGET_W_RATIO = 1.5
#: repetitions of the timings that take milliseconds (the best is kept): on this shared machine a
#: best of 7 still caught a neighbour's burst now and then, which 15 rarely does (~0.3 s each)
FAST_REPEAT = 15

#: a fresh interpreter: numba's import, then the kernel's first call (compile or cache load)
COLD_START = """
import json, sys, time
t0 = time.perf_counter()
import numba  # noqa: F401
t1 = time.perf_counter()
import numpy as np
from bqxdask.features._reg_fast import rolling_polyfit
t2 = time.perf_counter()
rolling_polyfit(np.linspace(100.0, 101.0, 100), 15, 2)
t3 = time.perf_counter()
print(json.dumps({"import_numba": t1 - t0, "first_call": t3 - t2}))
"""


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` wall-clock timings of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _polyfit_only(x: np.ndarray, v: np.ndarray, degree: int) -> None:
    np.polyfit(x, v, degree)


def _polyfit_columns(x: np.ndarray, v: np.ndarray, degree: int) -> None:
    """The naive §4.6 row: np.polyfit, then the fit at W−1 and W, the slope, SSE and SST."""
    p = np.polyfit(x, v, degree)
    w = len(v)
    r = v - np.polyval(p, x)
    dv = v - v.mean()
    _ = (
        np.polyval(p, w - 1),
        np.polyval(p, w),
        np.polyval(np.polyder(p), w - 1),
        1.0 - (r @ r) / (dv @ dv),
        np.sqrt((r @ r) / w),
    )


def polyfit_baseline(
    y: np.ndarray, windows: tuple[int, ...], degree: int, row_fn=_polyfit_only, repeat: int = 3
) -> float:
    """Seconds a rolling np.polyfit would take over every row, extrapolated from a sample."""
    rng = np.random.default_rng(0)
    total = 0.0
    for w in windows:
        x = np.arange(w, dtype=float)
        rows = rng.integers(w - 1, len(y), POLYFIT_SAMPLE_ROWS)
        views = [y[t - w + 1 : t + 1] for t in rows]

        def run(views=views, x=x):
            for v in views:
                row_fn(x, v, degree)

        per_row = best_of(run, repeat) / len(rows)
        total += per_row * (len(y) - w + 1)
    return total


def kernel_time(y: np.ndarray, windows: tuple[int, ...], degree: int, repeat: int = FAST_REPEAT) -> float:
    reg.reg(y, windows=windows, degree=degree)  # warm the per-window constants
    return best_of(lambda: reg.reg(y, windows=windows, degree=degree), repeat)


def talib_time(y: np.ndarray, windows: tuple[int, ...], repeat: int = FAST_REPEAT) -> float:
    import talib

    def run():
        for w in windows:
            talib.LINEARREG(y, timeperiod=w)
            talib.LINEARREG_SLOPE(y, timeperiod=w)
            talib.LINEARREG_INTERCEPT(y, timeperiod=w)

    return best_of(run, repeat)


def dd_time(y: np.ndarray, windows: tuple[int, ...], degree: int, repeat: int = 3) -> float:
    return best_of(lambda: [rolling_polyfit_dd(y, w, degree) for w in windows], repeat)


def cold_start() -> dict[str, float]:
    """numba in a fresh process: empty cache (compile + write), then filled cache (load)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        for label in ("compile", "cached"):
            done = subprocess.run(
                [sys.executable, "-c", COLD_START], env=env, capture_output=True, text=True, check=True
            )
            values = json.loads(done.stdout.strip().splitlines()[-1])
            out["import_numba"] = min(out.get("import_numba", float("inf")), values["import_numba"])
            out[f"first_call_{label}"] = values["first_call"]
    return out


def main() -> dict[str, float]:
    bars = eurusd(MONTHS)
    prepared = compute_features(bars, ["bqx"])["bqx"]
    y = prepared["rate_index"].to_numpy()
    bqx = prepared["w15_bqx_return"].to_numpy()
    bqx = bqx[np.isfinite(bqx)]
    n = len(y)
    lines: list[tuple[str, float, str]] = []
    results: dict[str, float] = {}

    def row(label: str, seconds: float, note: str = "") -> None:
        lines.append((label, seconds, note))

    print(f"bench_reg: EURUSD 2017-01..{MONTHS:02d}, {n} rows; best-of-N wall-clock timings\n")

    # (1) against rolling np.polyfit, default windows, degree 2
    t_kernel = kernel_time(y, DEFAULT_WINDOWS, 2)
    compute_features(bars, ["reg_rate"])
    t_api = best_of(lambda: compute_features(bars, ["reg_rate"]), FAST_REPEAT)
    t_polyfit = polyfit_baseline(y, DEFAULT_WINDOWS, 2)
    t_naive = polyfit_baseline(y, DEFAULT_WINDOWS, 2, _polyfit_columns)
    results["speedup_vs_polyfit"] = t_polyfit / t_kernel
    results["speedup_vs_polyfit_compute_features"] = t_polyfit / t_api
    results["speedup_vs_naive_columns"] = t_naive / t_kernel
    row("reg kernel, default windows, degree 2 (110 columns)", t_kernel)
    row(
        "compute_features(bars, ['reg_rate']), same windows",
        t_api,
        f"kernel {t_kernel / t_api:.0%} of it; the rest: bars -> index -> 110-column DataFrame",
    )
    row(
        "rolling np.polyfit call alone (extrapolated)",
        t_polyfit,
        f"{POLYFIT_SAMPLE_ROWS} sampled rows/window; kernel {t_polyfit / t_kernel:,.0f}x faster, "
        f"compute_features {t_polyfit / t_api:,.0f}x",
    )
    row("rolling np.polyfit + its 11 columns (extrapolated)", t_naive, f"kernel {t_naive / t_kernel:,.0f}x faster")

    # (2) degree 1 against TA-Lib
    t_lin = kernel_time(y, DEFAULT_WINDOWS, 1)
    t_talib = talib_time(y, DEFAULT_WINDOWS)
    results["talib_over_kernel"] = t_talib / t_lin
    row("reg kernel, default windows, degree 1 (90 columns)", t_lin)
    row("TA-Lib LINEARREG+_SLOPE+_INTERCEPT (30 columns)", t_talib, f"kernel/TA-Lib time = {t_lin / t_talib:.1f}")

    # (4) what the compiled kernel replaces, and how often it falls back to it
    t_dd = dd_time(y, DEFAULT_WINDOWS, 2)
    results["compiled_over_double_double"] = t_dd / t_kernel
    row(
        "double-double numpy kernel (before issue 15), same windows",
        t_dd,
        f"the compiled kernel is {t_dd / t_kernel:.0f}x faster",
    )
    shares: dict[tuple[str, int, int], float] = {}
    for label, series in (("idx", y), ("bqx", bqx)):
        for degree in (1, 2, 3):
            for w in (*DEFAULT_WINDOWS, 2880):
                shares[(label, degree, w)] = len(fallback_rows(series, w, degree)) / len(series)

    # (3) cost against W, all columns of one window
    per_w: dict[int, float] = {}
    for degree in (1, 2, 3):
        for w in SCALING_WINDOWS:
            per_w[(degree, w)] = kernel_time(y, (w,), degree)
    for degree in (1, 2, 3):
        ratio = per_w[(degree, 2880)] / per_w[(degree, 15)]
        results[f"w2880_over_w15_degree{degree}"] = ratio
    width = max(len(label) for label, _, _ in lines)
    print(f"{'measurement':<{width}}  {'seconds':>9}  {'rows/s':>12}  note")
    for label, seconds, note in lines:
        print(f"{label:<{width}}  {seconds:9.4f}  {n / seconds:12,.0f}  {note}")
    print()
    print("one window, every column: seconds (rows/s)")
    print(f"{'degree':>6}  " + "  ".join(f"{'W=' + str(w):>20}" for w in SCALING_WINDOWS) + "  t(2880)/t(15)")
    for degree in (1, 2, 3):
        cells = "  ".join(f"{per_w[(degree, w)]:8.4f} ({n / per_w[(degree, w)]:9,.0f})" for w in SCALING_WINDOWS)
        print(f"{degree:>6}  {cells}  {results[f'w2880_over_w15_degree{degree}']:13.2f}")
    print()
    print("rows handed to the double-double kernel (share of all rows), per series, degree and W")
    ws = (*DEFAULT_WINDOWS, 2880)
    print(f"{'':>10}" + "".join(f"{'W=' + str(w):>8}" for w in ws))
    for label, degree in ((lab, d) for lab in ("idx", "bqx") for d in (1, 2, 3)):
        print(f"{label} d={degree:<4}" + "".join(f"{shares[(label, degree, w)]:8.2%}" for w in ws))
    print()
    cold = cold_start()
    results.update({f"numba_{k}": v for k, v in cold.items()})
    print(
        f"numba in a fresh process: import {cold['import_numba']:.2f} s; first call with an empty cache "
        f"(compile + write) {cold['first_call_compile']:.2f} s, with the cache filled (load) "
        f"{cold['first_call_cached']:.2f} s"
    )
    print()
    ok_speed = results["speedup_vs_polyfit_compute_features"] >= TARGET_SPEEDUP
    ok_kernel = results["speedup_vs_polyfit"] >= TARGET_SPEEDUP
    ok_ratio = all(results[f"w2880_over_w15_degree{d}"] <= TARGET_W_RATIO for d in (1, 2, 3))
    print(
        f"{'PASS' if ok_speed else 'MISS'}: through compute_features "
        f"{results['speedup_vs_polyfit_compute_features']:,.0f}x rolling np.polyfit (required >= {TARGET_SPEEDUP}x; "
        f"the kernel alone {results['speedup_vs_polyfit']:,.0f}x: {'ok' if ok_kernel else 'not met'})"
    )
    worst = max(results[f"w2880_over_w15_degree{d}"] for d in (1, 2, 3))
    print(
        f"{'PASS' if ok_ratio else 'MISS'}: t(W=2880)/t(W=15) <= {TARGET_W_RATIO} for degrees 1-3 (worst {worst:.2f})"
    )
    return results


if __name__ == "__main__":
    main()
