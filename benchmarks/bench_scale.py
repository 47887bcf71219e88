"""``make bench-scale``: production scale on this machine (issue 15, goal 4; SPEC §5, §10).

Seeds 28 pairs × one month into a fresh embedded PostgreSQL, then runs ``bqxdask features``
exactly as an operator does (the CLI, its own LocalCluster, ``configs/production.toml`` with
``cluster.n_workers`` workers) twice into fresh output schemas: first 4 pairs, then all 28.
For each run it reports wall time, bars/s and output rows/s, the core-seconds of the CLI's
process tree (client + workers) and of PostgreSQL, the peak RSS of each worker, and what the
run left on the server and on disk. The per-row cost of 28 pairs against 4 pairs says whether
the run scales linearly; the last lines project 28 pairs × 12 months on 8 workers against a
separate server from the measured per-row costs.

The cost of a run is the core-seconds of the CLI's process tree (client, forkserver, workers) and of
PostgreSQL: unlike wall or unit seconds, they do not grow when another process takes the CPU,
so they compare on a shared machine. A run costs a fixed part (imports in the client and in
each worker, cluster start, numba's cache load, TA-Lib's import, the plan) plus a part per bar;
linear means the cost per *added* bar is the same from 4 to 16 pairs as from 16 to 28 (within
10 %). The three runs alternate ``--rounds`` times, each into fresh schemas; the verdict is the
median over rounds. The fixed part (the intercept) is reported, and so is the plain per-bar
ratio of 28 to 4 pairs, which the fixed part pulls below 1.

    .venv/bin/python benchmarks/bench_scale.py [--workers 2] [--month 2024-07] [--dir DIR] [--json FILE]

A report, not a test: exit 0 when the runs completed, whatever the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

import psutil
from dask.utils import format_bytes, format_time
from psycopg2 import sql
from timing import CpuMeter  # benchmarks/ is the script's directory
from vcpu import spin

from bqxdask.config import load_config
from bqxdask.db.connect import connection

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ROOT / "configs" / "production.toml"
SIZES = (4, 16, 28)  # pairs per run: linear = the same cost per added bar from 4 to 16 as from 16 to 28
PROJECT_MONTHS = 12
PROJECT_WORKERS = 8
LINEAR_TOLERANCE = 0.10  # per-row cost of 28 pairs within 10 % of 4 pairs


@dataclass
class Run:
    pairs: int
    wall: float
    bars: int
    rows: int
    outputs: int
    tree_core_s: float  # the CLI process, the forkserver and the workers (client + Dask), sampled
    server_core_s: float  # the postmaster and every backend, exited ones included
    vacuum_core_s: float  # VACUUM (ANALYZE) of the run's tables right after it: the upkeep it leaves
    worker_peak_rss: list[int] = field(default_factory=list)
    server_bytes: int = 0
    parquet_bytes: int = 0
    unit_s: float = 0.0  # the workers' seconds inside units (read, compute, Parquet, COPY, lock)
    rerun_wall: float = 0.0  # the same command again: nothing to do (start-up, plan, checkpoints)
    rerun_tree_core_s: float = 0.0
    rerun_server_core_s: float = 0.0
    span: float = 0.0  # from the dashboard line (cluster up) to the last unit's progress line
    io_stall_s: float = float("nan")  # seconds in which every runnable task waited on I/O (PSI "full")
    client_core_s: float = 0.0  # the CLI process: plan, graph, the scheduler, progress, the report
    workers_user_s: float = 0.0  # the other processes of the tree (forkserver, workers): user time
    workers_sys_s: float = 0.0  # … and kernel time (page faults, reclaim, COPY and file writes)
    reclaim: dict[str, int] = field(default_factory=dict)  # /proc/vmstat counters over the run
    notes: list[str] = field(default_factory=list)  # what the console warned of, the stalls the run reported
    probe_s: float = float("nan")  # CPU s of benchmarks/vcpu.py's fixed loop around the run: the vCPU's speed then

    @property
    def per_bar_us(self) -> float:
        """Wall per bar of the work itself: the span from the cluster being up to the last unit."""
        return 1e6 * self.span / self.bars

    @property
    def core_s(self) -> float:
        """Client, workers and server: the run's core-seconds (the VACUUM after it not included)."""
        return self.tree_core_s + self.server_core_s

    @property
    def upkeep_core_us_per_bar(self) -> float:
        return 1e6 * self.vacuum_core_s / self.bars

    @property
    def fixed(self) -> float:
        """Start-up, plan, cluster start and shut-down: the wall outside the span."""
        return self.wall - self.span


def sh(args: Sequence[str], env: Mapping[str, str], *, timeout: float = 3600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bqxdask", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bqxdask {' '.join(args)} exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-3000:]}")
    return proc.stdout


class TreeSampler:
    """The CLI's process tree, sampled in a thread: the peak RSS of each worker and the
    core-seconds of every process in the tree (the CLI, the forkserver, the workers).

    The workers are forked by a forkserver that does not wait for them, so their CPU never
    reaches this process's ``RUSAGE_CHILDREN``: each process is counted at its last sample
    (within ``interval`` of its exit, when it is idle).
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.parent = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.user: dict[int, float] = {}
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    @property
    def core_s(self) -> float:
        return sum(self.cpu.values())

    def split(self) -> tuple[float, float, float]:
        """Core-seconds of (the parent, the others' user time, the others' system time)."""
        others = [pid for pid in self.cpu if pid != self.parent.pid]
        user = sum(self.user[pid] for pid in others)
        return self.cpu.get(self.parent.pid, 0.0), user, sum(self.cpu[pid] for pid in others) - user

    def sample(self) -> None:
        while not self.stop.is_set():
            try:
                children = self.parent.children(recursive=True)
            except psutil.Error:
                return
            for proc in (self.parent, *children):
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        self.cpu[proc.pid] = times.user + times.system  # its own, not its waited children's
                        self.user[proc.pid] = times.user
                        if proc is self.parent or "multiprocessing" not in " ".join(proc.cmdline()) or proc.children():
                            continue  # the workers: spawned or forked processes, not the forkserver, their parent
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), proc.memory_info().rss)
                except psutil.Error:
                    continue
            self.stop.wait(self.interval)


def schema_bytes(url: str, schema: str) -> int:
    with connection(url, application_name="bqxdask/bench-scale", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        )
        return int(cur.fetchone()[0])


def vacuum_schema(url: str, schema: str) -> None:
    """VACUUM (ANALYZE) every table of ``schema``, in a session the server has reaped on return:
    the upkeep autovacuum would do later for the run's fresh tables, measured on its own."""
    with connection(url, application_name="bqxdask/bench-scale", autocommit=True) as conn, conn.cursor() as cur:
        backend = conn.get_backend_pid()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,))
        tables = [sql.Identifier(schema, name) for (name,) in cur.fetchall()]
        if tables:
            cur.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(tables)))
    deadline = time.monotonic() + 10
    while psutil.pid_exists(backend) and time.monotonic() < deadline:  # its CPU counts once reaped
        time.sleep(0.01)


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def io_stall_seconds() -> float:
    """The kernel's total time with every non-idle task stalled on I/O (``/proc/pressure/io``,
    "full"), in seconds; NaN where the kernel has no pressure stall information."""
    try:
        with open("/proc/pressure/io") as fh:
            for line in fh:
                if line.startswith("full"):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


#: /proc/vmstat counters that say whether the run's memory came from reclaiming the page cache:
#: pages the allocating processes reclaimed themselves (their CPU), pages kswapd reclaimed, stalls
VMSTAT = ("pgsteal_direct", "pgsteal_kswapd", "allocstall")


#: console lines worth keeping: a slow run says on what it waited (SPEC §11) or what failed
NOTEWORTHY = ("WARNING", "ERROR", "waiting", "stall", "Traceback", "lost")


def vmstat() -> dict[str, int]:
    """The :data:`VMSTAT` counters (``allocstall`` summed over its zones); empty without /proc/vmstat."""
    out = dict.fromkeys(VMSTAT, 0)
    try:
        with open("/proc/vmstat") as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                for key in VMSTAT:
                    if name == key or (key == "allocstall" and name.startswith("allocstall_")):
                        out[key] += int(value)
    except OSError:
        return {}
    return out


def features_run(env: dict[str, str], pairs: Sequence[str], tag: str, tmp: Path, url: str, server: CpuMeter) -> Run:
    env = dict(env, BQX_DATABASE__OUTPUT_SCHEMA=f'"{tag}"', BQX_OUTPUT__PARQUET_DIR=f'"{tmp / tag}"')
    probe_before = vcpu_probe()
    with connection(url, application_name="bqxdask/bench-scale", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CHECKPOINT")  # the seed's dirty pages are not this run's work
    before_server = server.postgres()
    stall0 = io_stall_seconds()
    vm0 = vmstat()
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "bqxdask", "features", "--pairs", ",".join(pairs)]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rss = TreeSampler(proc.pid)
    rss.thread.start()
    lines, first, last = [], None, None
    for line in proc.stdout:  # the console as the operator sees it, each line stamped on arrival
        lines.append(line)
        now = time.perf_counter()
        if line.startswith("Dask dashboard"):
            first = now
        elif line.startswith("[features]"):
            last = now
    proc.wait(timeout=600)
    wall = time.perf_counter() - t0
    io_stall = io_stall_seconds() - stall0
    vm1 = vmstat()
    out = "".join(lines)
    rss.stop.set()
    rss.thread.join()
    client_s, workers_user, workers_sys = rss.split()
    if proc.returncode != 0 or first is None or last is None:
        raise SystemExit(f"bqxdask features ({len(pairs)} pairs) exited {proc.returncode}:\n{out[-3000:]}")
    after_server = server.postgres()
    vacuum_schema(url, tag)
    after_vacuum = server.postgres()
    summary = latest_summary(tmp / "runs")
    totals = summary["totals"]
    bars = sum(u["rows"] for u in summary["units"] if u["family"] == summary["families"][0])
    before_tree_rerun = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server_rerun = server.postgres()
    t1 = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=True, timeout=600)
    rerun = time.perf_counter() - t1
    after_tree_rerun = resource.getrusage(resource.RUSAGE_CHILDREN)
    probe = (probe_before + vcpu_probe()) / 2
    run = Run(
        pairs=len(pairs),
        wall=wall,
        bars=bars,
        rows=int(totals["rows"]),
        outputs=int(totals["outputs"]),
        unit_s=sum(u["seconds"] for u in summary["units"]),
        rerun_wall=rerun,
        rerun_tree_core_s=_core_s(after_tree_rerun) - _core_s(before_tree_rerun),
        rerun_server_core_s=server.postgres() - before_server_rerun,
        span=last - first,
        io_stall_s=io_stall,
        client_core_s=client_s,
        workers_user_s=workers_user,
        workers_sys_s=workers_sys,
        reclaim={k: vm1[k] - vm0[k] for k in vm1},
        notes=[line.rstrip() for line in lines if any(k in line for k in NOTEWORTHY)]
        + [f"stall: {s}" for s in summary.get("stalls", [])],
        tree_core_s=rss.core_s,
        server_core_s=after_server - before_server,
        vacuum_core_s=after_vacuum - after_server,
        worker_peak_rss=sorted(rss.peak.values(), reverse=True),
        server_bytes=schema_bytes(url, tag),
        parquet_bytes=tree_bytes(tmp / tag),
        probe_s=probe,
    )
    drop_outputs(url, tag, tmp / tag)  # 28 pairs leave ~6 GiB: rounds would fill the disk
    return run


def vcpu_probe(repeat: int = 3) -> float:
    """CPU seconds of the fixed loop, median of ``repeat``, in this process on an otherwise idle machine."""
    return median(spin()[0] for _ in range(repeat))


def drop_outputs(url: str, schema: str, parquet: Path) -> None:
    with connection(url, application_name="bqxdask/bench-scale", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    shutil.rmtree(parquet, ignore_errors=True)


def _core_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def latest_summary(runs_dir: Path) -> dict:
    newest = max(runs_dir.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(newest.read_text())


def report(rounds: Sequence[Sequence[Run]], workers: int, month: str, seed_s: float) -> list[str]:
    """The table of every run, the linearity verdict (median over rounds), the projection."""
    last = rounds[-1][-1]
    lines = [
        f"bench_scale: seeded {month}, {last.pairs} pairs, in {format_time(seed_s)}; "
        f"configs/production.toml, {workers} workers, the CLI as an operator runs it; {len(rounds)} round(s)",
        "",
        f"{'round':>5} {'pairs':>5} {'bars':>10} {'outputs':>7} {'wall':>8} {'fixed':>6} {'rerun':>6} {'bars/s':>8} "
        f"{'rows/s':>9} {'µs/bar':>7} {'in units':>9} {'client+workers':>14} {'server':>8} {'vacuum':>7} "
        f"{'cµs/bar':>8} {'I/O stall':>9} {'peak RSS/worker':>16} {'in PostgreSQL':>13} {'Parquet':>10}",
    ]
    for i, runs in enumerate(rounds, start=1):
        for r in runs:
            lines.append(
                f"{i:>5} {r.pairs:>5} {r.bars:>10,} {r.outputs:>7} {r.wall:>7.1f}s {r.fixed:>5.1f}s {r.rerun_wall:>5.1f}s "
                f"{r.bars / r.wall:>8,.0f} {r.rows / r.wall:>9,.0f} {r.per_bar_us:>7.1f} {r.unit_s:>8.1f}s "
                f"{r.tree_core_s:>12.1f}cs {r.server_core_s:>6.1f}cs {r.vacuum_core_s:>5.1f}cs "
                f"{1e6 * r.core_s / r.bars:>8.1f} {r.io_stall_s:>8.1f}s {format_bytes(max(r.worker_peak_rss, default=0)):>16} "
                f"{format_bytes(r.server_bytes):>13} {format_bytes(r.parquet_bytes):>10}"
            )
    lines += [
        "",
        "where the core-seconds went, per run: and per bar (core-µs); reclaimed = pages of the page cache taken back "
        "for new memory, by the allocating processes themselves (direct: their CPU) and by kswapd",
        f"{'round':>5} {'pairs':>5} {'client':>8} {'workers user':>12} {'workers sys':>11} {'server':>8} "
        f"{'client/bar':>10} {'user/bar':>8} {'sys/bar':>8} {'server/bar':>10} {'reclaimed direct':>16} {'kswapd':>10}",
    ]
    for i, runs in enumerate(rounds, start=1):
        for r in runs:
            per = 1e6 / r.bars
            lines.append(
                f"{i:>5} {r.pairs:>5} {r.client_core_s:>6.1f}cs {r.workers_user_s:>10.1f}cs {r.workers_sys_s:>9.1f}cs "
                f"{r.server_core_s:>6.1f}cs {r.client_core_s * per:>10.1f} {r.workers_user_s * per:>8.1f} "
                f"{r.workers_sys_s * per:>8.1f} {r.server_core_s * per:>10.1f} "
                f"{r.reclaim.get('pgsteal_direct', 0):>16,} {r.reclaim.get('pgsteal_kswapd', 0):>10,}"
            )
    for i, runs in enumerate(rounds, start=1):
        for r in runs:
            if r.notes:
                lines += [f"round {i}, {r.pairs} pairs, the console said ({len(r.notes)} lines):"]
                lines += [f"    {note[:300]}" for note in r.notes[:12]]
    low = [_marginal(runs[0], runs[1]) for runs in rounds]
    high = [_marginal(runs[1], runs[2]) for runs in rounds]
    ratio = [b / a for a, b in zip(low, high)]
    intercept = [runs[0].core_s - a * 1e-6 * runs[0].bars for a, runs in zip(low, rounds)]  # a: µs per bar
    plain = [(runs[2].core_s / runs[2].bars) / (runs[0].core_s / runs[0].bars) for runs in rounds]
    upkeep = [(runs[2].vacuum_core_s / runs[2].bars) / (runs[0].vacuum_core_s / runs[0].bars) for runs in rounds]
    verdict = "PASS" if abs(median(ratio) - 1) <= LINEAR_TOLERANCE else "MISS"
    probes = [r.probe_s for runs in rounds for r in runs]
    small, mid, big = rounds[-1]
    lines += [
        "",
        "µs/bar = the span from the cluster being up (the dashboard line) to the last unit, per bar; "
        "fixed = the rest of the wall (imports, plan, cluster start and stop, the performance report); "
        "rerun = the same command again with nothing to do; in units = the workers' seconds inside "
        "units (read, compute, Parquet, COPY, locks); cs = core-seconds; vacuum = VACUUM (ANALYZE) of the run's "
        "tables right after it (autovacuum is off on this scratch server, so none of it overlaps a run); "
        "cµs/bar = core-µs per bar of client, workers and server; I/O stall = the seconds of the run in which "
        "every runnable task on the machine waited on the disk (/proc/pressure/io, full): CPU nobody could use",
        f"{verdict}: core-µs per added bar, {mid.pairs}→{big.pairs} pairs / {small.pairs}→{mid.pairs} pairs = "
        f"{_ratios(ratio)} (linear within {LINEAR_TOLERANCE:.0%}: 0.90–1.10); per added bar "
        f"{_ratios(low, '.1f')} and {_ratios(high, '.1f')} core-µs; fixed part {_ratios(intercept, '.1f')} core-s",
        f"plain per-bar cost, {big.pairs} pairs / {small.pairs} pairs: {_ratios(plain)} (the fixed part over fewer bars); "
        f"the VACUUM per bar {_ratios(upkeep)}",
        "the vCPU's speed around each run (benchmarks/vcpu.py's fixed loop, CPU s): "
        + ", ".join(f"{p:.2f}" for p in probes)
        + f" ({max(probes) / min(probes):.2f}× spread between runs minutes apart)",
    ]
    # 8 workers against a separate server: the units' worker-seconds (they include the waits on
    # the server, measured where server and workers share 2 cores, so this errs long) spread over
    # the workers; the server's core-seconds over its own vCPUs; the slower of the two sets the pace.
    scale = PROJECT_MONTHS
    worker_s = big.unit_s * scale / PROJECT_WORKERS
    server_s = big.server_core_s * scale / PROJECT_WORKERS
    lines += [
        f"projection, {big.pairs} pairs × {PROJECT_MONTHS} months on {PROJECT_WORKERS} workers "
        f"(one core each) against a separate server with ≥ {PROJECT_WORKERS} vCPUs: "
        f"{big.bars * scale:,} bars, {big.rows * scale:,} output rows; workers "
        f"{format_time(worker_s)}, server {format_time(server_s)} → ≈ "
        f"{format_time(max(worker_s, server_s) + big.fixed)} with the fixed part; {format_bytes(big.server_bytes * scale)} in PostgreSQL, "
        f"{format_bytes(big.parquet_bytes * scale)} of Parquet"
    ]
    return lines


def _marginal(a: Run, b: Run) -> float:
    """Core-µs per bar that run ``b`` costs beyond run ``a``."""
    return 1e6 * (b.core_s - a.core_s) / (b.bars - a.bars)


def _ratios(values: Sequence[float], fmt: str = ".3f") -> str:
    """``median (each round's)``, e.g. ``1.012 (1.01, 1.03)``."""
    each = ", ".join(f"{v:.2f}" for v in values)
    return f"{median(values):{fmt}}" + (f" ({each})" if len(values) > 1 else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--month", default="2024-07")
    parser.add_argument("--dir", help="work directory (default: a new temporary one, removed afterwards)")
    parser.add_argument("--json", help="write the measurements here too")
    parser.add_argument("--rounds", type=int, default=2, help="the three runs, this many times")
    args = parser.parse_args(argv)
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(
        BQX_CONFIG=str(PRODUCTION),
        BQX_DATABASE__EMBEDDED_DIR=f'"{tmp / "pgdata"}"',
        BQX_CLUSTER__N_WORKERS=str(args.workers),
        BQX_CLUSTER__DASHBOARD_ADDRESS='"127.0.0.1:0"',
        BQX_RUN__START=f'"{args.month}"',
        BQX_RUN__END=f'"{args.month}"',
        BQX_RUN__RUNS_DIR=f'"{tmp / "runs"}"',
    )
    cfg = load_config(PRODUCTION, environ=env)
    pairs = list(cfg.run.pairs)
    try:
        sh(["db", "start"], env)
        from bqxdask.db import embedded_server

        server = embedded_server(cfg)
        url = server.url
        with connection(url, application_name="bqxdask/bench-scale", autocommit=True) as conn, conn.cursor() as cur:
            # autovacuum of one run's tables would otherwise run during the next run and be charged to it
            cur.execute("ALTER SYSTEM SET autovacuum = off")
            cur.execute("SELECT pg_reload_conf()")
        meter = CpuMeter(server.status().pid, ())  # PostgreSQL's core-seconds, exited backends included
        t0 = time.perf_counter()
        sh(["seed"], env)
        seed_s = time.perf_counter() - t0
        rounds = [
            [features_run(env, pairs[:n], f"scale{n}_{i}", tmp, url, meter) for n in SIZES]
            for i in range(1, args.rounds + 1)
        ]
        lines = report(rounds, args.workers, args.month, seed_s)
        print("\n".join(lines))
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "workers": args.workers,
                        "month": args.month,
                        "seed_s": seed_s,
                        "rounds": [[asdict(r) for r in runs] for runs in rounds],
                        "report": lines,
                    },
                    indent=2,
                )
            )
    finally:
        subprocess.run([sys.executable, "-m", "bqxdask", "db", "stop"], env=env, cwd=ROOT, capture_output=True)
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
