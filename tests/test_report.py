"""``bqxdask report`` pages render in a real browser; the live dashboard answers (SPEC §5, §7).

The page is opened in headless Chromium (Debian's ``chromium``, installed here with apt-get
when missing and we are root) and driven over the DevTools protocol with tornado's websocket
client (already installed with distributed/bokeh): no JavaScript error may be raised or logged,
and Bokeh must have painted its canvases, which live in shadow roots that ``--dump-dom`` would
not show.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dbutil import load_bars
from pipeline_util import make_config, unique_schema

from bqxdask import report
from bqxdask.errors import OutputError
from bqxdask.features import registry
from bqxdask.pipeline import run_features
from bqxdask.testing import eurusd

SRC = "src_report"
PAIR, MONTH = "eurusd", "2017-02"
REG_WINDOWS = [30, 60]


# -- features for one pair-month --------------------------------------------------------------
@pytest.fixture(scope="module")
def features(pg_url, tmp_path_factory, dask_client):
    """bqx, bollinger_rate, technical_rate and reg_rate for EURUSD 2017-02."""
    load_bars(pg_url, SRC, PAIR, eurusd(2))
    tmp = tmp_path_factory.mktemp("report")
    # reg_rate always: SPEC §4.6 requires it, and a test that adapts to its absence cannot fail
    families = ["bqx", "bollinger_rate", "technical_rate", "reg_rate"]
    cfg = make_config(
        pg_url,
        tmp,
        source_schema=SRC,
        output_schema=unique_schema("rep"),
        pairs=[PAIR],
        start=MONTH,
        end=MONTH,
        families=families,
        extra={"families": {"reg": {"windows": REG_WINDOWS}}},
    )
    result = run_features(cfg, client=dask_client, out=io.StringIO())
    assert result.exit_code == 0, result.failures
    return cfg


# -- a minimal DevTools-protocol client ----------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary; installed from the machine's apt repositories if missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and only root can apt-get install it; fix: apt-get install chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:  # a stale package index: refresh it once
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=300)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    found = shutil.which("chromium")
    if not found:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        pytest.skip(f"chromium could not be installed with apt-get ({last[0]})")
    return found


#: Counts canvases through every shadow root and how many of them Bokeh painted.
COUNT_JS = r"""
(() => {
  const canvases = [];
  let text = "";
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.tagName === "CANVAS") canvases.push(el);
      if (el.shadowRoot) { text += " " + el.shadowRoot.textContent; walk(el.shadowRoot); }
    }
  };
  walk(document);
  let painted = 0;
  for (const c of canvases) {
    if (!c.width || !c.height) continue;
    const ctx = c.getContext("2d");
    if (!ctx) continue;
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4 * 7) { if (px[i] !== 0) { painted++; break; } }
  }
  return JSON.stringify({canvases: canvases.length, painted: painted,
                         documents: (window.Bokeh && Bokeh.documents) ? Bokeh.documents.length : 0,
                         text: document.body.textContent + text, ready: document.readyState});
})()
"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: calls, and the events seen meanwhile."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    async def call(self, method: str, timeout: float = 30.0, **params):
        self.next_id += 1
        mid = self.next_id
        await self.ws.write_message(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            raw = await asyncio.wait_for(self.ws.read_message(), timeout)
            if raw is None:
                raise RuntimeError(f"DevTools connection closed during {method}")
            msg = json.loads(raw)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']} ({p['entry'].get('url', '')})")
        return out


@contextlib.contextmanager
def headless_chromium(binary: str, profile: Path):
    """A headless Chromium with remote debugging on a free port; yields the port."""
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--user-data-dir={profile}",
        "--window-size=1400,1200",
        "about:blank",
    ]
    log = open(profile.parent / "chromium.log", "w")  # noqa: SIM115 - closed below
    # TMPDIR: Chromium's singleton socket folder goes to a short-lived folder of ours (short
    # path: a Unix socket path is limited to 107 bytes) instead of staying in /tmp for good
    scratch = tempfile.mkdtemp(prefix="bqxchr")
    env = {**os.environ, "TMPDIR": scratch}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 180  # generous: only a browser that never starts waits this long
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(profile.parent / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield int(port_file.read_text().split()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # renderer/zygote children of the one we started
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


async def _render(port: int, url: str, want_painted: int, timeout: float = 180.0) -> tuple[dict, list[str]]:
    from tornado.websocket import websocket_connect

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=60) as resp:
        targets = json.load(resp)
    page = next(t for t in targets if t.get("type") == "page")
    ws = await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=64 * 2**20)
    try:
        dt = DevTools(ws)
        for domain in ("Runtime", "Log", "Page"):
            await dt.call(f"{domain}.enable")
        await dt.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            res = await dt.call("Runtime.evaluate", expression=COUNT_JS, returnByValue=True)
            value = res.get("result", {}).get("value")
            if not isinstance(value, str):  # the navigation is replacing the document
                state = {"evaluate": res.get("exceptionDetails", res)}
            else:
                state = json.loads(value)
                if state["ready"] == "complete" and state["painted"] >= want_painted:
                    break
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.5)  # let late errors arrive
        await dt.call("Runtime.evaluate", expression="1", returnByValue=True)
        return state, dt.errors()
    finally:
        ws.close()


def open_in_chromium(binary: str, page: Path, tmp: Path, want_painted: int) -> tuple[dict, list[str]]:
    profile = tmp / "chromium-profile"
    profile.mkdir()
    with headless_chromium(binary, profile) as port:
        return asyncio.run(_render(port, page.resolve().as_uri(), want_painted))


# -- the report page --------------------------------------------------------------------------
def test_report_renders_in_headless_chromium(features, tmp_path, chromium):
    out = tmp_path / "page.html"
    path = report.make_report(features, PAIR, MONTH, output=out)
    assert path == out and out.is_file()
    page = out.read_text(encoding="utf-8")
    assert "cdn.bokeh.org/bokeh/release" not in page  # INLINE: the page works offline
    assert out.stat().st_size < 6 * 2**20
    state, errors = open_in_chromium(chromium, out, tmp_path, want_painted=4)
    assert errors == []
    assert "painted" in state, state
    assert state["documents"] == 1
    assert state["painted"] >= 4, state  # index, RSI, MACD and BQX panels were drawn
    assert "EURUSD — 2017-02" in state["text"]
    assert "run " in state["text"]
    assert "No reg_rate output" not in state["text"]
    assert "regression fit w60" in page


def test_report_without_reg_outputs_says_so(features, tmp_path):
    parquet = tmp_path / "parquet"
    shutil.copytree(features.output.parquet_dir, parquet, ignore=shutil.ignore_patterns("reg_rate"))
    cfg = make_config(
        "postgresql://unused@127.0.0.1:1/x",
        tmp_path,
        source_schema=SRC,
        output_schema="unused",
        pairs=[PAIR],
        start=MONTH,
        end=MONTH,
    )
    import dataclasses

    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, parquet_dir=str(parquet)))
    path = report.make_report(cfg, PAIR, MONTH, output=tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert "No reg_rate output for eurusd 2017-02" in page
    assert "regression fit" not in page


def test_missing_month_or_pair_is_one_line_error(features):
    with pytest.raises(OutputError) as err:
        report.make_report(features, PAIR, "2017-05")
    msg = str(err.value)
    assert "\n" not in msg
    assert "no Parquet output of bqx, bollinger_rate, technical_rate for eurusd 2017-05" in msg
    assert "(eurusd has outputs for 2017-02)" in msg
    assert "fix: bqxdask features --pairs eurusd --start 2017-05 --end 2017-05" in msg
    with pytest.raises(OutputError, match=r"for gbpusd 2017-02 .*\(none for gbpusd in any month\); fix: "):
        report.make_report(features, "gbpusd", MONTH)


def test_report_command_prints_only_its_path(features, tmp_path):
    families = ", ".join(f'"{f}"' for f in registry.all_families())
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        f'[run]\npairs = ["{PAIR}"]\n[families]\nenabled = [{families}]\n'
        f'[output]\nparquet_dir = "{features.output.parquet_dir}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bqxdask", "report", "--config", str(cfg), "--pair", PAIR, "--month", MONTH],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"report: reports/{PAIR}-{MONTH}.html\n" and proc.stderr == ""
    assert (tmp_path / "reports" / f"{PAIR}-{MONTH}.html").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "bqxdask", "report", "--config", str(cfg), "--pair", PAIR, "--month", "2017-07"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: report eurusd 2017-07: no Parquet output") and bad.stderr.count("\n") == 1


def test_check_measures_parquet_bytes_per_value_on_real_outputs(features):
    from bqxdask import readiness

    measured = readiness.measured_parquet_ratio(
        features.output.parquet_dir, ["bqx", "technical_rate", "statistics_rate"]
    )
    assert set(measured) == {"bqx", "technical_rate"}  # no statistics output was made
    for ratio, files in measured.values():
        assert files == 1 and 0.3 < ratio < 2.0


def test_thinning_and_gaps():
    idx = pd.date_range("2024-07-05 20:00", periods=50_000, freq="min", tz="UTC")
    data = pd.DataFrame({"a": np.arange(50_000.0)}, index=idx)
    thin, k = report.thin(data, 20_000)
    assert k == 3 and len(thin) <= 20_001 and thin.index[-1] == idx[-1] and thin.index[0] == idx[0]
    same, k = report.thin(data, 60_000)  # under the limit: every row, unthinned
    assert k == 1 and same.equals(data)
    weekend = data.iloc[[0, 1, 2]].copy()
    weekend.index = pd.DatetimeIndex(["2024-07-05 20:58", "2024-07-05 20:59", "2024-07-07 21:00"], tz="UTC")
    broken = report.break_gaps(weekend)
    assert len(broken) == 4 and np.isnan(broken["a"].iloc[2])
    assert report.reg_window(["w15_pred", "w30_pred", "w90_pred"]) == 30
    assert report.reg_window(["w15_pred", "w60_pred"]) == 60
    assert report.reg_window(["rsi_14"]) is None


# -- the live dashboard -----------------------------------------------------------------------
class _Recorder(io.TextIOBase):
    """A stream that records what run_features writes and pauses it at the dashboard line.

    The run holds at that line — its own LocalCluster is up — until the test has fetched the
    dashboard, so the GET happens while the run is live, deterministically.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.dashboard: str | None = None
        self.seen = threading.Event()
        self.resume = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.lines.append(text)
        if text.startswith("Dask dashboard: ") and self.dashboard is None:
            self.dashboard = text.split()[2]
            self.seen.set()
            self.resume.wait(600)  # the test always sets it (finally); 600 s only bounds a hang
        return len(text)


def test_dashboard_answers_while_a_run_is_live(pg_url, tmp_path, features):
    cfg = make_config(
        pg_url,
        tmp_path,
        source_schema=SRC,
        output_schema=unique_schema("dash"),
        pairs=[PAIR],
        start=MONTH,
        end=MONTH,
        families=["bqx"],
        extra={"cluster": {"n_workers": 1, "memory_limit": "1GiB", "dashboard_address": ":0"}},
    )
    stream = _Recorder()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_features(cfg, out=stream)  # its own LocalCluster
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc
        finally:
            stream.seen.set()

    thread = threading.Thread(target=run, name="run_features")
    thread.start()
    try:
        assert stream.seen.wait(180), "run_features never printed the dashboard URL"
        assert "error" not in outcome, outcome.get("error")
        url = stream.dashboard
        assert url and url.startswith("http://") and url.endswith("/status"), stream.lines
        with urllib.request.urlopen(url, timeout=120) as resp:  # a loaded 2-core machine renders slowly
            assert resp.status == 200
            assert "Dask" in resp.read().decode("utf-8", "replace")
    finally:
        stream.resume.set()
        thread.join(300)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].exit_code == 0 and outcome["result"].dashboard == url
    summary = json.loads((outcome["result"].run_dir / "summary.json").read_text())
    assert summary["dashboard"] == url
