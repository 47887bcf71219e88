"""Smoke test of ``make bench`` (issue 6): the benchmark code runs end to end on a tiny input.

Nothing here is timed or judged — the benchmark is a report, its PASS/MISS lines are its
findings. What is checked: ``benchmarks/run.py --quick`` runs the pipeline benchmark on one
pair-month against a scratch PostgreSQL, exits 0, prints the table and a verdict per target,
writes its JSON; and the old way of ``benchmarks/old_way.py`` computes the same values as
bqxdask, so the "before" column times the same work.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bqxdask.config import FamiliesConfig
from bqxdask.features import registry
from bqxdask.features.bqx import bqx_return
from bqxdask.features.prepare import prepare
from bqxdask.ingest.seed import generate_bars

REPO = Path(__file__).resolve().parents[1]


def load_old_way():
    """benchmarks/old_way.py by its path: the benchmarks are scripts, not a package on sys.path."""
    spec = importlib.util.spec_from_file_location("old_way", REPO / "benchmarks" / "old_way.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


old = load_old_way()

TARGETS = ("end_to_end", "read", "compute", "memory", "scaling")


@pytest.mark.slow
def test_quick_benchmark_runs_and_reports(tmp_path):
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--skip-reg",
            "--skip-stats",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for needle in (
        "ratio to floor",
        "before (old way)",
        "speed-up",
        "floor = (a) + (b)",
        "EXTRAPOLATED",
        "scaling",
        "peak RSS per worker",
        "DEFAULT_SECONDS_PER_ROW",
        "the vCPUs' speed",
    ):
        assert needle in text, f"{needle!r} missing from the report"
    verdict_lines = [line for line in text.splitlines() if line.strip().startswith(("PASS", "MISS"))]
    assert len(verdict_lines) == len(TARGETS), verdict_lines
    report = json.loads(out.read_text())
    assert set(report["verdicts"]) == set(TARGETS)
    assert report["floor"] > 0 and report["best_run"]["seconds"] > 0
    assert report["best_run"]["summary"]["total"]["rows"] == report["unit_worker"]["rows"] > 30_000
    # the floor COPYs exactly what the run wrote
    assert report["floor_in"]["values"] == report["best_run"]["summary"]["total"]["values"]
    assert [x["factor"] for x in report["scaling"]] == [1, 2]
    assert report["vcpu"]["start"]["alone"] > 0 and report["vcpu"]["end"]["together"] > 0
    assert all(x["rows"] > 0 for x in report["scaling"])


@pytest.fixture(scope="module")
def frame():
    bars = generate_bars(["eurusd"], "2024-07", "2024-07")["eurusd"].set_index("time").astype("float64").iloc[:1500]
    return bars


@pytest.mark.parametrize("family", list(registry.all_families()))
def test_old_way_computes_the_same_values(frame, family):
    """The "before" column is the same features computed the old way (within float noise)."""
    fc = FamiliesConfig()
    baseline = float(frame["close"].iloc[0])
    ref = registry.get(family).compute(prepare(frame, baseline, fc), fc)
    ix = old.index_frame(frame, baseline)
    series = pd.Series(bqx_return(ix["idx"].to_numpy(), fc.bqx.series_window), index=ix.index)
    start, stop = 1300, 1500
    whole, sampled, assemble = old.family_parts(family, ix, series, fc, start, stop)
    got = assemble(whole() if whole else None, sampled() if sampled else None)
    got = got.iloc[-(stop - start) :][list(ref.columns)]
    want = ref.iloc[start:stop]
    a, e = got.to_numpy(float), want.to_numpy(float)
    assert np.array_equal(np.isfinite(a), np.isfinite(e)), family
    ok = np.isfinite(e)
    # pandas' rolling std/var are running sums: ~1e-9 of an index near 100; skew/kurt/r2 ~1e-7
    assert np.all(np.abs(a[ok] - e[ok]) <= 1e-6 * np.maximum(1.0, np.abs(e[ok]))), family
