"""``bqxdask check`` sees the neighbours: other runs, blocking sessions, long transactions (SPEC §11, issue 13).

Real sessions on the session's embedded PostgreSQL: one that looks like a worker of another
bqxdask run (its ``application_name``), idle in a transaction, and one holding an ACCESS
EXCLUSIVE lock on a table of the output schema. The pids come from those connections, never
from the report.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys

import psycopg2
import psycopg2.extensions
import pytest
from dbutil import load_bars, query
from pipeline_util import make_config, unique_schema

from bqxdask import readiness
from bqxdask.db.urls import DbTarget
from bqxdask.readiness import neighbours
from bqxdask.testing import eurusd

SRC = "src_neighbours"
RUN_ID = "20261201T000000Z-beef"
LOCKER = "nb-locker-test"
PASSWORD = "Nb-pw-7q2"


@pytest.fixture(scope="module")
def source(pg_url):
    load_bars(pg_url, SRC, "eurusd", eurusd(1))
    return SRC


def _connect(url: str, application_name: str, **kwargs) -> psycopg2.extensions.connection:
    return psycopg2.connect(**DbTarget.parse(url).connect_kwargs(application_name=application_name), **kwargs)


@pytest.fixture
def crowd(pg_url, source):
    """(output schema, pid of the other run's worker, pid of the locker); closed afterwards."""
    schema = unique_schema("nb")
    query(pg_url, f"CREATE SCHEMA {schema}")
    query(pg_url, f"CREATE TABLE {schema}.bqx_eurusd (time timestamptz PRIMARY KEY, x double precision)")
    worker = _connect(pg_url, f"bqxdask/{RUN_ID}/worker")
    locker = _connect(pg_url, LOCKER)
    try:
        with worker.cursor() as cur:
            cur.execute("SELECT 1")  # psycopg2 opened a transaction: idle in transaction from now on
        with locker.cursor() as cur:
            cur.execute(f"LOCK TABLE {schema}.bqx_eurusd IN ACCESS EXCLUSIVE MODE")
        yield schema, worker.get_backend_pid(), locker.get_backend_pid(), locker
    finally:
        worker.close()
        locker.close()


def _config(url, tmp_path, schema):
    return make_config(
        url,
        tmp_path,
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx"],
        extra={"cluster": {"n_workers": 2, "memory_limit": "1GiB"}},
    )


def _report(cfg, **options) -> tuple[int, str, dict]:
    text, js = io.StringIO(), io.StringIO()
    code = readiness.run_check(cfg, out=text, **options)
    assert readiness.run_check(cfg, as_json=True, out=js, **options) == code
    return code, text.getvalue(), json.loads(js.getvalue())


def _lines(report: dict, name: str) -> list[dict]:
    return [c for c in report["checks"] if c["group"] == "neighbours" and c["name"] == name]


def _by_pid(lines: list[dict], pid: int) -> dict:
    (found,) = [c for c in lines if c["values"].get("pid") == pid]
    return found


def _alive(url: str, pid: int) -> bool:
    return bool(query(url, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0])


def test_active_run_and_blocking_session_text_and_json(pg_url, tmp_path, crowd):
    schema, run_pid, lock_pid, _ = crowd
    code, text, report = _report(_config(pg_url, tmp_path, schema), long_transaction_seconds=0)
    assert "Traceback" not in text and "check failed" not in text, text
    assert code == 1 and report["verdict"] == "NOT READY"
    assert "Neighbours (other sessions on the database)" in text

    (run,) = [c for c in _lines(report, "other runs") if c["values"].get("run_id") == RUN_ID]
    assert run["status"] == "warn"
    assert run["values"]["pids"] == [run_pid] and run["values"]["roles"] == {"worker": 1}
    assert run["values"]["hosts"] == ["127.0.0.1"] and run["values"]["sessions"] == 1
    assert f"run {RUN_ID}: 1 session (1 worker) from 127.0.0.1" in run["detail"]
    assert f"application_name LIKE 'bqxdask/{RUN_ID}/%'" in run["detail"]

    lock = _by_pid(_lines(report, "locks"), lock_pid)
    assert lock["status"] == "fail"
    assert lock["values"]["locks"] == [
        {"table": f"{schema}.bqx_eurusd", "kind": "r", "mode": "AccessExclusiveLock", "granted": True}
    ]
    assert lock["values"]["application_name"] == LOCKER and lock["values"]["user"] == "postgres"
    assert lock["values"]["state"] == "idle in transaction" and lock["values"]["xact_seconds"] >= 0
    for part in (
        f"pid {lock_pid} (user postgres, application '{LOCKER}', idle in transaction",
        f"holds AccessExclusiveLock on {schema}.bqx_eurusd",
        f"query: LOCK TABLE {schema}.bqx_eurusd IN ACCESS EXCLUSIVE MODE",
        f"SELECT pg_terminate_backend({lock_pid}) (check does not run it)",
    ):
        assert part in lock["detail"], lock["detail"]

    # threshold 0: the other run's open transaction is a long one; the locker is listed once
    long_ = _by_pid(_lines(report, "long transactions"), run_pid)
    assert long_["status"] == "warn" and f"SELECT pg_terminate_backend({run_pid})" in long_["detail"]
    assert "on this database" in long_["detail"] and "query: SELECT 1" in long_["detail"]
    assert lock_pid not in [c["values"].get("pid") for c in _lines(report, "long transactions")]

    # the text carries the same facts, with the icons
    assert any(ln.startswith("  ⚠️  other runs") and RUN_ID in ln for ln in text.splitlines())
    assert any(ln.startswith("  ❌  locks") and f"pid {lock_pid}" in ln for ln in text.splitlines())
    assert f"SELECT pg_terminate_backend({lock_pid}) (check does not run it)" in " ".join(text.split())

    # the JSON record: runs and sessions, as the lines say
    nb = report["neighbours"]
    assert nb["output_schema"] == schema and nb["database"] == "bqx" and nb["long_transaction_seconds"] == 0
    assert nb["sees_all_sessions"] is True
    assert [r["pids"] for r in nb["runs"] if r["run_id"] == RUN_ID] == [[run_pid]]
    (locker,) = [s for s in nb["sessions"] if s["pid"] == lock_pid]
    assert locker["kind"] == "lock" and locker["severity"] == "fail"
    assert locker["fix_sql"] == f"SELECT pg_terminate_backend({lock_pid})"
    # check suggests, it never terminates
    assert _alive(pg_url, lock_pid) and _alive(pg_url, run_pid)


def test_a_session_queued_behind_the_lock_is_named(pg_url, tmp_path, crowd):
    schema, _, lock_pid, _ = crowd
    waiter = _connect(pg_url, "nb-waiter", async_=1)
    try:
        _wait(waiter)
        cur = waiter.cursor()
        cur.execute(f"INSERT INTO {schema}.bqx_eurusd VALUES (now(), 1)")  # queues behind the lock
        waiter_pid = waiter.get_backend_pid()
        result = readiness.assess(_config(pg_url, tmp_path, schema))
        report = result.to_dict()
        locks = _lines(report, "locks")
        holder = _by_pid(locks, lock_pid)
        assert holder["values"]["blocks"] == [waiter_pid]
        assert f"blocks pids {waiter_pid}" in holder["detail"]
        queued = _by_pid(locks, waiter_pid)
        assert queued["status"] == "warn"  # RowExclusiveLock: not an exclusive one
        assert queued["values"]["blocked_by"] == [lock_pid]
        assert f"waits for RowExclusiveLock on {schema}.bqx_eurusd" in queued["detail"]
    finally:
        waiter.close()


def _wait(conn) -> None:
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], 10)
        else:
            select.select([conn.fileno()], [], [], 10)


def test_the_default_threshold_is_five_minutes(pg_url, tmp_path, crowd):
    schema, run_pid, _, _ = crowd
    report = readiness.assess(_config(pg_url, tmp_path, schema)).to_dict()
    assert report["neighbours"]["long_transaction_seconds"] == neighbours.LONG_TRANSACTION_SECONDS == 300
    # a transaction opened a moment ago is no long transaction
    assert run_pid not in [c["values"].get("pid") for c in _lines(report, "long transactions")]


def test_a_schema_nobody_locks_is_ok(pg_url, tmp_path, source):
    schema = unique_schema("nb_quiet")
    report = readiness.assess(_config(pg_url, tmp_path, schema)).to_dict()
    (locks,) = _lines(report, "locks")
    assert locks["status"] == "ok" and locks["detail"] == f"no other session locks a table of schema {schema}"


def test_a_role_without_pg_read_all_stats(pg_url, pg_server, crowd):
    """Other roles' queries are hidden from it; their locks and application names are not."""
    schema, run_pid, lock_pid, _ = crowd
    query(pg_url, "DROP ROLE IF EXISTS nb_ro")
    query(pg_url, f"CREATE ROLE nb_ro LOGIN PASSWORD '{PASSWORD}'")
    url = f"postgresql+psycopg2://nb_ro:{PASSWORD}@127.0.0.1:{pg_server.port}/bqx"
    conn = _connect(url, readiness.CHECK_APPLICATION)
    try:
        with conn.cursor() as cur:
            checks, record = neighbours.neighbour_checks(cur, schema, long_seconds=0)
    finally:
        conn.close()
    assert record["sees_all_sessions"] is False and record["hidden_sessions"] >= 2
    (lock,) = [c for c in checks if c.name == "locks" and c.values.get("pid") == lock_pid]
    assert lock.status == "fail" and lock.values["query"] is None
    assert f"pid {lock_pid} (user postgres, application '{LOCKER}', state hidden)" in lock.detail
    assert "query hidden (not superuser / pg_read_all_stats)" in lock.detail
    (run,) = [c for c in checks if c.name == "other runs" and c.values.get("run_id") == RUN_ID]
    assert run.values["hosts"] == ["host hidden"] and run.values["since"] is None
    # their transactions' ages are hidden: the long-transaction line says how many it cannot see
    assert run_pid not in [c.values.get("pid") for c in checks if c.name == "long transactions"]
    (quiet,) = [c for c in checks if c.name == "long transactions"]
    assert quiet.status == "ok" and "of other roles not visible" in quiet.detail
    assert "GRANT pg_read_all_stats" in quiet.detail
    assert PASSWORD not in json.dumps([c.to_dict() for c in checks]) + json.dumps(record, default=str)


def test_a_secret_in_another_sessions_query_is_not_shown(pg_url, crowd):
    schema, _, lock_pid, locker = crowd
    with locker.cursor() as cur:
        cur.execute("SELECT 'password=hunter2-x' AS note")
    conn = _connect(pg_url, readiness.CHECK_APPLICATION)
    try:
        with conn.cursor() as cur:
            checks, record = neighbours.neighbour_checks(cur, schema)
    finally:
        conn.close()
    (lock,) = [c for c in checks if c.name == "locks" and c.values.get("pid") == lock_pid]
    assert "hunter2" not in lock.detail and "password=***" in lock.detail
    assert "hunter2" not in json.dumps(record, default=str)


# -- the command line -------------------------------------------------------------------------
def test_cli_shows_the_run_and_the_blocking_session(pg_url, tmp_path, crowd):
    schema, run_pid, lock_pid, _ = crowd
    path = tmp_path / "check.toml"
    path.write_text(
        f'[database]\nsource_schema = "{SRC}"\noutput_schema = "{schema}"\n'
        '[cluster]\nn_workers = 2\nmemory_limit = "1GiB"\n'
        '[run]\npairs = ["eurusd"]\nstart = "2017-01"\nend = "2017-01"\n'
        '[families]\nenabled = ["bqx"]\n'
        f'[output]\nparquet_dir = "{tmp_path / "parquet"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env["BQX_DATABASE_URL"] = pg_url
    runs = {}
    for extra in ([], ["--json"]):
        runs[bool(extra)] = subprocess.run(
            [sys.executable, "-m", "bqxdask", "check", "--config", str(path), *extra],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    text, js = runs[False], runs[True]
    for proc in (text, js):
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr == "" and "Traceback" not in proc.stdout
    flat = " ".join(text.stdout.split())
    assert f"⚠️ other runs run {RUN_ID}: 1 session (1 worker)" in flat
    assert f"❌ locks pid {lock_pid} (user postgres, application '{LOCKER}'" in flat
    assert f"SELECT pg_terminate_backend({lock_pid})" in flat
    assert text.stdout.rstrip().splitlines()[-1].startswith("verdict: NOT READY")
    report = json.loads(js.stdout)
    assert report["verdict"] == "NOT READY"
    assert [r["pids"] for r in report["neighbours"]["runs"] if r["run_id"] == RUN_ID] == [[run_pid]]
    (locker,) = [s for s in report["neighbours"]["sessions"] if s["pid"] == lock_pid]
    assert locker["severity"] == "fail" and locker["application_name"] == LOCKER
    assert _by_pid(_lines(report, "locks"), lock_pid)["status"] == "fail"


def test_checks_own_connection_is_not_a_neighbour(pg_url, tmp_path, source):
    schema = unique_schema("nb_self")
    report = readiness.assess(_config(pg_url, tmp_path, schema), long_transaction_seconds=0).to_dict()
    apps = [s["application_name"] for s in report["neighbours"]["sessions"]]
    assert readiness.CHECK_APPLICATION not in apps


@pytest.mark.parametrize(
    ("mode", "held", "status"),
    [
        ("SHARE", "ShareLock", "fail"),  # CREATE INDEX's lock: the run's COPY waits behind it as well
        ("ACCESS SHARE", "AccessShareLock", "warn"),  # a reader: only DDL would wait
    ],
)
def test_the_lock_mode_decides_between_warning_and_failure(pg_url, tmp_path, source, mode, held, status):
    schema = unique_schema("nb_mode")
    query(pg_url, f"CREATE SCHEMA {schema}")
    query(pg_url, f"CREATE TABLE {schema}.bqx_eurusd (time timestamptz)")
    holder = _connect(pg_url, "nb-mode-test")
    try:
        with holder.cursor() as cur:
            cur.execute(f"LOCK TABLE {schema}.bqx_eurusd IN {mode} MODE")
        report = readiness.assess(_config(pg_url, tmp_path, schema)).to_dict()
        line = _by_pid(_lines(report, "locks"), holder.get_backend_pid())
        assert line["status"] == status and f"holds {held} on {schema}.bqx_eurusd" in line["detail"]
    finally:
        holder.close()
