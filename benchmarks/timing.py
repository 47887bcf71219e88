"""How the pipeline benchmark measures: wall-clock timers, CPU accounting, RSS and spill counters.

Timings are wall-clock, best of N where it is cheap. :class:`CpuMeter` splits the core-seconds
of a span between PostgreSQL, the Dask processes, this process and the rest of the machine
(the machine is shared: that says how much of a gap belongs to someone else).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from bqxdask.db.connect import parse_application_name

#: the allocator variables Dask's Nannies set in the workers' environment (issue 15)
MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")


def say(msg: str) -> None:
    """Progress on stderr, so that stdout is the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t, res = timed(fn)
        if t < best:
            best, out = t, res
    return best, out


def mib(n: float) -> float:
    return n / 2**20


def cpu_seconds(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def machine_busy() -> float:
    t = psutil.cpu_times()  # guest time is already inside user on Linux
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuMeter:
    """Core-seconds used by PostgreSQL, the Dask processes, this process and the rest, over a span."""

    def __init__(self, pg_pid: int | None, dask_pids: Iterable[int]) -> None:
        self.pg = psutil.Process(pg_pid) if pg_pid else None
        self.dask = [psutil.Process(p) for p in dask_pids]
        self.me = psutil.Process()

    def postgres(self) -> float:
        if self.pg is None:
            return 0.0
        total = cpu_seconds(self.pg)
        with contextlib.suppress(psutil.Error):
            t = self.pg.cpu_times()
            total += t.children_user + t.children_system  # backends that have exited
            total += sum(cpu_seconds(c) for c in self.pg.children(recursive=True))
        return total

    def snapshot(self) -> dict[str, float]:
        return {
            "postgres": self.postgres(),
            "dask": sum(cpu_seconds(p) for p in self.dask),
            "client": cpu_seconds(self.me),
            "machine": machine_busy(),
            "t": time.perf_counter(),
        }

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        d = {k: b[k] - a[k] for k in a}
        d["other"] = max(0.0, d["machine"] - d["postgres"] - d["dask"] - d["client"])
        d["wall"] = d.pop("t")
        d["capacity"] = d["wall"] * (psutil.cpu_count() or 1)
        return d


class RssSampler:
    """Peak RSS of each worker process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pids: Iterable[int], interval: float = 0.1) -> None:
        self.procs = {p: psutil.Process(p) for p in pids}
        self.peak = {p: 0 for p in self.procs}
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stop.is_set():
            for pid, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
            self.stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def spill_counters(dask_worker) -> dict[str, float]:
    """What a worker's SpillBuffer wrote to disk, and its memory limit (``client.run``)."""
    data = dask_worker.data
    metrics = getattr(data, "cumulative_metrics", {})
    spilled = getattr(data, "spilled_total", None)
    return {
        "disk_write_count": float(metrics.get(("disk-write", "count"), 0)),
        "disk_write_bytes": float(metrics.get(("disk-write", "bytes"), 0)),
        "on_disk_now_bytes": float(spilled.disk if spilled is not None else 0),
        "memory_limit": float(dask_worker.memory_manager.memory_limit or 0),
    }


def rusage() -> dict[str, float]:
    """This process's CPU, page faults and peak RSS so far (also run on the workers)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": r.ru_utime, "sys": r.ru_stime, "minflt": float(r.ru_minflt), "maxrss": r.ru_maxrss * 1024.0}


def malloc_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in MALLOC_VARS}


class BackendMeter:
    """PostgreSQL's core-seconds over a span, split by the process that spent them (issue 15).

    A thread samples the CPU time of every child of the postmaster every ``interval`` seconds
    and names each one from ``pg_stat_activity``: the run's sessions by their
    ``application_name`` role (``bqxdask/<run>/worker`` → ``worker sessions``), the server's
    own processes by ``backend_type`` (autovacuum worker, checkpointer, io worker, …). A
    process that exits between two samples loses what it spent after the last one: that and
    the postmaster itself are the ``unattributed`` rest of the exact total
    (:meth:`CpuMeter.postgres`). The meter's own session is counted apart (``meter``).
    """

    def __init__(self, pg_pid: int, url: str, *, interval: float = 0.05) -> None:
        self.meter = CpuMeter(pg_pid, [])
        self.pg = psutil.Process(pg_pid)
        self.url, self.interval = url, interval
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.procs: dict[int, psutil.Process] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, name="backend meter", daemon=True)
        self.result: dict[str, float] = {}

    def __enter__(self) -> BackendMeter:
        from bqxdask.db.connect import connect

        self.conn = connect(self.url, autocommit=True, application_name="bqxdask-bench/meter")
        self.own = self.conn.get_backend_pid()
        self.total0 = self.meter.postgres()
        self.read_cpu(first=True)
        self.name_backends()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.read_cpu()
        self.name_backends()
        self.conn.close()
        time.sleep(0.2)  # the meter's own backend reaped, so that the total holds all of it
        total = self.meter.postgres() - self.total0
        out: dict[str, float] = {}
        for pid, t in self.last.items():
            name = self.kind.get(pid) or "unnamed"
            out[name] = out.get(name, 0.0) + t - self.base.get(pid, 0.0)
        out["unattributed"] = total - sum(out.values())
        out["total"] = total - out.get("meter", 0.0)
        self.result = dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def read_cpu(self, *, first: bool = False) -> None:
        with contextlib.suppress(psutil.Error):
            for c in self.pg.children():
                self.procs.setdefault(c.pid, c)
        for pid, p in list(self.procs.items()):
            try:
                t = p.cpu_times()
            except psutil.Error:
                del self.procs[pid]  # exited: its last sample stands
                continue
            self.last[pid] = t.user + t.system
            if first:
                self.base[pid] = self.last[pid]
            if pid not in self.kind:
                self.kind[pid] = _process_title_kind(p)

    def name_backends(self) -> None:
        with contextlib.suppress(Exception), self.conn.cursor() as cur:
            cur.execute("SELECT pid, backend_type, application_name FROM pg_stat_activity")
            for pid, btype, app in cur.fetchall():
                if pid == self.own:
                    self.kind[pid] = "meter"
                elif btype == "client backend":
                    run = parse_application_name(app)
                    self.kind[pid] = f"{run[1] if run else (app or 'unnamed')} sessions"
                else:
                    self.kind[pid] = btype

    def sample(self) -> None:
        n = 0
        while not self.stop.wait(self.interval):
            self.read_cpu()
            n += 1
            if n % 5 == 0 or any(pid not in self.kind or self.kind[pid] == "client" for pid in self.procs):
                self.name_backends()


def _process_title_kind(p: psutil.Process) -> str:
    """What a server process is, from its title (``postgres: checkpointer``), until
    ``pg_stat_activity`` says better; a session shows as ``client``."""
    try:
        title = " ".join(p.cmdline())
    except psutil.Error:
        return "unnamed"
    for kind in (
        "autovacuum worker",
        "autovacuum launcher",
        "checkpointer",
        "background writer",
        "walwriter",
        "io worker",
        "logical replication launcher",
        "startup",
        "walsummarizer",
    ):
        if kind in title:
            return kind
    return "client"
