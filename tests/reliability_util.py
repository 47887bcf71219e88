"""Helpers for crash-safety tests: run the real CLI in its own process group, snapshot outputs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from psycopg2 import sql

from bqxdask.db.connect import connection

REPO = Path(__file__).resolve().parents[1]


def cli_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env["BQX_DATABASE_URL"] = url
    env.update(extra)
    return env


def write_config(
    path: Path,
    *,
    source_schema: str,
    output_schema: str,
    pairs: list[str],
    start: str,
    end: str,
    families: list[str],
    workers: int = 2,
    extra: str = "",
) -> Path:
    fams = ", ".join(f'"{f}"' for f in families)
    prs = ", ".join(f'"{p}"' for p in pairs)
    path.write_text(
        f'[database]\nsource_schema = "{source_schema}"\noutput_schema = "{output_schema}"\n'
        f'[cluster]\nn_workers = {workers}\ndashboard_address = ":0"\n'
        f'[run]\npairs = [{prs}]\nstart = "{start}"\nend = "{end}"\nruns_dir = "{path.parent / "runs"}"\n'
        f"[families]\nenabled = [{fams}]\n"
        f'[output]\nparquet_dir = "{path.parent / "parquet"}"\n' + extra
    )
    return path


def start_cli(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """``bqxdask <args>`` in a new session, so the whole process group can be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "bqxdask", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bqxdask", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def kill_group(proc: subprocess.Popen, url: str) -> None:
    """SIGKILL the whole group, then wait until the server has rolled back what it left open."""
    with _suppress():
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    if proc.stdout:
        proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    # not a fixed sleep: poll until no bqxdask session is mid-transaction any more
    wait_for(lambda: not busy_sessions(url), timeout=120, what="the killed run's sessions to end")


def busy_sessions(url: str) -> list[tuple]:
    """bqxdask's server sessions (but this one) that are not idle: in a transaction or a statement.

    Idle pooled connections of other processes (the session's LocalCluster) do not count.
    """
    with connection(url, application_name="bqxdask-tests") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pid, application_name, state FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND application_name LIKE 'bqxdask%' AND application_name <> 'bqxdask-tests' "
            "AND state IS DISTINCT FROM 'idle'"
        )
        return cur.fetchall()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)


def wait_for(predicate, *, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def table_digest(url: str, schema: str) -> dict[str, tuple[int, str]]:
    """For every table of ``schema`` but the bookkeeping ones: (rows, md5 of the rows in time order)."""
    out = {}
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,))
        for (name,) in cur.fetchall():
            if name in ("checkpoints", "rejected_bars", "baseline_rates", "runs"):
                continue
            t = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            cur.execute(
                sql.SQL(
                    "SELECT count(*), count(DISTINCT time), md5(string_agg(t::text, '|' ORDER BY time)) FROM {} AS t"
                ).format(t)
            )
            rows, distinct, digest = cur.fetchone()
            assert rows == distinct, f"{schema}.{name} has duplicate times"
            out[name] = (rows, digest)
    return out


def row_versions(url: str, schema: str, table: str) -> str:
    """md5 of the rows' xmin: changes whenever a row is rewritten, even with the same values."""
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT md5(string_agg(xmin::text, ',' ORDER BY time)) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        return cur.fetchone()[0]


def parquet_digest(root: Path) -> dict[str, str]:
    """Relative path → hash of the data (not the metadata, which names the run)."""
    out = {}
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        h = hashlib.sha256()
        for col in table.columns:
            h.update(col.to_numpy(zero_copy_only=False).tobytes())
        out[str(path.relative_to(root))] = h.hexdigest()
    return out


def temporary_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def latest_summary(runs_dir: Path) -> dict:
    import json

    newest = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return json.loads((newest / "summary.json").read_text())
