"""The run's Dask cluster and the connections it may open (SPEC §5, §11).

:func:`cluster` is used by ``features`` and ``select`` alike: the given client, an existing
scheduler (``cluster.scheduler_address``) or a LocalCluster whose workers get
:data:`WORKER_ENVIRON`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, TextIO

from ..config import Config
from ..db.budget import connections_needed, server_budget, servers
from ..db.connect import connection, describe
from ..errors import BqxError, ConfigError

log = logging.getLogger(__name__)

#: Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, so glibc hands every
#: month-long array (~260 KB) back to the OS and maps it afresh: page faults made the feature
#: code ~3× slower inside workers than in a plain process (benchmarks/bench_pipeline.py).
#: A 64 MiB top pad keeps freed memory for reuse while the trim threshold still returns big
#: blocks. Workers of an existing cluster need the same (README: Scaling out).
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TOP_PAD_": str(64 * 2**20)}


@contextlib.contextmanager
def cluster(cfg: Config, client: Any, out: TextIO) -> Iterator[tuple[Any, str | None]]:
    """Yield (client, dashboard URL): the given client, an existing scheduler, or a LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    if client is not None:
        link = dashboard_link(client)
        out.write(f"Dask dashboard: {link}\n" if link else "Dask dashboard: not available\n")
        out.flush()
        yield client, link
        return
    if cfg.cluster.scheduler_address:
        try:  # the connect timeout is Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
            c = Client(cfg.cluster.scheduler_address, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError) as exc:
            raise BqxError(
                f"cannot reach the Dask scheduler at {cfg.cluster.scheduler_address} ({exc}); "
                "fix: check --scheduler / cluster.scheduler_address and that the scheduler runs"
            ) from None
        try:
            link = dashboard_link(c)
            out.write(
                f"Dask dashboard: {link or 'not available'} (existing scheduler {cfg.cluster.scheduler_address})\n"
            )
            out.flush()
            yield c, link
        finally:
            c.close()
        return
    with dask.config.set(WORKER_ENVIRON):
        local = LocalCluster(
            n_workers=cfg.cluster.n_workers,
            threads_per_worker=cfg.cluster.threads_per_worker,
            memory_limit=cfg.cluster.memory_limit,
            dashboard_address=cfg.cluster.dashboard_address,
            # a failing task's "Compute Failed … Traceback" is the run's to tell, in one line (the
            # traceback goes to run.log): the workers' own log stays quiet below CRITICAL
            processes=True,
            silence_logs=logging.CRITICAL,
        )
    c = Client(local)
    try:
        link = dashboard_link(c)
        out.write(
            f"Dask dashboard: {link}  ({cfg.cluster.n_workers} workers × {cfg.cluster.threads_per_worker} "
            f"thread, {cfg.cluster.memory_limit} each)\n"
        )
        out.flush()
        yield c, link
    finally:
        c.close()
        local.close()


def dashboard_link(client: Any) -> str | None:
    try:
        return client.dashboard_link
    except Exception:  # no bokeh on a remote scheduler, for instance
        return None


def check_connection_budget(cfg: Config, url: str, rurl: str, n_workers: int) -> None:
    """Refuse, before any work, a plan that would open more connections than a server allows."""
    per = cfg.database.max_connections_per_worker
    for server_url, urls_on_server in servers(url, rurl):
        need = connections_needed(n_workers, per, urls_on_server)
        with connection(server_url) as conn, conn.cursor() as cur:
            b = server_budget(cur)
        if need > b.free:
            twice = " × 2 URLs" if urls_on_server == 2 else ""
            capped = f", capped by the {b.capped_by}" if b.capped_by else ""
            raise ConfigError(
                f"the run would open up to {need} connections to {describe(server_url)} ({n_workers} workers × "
                f"database.max_connections_per_worker = {per}{twice}, + {urls_on_server}) but the server has "
                f"{b.free} free (max_connections = {b.max_connections}, {b.reserved} reserved, {b.in_use} in use"
                f"{capped}); fix: lower cluster.n_workers or database.max_connections_per_worker, "
                "or raise max_connections"
            )
        log.info("connection budget on %s: %d needed, %d free", describe(server_url), need, b.free)
