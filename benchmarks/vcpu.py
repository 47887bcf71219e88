"""How fast this machine's vCPUs are at a given moment (issue 15).

On a shared VM the same work does not cost the same CPU seconds from one minute to the next:
the host's other guests share its cores and caches. The benchmarks compare measurements taken
at different moments (the floor and the run, 4 pairs and 28 pairs), so they time a fixed
pure-Python loop (no I/O, a few cache lines) around them: :func:`spin` alone, and
:func:`contention` alone and on every vCPU at once (when a VM's vCPUs share physical cores on
the host, which ``lscpu`` inside the guest does not show, the loop slows when all run it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: iterations of :func:`spin` per measurement: about 0.5 s of one vCPU here
SPIN = 15_000_000


def spin(n: int = SPIN) -> tuple[float, int]:
    """A fixed loop of integer additions; its CPU seconds and the process that ran it."""
    c0 = time.process_time()
    s = 0
    for i in range(n):
        s += i
    return time.process_time() - c0, os.getpid()


def contention(repeat: int = 5, n: int = SPIN) -> dict[str, Any]:
    """CPU seconds of :func:`spin` alone and on every vCPU at once (medians of ``repeat``).

    ``factor`` = together / alone: how much more CPU the same work costs when every vCPU is
    busy; ``delivered`` = vCPUs / factor: what all the busy vCPUs do, in idle-neighbour vCPUs.
    """
    cpus = os.cpu_count() or 1
    alone: list[float] = []
    together: list[float] = []
    with ProcessPoolExecutor(cpus, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(spin, [1000] * cpus * 4))  # every process started and warm
        for _ in range(4 * repeat):  # a process that took two loops ran them one after the other
            alone.append(pool.submit(spin, n).result()[0])
            runs = list(pool.map(spin, [n] * cpus))
            if len({pid for _, pid in runs}) == cpus:  # one loop per process, all at once
                together.append(statistics.mean(t for t, _ in runs))
            if len(together) == repeat:
                break
    if not together:
        raise RuntimeError(f"the {cpus} loops never ran in {cpus} processes at once (n={n} is too short?)")
    a, t = statistics.median(alone), statistics.median(together)
    return {
        "cpus": cpus,
        "alone": a,
        "together": t,
        "factor": t / a,
        "delivered": cpus * a / t,
        "alone_all": alone,
        "together_all": together,
    }
