"""The run's Dask cluster and the connections it may open (SPEC §5, §11).

:func:`cluster` is used by ``features`` and ``select`` alike: the given client, an existing
scheduler (``cluster.scheduler_address``) or a LocalCluster (:func:`local_cluster`) whose
workers get :data:`WORKER_ENVIRON`.

A LocalCluster's start-up is mostly its workers': a Python process each, importing pandas,
Dask, pyarrow, numba, TA-Lib, then, at their first task, loading the compiled kernels. Two
things keep that off the run's critical path (issue 15):

* the workers are forked from one ``forkserver`` process that has imported all of it and run
  every family once (:mod:`bqxdask.pipeline.warm`), so the import is paid once instead of once
  per worker, the first tasks start warm, and workers leave without a second interpreter
  shutdown each (``cluster.close`` went from ~1 s to ~0.1 s);
* :class:`LocalStart` launches that forkserver at once (:func:`launch_forkserver`: its imports
  and warm-up then overlap the scheduler's start instead of following it) and builds the
  cluster in a background thread, so that the client builds the graph and creates the tables
  meanwhile; if the client is ready first, the run says it is waiting (SPEC §11: no silent
  waits).

The nannies stay: they enforce ``cluster.memory_limit`` (SPEC §5).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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

#: Dask's default work-stealing cadence (``distributed.scheduler.work-stealing-interval``) and
#: the one a LocalCluster of the run gets instead. A unit's nine outputs go to the worker that
#: prepared it; once the other worker runs dry, it waits for the next balance to take some. At
#: 1 s that wait ended 2 × 3 months with one worker idle for 0.3–1.4 s; at 100 ms the workers
#: finish within 0.1 s of each other and the run took 13 % less (issue 15).
STEALING_INTERVAL = ("distributed.scheduler.work-stealing-interval", 1.0, "100ms")

#: where the client's ``bqxdask`` lives, for the forkserver's preload to check that it warms
#: the same copy (:mod:`bqxdask.pipeline.warm` reads it under this name)
PACKAGE_ENV = "BQXDASK_PACKAGE_DIR"
#: what the forkserver imports before it forks the workers
FORKSERVER_PRELOAD = ("distributed", "bqxdask.pipeline.warm")


def worker_settings() -> dict[str, str]:
    """The Dask settings a LocalCluster of the run starts under.

    ``forkserver`` replaces Dask's default ``spawn`` where the platform has it; a start method
    configured otherwise (``fork``, ``forkserver``) is left as it is. The pre-spawn variables
    reach the forkserver: the first nanny sets them before the forkserver is launched.
    """
    import dask

    settings = dict(WORKER_ENVIRON)
    settings[f"distributed.nanny.pre-spawn-environ.{PACKAGE_ENV}"] = str(Path(__file__).resolve().parents[1])
    method = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    if method == "spawn" and "forkserver" in multiprocessing.get_all_start_methods():
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
    return settings


def scheduler_settings() -> dict[str, str]:
    """The Dask settings a LocalCluster's scheduler starts under: :data:`STEALING_INTERVAL`
    when the configured interval is Dask's default; any other value is left as it is."""
    import dask
    from dask.utils import parse_timedelta

    key, default, ours = STEALING_INTERVAL
    return {key: ours} if parse_timedelta(dask.config.get(key, default)) == default else {}


def pre_spawn_environ() -> dict[str, str]:
    """The variables a nanny puts into ``os.environ`` before it starts a worker process.

    As ``distributed.nanny.Nanny`` computes them (``distributed.nanny.pre-spawn-environ``, a
    variable already set in the environment winning; ``PYTHONHASHSEED`` fixed for consistent
    hashing, dask/distributed#8400), so that a forkserver launched before the first nanny
    starts under the same environment as one that nanny would launch.
    """
    import dask

    env = {
        k: os.environ.get(k, str(v))
        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
        if v is not None
    }
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"
    return env


def launch_forkserver() -> None:
    """Launch the forkserver the LocalCluster's workers are forked from, if that is the start
    method and it is not running yet; without waiting for its preload (issue 15).

    Launched by the first nanny, the forkserver's imports and warm-up (~1.5–2 s) come after the
    scheduler's start (~1 s, its dashboard); launched here, they run beside it. Its
    environment is the nannies' (:func:`pre_spawn_environ`): the workers inherit it from the
    forkserver, and ``MALLOC_*`` and ``PYTHONHASHSEED`` act only when a process starts.
    """
    from multiprocessing import forkserver

    import dask
    from distributed.utils import get_mp_context

    with dask.config.set(worker_settings()):
        if dask.config.get("distributed.worker.multiprocessing-method") != "forkserver":
            return
        # after Dask's own get_mp_context, which sets its preload list once per process
        get_mp_context().set_forkserver_preload(list(FORKSERVER_PRELOAD))
        # what the first nanny would do, a moment later; only what differs, so that a second
        # call (local_cluster's, on the start's thread) writes nothing
        os.environ.update({k: v for k, v in pre_spawn_environ().items() if os.environ.get(k) != v})
        forkserver.ensure_running()


def forkservers() -> dict[int, Any]:
    """This process's ``multiprocessing`` forkserver children, by pid."""
    import psutil

    found = {}
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                found[child.pid] = child
    return found


@contextlib.contextmanager
def forkserver_ahead(cfg: Config) -> Iterator[None]:
    """The CLI's run: the workers' forkserver launched before anything else (issue 15).

    For a run that starts a LocalCluster, its preload (imports, warm-up: ~1.5-2 s of one core)
    then runs beside the client's own imports and plan instead of after them. At the end, a
    forkserver launched here is stopped: it holds the console (a pipe's reader waits for it)
    and, if the plan had no work, would still be warming up for nothing.
    """
    launched = []
    if not cfg.cluster.scheduler_address:
        with contextlib.suppress(Exception):  # only speed is at stake: LocalStart launches it otherwise
            before = forkservers()
            launch_forkserver()
            launched = [p for pid, p in forkservers().items() if pid not in before]
    try:
        yield
    finally:
        for proc in launched:
            stop_process(proc)


def stop_process(proc: Any, timeout: float = 5.0) -> None:
    """SIGTERM ``proc`` and what it forked (a worker a failed start left), SIGKILL what has not
    gone within ``timeout`` seconds: nothing outlives the command holding its console."""
    import psutil

    with contextlib.suppress(psutil.Error):
        procs = [*proc.children(recursive=True), proc]
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=timeout)


def local_cluster(cfg: Config) -> Any:
    """``distributed.LocalCluster(n_workers, threads_per_worker, memory_limit)`` from ``cluster.*``."""
    import dask
    from distributed import LocalCluster

    launch_forkserver()  # a no-op once LocalStart has launched it
    with dask.config.set({**worker_settings(), **scheduler_settings()}):
        return LocalCluster(
            n_workers=cfg.cluster.n_workers,
            threads_per_worker=cfg.cluster.threads_per_worker,
            memory_limit=cfg.cluster.memory_limit,
            dashboard_address=cfg.cluster.dashboard_address,
            # a failing task's "Compute Failed … Traceback" is the run's to tell, in one line (the
            # traceback goes to run.log): the workers' own log stays quiet below CRITICAL
            processes=True,
            silence_logs=logging.CRITICAL,
        )


class LocalStart:
    """A LocalCluster and its client, started in a background thread (issue 15, SPEC §5, §11).

    :meth:`wait` returns the client once the workers are up, saying so on ``out`` if it has to
    wait; a start that failed is raised there as one :class:`~bqxdask.errors.BqxError` line.
    :meth:`close` closes whatever started (and waits for a start still under way).
    """

    def __init__(self, cfg: Config, *, make: Callable[[Config], Any] | None = None) -> None:
        self.cfg = cfg
        self._make = make or local_cluster
        self.local: Any = None
        self.client: Any = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._t0 = time.monotonic()
        self._closed = False
        # on this thread, so that the environment does not change under another one; if it
        # fails, local_cluster meets the same error in the thread and reports it (wait)
        with contextlib.suppress(Exception):
            launch_forkserver()
        # a daemon: a second Ctrl-C while a start hangs still ends the process (the workers
        # follow their parent out)
        self._thread = threading.Thread(target=self._start, name="bqxdask LocalCluster start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            from distributed import Client

            self.local = self._make(self.cfg)
            self.client = Client(self.local)
        except BaseException as exc:  # handed to the thread that waits
            self.error = exc
        self.seconds = time.monotonic() - self._t0

    @property
    def started(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, out: TextIO | None = None) -> Any:
        """The client, once the cluster is up; on ``out`` a line if the caller has to wait for it."""
        if self._thread.is_alive():
            if out is not None:
                out.write(f"Dask: the LocalCluster ({workers(self.cfg)}) is still starting; waiting for it\n")
                out.flush()
            t = time.monotonic()
            self._thread.join()
            log.info("waited %.2f s for the LocalCluster to start", time.monotonic() - t)
        if self.error is not None:
            raise start_failed(self.cfg, self.error) from None
        log.info("LocalCluster up %.2f s after its start was requested", self.seconds)
        return self.client

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._thread.join()
        if self.client is not None:
            self.client.close()
        if self.local is not None:
            self.local.close()


def workers(cfg: Config) -> str:
    n = cfg.cluster.n_workers
    return f"{n} worker{'' if n == 1 else 's'}"


def start_failed(cfg: Config, exc: BaseException) -> BqxError:
    """One line for a LocalCluster that did not start; the traceback goes to the run log."""
    log.debug("LocalCluster start failed", exc_info=(type(exc), exc, exc.__traceback__))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return BqxError(
        f"the Dask LocalCluster ({workers(cfg)} × {cfg.cluster.memory_limit}) did not start: "
        f"{type(exc).__name__}{': ' + text if text else ''} (details in the run log); fix: check cluster.n_workers, "
        "cluster.memory_limit and cluster.dashboard_address against this machine, or give --scheduler"
    )


@contextlib.contextmanager
def cluster(
    cfg: Config, client: Any, out: TextIO, starting: LocalStart | None = None
) -> Iterator[tuple[Any, str | None]]:
    """Yield (client, dashboard URL): the given client, an existing scheduler, or a LocalCluster.

    ``starting``: the LocalCluster, already starting (:class:`LocalStart`); closed at the end.
    """
    import dask
    from distributed import Client

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
    start = starting if starting is not None else LocalStart(cfg)
    try:
        # a caller that started the cluster early has done other work meanwhile: it hears if it waits
        c = start.wait(out if starting is not None else None)
        link = dashboard_link(c)
        out.write(
            f"Dask dashboard: {link}  ({workers(cfg)} × {cfg.cluster.threads_per_worker} "
            f"thread, {cfg.cluster.memory_limit} each)\n"
        )
        out.flush()
        yield c, link
    finally:
        start.close()


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
