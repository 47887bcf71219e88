"""The workers' start-up, paid once: imported by the forkserver the LocalCluster forks its workers from.

:func:`bqxdask.pipeline.cluster.local_cluster` starts the workers with ``forkserver`` and this
module as its preload (issue 15, SPEC §5). Importing it loads what the first task of every
worker would otherwise load serially: pandas, Dask's dataframe, pyarrow, psycopg2,
SQLAlchemy (a task's connect parses its URL with it), the pipeline's tasks, TA-Lib and the
numba kernels (their on-disk cache, or a compilation that fills it), by computing every
family once on a small synthetic frame. The workers forked after it start warm. Nothing here
connects to a database, writes a file or starts a thread, so forking after it is safe.

The forkserver resolves ``bqxdask`` on its own ``sys.path`` (``PYTHONPATH``, its working
directory, the installed package), which may be another copy than the client's. The client
names its own package directory in ``BQXDASK_PACKAGE_DIR`` (``cluster.PACKAGE_ENV``); when this
copy is not that one, it warms nothing, and every process forked from it forgets this copy
before it starts, so that the workers import the client's ``bqxdask`` afresh.

Importing this module anywhere else only costs time; a warm-up that fails changes nothing but
speed (the first task meets the same error and reports it).
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys
import warnings
from multiprocessing import forkserver, util

#: the variable the client sets (``bqxdask.pipeline.cluster.PACKAGE_ENV``; read here without
#: importing it, so that nothing else of this copy of bqxdask is loaded before the check)
PACKAGE_ENV = "BQXDASK_PACKAGE_DIR"
#: rows of the synthetic frame: enough for every family's kernels to run, a few ms each
ROWS = 2000


def client_package() -> bool:
    """Is this the ``bqxdask`` the client runs (or no client said which)?"""
    expected = os.environ.get(PACKAGE_ENV)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not expected:
        return True
    try:
        return os.path.samefile(here, expected)
    except OSError:
        return False


class _Forget:
    """In each process forked from here: drop this copy of ``bqxdask`` from ``sys.modules``.

    Not at once: the import of this module needs its own entry until it returns. The
    callback runs in a forked child before its process object starts (the worker), so the
    child imports the client's ``bqxdask`` from the ``sys.path`` the client sent it.
    """

    def __call__(self) -> None:
        util.register_after_fork(self, _Forget.drop)

    @staticmethod
    def drop(_self: object) -> None:
        for name in [m for m in sys.modules if m == "bqxdask" or m.startswith("bqxdask.")]:
            del sys.modules[name]


forget = _Forget()


def warm() -> None:
    """Import the run-time modules and run every family once on synthetic bars."""
    import dask.dataframe  # noqa: F401  (the read graph's tasks unpickle into it)
    import numpy as np
    import pandas as pd
    import psycopg2  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from ..db import writer  # noqa: F401
    from ..db.urls import DbTarget
    from ..features import compute_features
    from ..outputs import parquet  # noqa: F401
    from . import tasks  # noqa: F401

    # a task's connect parses its URL with SQLAlchemy: imported here once, not by each worker (0.1-0.15 s)
    DbTarget.parse("postgresql+psycopg2://bqxdask@localhost/bqxdask")
    steps = np.random.default_rng(0).normal(0.0, 1e-4, ROWS)
    close = 1.1 * np.exp(np.cumsum(steps))
    index = pd.date_range("2024-01-01", periods=ROWS, freq="min", tz="UTC", name="time")
    bars = pd.DataFrame(
        {"open": close, "high": close * 1.0002, "low": close * 0.9998, "close": close, "volume": 1.0}, index=index
    )
    with warnings.catch_warnings():  # the forkserver's stderr is the user's console
        warnings.simplefilter("ignore")
        compute_features(bars)


def in_forkserver() -> bool:
    """Is this import the preload of ``multiprocessing.forkserver.main``?"""
    frame = inspect.currentframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "main" and code.co_filename == forkserver.__file__:
            return True
        frame = frame.f_back
    return False


def leave_fast() -> None:
    """The forkserver's exit without tearing down what it imported (~1 s, while it still holds
    the console the run writes to: a pipe reader waits for it). Its forked workers leave by
    ``os._exit`` already; nothing waits for the forkserver's exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if client_package():
    try:
        warm()
    except Exception:  # only speed is at stake: the first task meets the error and reports it
        pass
    if in_forkserver():
        atexit.register(leave_fast)
else:
    forget()
