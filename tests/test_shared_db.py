"""Operating on a shared database (SPEC §11, issue 13): overlapping runs, lock waits that are
reported and bounded, the stall report, a database that vanishes, bad output locations and
NULL times — with real processes, the real embedded PostgreSQL and real EURUSD bars.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from dbutil import load_bars, query
from pipeline_util import make_config, unique_schema
from reliability_util import (
    cli_env,
    latest_summary,
    parquet_digest,
    run_cli,
    start_cli,
    table_digest,
    wait_for,
    write_config,
)

from bqxdask.pipeline import run_features
from bqxdask.testing import eurusd

SRC = "src_shared"
FAMILIES = ["bqx", "bollinger_rate"]
START, END = "2017-01", "2017-02"


@pytest.fixture(scope="module")
def source(pg_url):
    load_bars(pg_url, SRC, "eurusd", eurusd(2))
    return pg_url


def _blocker(url: str, table: str, *, application_name: str = "analyst-notebook"):
    """Another user's session: an open transaction holding ACCESS EXCLUSIVE on ``table``."""
    conn = psycopg2.connect(**_kwargs(url), application_name=application_name)
    cur = conn.cursor()
    cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn, conn.get_backend_pid()


def _kwargs(url: str) -> dict:
    from bqxdask.db.urls import DbTarget

    return DbTarget.parse(url).connect_kwargs()


def _run_in_thread(cfg, client, **kw):
    box: dict = {}

    def target():
        try:
            box["result"] = run_features(cfg, client=client, out=io.StringIO(), **kw)
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _run_log(runs_dir: Path) -> str:
    logs = sorted(runs_dir.glob("*/run.log"), key=lambda p: p.stat().st_mtime_ns)
    return logs[-1].read_text() if logs else ""


# -- lock waits ---------------------------------------------------------------------------------
def test_a_held_lock_is_reported_with_its_holder_and_the_run_finishes_after_release(source, tmp_path, dask_client):
    schema = unique_schema("lockwait")
    cfg = make_config(
        source,
        tmp_path,
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd"],
        start=START,
        end=START,
        families=FAMILIES,
        extra={"database": {"lock_timeout": 2.0, "lock_wait_limit": 600.0}},
    )
    first = run_features(cfg, client=dask_client, out=io.StringIO())
    assert first.exit_code == 0, first.failures
    conn, pid = _blocker(source, f"{schema}.bqx_eurusd")
    try:
        thread, box = _run_in_thread(cfg, dask_client, full_refresh=True)
        runs = tmp_path / "runs"
        # named while the lock is still held: the report comes from the wait, not from its end
        wait_for(lambda: f"pid {pid}" in _run_log(runs), timeout=180, what="the lock report in run.log")
        text = _run_log(runs)
        line = next(li for li in text.splitlines() if f"pid {pid}" in li)
        assert "analyst-notebook" in line and "waiting" in line and f"bqx_eurusd {START}" in line
        assert "LOCK TABLE" in line  # the start of the blocker's query
        assert thread.is_alive()
        # the waiting backend is visible to operators under the run's name (§11)
        waiting = query(
            source,
            "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name LIKE 'bqxdask/%%/worker'",
        )
        assert waiting and re.fullmatch(r"bqxdask/\d{8}T\d{6}Z-[0-9a-f]{4}/worker", waiting[0][0])
    finally:
        conn.rollback()
        conn.close()
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.exit_code == 0, result.failures
    assert {r["status"] for r in result.results} == {"done"}


def test_a_lock_never_released_fails_only_its_unit_naming_the_holder_and_a_rerun_completes(
    source, tmp_path, dask_client
):
    schema = unique_schema("lockstuck")
    cfg = make_config(
        source,
        tmp_path,
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd"],
        start=START,
        end=START,
        families=FAMILIES,
        extra={"database": {"lock_timeout": 1.0, "lock_wait_limit": 4.0}},
    )
    assert run_features(cfg, client=dask_client, out=io.StringIO()).exit_code == 0
    conn, pid = _blocker(source, f"{schema}.bqx_eurusd")
    try:
        result = run_features(cfg, client=dask_client, out=io.StringIO(), full_refresh=True)
    finally:
        conn.rollback()
        conn.close()
    assert result.exit_code == 1
    assert len(result.failures) == 1
    (msg,) = result.failures
    assert msg.startswith(f"bqx eurusd {START}:") and f"pid {pid}" in msg and "analyst-notebook" in msg
    assert "lock_wait_limit" in msg and "fix:" in msg and "\n" not in msg
    done = {r["family"] for r in result.results if r["status"] == "done"}
    assert done == {"bollinger_rate"}  # the other unit finished
    # the cancelled transaction left the earlier rows in place; once the lock is gone, the refresh goes through
    again = run_features(cfg, client=dask_client, out=io.StringIO(), full_refresh=True)
    assert again.exit_code == 0, again.failures
    assert {(r["family"], r["status"]) for r in again.results} == {("bqx", "done"), ("bollinger_rate", "done")}


# -- overlapping runs ----------------------------------------------------------------------------
@pytest.mark.slow
def test_two_overlapping_cli_runs_both_succeed_and_equal_a_single_run(source, tmp_path):
    """Two runs, each its own process with its own LocalCluster (two machines, as far as the
    database can tell), over the same units of the same schema and Parquet directory."""
    ref_dir, shared_dir = tmp_path / "single", tmp_path / "shared"
    ref_dir.mkdir()
    shared_dir.mkdir()
    ref_cfg = write_config(
        ref_dir / "c.toml",
        source_schema=SRC,
        output_schema="shared_single",
        pairs=["eurusd"],
        start=START,
        end=END,
        families=FAMILIES,
    )
    single = run_cli(["features", "--config", str(ref_cfg)], cwd=ref_dir, env=cli_env(source))
    assert single.returncode == 0, single.stderr

    cfg = write_config(
        shared_dir / "c.toml",
        source_schema=SRC,
        output_schema="shared_twice",
        pairs=["eurusd"],
        start=START,
        end=END,
        families=FAMILIES,
    )
    marker = tmp_path / "first-run-holds-a-unit"
    env_a = cli_env(source, BQX_FAULT=f"sql-before-commit:{marker}:45")
    run_a = start_cli(["features", "--config", str(cfg)], cwd=shared_dir, env=env_a)
    wait_for(marker.exists, timeout=300, what="the first run holding a unit's lock", proc=run_a)
    run_b = start_cli(["features", "--config", str(cfg)], cwd=shared_dir, env=cli_env(source))
    out_b, err_b = run_b.communicate(timeout=900)
    out_a, err_a = run_a.communicate(timeout=900)
    assert run_a.returncode == 0, err_a
    assert run_b.returncode == 0, err_b
    run_id_a = re.search(r"^run (\S+): ", out_a, re.M).group(1)
    assert f"waiting for run {run_id_a} on host " in err_b  # B names A: run id, host, pid
    assert "Traceback" not in err_a + err_b and "UniqueViolation" not in err_a + err_b
    assert table_digest(source, "shared_twice") == table_digest(source, "shared_single")  # no duplicates
    assert parquet_digest(shared_dir / "parquet") == parquet_digest(ref_dir / "parquet")


# -- the stall report ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_stuck_worker_is_reported_by_unit_and_stage(source, tmp_path):
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema="shared_stall",
        pairs=["eurusd"],
        start=START,
        end=START,
        families=["bqx"],
        workers=1,
    )
    marker = tmp_path / "stuck-in-compute"
    env = cli_env(source, BQX_FAULT=f"compute:{marker}:12", BQX_RUN__STALL_SECONDS="3")
    proc = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        rf"stalled \d+ s \(no unit finished\): worker \S+ is in compute of eurusd {START} bqx", proc.stderr
    )
    summary = latest_summary(tmp_path / "runs")
    busy = [b for stall in summary["stalls"] for b in stall["busy"]]
    assert any(b["stage"] == "compute" and b["unit"] == f"eurusd {START} bqx" for b in busy)


# -- a database that vanishes -------------------------------------------------------------------
@pytest.mark.slow
def test_a_database_stopped_for_good_ends_the_run_with_one_line_and_a_rerun_completes(tmp_path):
    from bqxdask.db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "pg" / "pgdata")
    server.start()
    try:
        load_bars(server.url, SRC, "eurusd", eurusd(2))
        cfg = write_config(
            tmp_path / "c.toml",
            source_schema=SRC,
            output_schema="vanish",
            pairs=["eurusd"],
            start=START,
            end=END,
            families=FAMILIES,
        )
        marker = tmp_path / "computing"
        env = cli_env(server.url, BQX_FAULT=f"compute:{marker}:4")
        proc = start_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env)
        wait_for(marker.exists, timeout=300, what="a unit in compute", proc=proc)
        server.stop()
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=600)
        ended = time.monotonic() - t0
        assert proc.returncode == 1
        assert "Traceback" not in err and "Traceback" not in out
        failed = [li for li in out.splitlines() if li.startswith("FAILED ")]
        assert len(failed) == 1 and "is unreachable" in failed[0] and f"127.0.0.1:{server.port}" in failed[0]
        assert "fix:" in failed[0] and "the run stopped there" in failed[0]
        # bounded: the retries (1+2+4+8 s) and connect timeouts, far from the OS's hours (README)
        assert ended < 300, f"the run took {ended:.0f} s to notice"
        server.start()
        again = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(server.url))
        assert again.returncode == 0, again.stderr
    finally:
        server.destroy()


# -- bad input, caught early and said once ------------------------------------------------------
def test_an_unwritable_parquet_dir_is_refused_before_any_work(source, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    schema = "shared_badout"
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd"],
        start=START,
        end=START,
        families=["bqx"],
    )
    text = cfg.read_text().replace(f'parquet_dir = "{tmp_path / "parquet"}"', f'parquet_dir = "{blocker / "parquet"}"')
    assert text != cfg.read_text()
    cfg.write_text(text)
    proc = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source), timeout=300)
    assert proc.returncode == 2
    lines = [li for li in proc.stderr.splitlines() if li.strip()]
    assert len(lines) == 1, proc.stderr
    assert "output.parquet_dir" in lines[0] and str(blocker) in lines[0] and "fix:" in lines[0]
    assert query(source, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 0


def test_a_failing_unit_reaches_the_terminal_as_one_line_without_the_workers_traceback(source, tmp_path):
    schema = "shared_wrongtype"
    query(source, f"CREATE SCHEMA IF NOT EXISTS {schema}")
    query(source, f"CREATE TABLE IF NOT EXISTS {schema}.bqx_eurusd (time timestamptz PRIMARY KEY, w15_bqx_return text)")
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd"],
        start=START,
        end=START,
        families=["bqx"],
    )
    proc = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source), timeout=600)
    assert proc.returncode == 1
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both and "Compute Failed" not in both and "distributed.worker" not in both
    failed = [li for li in proc.stdout.splitlines() if li.startswith("FAILED bqx eurusd")]
    assert len(failed) == 1
    summary = latest_summary(tmp_path / "runs")
    run_log = (tmp_path / "runs" / summary["run_id"] / "run.log").read_text()
    assert f"traceback of bqx eurusd {START}" in run_log and 'File "' in run_log  # the details stay in run.log


def test_source_rows_with_a_null_time_are_counted_and_quarantined(pg_url, tmp_path, dask_client):
    src = "src_nulltime"
    bars = eurusd(1).iloc[:5000]
    load_bars(pg_url, src, "eurusd", bars, primary_key=False)
    query(
        pg_url,
        f"INSERT INTO {src}.m1_eurusd (time, open, high, low, close, volume) "
        "VALUES (NULL, 1.05, 1.06, 1.04, 1.055, 0), (NULL, 1.05, 1.06, 1.04, 1.051, 0)",
    )
    schema = unique_schema("nulltime")
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema=src,
        output_schema=schema,
        pairs=["eurusd"],
        start=START,
        end=START,
        families=["bqx"],
    )
    result = run_features(cfg, client=dask_client, out=io.StringIO())
    assert result.exit_code == 0, result.failures
    assert result.null_time == {"eurusd": 2}
    assert result.rejected >= 2
    rows = query(
        pg_url, f"SELECT reason FROM {schema}.rejected_bars WHERE pair = 'eurusd' AND time IS NULL ORDER BY reason"
    )
    assert [r[0] for r in rows] == [
        "time is NULL (open=1.05, high=1.06, low=1.04, close=1.051)",
        "time is NULL (open=1.05, high=1.06, low=1.04, close=1.055)",
    ]
    summary = json.loads(next((tmp_path / "runs").glob("*/summary.json")).read_text())
    assert summary["totals"]["null_time_rows"] == 2
    assert f"2 row(s) of {src}.m1_eurusd have a NULL time" in _run_log(tmp_path / "runs")
    again = run_features(cfg, client=dask_client, out=io.StringIO())  # replaced, not duplicated
    assert query(pg_url, f"SELECT count(*) FROM {schema}.rejected_bars WHERE time IS NULL")[0][0] == 2
    assert again.exit_code == 0
