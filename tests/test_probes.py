"""Every worker of an existing scheduler is asked whether it reaches the database and the Parquet location.

Against the session's real LocalCluster (two worker processes) and real PostgreSQL.
"""

from __future__ import annotations

import pickle
import socket
import time

import pytest
from dbutil import query
from pipeline_util import make_config, unique_schema

from bqxdask import readiness
from bqxdask.db.urls import DbTarget
from bqxdask.errors import ConfigError
from bqxdask.outputs import locations
from bqxdask.readiness import probes
from bqxdask.readiness.findings import FAIL, OK, WARN


def _workers(client) -> list[str]:
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _wrong_database(url: str) -> str:
    """The same server and credentials (the embedded one wants its password), another database."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database="no_such_db_x").render_as_string(hide_password=False)


def test_every_worker_reaches_the_database_and_the_parquet_dir(pg_url, tmp_path, dask_client):
    parquet = tmp_path / "out" / "parquet"  # does not exist yet: probed at its nearest existing parent
    t0 = time.perf_counter()
    checks = probes.probe_workers(dask_client, pg_url, str(parquet))
    seconds = time.perf_counter() - t0
    assert sorted(c.values["worker"] for c in checks) == _workers(dask_client)
    for c in checks:
        assert c.status == OK, c.detail
        assert c.values["host"] == socket.gethostname() and c.values["same_host"]
        (db,) = c.values["database"]
        assert db["ok"] and db["identity"]
        assert c.values["storage"] == {"parquet_dir": str(parquet), "ok": True, "sees_marker": True}
        assert c.detail.startswith(f"{c.values['worker']} on host {socket.gethostname()}: reaches the same server")
        assert f"wrote and removed a file in {parquet}, where it sees this client's files" in c.detail
    assert not (tmp_path / "out").exists()  # nothing left behind, not even the directories
    assert probes.require_workers_ready(dask_client, pg_url, str(parquet))  # no error: the lines
    print(f"probe of {len(checks)} workers: {seconds:.3f} s")


def test_an_existing_parquet_dir_keeps_its_files(pg_url, tmp_path, dask_client):
    (tmp_path / "keep.txt").write_text("x")
    checks = probes.probe_workers(dask_client, pg_url, str(tmp_path))
    assert all(c.status == OK for c in checks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_an_unwritable_parquet_dir_names_each_worker(pg_url, tmp_path, dask_client):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    parquet = blocker / "parquet"  # its parent is a regular file: nobody, not even root, can create it
    checks = probes.probe_workers(dask_client, pg_url, str(parquet))
    assert sorted(c.values["worker"] for c in checks) == _workers(dask_client)
    for c in checks:
        assert c.status == FAIL
        assert c.values["database"][0]["ok"]  # the database part is fine
        assert not c.values["storage"]["ok"]
        assert c.detail.startswith(c.values["worker"])
        assert f"cannot write and remove a file in {parquet} there" in c.detail and "fix:" in c.detail
    with pytest.raises(ConfigError) as info:
        probes.require_workers_ready(dask_client, pg_url, str(parquet))
    message = str(info.value)
    assert "\n" not in message and message.startswith("worker tcp://")
    assert f"cannot write and remove a file in {parquet}" in message and "(and 1 more worker)" in message


def test_an_unreachable_database_names_each_worker(pg_url, tmp_path, dask_client):
    url = _wrong_database(pg_url)
    checks = probes.probe_workers(dask_client, url, None)
    assert sorted(c.values["worker"] for c in checks) == _workers(dask_client)
    for c in checks:
        assert c.status == FAIL
        assert "cannot connect to database no_such_db_x at 127.0.0.1" in c.detail
        assert 'database "no_such_db_x" does not exist' in c.detail
        assert "fix: check database.url for the workers" in c.detail
        assert c.detail.count("fix:") == 1  # the client-side advice of the connect error is not repeated
        assert "storage" not in c.values  # no Parquet location to probe
    with pytest.raises(ConfigError, match=r"^worker tcp://.*no_such_db_x"):
        probes.require_workers_ready(dask_client, url, None)


def test_a_password_never_shows(pg_server, dask_client):
    url = f"postgresql+psycopg2://nobody_x:Pr0be-s3cret@127.0.0.1:{pg_server.port}/bqx"
    checks = probes.probe_workers(dask_client, url, None)
    assert checks and all(c.status == FAIL for c in checks)
    for c in checks:
        assert "Pr0be-s3cret" not in c.detail + repr(c.values) and "://nobody_x" not in c.detail


# -- verdicts on answers a worker of another host would give (no cluster needed) --------------
URL_LOCAL = "postgresql+psycopg2://etl@localhost:5432/fx"
URL_NETWORK = "postgresql+psycopg2://etl@db.internal:5432/fx"


def _verdict(answer, urls=(URL_LOCAL,), mine=None, parquet_dir="/data/parquet", marked=True):
    return probes._verdict(
        "tcp://10.0.0.7:4000", answer, list(urls), mine or {u: "t0/1" for u in urls}, parquet_dir, marked, "client-host"
    )


def test_a_socket_url_on_another_host_is_named_with_the_fix():
    c = _verdict(
        {
            "host": "worker-host",
            "database": [
                {
                    "ok": False,
                    "error": "cannot connect to database fx at localhost:5432 as etl: refused; fix: bqxdask db start",
                }
            ],
            "storage": {"ok": True, "sees_marker": True},
        }
    )
    assert c.status == FAIL
    assert c.detail.startswith("tcp://10.0.0.7:4000 on host worker-host (this client runs on client-host): ")
    assert "that URL is a Unix socket or localhost, which on host worker-host is not this client's server" in c.detail
    assert "fix: set database.url to the server's network address" in c.detail
    assert "bqxdask db start" not in c.detail


def test_a_worker_reaching_another_server_fails_even_if_it_connects():
    c = _verdict({"host": "worker-host", "database": [{"ok": True, "identity": "t9/1", "ms": 3.0}]}, parquet_dir=None)
    assert c.status == FAIL and "reaches a different PostgreSQL than this client" in c.detail


def test_a_local_parquet_dir_the_client_cannot_share_scatters_the_outputs():
    answer = {
        "host": "worker-host",
        "database": [{"ok": True, "identity": "t0/1", "ms": 3.0}],
        "storage": {"ok": True, "sees_marker": False},
    }
    c = _verdict(answer, urls=(URL_NETWORK,))
    assert c.status == FAIL
    assert "does not see the files this client writes in /data/parquet" in c.detail
    assert "scattered over the workers' own disks" in c.detail and "s3://" in c.detail
    # without the client's marker, a local path on another host is judged by the host names
    c = _verdict({**answer, "storage": {"ok": True}}, urls=(URL_NETWORK,), marked=False)
    assert c.status == FAIL and "/data/parquet is a local path on a worker of another host" in c.detail
    c = _verdict({**answer, "storage": {"ok": True}}, urls=(URL_NETWORK,), parquet_dir="s3://bucket/p", marked=False)
    assert c.status == OK, c.detail


def test_an_unverifiable_local_url_on_another_host_warns():
    c = _verdict(
        {"host": "worker-host", "database": [{"ok": True, "identity": "t0/1", "ms": 3.0}]},
        mine={URL_LOCAL: None},
        parquet_dir=None,
    )
    assert c.status == WARN and "a local-only URL on another host" in c.detail


def test_a_hanging_or_broken_worker_is_a_failure():
    assert _verdict({"host": "worker-host", "timeout": True}).status == FAIL
    c = _verdict(ModuleNotFoundError("No module named 'bqxdask'"))
    assert c.status == FAIL and "No module named 'bqxdask'" in c.detail and "fix:" in c.detail


def test_local_only_urls():
    for url, local in (
        ("postgresql://u@localhost/db", True),
        ("postgresql://u@127.0.0.1:5432/db", True),
        ("postgresql://u@/db", True),
        ("postgresql://u@/db?host=/var/run/postgresql", True),
        ("postgresql://u@db.internal:5432/db", False),
        ("postgresql://u@10.1.2.3/db", False),
    ):
        assert probes._local_only(DbTarget.parse(url)) is local, url


def test_servers_are_compared_without_pg_control_system(pg_url, pg_server, tmp_path, dask_client):
    """A role that may not call pg_control_system() (managed services) falls back to the start time."""
    query(pg_url, "DROP ROLE IF EXISTS probe_ro")
    query(pg_url, "CREATE ROLE probe_ro LOGIN PASSWORD 'Pr-ro-1x'")
    url = f"postgresql+psycopg2://probe_ro:Pr-ro-1x@127.0.0.1:{pg_server.port}/bqx"
    assert probes.server_identity(url, "t").startswith("system ")
    query(pg_url, "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    try:
        assert probes.server_identity(url, "t").startswith("started ")
        checks = probes.probe_workers(dask_client, url, str(tmp_path / "pq"))
        assert checks and all(c.status == OK for c in checks), [c.detail for c in checks]
        assert {c.values["database"][0]["identity"] for c in checks} == {probes.server_identity(url, "t")}
    finally:
        query(pg_url, "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC")


def test_check_with_a_scheduler_fails_on_a_worker_that_cannot_write(pg_url, tmp_path, dask_client):
    (tmp_path / "a-file").write_text("x")
    parquet = tmp_path / "a-file" / "parquet"
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema="src_probe",
        output_schema=unique_schema("probe"),
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx"],
        extra={
            "cluster": {"scheduler_address": dask_client.scheduler.address},
            "output": {"parquet_dir": str(parquet)},
        },
    )
    result = readiness.assess(cfg)
    report = result.to_dict()
    access = [c for c in report["checks"] if c["name"] == "worker access"]
    assert sorted(c["values"]["worker"] for c in access) == _workers(dask_client)
    assert all(c["status"] == "fail" and c["group"] == "plan" for c in access)
    assert result.exit_code == 1 and report["verdict"] == "NOT READY"
    text = " ".join(result.to_text().split())
    for c in access:
        assert f"❌ worker access {c['values']['worker']} on host" in text


# -- the one write probe (bqxdask.outputs.locations), which the workers run -------------------
def test_the_write_probe_leaves_nothing_and_creates_no_directory(tmp_path):
    locations.probe_location(str(tmp_path / "out" / "parquet"))  # judged at tmp_path, its nearest parent
    assert list(tmp_path.iterdir()) == []
    probe = locations.write_probe(str(tmp_path))
    (written,) = tmp_path.iterdir()
    assert written.name.startswith(locations.PROBE) and written.read_bytes() == locations.PROBE_BYTES
    probe.remove()
    assert list(tmp_path.iterdir()) == []


def test_the_write_probe_on_an_fsspec_url():
    import fsspec

    locations.probe_location("memory://bqx-probe-test/parquet")
    assert fsspec.filesystem("memory").find("/bqx-probe-test") == []


def test_an_unusable_location_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(locations.UnwritableLocation) as info:
        locations.probe_location(str(tmp_path / "a-file" / "parquet"))
    assert info.value.not_a_directory and info.value.where == str(tmp_path / "a-file")
    assert pickle.loads(pickle.dumps(info.value)).where == info.value.where  # crosses a process boundary
    with pytest.raises(ConfigError) as info:
        locations.check_location(str(tmp_path / "a-file" / "parquet"), "output.parquet_dir")
    message = str(info.value)
    assert message.startswith("output.parquet_dir = ") and "is a file, not a directory" in message
    assert "\n" not in message and "fix:" in message
    with pytest.raises(ConfigError, match=r"^run.runs_dir = 'nosuchproto://x' is not a usable location .*fix:"):
        locations.check_location("nosuchproto://x", "run.runs_dir")
