"""The pipeline's side of the benchmark: runs of ``run_features``, its reads, one unit alone, the CLI.

- the run — ``run_features`` with a LocalCluster created beforehand (``client=``, the cluster
  start-up excluded), with ``client=None`` (start-up included) and as the user runs it
  (``python -m bqxdask features`` in a subprocess). The stage breakdown is the sum of the task
  seconds each unit reports (core-seconds over the 2 workers, not wall time);
- the reads — ``tasks.read_month`` + ``tasks.read_warmup`` for all units in-process, and the
  same partitions through Dask (``from_map(…).compute()``);
- one unit alone — compute, ``copy_buffer`` and Parquet write of one pair-month, best of N,
  on an idle Dask worker and in this process.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pandas as pd
from scratch import Bench, write_config
from timing import BackendMeter, CpuMeter, RssSampler, best_of, rusage, timed

from bqxdask.db import database_url, read_url
from bqxdask.features import registry
from bqxdask.features.prepare import prepare
from bqxdask.pipeline import run_features
from bqxdask.quality import validate_bars


def start_cluster(stack: contextlib.ExitStack, cfg) -> Any:
    """A LocalCluster made exactly as ``run_features`` makes one (``pipeline.cluster``); its client."""
    from bqxdask.pipeline.cluster import cluster

    client, _ = stack.enter_context(cluster(cfg, None, io.StringIO()))
    return client


def run_once(bench: Bench, cfg, client) -> tuple[float, Any]:
    """``run_features`` on ``client``; its printed output is kept out of the report."""
    out = io.StringIO()
    bench.checkpoint()
    t, result = timed(lambda: run_features(cfg, client=client, out=out))
    if result.exit_code != 0:
        raise RuntimeError(f"the benchmarked run failed: {result.failures[:3]}")
    return t, result


def summarise(result) -> dict[str, Any]:
    """Task seconds per stage and per family, rows and values, from ``RunResult.results``."""
    done = [r for r in result.results if r["status"] == "done"]
    fam: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    units: dict[str, dict[str, float]] = {}
    for r in done:
        f = fam[r["family"]]
        for k in ("seconds_compute", "seconds_parquet", "seconds_sql", "seconds", "rows", "sql_bytes"):
            f[k] += r[k]
        f["values"] += r["rows"] * r["columns"]
        u = units.setdefault(
            f"{r['pair']} {r['month']}",
            {"rows": r["rows"], "prepare": r["seconds_prepare"], "compute": 0.0, "values": 0.0},
        )
        u["compute"] += r["seconds_compute"]
        u["values"] += r["rows"] * r["columns"]
    total = {
        k: sum(f[k] for f in fam.values())
        for k in ("seconds_compute", "seconds_parquet", "seconds_sql", "seconds", "values", "sql_bytes")
    }
    total["rows"] = sum(u["rows"] for u in units.values())
    total["prepare"] = sum(u["prepare"] for u in units.values())
    return {"families": {k: dict(v) for k, v in fam.items()}, "units": units, "total": total}


def measured_run(bench: Bench, cfg, client, dask_pids: Sequence[int], *, sample_rss: bool = False) -> dict[str, Any]:
    """One ``run_features`` on ``client`` with CPU accounting (and RSS sampling); outputs left in place."""
    meter = CpuMeter(bench.pg.status().pid, dask_pids)
    worker_pids = client.run(os.getpid)
    r0 = client.run(rusage)
    with (
        RssSampler(worker_pids.values()) if sample_rss else contextlib.nullcontext() as rss,
        BackendMeter(bench.pg.status().pid, bench.url) as backends,
    ):
        c0 = meter.snapshot()
        t_run, result = run_once(bench, cfg, client)
        c1 = meter.snapshot()
    r1 = client.run(rusage)
    workers = {k: sum(r1[w][k] - r0[w][k] for w in r0) for k in ("user", "sys", "minflt")}
    out = {
        "seconds": t_run,
        "summary": summarise(result),
        "cpu": CpuMeter.delta(c0, c1),
        "workers": workers,
        "result": result,
        "postgres_by_backend": backends.result,
    }
    if rss is not None:
        out["rss_peak"] = {str(k): v for k, v in rss.peak.items()}
    return out


def public(run: dict[str, Any]) -> dict[str, Any]:
    """A measured run without its ``RunResult`` (what goes into the JSON)."""
    return {k: v for k, v in run.items() if k != "result"}


def unit_specs(cfg) -> dict[str, list]:
    """The run's ``UnitSpec`` of every unit, per pair, planned as the pipeline plans them."""
    from bqxdask.pipeline import plan_run, unit_spec  # the benchmark times the pipeline's own read tasks

    url = database_url(cfg)
    rurl = read_url(cfg, url)
    plan, sources, _ = plan_run(cfg, url, rurl, tuple(cfg.families.enabled), "bench", True, dry_run=True)
    out: dict[str, list] = defaultdict(list)
    for u in plan.units:
        out[u.pair].append(unit_spec(cfg, url, rurl, plan, sources[u.pair], u))
    return dict(out)


def read_in_process(specs: dict[str, list]) -> int:
    from bqxdask.pipeline import tasks

    rows = 0
    for pair_specs in specs.values():
        for s in pair_specs:
            rows += len(tasks.read_month(s)) + len(tasks.read_warmup(s))
    return rows


def read_dask(client, specs: dict[str, list]) -> int:
    """The pipeline's read graph (``from_map`` with month divisions + warm-up reads), computed.

    The bars stay on the workers, as in the pipeline (they feed ``prepare_unit`` there); only
    the row counts come back, so the client's deserialisation is not timed as "read".
    """
    from dask import delayed

    from bqxdask.pipeline import month_reads, tasks

    tag = uuid.uuid4().hex[:12]  # fresh keys: a repetition must not find the last one's results
    parts, warm = [], []
    for pair, pair_specs in specs.items():
        parts.append(month_reads(pair_specs, f"bench-read-{pair}-{tag}"))  # the pipeline's read graph
        warm += [
            delayed(len)(delayed(tasks.read_warmup)(s, dask_key_name=f"bench-warmup-{s.pair}-{s.month}-{tag}"))
            for s in pair_specs
        ]
    # two compute calls: mixing expression-backed frames and delayed objects in one would
    # materialise the expressions first (dask warns about it)
    counts = [p.map_partitions(len, meta=(None, "int64")) for p in parts]
    frames_f, warm_f = client.compute(counts), client.compute(warm)
    return sum(int(c.sum()) for c in client.gather(frames_f)) + sum(client.gather(warm_f))


def unit_cost(spec, families: Sequence[str], repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` seconds of one unit's compute, copy_buffer and Parquet write, per family.

    Runs where it is called: in this process, or on an otherwise idle Dask worker
    (``client.submit``), which shows what the worker process itself costs.
    """
    from bqxdask.pipeline import tasks

    raw, warm = tasks.read_month(spec), tasks.read_warmup(spec)
    accepted, _ = validate_bars(raw)
    frame = prepare(pd.concat([warm, accepted]), spec.baseline, spec.families)
    out: dict[str, Any] = {"compute": {}, "copy_buffer": {}, "parquet": {}, "rows": len(accepted)}
    r0 = rusage()
    scratch = tempfile.mkdtemp(prefix="bqx-bench-unit-")
    try:
        for name in families:
            out_one = family_cost(frame, len(warm), spec, name, scratch, repeat)
            for k, v in out_one.items():
                out[k][name] = v
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    r1 = rusage()
    out["rusage"] = {k: r1[k] - r0[k] for k in ("user", "sys", "minflt")}
    return out


def family_cost(frame: pd.DataFrame, n_warm: int, spec, name: str, scratch: str, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` compute, copy_buffer and Parquet seconds of one family on a prepared unit."""
    from bqxdask.db.writer import copy_buffer
    from bqxdask.outputs import parquet

    fam = registry.get(name)
    cols = fam.column_names(spec.families)
    fam.compute(frame, spec.families)  # first call: per-window constants, imports
    t, res = best_of(lambda: fam.compute(frame, spec.families).iloc[n_warm:], repeat)
    times, values = res.index.as_unit("us").asi8, res.to_numpy(dtype="float64")
    return {
        "compute": t,
        "copy_buffer": best_of(lambda: copy_buffer(times, values), repeat)[0],
        "parquet": best_of(
            lambda: parquet.write_unit(scratch, name, spec.pair, spec.month, times, cols, values, {}), repeat
        )[0],
    }


def run_cli(bench: Bench, cfg) -> float:
    """``python -m bqxdask features --config`` in a subprocess, as the user runs it; wall seconds."""
    path = bench.tmp / f"{cfg.database.output_schema}.toml"
    write_config(cfg, path)
    # the environment this process started with: not the variables the Nannies wrote into it
    env = {k: v for k, v in bench.environ.items() if not k.startswith("BQX_")}
    bench.checkpoint()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bqxdask", "features", "--config", str(path)],
        cwd=bench.tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    t = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bqxdask features exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
    return t
