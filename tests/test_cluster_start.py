"""The run's LocalCluster: started while the client plans, workers forked warm (issue 15, SPEC §5, §10, §11).

Real LocalClusters, a real PostgreSQL for the run through the CLI. What is checked:

- the workers are what SPEC §5 asks (``n_workers`` × ``threads_per_worker``, each under a
  nanny that enforces ``memory_limit``), got the malloc environment, and start with the run's
  modules and kernels loaded from the client's own copy of ``bqxdask``;
- a caller that started the cluster early and is ready first is told it waits (SPEC §11), and
  the dashboard URL, on loopback (SPEC §10), comes before any unit;
- a cluster that cannot start is one line naming the cluster and the fix, the traceback in the
  run log (SPEC §7);
- the preload warms only the client's copy of ``bqxdask``, and forgets a different one.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

from dbutil import load_bars

import bqxdask
from bqxdask.config import build_config
from bqxdask.errors import BqxError
from bqxdask.pipeline import cluster as cluster_mod
from bqxdask.pipeline.cluster import PACKAGE_ENV, LocalStart, cluster, local_cluster
from bqxdask.testing import eurusd

PACKAGE_DIR = str(Path(bqxdask.__file__).resolve().parent)


def _cfg(workers: int = 2, memory: str = "1GiB"):
    return build_config(
        {"cluster": {"n_workers": workers, "memory_limit": memory, "dashboard_address": "127.0.0.1:0"}}, source="test"
    )


def _worker_state() -> dict:
    import bqxdask as pkg

    return {
        "package": str(Path(pkg.__file__).resolve().parent),
        "warm": "bqxdask.pipeline.warm" in sys.modules,
        "tasks": "bqxdask.pipeline.tasks" in sys.modules,
        "url_parser": "sqlalchemy.engine.url" in sys.modules,
        "top_pad": os.environ.get("MALLOC_TOP_PAD_"),
    }


def test_workers_are_the_configured_ones_under_nannies_and_start_warm():
    cfg = _cfg(workers=2, memory="1GiB")
    out = io.StringIO()
    with cluster(cfg, None, out) as (client, link):
        info = client.scheduler_info()["workers"]
        states = client.run(_worker_state)
    assert out.getvalue().startswith(f"Dask dashboard: {link}  (2 workers × 1 thread, 1GiB each)")
    assert link.startswith("http://127.0.0.1:")  # loopback (SPEC §10)
    assert len(info) == 2
    for w in info.values():
        assert w["nthreads"] == 1
        assert w["memory_limit"] == 2**30
        assert w["nanny"], "each worker runs under a nanny (it enforces memory_limit)"
    for state in states.values():
        assert state["package"] == PACKAGE_DIR
        assert state["top_pad"] == cluster_mod.WORKER_ENVIRON["distributed.nanny.pre-spawn-environ.MALLOC_TOP_PAD_"]
        if "forkserver" in cluster_mod.multiprocessing.get_all_start_methods():
            assert state["warm"] and state["tasks"], "the workers were forked after the warm-up"
            assert state["url_parser"], "each worker would import SQLAlchemy at its first connect"


class _Lines(io.StringIO):
    """Records writes; ``waiting`` is set when the 'still starting' line is written."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def write(self, text: str) -> int:
        if "still starting" in text:
            self.waiting.set()
        return super().write(text)


def test_a_caller_ready_first_is_told_it_waits_then_gets_the_dashboard():
    cfg = _cfg(workers=1)
    gate = threading.Event()

    def gated(c):  # the real cluster, once the test has seen the caller wait for it
        assert gate.wait(300)
        return local_cluster(c)

    start = LocalStart(cfg, make=gated)
    out = _Lines()
    seen: dict = {}

    def caller() -> None:
        with cluster(cfg, None, out, start) as (client, link):
            seen["workers"] = len(client.scheduler_info()["workers"])
            seen["link"] = link

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        assert out.waiting.wait(300), out.getvalue()
    finally:
        gate.set()
        thread.join(300)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Dask: the LocalCluster (1 worker) is still starting; waiting for it"
    assert lines[1].startswith(f"Dask dashboard: {seen['link']}  (1 worker × 1 thread")
    assert seen["workers"] == 1
    assert start.local is not None and start.local.status.name == "closed"


def test_a_start_that_failed_is_one_line_naming_the_cluster_and_the_fix():
    cfg = _cfg(workers=1)

    def broken(c):
        raise RuntimeError("Nanny failed to start.\nsecond line")

    start = LocalStart(cfg, make=broken)
    try:
        start.wait(io.StringIO())
    except BqxError as exc:
        message = str(exc)
    else:
        raise AssertionError("a failed start was not raised")
    finally:
        start.close()
    assert "\n" not in message
    assert message.startswith("the Dask LocalCluster (1 worker × 1GiB) did not start: RuntimeError: Nanny failed")
    assert "fix:" in message


def _one_month(tmp_path: Path, pg_url: str, name: str) -> tuple[list[str], dict[str, str]]:
    """``bqxdask features`` on one month of EURUSD bars in ``src_<name>``, one worker, the bqx
    family: the command, and the environment that points it at the test server."""
    load_bars(pg_url, f"src_{name}", "eurusd", eurusd(1).iloc[:2000])
    cfg = tmp_path / "test.toml"
    cfg.write_text(
        f'[database]\nsource_schema = "src_{name}"\noutput_schema = "out_{name}"\n'
        '[cluster]\nn_workers = 1\nmemory_limit = "1GiB"\ndashboard_address = "127.0.0.1:0"\n'
        '[run]\npairs = ["eurusd"]\nstart = "2017-01"\nend = "2017-01"\n'
        '[families]\nenabled = ["bqx"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env["BQX_DATABASE_URL"] = pg_url
    return [sys.executable, "-m", "bqxdask", "features", "--config", str(cfg)], env


def test_the_cli_reports_a_cluster_that_cannot_start_in_one_line(tmp_path, pg_url):
    command, env = _one_month(tmp_path, pg_url, "start")
    # a worker preload that does not exist: Dask's workers cannot start (the real failure)
    env["DASK_DISTRIBUTED__WORKER__PRELOAD"] = '["bqxdask_no_such_preload"]'
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: the Dask LocalCluster (1 worker × 1GiB) did not start"), errors[0]
    assert "fix:" in errors[0]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "Traceback" in (run_dir / "run.log").read_text()
    assert not (tmp_path / "data").exists()  # no unit ran


def _import_warm(package_dir: str) -> tuple[str, str]:
    """Import the preload in a fresh process naming ``package_dir`` as the client's; what is
    loaded there, and in a process forked from it."""
    code = (
        "import multiprocessing, sys\n"
        "import bqxdask.pipeline.warm\n"
        "def loaded():\n"
        "    return sorted(m for m in ('bqxdask', 'bqxdask.pipeline.tasks', 'numba') if m in sys.modules)\n"
        "def child():\n"
        "    print(loaded(), flush=True)\n"
        "print(loaded(), flush=True)\n"
        "p = multiprocessing.get_context('fork').Process(target=child)\n"
        "p.start(); p.join()\n"
    )
    env = dict(os.environ, **{PACKAGE_ENV: package_dir})
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    here, forked = proc.stdout.strip().splitlines()
    return here, forked


def test_the_preload_warms_the_clients_bqxdask_and_forgets_another(tmp_path):
    warm = "['bqxdask', 'bqxdask.pipeline.tasks', 'numba']"
    assert _import_warm(PACKAGE_DIR) == (warm, warm)
    # not the client's copy: nothing warmed, and a forked child starts without it
    assert _import_warm(str(tmp_path)) == ("['bqxdask']", "[]")


_FRESH_START = """
import json, os, sys, threading
import psutil
from bqxdask.config import build_config
from bqxdask.pipeline.cluster import LocalStart, local_cluster

KEYS = ("MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED", "BQXDASK_PACKAGE_DIR")
cfg = build_config(
    {"cluster": {"n_workers": 1, "memory_limit": "1GiB", "dashboard_address": "127.0.0.1:0"}}, source="test"
)
gate = threading.Event()

def gated(c):
    assert gate.wait(300)
    return local_cluster(c)

def launched():
    return [p for p in psutil.Process().children() if "multiprocessing.forkserver" in " ".join(p.cmdline())]

before = launched()
start = LocalStart(cfg, make=gated)
servers = launched()  # the cluster's start is still held at the gate
server_env = {k: servers[0].environ().get(k) for k in KEYS} if servers else {}
gate.set()
client = start.wait()
worker = next(iter(client.run(lambda: {"parent": psutil.Process().ppid(), **{k: os.environ.get(k) for k in KEYS}}).values()))
interval = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.periodic_callbacks["stealing"].callback_time)
start.close()
print(json.dumps({"before": len(before), "servers": [p.pid for p in servers], "server_env": server_env,
                  "worker": worker, "stealing_ms": interval}))
"""


def test_the_forkserver_is_launched_before_the_cluster_with_the_nannies_environment():
    """LocalStart launches the workers' forkserver itself, before the cluster's start: under
    the variables a nanny would have set (its own MALLOC_* and PYTHONHASHSEED, Dask's, the
    client's package), and the workers are forked from that server. The scheduler balances
    every 100 ms instead of Dask's 1 s. In a fresh interpreter: no forkserver runs yet there."""
    if "forkserver" not in cluster_mod.multiprocessing.get_all_start_methods():
        return  # spawn: nothing is launched ahead (the other tests cover the start itself)
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", "PYTHONHASHSEED")}
    proc = subprocess.run([sys.executable, "-c", _FRESH_START], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert got["before"] == 0
    assert len(got["servers"]) == 1, "the forkserver runs before the cluster starts"
    expected = {
        "MALLOC_TOP_PAD_": cluster_mod.WORKER_ENVIRON["distributed.nanny.pre-spawn-environ.MALLOC_TOP_PAD_"],
        "MALLOC_TRIM_THRESHOLD_": "65536",  # Dask's own pre-spawn variable
        "PYTHONHASHSEED": "6640",  # the nanny's fixed seed (dask/distributed#8400)
        "BQXDASK_PACKAGE_DIR": PACKAGE_DIR,
    }
    assert got["server_env"] == expected
    worker = got["worker"]
    assert worker.pop("parent") == got["servers"][0], "the worker was forked from that forkserver"
    assert worker == expected
    assert got["stealing_ms"] == 100


def _forkservers_marked(mark: str) -> list[int]:
    """Live forkservers whose environment carries ``BQX_TEST_MARK=mark``: launched by the CLI.

    (multiprocessing's resource tracker, launched with the forkserver, leaves by itself once
    the command's process has gone; it is not looked for.)"""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if "multiprocessing.forkserver" in " ".join(proc.cmdline()) and proc.environ().get("BQX_TEST_MARK") == mark:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_the_cli_launches_the_forkserver_ahead_and_leaves_none_behind(tmp_path, pg_url):
    """``bqxdask features`` launches the workers' forkserver before it plans and stops it before
    it exits: after a run, and after a rerun with nothing to do (where the forkserver, still
    warming up, would outlive the command and hold its console). The console goes to files,
    so that the command's exit is not delayed by a pipe: what it started is gone the moment
    it has exited."""
    if "forkserver" not in cluster_mod.multiprocessing.get_all_start_methods():
        return  # spawn: nothing is launched ahead
    command, env = _one_month(tmp_path, pg_url, "ahead")
    mark = f"ahead-{os.getpid()}-{tmp_path.name}"
    env["BQX_TEST_MARK"] = mark
    for what in ("run", "rerun with nothing to do"):
        out, err = tmp_path / f"{what}.out", tmp_path / f"{what}.err"
        with out.open("w") as fo, err.open("w") as fe:
            code = subprocess.call(command, cwd=tmp_path, env=env, stdout=fo, stderr=fe, timeout=300)
        left = _forkservers_marked(mark)
        assert code == 0, (what, out.read_text(), err.read_text())
        assert left == [], f"a forkserver left after the {what}"
    assert "done" in (tmp_path / "run.out").read_text()
    assert "skipped" in (tmp_path / "rerun with nothing to do.out").read_text()
