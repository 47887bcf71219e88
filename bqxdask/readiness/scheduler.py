"""The plan group with ``cluster.scheduler_address``: what the existing scheduler offers (SPEC §8, §11).

Its workers and their memory (on their hosts, not measured here), bqxdask and the pickled
libraries at the same versions as this client, and, per worker, whether it reaches the
database and the Parquet location like this client (:mod:`.probes`). A scheduler that cannot
be reached is a ❌.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dask.utils import format_bytes

from .. import __version__
from ..config import Config
from .findings import CHECK_APPLICATION, FAIL, OK, WARN, Check, first_line, guard
from .probes import probe_workers

GROUP = "plan"
#: packages whose versions must match between this client and the workers of a scheduler
MATCHED_PACKAGES = ("python", "dask", "distributed", "numpy", "pandas", "bqxdask")


@dataclass(frozen=True)
class Workers:
    """What the scheduler offers: workers, threads per worker, the smallest memory_limit (None: unknown)."""

    n: int | None = None
    threads_per_worker: int | None = None
    memory: int | None = None


def scheduler_group(cfg: Config) -> tuple[Workers, list[Check]]:
    """The scheduler, worker software and worker access lines of ``cluster.scheduler_address``."""
    from distributed import Client

    addr = cfg.cluster.scheduler_address
    t0 = time.perf_counter()
    try:
        client = Client(addr, timeout="5s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        return Workers(), [
            Check(
                GROUP,
                "scheduler",
                FAIL,
                f"cannot reach the Dask scheduler at {addr} "
                f"({first_line(exc)}); fix: check --scheduler / cluster.scheduler_address and that "
                "the scheduler runs",
                {"address": addr},
            )
        ]
    try:
        info = client.scheduler_info(n_workers=-1)
        link = None
        try:
            link = client.dashboard_link
        except Exception:
            pass
        software = worker_software(client)
        parquet_dir = cfg.output.parquet_dir if cfg.output.write_parquet else None
        access = guard(
            GROUP,
            "worker access",
            probe_workers,
            client,
            run_url(cfg),
            parquet_dir,
            read_url=cfg.database.read_url,
            application_name=CHECK_APPLICATION,
        )
    finally:
        client.close()
    workers = info.get("workers", {})
    n = len(workers)
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    memory = sum(int(w.get("memory_limit") or 0) for w in workers.values())
    found = Workers(
        n,
        max(1, threads // n) if n else 1,
        min((int(w.get("memory_limit") or 0) for w in workers.values()), default=None) or None,
    )
    values = {
        "address": addr,
        "workers": n,
        "threads": threads,
        "memory_limit_bytes": memory,
        "dashboard": link,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if n == 0:
        return found, [
            Check(
                GROUP,
                "scheduler",
                WARN,
                f"{addr} answers but has no workers: the run would wait for "
                f"them; fix: start workers (dask worker {addr}) before bqxdask features",
                values,
            )
        ]
    return found, [
        Check(
            GROUP,
            "scheduler",
            OK,
            f"{addr}: {n} workers, {threads} threads, {format_bytes(memory)} memory_limit in total "
            f"(their memory is on their hosts, not checked here){f'; dashboard {link}' if link else ''}",
            values,
        ),
        software,
        *access,
    ]


def run_url(cfg: Config) -> str | None:
    """The URL the run's workers use: the configured one, else the embedded server's if it runs."""
    if cfg.database.url:
        return cfg.database.url
    from ..db import embedded_server

    server = embedded_server(cfg)
    status = server.status()
    return server.url if status.initialized and status.running else None


def worker_software(client: Any) -> Check:
    """bqxdask importable on every worker, and the same versions of what pickles cross."""
    versions = client.get_versions(check=False, packages=["bqxdask"])
    mine = versions["client"]["packages"]
    workers = versions.get("workers", {})
    without = [a for a, w in workers.items() if not w.get("packages", {}).get("bqxdask")]
    values: dict[str, Any] = {"client": {k: mine.get(k) for k in MATCHED_PACKAGES}, "without_bqxdask": without}
    if without:
        return Check(
            GROUP,
            "worker software",
            FAIL,
            f"{len(without)} of {len(workers)} workers cannot import "
            f"bqxdask (e.g. {without[0]}): every task would fail; fix: pip install bqxdask=={__version__} "
            "in the workers' environment",
            values,
        )
    differ = sorted(
        {
            f"{k} {w['packages'].get(k)} ≠ {mine.get(k)}"
            for w in workers.values()
            for k in MATCHED_PACKAGES
            if w.get("packages", {}).get(k) != mine.get(k)
        }
    )
    values["mismatches"] = differ
    if differ:
        return Check(
            GROUP,
            "worker software",
            WARN,
            f"workers differ from this client: {'; '.join(differ[:4])}; "
            "fix: install the same versions on the workers (pickled tasks may fail)",
            values,
        )
    return Check(
        GROUP,
        "worker software",
        OK,
        f"{len(workers)} workers run bqxdask {mine.get('bqxdask')}, "
        f"dask {mine.get('dask')}, pandas {mine.get('pandas')} like this client",
        values,
    )
