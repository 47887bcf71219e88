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
