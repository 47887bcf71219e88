"""End-to-end benchmark of ``bqxdask features`` against the database floor (issue 6, SPEC §5, §6).

Run ``.venv/bin/python benchmarks/bench_pipeline.py`` (``make bench`` runs it after
``bench_reg`` and ``bench_stats``). In one process it starts a scratch embedded PostgreSQL in a
temporary directory (destroyed at the end), seeds 2 pairs (eurusd, usdjpy) × 2024-06..2024-10
with ``bqxdask seed``'s model, and measures on 2 pairs × 3 months (2024-07..09, all 9 families):

- **the floor** (:mod:`floor`) — what PostgreSQL itself needs to move the bytes, one session:
  binary COPY out of the source bars the run reads, binary COPY in of exactly the rows the run
  wrote; the same load over 2 sessions;
- **the run** (:mod:`runs`) — ``run_features`` with a LocalCluster given, with ``client=None``
  and as the CLI in a subprocess; its stage breakdown in task seconds; the reads in-process and
  through Dask; plan time (a dry run);
- **one unit alone** — compute, ``copy_buffer`` and Parquet of one pair-month on an idle
  worker and in this process: the compute target is judged on the worker;
- **CPU accounting and memory** (:mod:`timing`) — core-seconds of PostgreSQL, the workers,
  this process and the rest of the machine; peak RSS per worker against ``memory_limit``,
  spill counters;
- **the old way** (:mod:`before`, :mod:`old_way`) — timed on the first pair-month and
  extrapolated to the run's rows (the table says so);
- **scaling** — the run at 1×, 2× and 4× the rows (2 pairs × 1, 2, 4 months) and 1 vs 2 workers.

Floor and run alternate so that both see the same load. The report (:mod:`report`) goes to
stdout, the numbers to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import psutil  # noqa: E402
from before import old_way  # noqa: E402
from floor import (  # noqa: E402
    dump_outputs,
    floor_by,
    floor_copy_in,
    floor_copy_in_parallel,
    floor_copy_out,
    settle,
    truncate,
    unit_list,
)
from report import print_report  # noqa: E402
from runs import (  # noqa: E402
    measured_run,
    public,
    read_dask,
    read_in_process,
    run_cli,
    run_once,
    start_cluster,
    summarise,
    unit_cost,
    unit_specs,
)
from scratch import FULL, QUICK, SRC, Bench  # noqa: E402
from timing import MALLOC_VARS, CpuMeter, best_of, malloc_env, rusage, say, spill_counters, timed  # noqa: E402
from vcpu import contention  # noqa: E402

from bqxdask import __version__  # noqa: E402
from bqxdask.config import ClusterConfig  # noqa: E402
from bqxdask.db.embedded import EmbeddedPostgres  # noqa: E402
from bqxdask.features import registry  # noqa: E402
from bqxdask.ingest.seed import seed_database  # noqa: E402
from bqxdask.pipeline import run_features  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
FLOOR_SCHEMA = "bench_floor"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 pair × 1 month, 4 families (the smoke test)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the numbers (default {RESULTS})")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    t_begin = time.perf_counter()
    environ = dict(os.environ)  # before any Nanny writes its pre-spawn variables into it
    tmp = Path(tempfile.mkdtemp(prefix="bqx-bench-"))
    pg = EmbeddedPostgres(tmp / "pgdata")
    try:
        with contextlib.ExitStack() as stack:
            say(f"scratch PostgreSQL in {tmp}")
            pg.start()
            bench = Bench(setup, tmp, pg.url, pg, environ=environ)
            t_seed, rep = timed(
                lambda: seed_database(pg.url, SRC, setup.pairs, setup.seed_start, setup.seed_end, seed=0)
            )
            say(rep.summary_line())
            say("the vCPUs' speed: a fixed loop alone and on every vCPU at once")
            probe_start = contention()
            report = measure(bench, stack)
            report["seconds_seed"] = t_seed
            say("the vCPUs' speed again")
            report["vcpu"] = {"start": probe_start, "end": contention()}
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
        restore_malloc_env(environ)
    report["seconds_benchmark"] = time.perf_counter() - t_begin
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    print(f"\nnumbers written to {args.json}; benchmark wall time {report['seconds_benchmark']:.0f} s")
    return report


def restore_malloc_env(environ: dict[str, str]) -> None:
    """Undo what the Nannies wrote into this process's environment."""
    for k in MALLOC_VARS:
        if k in environ:
            os.environ[k] = environ[k]
        else:
            os.environ.pop(k, None)


def measure(bench: Bench, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Every measurement, in the order that lets floor and runs see the same load."""
    s = bench.setup
    units = unit_list(s.pairs, s.start, s.end)
    r: dict[str, Any] = {
        "setup": {
            "pairs": list(s.pairs),
            "start": s.start,
            "end": s.end,
            "families": list(s.families),
            "units": len(units),
            "quick": s is QUICK,
            "repeat_small": s.repeat_small,
        },
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gib": psutil.virtual_memory().total / 2**30,
            "python": platform.python_version(),
            "bqxdask": __version__,
            "load_at_start": os.getloadavg(),
        },
    }
    cfg_a = bench.config(bench.fresh_tag("a"), s.start, s.end)
    say("starting the pipeline's LocalCluster (2 workers)")
    t_cluster, client = timed(lambda: start_cluster(stack, cfg_a))
    r["seconds_cluster_start"] = t_cluster
    worker_pids = client.run(os.getpid)
    dask_pids = [*worker_pids.values(), *{psutil.Process(p).ppid() for p in worker_pids.values()}]
    r["worker_env"] = next(iter(client.run(malloc_env).values()))
    specs = measure_before_the_runs(bench, client, cfg_a, units, r)
    best_run = measure_runs_and_floor(bench, client, cfg_a, dask_pids, r)
    measure_whole_runs(bench, r)
    measure_scaling(bench, client, best_run, r)
    say(f"the old way: sample of {s.sample_rows} rows (compute) and {s.insert_rows} rows (INSERT) per family")
    r["old"] = old_way(bench, specs, best_run["summary"]["total"]["rows"], s.sample_rows, s.insert_rows)
    return r


def measure_before_the_runs(bench: Bench, client, cfg, units, r: dict[str, Any]) -> dict[str, list]:
    """Plan, floor (a), the reads and one unit alone; the run's unit specs."""
    s = bench.setup
    say("plan (dry run)")
    r["plan"] = best_of(lambda: run_features(cfg, dry_run=True, out=io.StringIO()), s.repeat_small)[0]

    say("floor (a): COPY TO of the source bars")
    warmup = registry.warmup_rows(cfg.families)
    t_out, (rows_out, bytes_out) = best_of(lambda: floor_copy_out(bench.url, units, warmup), 5)
    r["floor_out"] = {"seconds": t_out, "rows": rows_out, "bytes": bytes_out}

    say("reads: in-process and through Dask")
    specs = unit_specs(cfg)
    t_rd_local, n_local = best_of(lambda: read_in_process(specs), s.repeat_small)
    read_dask(client, specs)  # the workers import the read path once
    t_rd_dask, n_dask = best_of(lambda: read_dask(client, specs), s.repeat_small)
    r["read"] = {"in_process": t_rd_local, "dask": t_rd_dask, "rows": n_local, "rows_dask": n_dask}

    say("one unit alone: on an idle worker and in this process (best of 3)")
    first = next(iter(specs.values()))[0]
    r["unit_worker"] = client.submit(unit_cost, first, s.families, s.repeat_small, pure=False).result()
    r["unit_process"] = unit_cost(first, s.families, s.repeat_small)
    return specs


def memory_of(client, run1: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS and spill counters of the workers after run 1, memory warnings in their logs."""
    maxrss = client.run(rusage)
    spill = client.run(spill_counters)
    logs = client.get_worker_logs()
    memory_msgs = [
        msg
        for entries in logs.values()
        for level, msg in entries
        if level in ("WARNING", "ERROR", "CRITICAL")
        and any(w in msg.lower() for w in ("memory", "spill", "pausing", "paused"))
    ]
    return {
        "ru_maxrss": {str(k): v["maxrss"] for k, v in maxrss.items()},
        "sampled_peak": run1["rss_peak"],
        "spill": {str(k): v for k, v in spill.items()},
        "log_messages": memory_msgs[:10],
        "memory_limit": ClusterConfig().memory_limit,
    }


def measure_runs_and_floor(bench: Bench, client, cfg_a, dask_pids, r: dict[str, Any]) -> dict[str, Any]:
    """The runs with the cluster given, floor (b) between them; the best run."""
    s = bench.setup
    # run #1 on fresh workers: memory and CPU accounting; then the floor from its outputs
    say(f"run 1/{s.repeat_run}: run_features on {r['setup']['units']} units, cluster given")
    run1 = measured_run(bench, cfg_a, client, dask_pids, sample_rss=True)
    r["memory"] = memory_of(client, run1)
    runs = [run1]

    say("dumping the run's outputs for the floor (not timed)")
    dumps = dump_outputs(bench.url, cfg_a, run1["result"], bench.tmp / "dumps", FLOOR_SCHEMA)
    bench.cleanup(cfg_a)
    floors = []
    pg_meter = CpuMeter(bench.pg.status().pid, [])

    def floor_in() -> None:
        c0 = pg_meter.snapshot()
        total, per = floor_copy_in(bench.url, FLOOR_SCHEMA, dumps)
        floors.append((total, per, CpuMeter.delta(c0, pg_meter.snapshot())))
        settle(bench.url, FLOOR_SCHEMA, dumps)

    say("floor (b): COPY FROM of the run's rows, one session")
    floor_in()
    for i in range(1, s.repeat_run):
        cfg = bench.config(bench.fresh_tag("a"), s.start, s.end)
        say(f"run {i + 1}/{s.repeat_run}")
        runs.append(measured_run(bench, cfg, client, dask_pids))
        bench.cleanup(cfg)
        say("floor (b) again")
        floor_in()
    while len(floors) < s.repeat_floor:
        floor_in()
    say("floor (b) over 2 sessions")
    c0 = pg_meter.snapshot()
    t_par = floor_copy_in_parallel(bench.url, FLOOR_SCHEMA, dumps, 2)
    par_cpu = CpuMeter.delta(c0, pg_meter.snapshot())
    settle(bench.url, FLOOR_SCHEMA, dumps)
    truncate(bench.url, FLOOR_SCHEMA, dumps)
    best_run = min(runs, key=lambda x: x["seconds"])
    t_in, per_dump, floor_cpu = min(floors, key=lambda f: f[0])
    r["runs"] = [public(x) for x in runs]
    r["best_run"] = public(best_run)
    r["floor_in"] = {
        "seconds": t_in,
        "all": [f[0] for f in floors],
        "parallel_2_sessions": t_par,
        "parallel_2_sessions_postgres_cpu": par_cpu["postgres"],
        "postgres_cpu": floor_cpu["postgres"],
        "other_cpu": floor_cpu["other"],
        "bytes": sum(d.nbytes for d in dumps),
        "rows": sum(d.rows for d in dumps),
        "values": sum(d.rows * d.columns for d in dumps),
        "per_family": floor_by(per_dump, lambda d: d.family),
        "per_unit": {f"{p} {m}": v for (p, m), v in floor_by(per_dump, lambda d: (d.pair, d.month)).items()},
    }
    r["floor"] = r["floor_out"]["seconds"] + t_in
    return best_run


def measure_whole_runs(bench: Bench, r: dict[str, Any]) -> None:
    """The run with its own LocalCluster, and as the CLI in a subprocess: each the best of as many
    runs as the run with the cluster given (one run caught a neighbour's burst too often)."""
    s = bench.setup
    walls: dict[str, list[float]] = {"e2e_with_cluster": [], "e2e_cli": []}
    for i in range(s.repeat_run):
        say(f"run with the LocalCluster start-up included (client=None), {i + 1}/{s.repeat_run}")
        cfg = bench.config(bench.fresh_tag("c"), s.start, s.end)
        walls["e2e_with_cluster"].append(run_once(bench, cfg, None)[0])  # no client: its own LocalCluster
        bench.cleanup(cfg)
        if s.cli:
            say(f"python -m bqxdask features (subprocess), {i + 1}/{s.repeat_run}")
            cfg = bench.config(bench.fresh_tag("cli"), s.start, s.end)
            walls["e2e_cli"].append(run_cli(bench, cfg))
            bench.cleanup(cfg)
    r.update({key: min(values) for key, values in walls.items() if values})
    r["e2e_walls"] = walls


def measure_scaling(bench: Bench, client, best_run: dict[str, Any], r: dict[str, Any]) -> None:
    """The run at 1×, 2×, 4× the rows on the cluster given; 1 worker against 2."""
    s = bench.setup
    say("scaling: 1×, 2×, 4× the rows; 1 vs 2 workers")
    scaling = []
    for k, (start, end) in enumerate(s.scale_months):
        if (start, end) == (s.start, s.end):  # the main run is this size already
            t, sm = best_run["seconds"], best_run["summary"]
        else:
            cfg = bench.config(bench.fresh_tag("s"), start, end)
            t, res = run_once(bench, cfg, client)
            sm = summarise(res)
            bench.cleanup(cfg)
        scaling.append(
            {
                "factor": 2**k,
                "months": f"{start}..{end}",
                "units": len(sm["units"]),
                "rows": sm["total"]["rows"],
                "seconds": t,
                "task_seconds": sm["total"]["seconds"],
            }
        )
    r["scaling"] = scaling
    start, end = s.scale_months[s.one_worker_scale]
    cfg = bench.config(bench.fresh_tag("w"), start, end, workers=1)
    with contextlib.ExitStack() as one:
        client1 = start_cluster(one, cfg)
        t1, res1 = run_once(bench, cfg, client1)
    bench.cleanup(cfg)
    r["workers"] = {
        "months": f"{start}..{end}",
        "one": t1,
        "two": scaling[s.one_worker_scale]["seconds"],
        "rows": summarise(res1)["total"]["rows"],
    }


if __name__ == "__main__":
    main()
