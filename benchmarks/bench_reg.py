"""Benchmark of the rolling polynomial regression kernel (SPEC §4.6) on one real pair-month.

Run ``.venv/bin/python benchmarks/bench_reg.py``. One run measures, on EURUSD 2017-01
(HistData, ~31.5k one-minute bars, through ``tests/fxdata.py``):

1. the kernel against rolling ``np.polyfit`` (the naive baseline) for the default windows
   and degree 2. A polyfit per row over the whole month takes ~10 s, so the baseline is
   timed on a random sample of rows per window and extrapolated to every row: once for the
   ``np.polyfit`` call alone (a lower bound on the naive cost; the ≥100× requirement is
   judged on it) and once with the columns a naive implementation derives from it;
2. degree 1 against TA-Lib LINEARREG + LINEARREG_SLOPE + LINEARREG_INTERCEPT (same windows;
   TA-Lib returns 3 columns per window, the kernel 9);
3. the cost per row against W, and the ratio t(W=2880)/t(W=15) for the full column set.

Timings are the best of several repetitions (the machine is shared). rows/s counts input
rows (one output row each, all of the family's columns for the windows listed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fxdata import eurusd  # noqa: E402

from bqxdask import compute_features  # noqa: E402
from bqxdask.config import RegParams  # noqa: E402
from bqxdask.features import reg  # noqa: E402

DEFAULT_WINDOWS = RegParams().windows
POLYFIT_SAMPLE_ROWS = 300
SCALING_WINDOWS = (15, 60, 240, 630, 2880, 10_000)


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
    _ = (np.polyval(p, w - 1), np.polyval(p, w), np.polyval(np.polyder(p), w - 1),
         1.0 - (r @ r) / (dv @ dv), np.sqrt((r @ r) / w))


def polyfit_baseline(y: np.ndarray, windows: tuple[int, ...], degree: int, row_fn=_polyfit_only,
                     repeat: int = 3) -> float:
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


def kernel_time(y: np.ndarray, windows: tuple[int, ...], degree: int, repeat: int = 7) -> float:
    reg.reg(y, windows=windows, degree=degree)  # warm the per-window constants
    return best_of(lambda: reg.reg(y, windows=windows, degree=degree), repeat)


def talib_time(y: np.ndarray, windows: tuple[int, ...], repeat: int = 7) -> float:
    import talib

    def run():
        for w in windows:
            talib.LINEARREG(y, timeperiod=w)
            talib.LINEARREG_SLOPE(y, timeperiod=w)
            talib.LINEARREG_INTERCEPT(y, timeperiod=w)

    return best_of(run, repeat)


def main() -> dict[str, float]:
    bars = eurusd(1)
    y = compute_features(bars, ["bqx"])["bqx"]["rate_index"].to_numpy()
    n = len(y)
    lines: list[tuple[str, float, str]] = []
    results: dict[str, float] = {}

    def row(label: str, seconds: float, note: str = "") -> None:
        lines.append((label, seconds, note))

    print(f"bench_reg: EURUSD 2017-01, {n} rows; best-of-N wall-clock timings\n")

    # (1) against rolling np.polyfit, default windows, degree 2
    t_kernel = kernel_time(y, DEFAULT_WINDOWS, 2)
    t_polyfit = polyfit_baseline(y, DEFAULT_WINDOWS, 2)
    t_naive = polyfit_baseline(y, DEFAULT_WINDOWS, 2, _polyfit_columns)
    results["speedup_vs_polyfit"] = t_polyfit / t_kernel
    results["speedup_vs_naive_columns"] = t_naive / t_kernel
    row("reg kernel, default windows, degree 2 (110 columns)", t_kernel)
    row("rolling np.polyfit call alone (extrapolated)", t_polyfit,
        f"{POLYFIT_SAMPLE_ROWS} sampled rows/window; kernel {t_polyfit / t_kernel:,.0f}x faster")
    row("rolling np.polyfit + its 11 columns (extrapolated)", t_naive,
        f"kernel {t_naive / t_kernel:,.0f}x faster")

    # (2) degree 1 against TA-Lib
    t_lin = kernel_time(y, DEFAULT_WINDOWS, 1)
    t_talib = talib_time(y, DEFAULT_WINDOWS)
    results["talib_over_kernel"] = t_talib / t_lin
    row("reg kernel, default windows, degree 1 (90 columns)", t_lin)
    row("TA-Lib LINEARREG+_SLOPE+_INTERCEPT (30 columns)", t_talib,
        f"kernel/TA-Lib time = {t_lin / t_talib:.1f}")

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
    ok_speed = results["speedup_vs_polyfit"] >= 100
    ok_ratio = all(results[f"w2880_over_w15_degree{d}"] <= 3 for d in (1, 2, 3))
    print(f"speed-up vs rolling np.polyfit: {results['speedup_vs_polyfit']:,.0f}x (required >= 100x: "
          f"{'ok' if ok_speed else 'NOT MET'}); t(W=2880)/t(W=15) <= 3: {'ok' if ok_ratio else 'NOT MET'}")
    return results


if __name__ == "__main__":
    main()
