"""Crash safety, resume, incremental runs, bad input and least privilege (SPEC §3, §6, §10).

Every run here is the real CLI (``python -m bqxdask features``) in its own process group with
its own LocalCluster, against the real embedded PostgreSQL, on real EURUSD bars.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pandas as pd
import pytest
from dbutil import load_bars, query
from reliability_util import (
    cli_env,
    file_hashes,
    kill_group,
    latest_summary,
    parquet_digest,
    row_versions,
    run_cli,
    start_cli,
    table_digest,
    temporary_files,
    wait_for,
    write_config,
)

from bqxdask.testing import eurusd

SRC = "src_rel"
FAMILIES = ["bqx", "statistics_rate", "technical_rate"]
START, END = "2017-01", "2017-03"


@pytest.fixture(scope="module")
def source(pg_url):
    load_bars(pg_url, SRC, "eurusd", eurusd(3))
    load_bars(
        pg_url,
        SRC,
        "usdjpy",
        eurusd(3).assign(
            open=lambda f: f["open"] * 110,
            high=lambda f: f["high"] * 110,
            low=lambda f: f["low"] * 110,
            close=lambda f: f["close"] * 110,
        ),
    )
    return pg_url


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory):
    """An uninterrupted run: what every interrupted-then-resumed run must equal."""
    d = tmp_path_factory.mktemp("reference")
    cfg = write_config(
        d / "c.toml",
        source_schema=SRC,
        output_schema="rel_reference",
        pairs=["eurusd", "usdjpy"],
        start=START,
        end=END,
        families=FAMILIES,
    )
    proc = run_cli(["features", "--config", str(cfg)], cwd=d, env=cli_env(source))
    assert proc.returncode == 0, proc.stderr
    return table_digest(source, "rel_reference"), parquet_digest(d / "parquet")


def _setup(tmp_path: Path, url: str, schema: str, **kw) -> tuple[Path, dict[str, str]]:
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema=schema,
        pairs=["eurusd", "usdjpy"],
        start=START,
        end=END,
        families=FAMILIES,
        **kw,
    )
    return cfg, cli_env(url)


def _checkpoints(url: str, schema: str) -> int:
    try:
        return query(url, f"SELECT count(*) FROM {schema}.checkpoints")[0][0]
    except Exception:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["after-some-units", "sql-before-commit", "parquet-before-rename"])
def test_kill9_of_the_process_group_then_rerun_equals_uninterrupted(source, reference, tmp_path, moment):
    schema = f"rel_kill_{moment.replace('-', '_')}"
    cfg, env = _setup(tmp_path, source, schema)
    marker = tmp_path / "paused"
    if moment != "after-some-units":
        env["BQX_FAULT"] = f"{moment}:{marker}:600"
    proc = start_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env)
    if moment == "after-some-units":
        wait_for(lambda: _checkpoints(source, schema) >= 4, timeout=240, what="4 finished units", proc=proc)
    else:
        wait_for(marker.exists, timeout=240, what=f"the pause at {moment}", proc=proc)
    kill_group(proc, source)
    if moment == "parquet-before-rename":
        assert temporary_files(tmp_path / "parquet"), "the kill should have left a temporary file"
    # a plain rerun finishes the job
    rerun = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source))
    assert rerun.returncode == 0, rerun.stderr
    ref_tables, ref_parquet = reference
    assert table_digest(source, schema) == ref_tables
    assert parquet_digest(tmp_path / "parquet") == ref_parquet
    assert temporary_files(tmp_path / "parquet") == []
    # and a third run has nothing left to do
    again = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source))
    assert again.returncode == 0
    totals = latest_summary(tmp_path / "runs")["totals"]
    assert totals["done"] == 0 and totals["skipped"] == totals["outputs"] == 2 * 3 * len(FAMILIES)


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_run_completes(source, reference, tmp_path):
    cfg, env = _setup(tmp_path, source, "rel_worker_kill")
    marker = tmp_path / "worker-paused"
    env["BQX_FAULT"] = f"compute:{marker}:600"
    proc = start_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env)
    wait_for(marker.exists, timeout=240, what="a worker computing", proc=proc)
    worker_pid = int(marker.read_text())
    assert worker_pid != proc.pid
    os.kill(worker_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert table_digest(source, "rel_worker_kill") == reference[0]
    assert parquet_digest(tmp_path / "parquet") == reference[1]


@pytest.mark.slow
def test_database_restart_mid_run_is_survived(source, reference, tmp_path, pg_server):
    cfg, env = _setup(tmp_path, source, "rel_db_restart")
    marker = tmp_path / "paused-in-transaction"
    # the writer holds its transaction open for 30 s: a restart on a loaded 2-core machine must
    # fall inside that window (3 s can be over before pg_ctl stop begins), or the test no longer
    # restarts the server under an open transaction
    env["BQX_FAULT"] = f"sql-before-commit:{marker}:30"
    proc = start_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env)
    wait_for(marker.exists, timeout=240, what="a write transaction in flight", proc=proc)
    before, port = pg_server.status().pid, pg_server.port
    pg_server.stop()
    pg_server.start()
    assert pg_server.status().pid != before  # the server really went away under the open transaction
    # the session's pg_url names this port: if it moved, every later test would fail, not this one
    assert pg_server.port == port, f"the restarted server moved from port {port} to {pg_server.port}"
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert table_digest(source, "rel_db_restart") == reference[0]


def test_rerun_with_nothing_changed_rewrites_nothing(source, tmp_path):
    cfg, env = _setup(tmp_path, source, "rel_noop")
    first = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    versions = {t: row_versions(source, "rel_noop", f"{t}_eurusd") for t in FAMILIES}
    checkpoints = query(source, "SELECT * FROM rel_noop.checkpoints ORDER BY 1, 2, 3")
    files = file_hashes(tmp_path / "parquet")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "parquet").rglob("*.parquet")}
    second = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    # how we know nothing was rewritten: row versions (xmin), checkpoint rows, file bytes and mtimes
    assert {t: row_versions(source, "rel_noop", f"{t}_eurusd") for t in FAMILIES} == versions
    assert query(source, "SELECT * FROM rel_noop.checkpoints ORDER BY 1, 2, 3") == checkpoints
    assert file_hashes(tmp_path / "parquet") == files
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "parquet").rglob("*.parquet")} == mtimes


def test_appending_a_day_recomputes_only_the_units_it_touches(pg_url, tmp_path):
    bars = eurusd(3)
    t = bars["time"]
    held_back_feb = (t >= "2017-02-14") & (t < "2017-02-15")  # a day missing in the middle of February
    held_back_mar = t >= "2017-03-31"  # the last day of March
    load_bars(pg_url, "src_append", "eurusd", bars[~held_back_feb & ~held_back_mar])
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema="src_append",
        output_schema="rel_append",
        pairs=["eurusd"],
        start=START,
        end=END,
        families=FAMILIES,
    )
    env = cli_env(pg_url)
    assert run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env).returncode == 0

    def versions():
        return {
            m: query(pg_url, "SELECT written_at FROM rel_append.checkpoints WHERE family = 'bqx' AND month = %s", (m,))[
                0
            ][0]
            for m in ("2017-01", "2017-02", "2017-03")
        }

    before = versions()
    load_bars(pg_url, "src_append", "eurusd", bars[held_back_mar], replace=False)  # append March 31st
    assert run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env).returncode == 0
    after_mar = versions()
    assert after_mar["2017-01"] == before["2017-01"] and after_mar["2017-02"] == before["2017-02"]
    assert after_mar["2017-03"] != before["2017-03"]

    load_bars(pg_url, "src_append", "eurusd", bars[held_back_feb], replace=False)  # fill Feb 14th
    assert run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=env).returncode == 0
    after_feb = versions()
    assert after_feb["2017-01"] == before["2017-01"]
    assert after_feb["2017-02"] != after_mar["2017-02"]  # touched
    assert after_feb["2017-03"] != after_mar["2017-03"]  # its warm-up reads February

    # the incremental result equals a full refresh from scratch
    full = write_config(
        tmp_path / "full.toml",
        source_schema="src_append",
        output_schema="rel_append_full",
        pairs=["eurusd"],
        start=START,
        end=END,
        families=FAMILIES,
    )
    assert run_cli(["features", "--config", str(full), "--full-refresh"], cwd=tmp_path, env=env).returncode == 0
    assert table_digest(pg_url, "rel_append") == table_digest(pg_url, "rel_append_full")
    assert len(query(pg_url, "SELECT 1 FROM rel_append.bqx_eurusd")) == len(bars)


def test_timestamp_without_time_zone_source_is_read_as_utc(pg_url, tmp_path):
    bars = eurusd(1).iloc[:2000]
    load_bars(pg_url, "src_naive", "eurusd", bars, time_type="timestamp")
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema="src_naive",
        output_schema="rel_naive",
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx"],
    )
    proc = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(pg_url))
    assert proc.returncode == 0, proc.stderr
    first = query(pg_url, "SELECT min(time) FROM rel_naive.bqx_eurusd")[0][0]
    assert pd.Timestamp(first) == bars["time"].iloc[0]


# -- bad input: a catalogue ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def written(source, tmp_path_factory):
    """A finished run whose outputs every bad-input case below must leave untouched."""
    d = tmp_path_factory.mktemp("catalogue")
    cfg = write_config(
        d / "c.toml",
        source_schema=SRC,
        output_schema="rel_catalogue",
        pairs=["eurusd"],
        start="2017-02",
        end="2017-03",
        families=["bqx", "technical_rate"],
    )
    proc = run_cli(["features", "--config", str(cfg)], cwd=d, env=cli_env(source))
    assert proc.returncode == 0, proc.stderr
    return d, cfg


def _snapshot(url: str, d: Path):
    return table_digest(url, "rel_catalogue"), file_hashes(d / "parquet")


@pytest.mark.parametrize(
    ("case", "args", "env_extra", "code", "needle"),
    [
        (
            "unreachable database",
            [],
            {"BQX_DATABASE_URL": "postgresql+psycopg2://etl:pw-x@127.0.0.1:1/bqx"},
            1,
            "cannot connect to database bqx at 127.0.0.1:1",
        ),
        ("missing table", ["--pairs", "eurusd,gbpjpy"], {}, 2, "source table src_rel.m1_gbpjpy does not exist"),
        (
            "empty month",
            ["--start", "2017-07", "--end", "2017-07"],
            {},
            1,
            "eurusd 2017-07: no bars in src_rel.m1_eurusd",
        ),
        ("unknown family", ["--families", "bqx,rsi_magic"], {}, 2, "unknown family 'rsi_magic'"),
        ("malicious pair ;", ["--pairs", "eurusd;drop table x"], {}, 2, "unknown pair 'eurusd;drop table x'"),
        ("malicious pair ..", ["--pairs", "../../etc"], {}, 2, "unknown pair '../../etc'"),
        ("bad env value", [], {"BQX_CLUSTER__N_WORKERS": "many"}, 2, "BQX_CLUSTER__N_WORKERS"),
        ("end before start", ["--start", "2017-03", "--end", "2017-02"], {}, 2, "is before run.start"),
    ],
)
def test_bad_input_gets_one_clear_line_and_changes_nothing(source, written, case, args, env_extra, code, needle):
    d, cfg = written
    before = _snapshot(source, d)
    env = cli_env(source, **env_extra)
    proc = run_cli(["features", "--config", str(cfg), *args], cwd=d, env=env)
    assert proc.returncode == code, (case, proc.stdout, proc.stderr)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if needle in line]
    assert lines, f"{case}: expected {needle!r} in {text!r}"
    assert "fix:" in lines[0]
    assert "pw-x" not in text
    assert _snapshot(source, d) == before, f"{case} changed what was already written"


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--pair", "../../etc", "--month", "2017-02"],
        ["import", "/dev/null", "--pair", "eurusd;drop table x", "--format", "csv"],
        ["seed", "--pairs", "eur'usd"],
    ],
)
def test_malicious_pair_names_are_refused_by_every_command(source, written, argv):
    d, cfg = written
    before = _snapshot(source, d)
    proc = run_cli([*argv, "--config", str(cfg)], cwd=d, env=cli_env(source))
    assert proc.returncode == 2, proc.stderr
    assert "unknown pair" in proc.stderr and "Traceback" not in proc.stderr
    assert _snapshot(source, d) == before


def test_a_pair_shorter_than_its_windows_gives_null_rows_and_a_warning(source, tmp_path):
    load_bars(source, "src_short", "eurusd", eurusd(1).iloc[:50])
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema="src_short",
        output_schema="rel_short",
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx", "statistics_rate", "reg_rate"],
    )
    proc = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source))
    assert proc.returncode == 0, proc.stderr
    assert "eurusd: fewer bars than the longest lookback" in proc.stderr
    rows = query(source, "SELECT count(*), count(w60_bqx_return), count(w15_bqx_return) FROM rel_short.bqx_eurusd")
    assert rows[0] == (50, 0, 35)
    assert query(source, "SELECT count(w630_r2) FROM rel_short.reg_rate_eurusd")[0][0] == 0


def test_corrupt_parquet_from_an_earlier_run_is_named_and_recomputed(source, tmp_path):
    import bqxdask
    from bqxdask.errors import OutputError

    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema="rel_corrupt",
        pairs=["eurusd"],
        start="2017-02",
        end="2017-03",
        families=["bqx"],
    )
    assert run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source)).returncode == 0
    victim = tmp_path / "parquet" / "bqx" / "pair=eurusd" / "year=2017" / "month=03" / "part-0.parquet"
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # half a file, as a crashed copy would leave it
    with pytest.raises(OutputError, match=r"month=03/part-0.parquet is corrupt or half-written .*fix:"):
        bqxdask.read_features("bqx", ["eurusd"], "2017-02", "2017-03", parquet_dir=str(tmp_path / "parquet")).compute()
    feb = (tmp_path / "parquet" / "bqx" / "pair=eurusd" / "year=2017" / "month=02" / "part-0.parquet").read_bytes()
    proc = run_cli(["features", "--config", str(cfg)], cwd=tmp_path, env=cli_env(source))
    assert proc.returncode == 0, proc.stderr
    assert "month=03/part-0.parquet is corrupt or half-written" in proc.stderr and "recomputed" in proc.stderr
    frame = bqxdask.read_features("bqx", ["eurusd"], "2017-02", "2017-03", parquet_dir=str(tmp_path / "parquet"))
    assert len(frame.compute()) == query(source, "SELECT count(*) FROM rel_corrupt.bqx_eurusd")[0][0]
    # February was not touched
    assert (
        tmp_path / "parquet" / "bqx" / "pair=eurusd" / "year=2017" / "month=02" / "part-0.parquet"
    ).read_bytes() == feb


def test_least_privilege_role_with_password_runs_and_nothing_leaks_it(source, tmp_path, pg_server):
    import secrets

    password = "Pw-" + secrets.token_hex(8)
    query(source, "DROP SCHEMA IF EXISTS rel_lp_out CASCADE")
    query(source, "DROP ROLE IF EXISTS bqx_etl")
    query(source, f"CREATE ROLE bqx_etl LOGIN PASSWORD '{password}'")
    query(source, f"GRANT USAGE ON SCHEMA {SRC} TO bqx_etl")
    query(source, f"GRANT SELECT ON ALL TABLES IN SCHEMA {SRC} TO bqx_etl")
    query(source, "CREATE SCHEMA rel_lp_out AUTHORIZATION bqx_etl")
    url = f"postgresql+psycopg2://bqx_etl:{password}@127.0.0.1:{pg_server.port}/bqx"
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema="rel_lp_out",
        pairs=["eurusd"],
        start="2017-02",
        end="2017-02",
        families=["bqx", "technical_rate"],
    )
    outputs = []
    for argv in (
        ["features", "--config", str(cfg)],
        ["features", "--config", str(cfg), "--dry-run"],
        ["check", "--config", str(cfg)],
        ["check", "--config", str(cfg), "--json"],
        ["db", "url", "--config", str(cfg)],
        ["db", "status", "--config", str(cfg)],
    ):
        proc = run_cli(argv, cwd=tmp_path, env=cli_env(url))
        outputs.append(proc.stdout + proc.stderr)
        if argv[0] == "features":
            assert proc.returncode == 0, proc.stderr
    assert query(source, "SELECT count(*) FROM rel_lp_out.bqx_eurusd")[0][0] > 0
    # the role really is least-privileged: it cannot write the source
    proc = run_cli(
        ["seed", "--config", str(cfg), "--pairs", "eurusd", "--start", "2017-02"], cwd=tmp_path, env=cli_env(url)
    )
    assert proc.returncode != 0 and "permission denied" in proc.stderr and "Traceback" not in proc.stderr
    outputs.append(proc.stdout + proc.stderr)
    for text in outputs:
        assert password not in text
        assert not re.search(r"bqx_etl:[^@\s]*@", text)  # no user:password@host URL form at all
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"password found in {path}"
