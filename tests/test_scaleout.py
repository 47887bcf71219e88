"""Running on an existing Dask cluster (SPEC §5, issue 9): real `dask scheduler` and `dask worker` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dbutil import load_bars
from reliability_util import cli_env, parquet_digest, run_cli, table_digest, wait_for, write_config

from bqxdask.testing import eurusd

DASK = str(Path(sys.executable).parent / "dask")
SRC = "src_scale"
FAMILIES = ["bqx", "technical_rate", "reg_rate"]


def _scheduler_address(path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


@pytest.fixture
def dask_cluster_processes(tmp_path):
    """A scheduler and two workers as separate OS processes, like any existing deployment."""
    sched_file = tmp_path / "scheduler.json"
    sched_log = (tmp_path / "scheduler.log").open("w")
    procs = [
        subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--scheduler-file",
                str(sched_file),
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--no-show",
            ],
            stdout=sched_log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        # the scheduler creates the file before it writes it: wait for a whole JSON document
        wait_for(lambda: _scheduler_address(sched_file) is not None, timeout=120, what="the scheduler file")
        address = _scheduler_address(sched_file)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--memory-limit",
                        "2GiB",
                        "--name",
                        f"ext-{i}",
                        "--no-dashboard",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=180)
        yield address, tmp_path / "scheduler.log"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        sched_log.close()


@pytest.mark.slow
def test_existing_scheduler_gives_the_same_outputs_as_a_local_cluster(pg_url, tmp_path, dask_cluster_processes):
    address, sched_log = dask_cluster_processes
    load_bars(pg_url, SRC, "eurusd", eurusd(2))
    local_dir, remote_dir = tmp_path / "local", tmp_path / "remote"
    local_dir.mkdir()
    remote_dir.mkdir()
    local = write_config(
        local_dir / "c.toml",
        source_schema=SRC,
        output_schema="scale_local",
        pairs=["eurusd"],
        start="2017-01",
        end="2017-02",
        families=FAMILIES,
    )
    remote = write_config(
        remote_dir / "c.toml",
        source_schema=SRC,
        output_schema="scale_remote",
        pairs=["eurusd"],
        start="2017-01",
        end="2017-02",
        families=FAMILIES,
    )
    a = run_cli(["features", "--config", str(local)], cwd=local_dir, env=cli_env(pg_url))
    assert a.returncode == 0, a.stderr
    b = run_cli(["features", "--config", str(remote), "--scheduler", address], cwd=remote_dir, env=cli_env(pg_url))
    assert b.returncode == 0, b.stderr
    assert f"existing scheduler {address}" in b.stdout
    assert table_digest(pg_url, "scale_local") == table_digest(pg_url, "scale_remote")
    assert parquet_digest(local_dir / "parquet") == parquet_digest(remote_dir / "parquet")
    log = sched_log.read_text()
    assert "Receive client connection" in log  # the scheduler saw our client
    summary = json.loads(next((remote_dir / "runs").glob("*/summary.json")).read_text())
    assert summary["totals"]["done"] == 2 * len(FAMILIES)


def test_unreachable_scheduler_is_one_clear_line(pg_url, tmp_path):
    load_bars(pg_url, SRC, "eurusd", eurusd(1).iloc[:3000])
    cfg = write_config(
        tmp_path / "c.toml",
        source_schema=SRC,
        output_schema="scale_none",
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx"],
    )
    env = cli_env(pg_url, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    proc = run_cli(
        ["features", "--config", str(cfg), "--scheduler", "tcp://127.0.0.1:1"], cwd=tmp_path, env=env, timeout=120
    )
    assert proc.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in proc.stderr and "Traceback" not in proc.stderr


def test_parquet_output_to_an_fsspec_url(pg_url, tmp_path, dask_client):
    from pipeline_util import make_config

    import bqxdask
    from bqxdask.pipeline import run_features

    load_bars(pg_url, SRC, "eurusd", eurusd(1).iloc[:4000])
    url = f"file://{tmp_path}/lake"
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema=SRC,
        output_schema="scale_fsspec",
        pairs=["eurusd"],
        start="2017-01",
        end="2017-01",
        families=["bqx"],
        extra={"output": {"parquet_dir": url}},
    )
    assert run_features(cfg, client=dask_client).exit_code == 0
    assert (tmp_path / "lake" / "bqx" / "pair=eurusd" / "year=2017" / "month=01" / "part-0.parquet").is_file()
    frame = bqxdask.read_features("bqx", ["eurusd"], "2017-01", "2017-01", parquet_dir=url).compute()
    assert len(frame) == 4000
    again = run_features(cfg, client=dask_client)  # checkpoints are found through the URL too
    assert {r["status"] for r in again.results} == {"skipped"}
