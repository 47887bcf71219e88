"""The command line as a user meets it: one-line errors, exit codes, no tracebacks (SPEC §2, §7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dbutil import load_bars

from bqxdask.testing import eurusd

REPO = Path(__file__).resolve().parents[1]


def bqx(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bqxdask", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "test.toml"
    path.write_text(body)
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert needle in errors[0], errors[0]
    assert "fix:" in errors[0]


def test_help_for_every_command(tmp_path):
    for command in ("db", "seed", "import", "features", "check", "select", "report"):
        proc = bqx(command, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and "usage: bqxdask" in proc.stdout


def test_bad_config_key_exits_2_with_one_line(tmp_path):
    cfg = write_config(tmp_path, "[cluster]\nn_wrokers = 3\n")
    proc = bqx("features", "--config", str(cfg), "--dry-run", cwd=tmp_path)
    assert_one_line_error(proc, 2, "unknown config key 'cluster.n_wrokers'")


def test_unknown_pair_exits_2_with_one_line(tmp_path):
    cfg = write_config(tmp_path, "")
    proc = bqx("features", "--config", str(cfg), "--pairs", "eurusd,eur/usd", "--dry-run", cwd=tmp_path)
    assert_one_line_error(proc, 2, "unknown pair 'eur/usd'")


def test_env_override_with_bad_value_exits_2(tmp_path):
    cfg = write_config(tmp_path, "")
    proc = bqx("features", "--config", str(cfg), "--dry-run", cwd=tmp_path, env={"BQX_CLUSTER__N_WORKERS": "[1"})
    assert_one_line_error(proc, 2, "BQX_CLUSTER__N_WORKERS")


def test_missing_source_table_exits_2_before_any_work(tmp_path, pg_url):
    load_bars(pg_url, "src_cli", "eurusd", eurusd(1).iloc[:500])
    cfg = write_config(
        tmp_path,
        '[database]\nsource_schema = "src_cli"\noutput_schema = "out_cli"\n'
        '[cluster]\ndashboard_address = ":0"\n'  # never the fixed :8787 in a test
        '[run]\npairs = ["eurusd", "gbpjpy"]\nstart = "2017-01"\nend = "2017-01"\n',
    )
    proc = bqx("features", "--config", str(cfg), cwd=tmp_path, env={"BQX_DATABASE_URL": pg_url})
    assert_one_line_error(proc, 2, "source table src_cli.m1_gbpjpy does not exist")
    assert not (tmp_path / "data").exists()  # nothing written


@pytest.mark.parametrize("action", ["url", "status"])
def test_db_commands_never_print_a_password(tmp_path, action):
    cfg = write_config(tmp_path, "")
    url = "postgresql+psycopg2://etl:s3cr3t-pw@db.internal:5432/fx"
    proc = bqx("db", action, "--config", str(cfg), cwd=tmp_path, env={"BQX_DATABASE_URL": url})
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-pw" not in proc.stdout + proc.stderr
    if action == "url":
        assert proc.stdout.strip() == "postgresql+psycopg2://etl@db.internal:5432/fx"


def test_unreachable_database_is_one_line(tmp_path):
    cfg = write_config(tmp_path, "")
    url = "postgresql+psycopg2://etl:s3cr3t-pw@127.0.0.1:1/fx"
    proc = bqx("features", "--config", str(cfg), "--dry-run", cwd=tmp_path, env={"BQX_DATABASE_URL": url})
    assert_one_line_error(proc, 1, "cannot connect to database fx at 127.0.0.1:1 as etl")
    assert "s3cr3t-pw" not in proc.stdout + proc.stderr
