"""Shared fixtures: a real embedded PostgreSQL and a real Dask LocalCluster, per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bqxdask.db.embedded import EmbeddedPostgres

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

# The developer's shell must not configure the tests: a BQX_CLUSTER__N_WORKERS, BQX_DATABASE_URL,
# BQX_CONFIG or BQX_FAULT exported there would reach every in-process load_config and every
# worker of the session's LocalCluster (which inherit this environment). BQX_FX_DATA only says
# where the real bars are (bqxdask/testing.py) and is no config key, so it stays.
for _name in [n for n in os.environ if n.startswith("BQX_") and n != "BQX_FX_DATA"]:
    del os.environ[_name]


#: fixtures whose tests need the embedded PostgreSQL (marker ``db``) or a Dask cluster (``cluster``)
DB_FIXTURES = frozenset({"pg_server", "pg_url"})
CLUSTER_FIXTURES = frozenset({"dask_client"})


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test by what it starts, through any fixture it uses, directly or not:
    ``-m "not db and not cluster and not slow"`` (``make test-fast``) is the subset that needs
    neither a server nor a cluster."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & DB_FIXTURES:
            item.add_marker(pytest.mark.db)
        if used & CLUSTER_FIXTURES:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def pg_server() -> EmbeddedPostgres:
    """A fresh embedded PostgreSQL for the session (initdb takes about a second).

    Its data directory is a folder of its own under the system temp dir, not under pytest's
    basetemp: run as root, the server runs as an unprivileged user that needs o+x on every
    ancestor, and any other pytest session of the same user starting meanwhile resets
    /tmp/pytest-of-<user> to 0700, after which pg_ctl stop/start (the restart test, the
    teardown) fails with "Permission denied" — a failure that depended on what else ran.
    """
    root = Path(tempfile.mkdtemp(prefix="bqx-test-pg-"))
    server = EmbeddedPostgres(root / "pgdata")
    try:
        server.start()
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server) -> str:
    return pg_server.url


@pytest.fixture(scope="session")
def dask_client():
    """A real LocalCluster with two worker processes."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB", dashboard_address=":0"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
