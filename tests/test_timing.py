"""benchmarks/timing.py's per-backend PostgreSQL meter on a real server (issue 15)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import psutil
import pytest

from bqxdask.db.connect import connect

REPO = Path(__file__).resolve().parents[1]


def load_timing():
    """benchmarks/timing.py by its path: the benchmarks are scripts, not a package on sys.path."""
    spec = importlib.util.spec_from_file_location("bench_timing", REPO / "benchmarks" / "timing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


timing = load_timing()


def test_backend_meter_charges_a_session_to_its_application_role(pg_server):
    worker = connect(pg_server.url, autocommit=True, application_name="bqxdask/r1/worker")
    other = connect(pg_server.url, autocommit=True, application_name="someone else")
    try:
        backend = psutil.Process(worker.get_backend_pid())
        with worker.cursor() as cur, other.cursor() as cur2:
            cur.execute("SELECT 1")
            t0 = sum(backend.cpu_times()[:2])
            with timing.BackendMeter(pg_server.status().pid, pg_server.url) as meter:
                cur.execute("SELECT count(*) FROM generate_series(1, 3000000) g WHERE g % 7 = 0")
                cur2.execute("SELECT 1")
            spent = sum(backend.cpu_times()[:2]) - t0
    finally:
        worker.close()
        other.close()
    got = meter.result
    assert spent > 0
    # both ends are read while the session is idle: the meter's figure is the process's own
    assert abs(got["worker sessions"] - spent) <= 0.02
    assert got.get("someone else sessions", 0.0) < spent
    # CPU times are whole clock ticks summed as floats: compare to well under one tick (10 ms)
    assert got["total"] >= got["worker sessions"] - 1e-6
    assert "meter" in got and "bqxdask/r1/worker" not in got


def test_vcpu_probe_times_the_loop_alone_and_on_every_vcpu_at_once(monkeypatch):
    """benchmarks/vcpu.py, as make bench runs it: a pool of spawned processes, one per vCPU."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the spawned processes import it by name
    import vcpu

    r = vcpu.contention(repeat=2, n=2_000_000)
    assert r["cpus"] == (os.cpu_count() or 1)
    assert 1 <= len(r["together_all"]) <= 2 and len(r["alone_all"]) >= 2
    assert all(t > 0 for t in r["alone_all"] + r["together_all"])
    assert r["factor"] == pytest.approx(r["together"] / r["alone"])
    assert r["delivered"] == pytest.approx(r["cpus"] / r["factor"])
