"""The readiness assessment: ``bqxdask check`` (SPEC §8).

Before a long run an operator wants one report and one verdict, the way a readiness review is
written by hand. :func:`assess` gathers it — each line a :class:`Check` with a status
(``ok`` ✅, ``warn`` ⚠️, ``fail`` ❌), its numbers and, when it is not ok, the fix — and
:func:`run_check` prints it as text or JSON. Verdict: NOT READY if any line failed (exit 1),
READY WITH WARNINGS if any warned, else READY (both exit 0).

Groups, in the order they are printed:

- **machine** — CPUs, memory (the cgroup limit when a container has one), free disk where the
  Parquet files, the run directories and the embedded database go, load, OS, Python; on a
  burstable cloud instance its baseline CPU share against the planned run (:mod:`.burstable`);
- **plan** — workers × ``memory_limit`` against available memory, workers against CPUs, the
  enabled families, a rough per-unit memory estimate; or, with ``cluster.scheduler_address``,
  what the existing scheduler offers (❌ if it cannot be reached) and whether every worker
  reaches the database and the Parquet location like this client (:mod:`.probes`);
- **database** — reachable, server version, the connections the plan opens against what the
  server has free, privileges on the output schema;
- **neighbours** — other bqxdask runs on the database, sessions locking the output schema's
  tables, long transactions (:mod:`.neighbours`, SPEC §11);
- **source tables** — per pair: present, SELECT granted, rows, first/last bar, rows in the
  requested months;
- **dependencies** — installed versions against ``install_requires`` of ``setup.cfg`` (or the
  installed package metadata), TA-Lib importable and computing;
- **output size** — the rows of the requested months × the enabled families' columns, as
  Parquet (bytes per value measured on this machine's existing outputs, else assumed) and as
  PostgreSQL tuples, against free disk.

Decisions worth knowing:

- ``check`` changes nothing. In particular it never initialises or starts the embedded
  PostgreSQL (``bqxdask features`` does that on demand): a check that starts a server changes
  what it measures and leaves a process behind. A stopped embedded server is a ⚠️ telling the
  operator to ``bqxdask db start`` and check again; the database lines are then not assessed.
- Connections the plan opens (per server): every worker process keeps up to
  ``database.max_connections_per_worker`` connections per URL (:mod:`bqxdask.db.pool`), twice
  that when a separate ``read_url`` points at the same server, plus the client's own one (two
  with a read URL). A ``read_url`` on another server is assessed on that server.
- Every check guards itself: an unexpected error becomes a ❌ line naming the check, never a
  traceback. Every string that leaves this module passes :func:`bqxdask.db.urls.scrub` with
  the configured passwords, and URLs are only ever shown through ``describe``.
"""

from __future__ import annotations

import configparser
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .burstable import DMI_PRODUCT_FILES, instance_check
from .config import Config, month_bounds
from .db.budget import connections_needed, describe_need, server_budget, servers
from .db.urls import DbTarget, describe_url, scrub
from .errors import BqxError, OutputError
from .findings import FAIL, ICON, OK, WARN, Check, first_line
from .neighbours import LONG_TRANSACTION_SECONDS, neighbour_checks
from .pipeline.estimate import PARQUET_BYTES_PER_VALUE, fmt_bytes, sql_row_bytes
from .pipeline.estimate import parquet_bytes as estimate_parquet_bytes
from .probes import probe_workers

GROUPS = ("machine", "plan", "database", "neighbours", "source tables", "dependencies", "output size")
GROUP_TITLE = {
    "machine": "Machine", "plan": "Plan", "database": "Database",
    "neighbours": "Neighbours (other sessions on the database)", "source tables": "Source tables",
    "dependencies": "Dependencies", "output size": "Output size estimate",
}
WIDTH = 100
NAME_WIDTH = 18
#: application_name of check's own connections (left out of the neighbours it reports)
CHECK_APPLICATION = "bqxdask/check"

#: memory thresholds of the plan: ❌ above what is available, ⚠️ above this share of it
MEMORY_WARN = 0.80
#: connection budget: ❌ above the free connections, ⚠️ above this share of them
CONNECTIONS_WARN = 0.80
#: output size against free disk: ⚠️ above the first share, ❌ above the second
DISK_WARN, DISK_FAIL = 0.50, 0.90
#: bars in one pair-month when the database cannot tell (FX trades 24 h × 5 days: ~31,000)
ASSUMED_BARS_PER_MONTH = 31_000
#: Parquet bytes per float64 value, as a share of 8 B, when no output exists yet to measure
ASSUMED_PARQUET_RATIO = PARQUET_BYTES_PER_VALUE / 8
#: what a worker process weighs before it holds any data (Python, pandas, numpy, TA-Lib, Dask)
WORKER_BASELINE_BYTES = 200 * 2**20
#: live copies of a unit's frame while a family runs (prepared, result, values, COPY buffer)
UNIT_COPIES = 4
#: columns of the prepared frame besides the family's output (idx, ohlc_idx, bqx series …)
PREPARED_COLUMNS = 8
#: a worker spills to disk above 60 % of memory_limit and is restarted above 95 %
SPILL_SHARE = 0.60
#: map package names as setup.cfg spells them to the distributions that may provide them
ALTERNATE_DISTS = {"psycopg2-binary": ("psycopg2-binary", "psycopg2"), "ta-lib": ("ta-lib", "TA-Lib")}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class Facts:
    """What earlier checks learned and later ones use."""

    cpus: int | None = None
    mem_available: int | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    worker_memory: int | None = None
    embedded: bool = False
    db_reason: str = ""
    #: source rows per requested month, per pair (a pair is absent when its table was not read)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    families: list[str] = field(default_factory=list)
    warmup: int = 0
    secrets: tuple[str, ...] = ()
    #: report transactions open longer than this (SPEC §11: 5 min; tests pass 0)
    long_transaction_seconds: float = LONG_TRANSACTION_SECONDS
    #: where the DMI product name is read (tests point it at a file of their own)
    dmi_files: tuple[str, ...] = DMI_PRODUCT_FILES
    #: the neighbours group's record for the JSON report (None when not assessed)
    neighbours: dict[str, Any] | None = None


@dataclass
class Assessment:
    header: dict[str, Any]
    checks: list[Check]

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}

    @property
    def verdict(self) -> str:
        counts = self.counts
        if counts[FAIL]:
            return "NOT READY"
        return "READY WITH WARNINGS" if counts[WARN] else "READY"

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "NOT READY" else 0

    def ordered(self) -> list[Check]:
        return sorted(self.checks, key=lambda c: GROUPS.index(c.group))  # stable within a group

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "exit_code": self.exit_code, **self.header, "counts": self.counts,
                "checks": [c.to_dict() for c in self.ordered()]}

    def to_text(self) -> str:
        lines = [f"bqxdask {__version__} readiness check — {self.header['config']}"]
        for key in ("run", "cluster", "database"):
            lines += textwrap.wrap(self.header["summary"][key], width=WIDTH, initial_indent=f"{key + ':':<10}",
                                   subsequent_indent=" " * 10, break_long_words=False, break_on_hyphens=False)
        for group in GROUPS:
            checks = [c for c in self.ordered() if c.group == group]
            if not checks:
                continue
            lines += ["", GROUP_TITLE[group]]
            for c in checks:
                lines += _format_line(c)
        counts = self.counts
        lines += ["", f"verdict: {self.verdict}  ({counts[FAIL]} ❌, {counts[WARN]} ⚠️, {counts[OK]} ✅)"]
        return "\n".join(lines)


def _format_line(c: Check) -> list[str]:
    prefix = f"  {ICON[c.status]}  {c.name:<{NAME_WIDTH}} "
    indent = " " * (7 + NAME_WIDTH)
    wrapped = textwrap.wrap(c.detail, width=WIDTH - len(indent), break_long_words=False,
                            break_on_hyphens=False) or [""]
    return [prefix + wrapped[0], *(indent + w for w in wrapped[1:])]


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def run_check(cfg: Config, *, as_json: bool = False, out: TextIO | None = None, **options: Any) -> int:
    """Assess readiness for ``cfg``, print the report (text or JSON) to ``out``; return the exit code.

    ``options`` go to :func:`assess`.
    """
    out = out or sys.stdout
    result = assess(cfg, **options)
    if as_json:
        out.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    else:
        out.write(_encodable(result.to_text(), getattr(out, "encoding", None)) + "\n")
    out.flush()
    return result.exit_code


_ASCII = {"✅": "[ok]", "⚠️": "[!!]", "❌": "[XX]", "→": "->", "×": "x", "≈": "~", "−": "-", "≠": "!=",
          "…": "...", "—": "-", "·": ".", "Σ": "sum", "σ": "sigma", "∞": "inf"}


def _encodable(text: str, encoding: str | None) -> str:
    """``text`` as is if the stream can encode it, else with ASCII stand-ins (a C-locale pipe, a
    Windows console): a report must never die on a UnicodeEncodeError."""
    try:
        text.encode(encoding or "utf-8")
        return text
    except (UnicodeEncodeError, LookupError):
        pass
    for char, stand_in in _ASCII.items():
        text = text.replace(char, stand_in)
    try:
        return text.encode(encoding or "ascii", "replace").decode(encoding or "ascii")
    except LookupError:
        return text.encode("ascii", "replace").decode("ascii")


def assess(cfg: Config, *, long_transaction_seconds: float = LONG_TRANSACTION_SECONDS,
           dmi_files: Iterable[str] = DMI_PRODUCT_FILES) -> Assessment:
    """Run every check for ``cfg``; never raises for a problem it can describe.

    ``long_transaction_seconds``: report transactions open longer than this (SPEC §11: 5 min);
    ``dmi_files``: where the machine's DMI product name is read (a burstable instance's type).
    """
    facts = Facts(secrets=_secrets(cfg), long_transaction_seconds=long_transaction_seconds,
                  dmi_files=tuple(dmi_files))
    checks: list[Check] = []
    # dependency order, not print order: the plan needs the machine, connections need the
    # plan's worker count, the unit-memory line, the instance line and the size estimate need
    # the row counts
    for group, step in (("machine", _machine), ("plan", _plan), ("database", _database), ("plan", _plan_late),
                        ("machine", _instance), ("dependencies", _dependencies), ("output size", _output)):
        checks += _each(group, "check failed", step, cfg, facts)
    for c in checks:
        c.detail = scrub(c.detail, *facts.secrets)
        c.values = _scrub_values(c.values, facts.secrets)
    return Assessment(_scrub_values(_header(cfg, facts), facts.secrets), checks)


def _each(group: str, name: str, fn: Callable[..., Check | list[Check]], *args: Any, **kwargs: Any) -> list[Check]:
    """``fn(*args)`` as a list of checks; an exception becomes one ❌ line named ``name``."""
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # a check must never end in a traceback
        return [Check(group, name, FAIL, f"could not be checked: {type(exc).__name__}: {first_line(exc)}; "
                      "fix: correct what it names, or report it as a bug")]
    return out if isinstance(out, list) else [out]


def _secrets(cfg: Config) -> tuple[str, ...]:
    out = []
    for url in (cfg.database.url, cfg.database.read_url):
        if url:
            try:
                pw = DbTarget.parse(url).password
            except BqxError:
                pw = None
            if pw:
                out.append(pw)
    return tuple(out)


def _scrub_values(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, *secrets)
    if isinstance(value, dict):
        return {k: _scrub_values(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_values(v, secrets) for v in value]
    return value


def _header(cfg: Config, facts: Facts) -> dict[str, Any]:
    months = cfg.months
    pairs = list(cfg.run.pairs)
    shown = ", ".join(pairs[:6]) + (", …" if len(pairs) > 6 else "")
    run = (f"{len(pairs)} pair{'s' * (len(pairs) != 1)} ({shown}) × {len(months)} "
           f"month{'s' * (len(months) != 1)} {cfg.run.start}..{cfg.run.end}, {len(cfg.families.enabled)} families")
    c = cfg.cluster
    if c.scheduler_address:
        cluster = f"existing Dask scheduler {c.scheduler_address}"
    else:
        cluster = (f"LocalCluster {c.n_workers} workers × {c.threads_per_worker} thread"
                   f"{'s' * (c.threads_per_worker != 1)} × {c.memory_limit}")
    if cfg.database.url:
        database = describe_url(cfg.database.url)
        if cfg.database.read_url and cfg.database.read_url != cfg.database.url:
            database += f"; reads from {describe_url(cfg.database.read_url)}"
    else:
        database = f"embedded PostgreSQL in {cfg.database.embedded_dir}"
    return {
        "bqxdask_version": __version__,
        "config": cfg.source,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": {"run": run, "cluster": cluster, "database": database},
        "run": {"pairs": pairs, "start": cfg.run.start, "end": cfg.run.end, "months": months,
                "families": list(cfg.families.enabled)},
        "neighbours": facts.neighbours,
    }


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------
def _pct(part: float, whole: float) -> str:
    if not whole:
        return "∞ %"
    share = 100 * part / whole
    return "<1 %" if 0 < share < 1 else f"{share:.0f} %"


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------
def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def cgroup_memory() -> tuple[int, int] | None:
    """(limit, usage) of this process's memory cgroup, or None when it has no limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # "max" or the v1 "unlimited" sentinel are not limits
            return limit, _read_int(usage_file) or 0
    return None


def cgroup_cpus() -> float | None:
    """CPUs granted by a CFS quota (containers), or None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    quota_v1 = _read_int("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    period_v1 = _read_int("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota_v1 and quota_v1 > 0 and period_v1:
        return quota_v1 / period_v1
    return None


def existing_ancestor(path: str | os.PathLike[str]) -> Path:
    """``path`` or its nearest existing parent (where it would be created)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def output_locations(cfg: Config) -> list[tuple[str, str]]:
    """(label, path) of every local directory a run writes to."""
    out = []
    if cfg.output.write_parquet:
        out.append(("Parquet", cfg.output.parquet_dir))
    out.append(("runs", cfg.run.runs_dir))
    if not cfg.database.url:
        out.append(("embedded DB", cfg.database.embedded_dir))
    return out


def _machine(cfg: Config, facts: Facts) -> list[Check]:
    import psutil

    g = "machine"
    checks = []
    logical = psutil.cpu_count() or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    quota = cgroup_cpus()
    cpus = max(1, min(usable, math.ceil(quota))) if quota else usable
    facts.cpus = cpus
    detail = f"{logical} logical, {physical or '?'} physical; {usable} usable by this process"
    if quota:
        detail += f"; container CPU quota {quota:g}"
    checks.append(Check(g, "CPUs", OK, detail, {"logical": logical, "physical": physical, "usable": usable,
                                                "quota": quota, "cpus": cpus}))

    vm = psutil.virtual_memory()
    total, available = vm.total, vm.available
    limit = cgroup_memory()
    note = ""
    if limit and limit[0] < total:
        total, available = limit[0], min(available, max(0, limit[0] - limit[1]))
        note = f" (container limit {fmt_bytes(limit[0])}, host {fmt_bytes(vm.total)})"
    facts.mem_available = available
    checks.append(Check(g, "memory", OK, f"{fmt_bytes(total)} total, {fmt_bytes(available)} available{note}",
                        {"total_bytes": total, "available_bytes": available}))

    seen: dict[int, str] = {}
    for label, path in output_locations(cfg):
        if _is_remote(path):
            checks.append(Check(g, f"disk ({label})", OK, f"{path.split('://')[0]}:// storage: free space is not "
                                "measurable from here", {"path": path}))
            continue
        base = existing_ancestor(path)
        usage = shutil.disk_usage(base)
        dev = base.stat().st_dev
        same = f"; same filesystem as {seen[dev]}" if dev in seen else ""
        seen.setdefault(dev, label)
        values = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total, "device": dev}
        if not os.access(base, os.W_OK):
            checks.append(Check(g, f"disk ({label})", FAIL, f"{path}: {base} is not writable by this user; fix: "
                                "make it writable or point the setting elsewhere", values))
            continue
        status, fix = OK, ""
        if usage.free < 2**30:
            status, fix = WARN, "; fix: free some space (the output size estimate below says how much a run needs)"
        checks.append(Check(g, f"disk ({label})", status,
                            f"{fmt_bytes(usage.free)} free of {fmt_bytes(usage.total)} at {path}{same}{fix}", values))

    if hasattr(os, "getloadavg"):
        l1, l5, l15 = os.getloadavg()
        status = WARN if min(l1, l5) > cpus else OK  # busy for minutes, not a passing spike
        detail = f"{l1:.2f} / {l5:.2f} / {l15:.2f} (1/5/15 min) on {cpus} CPUs"
        if status == WARN:
            detail += "; the machine is busy: workers will compete for the CPUs; fix: wait, or run with fewer workers"
        checks.append(Check(g, "load", status, detail, {"load1": l1, "load5": l5, "load15": l15}))

    checks.append(Check(g, "OS", OK, f"{platform.system()} {platform.release()} {platform.machine()}",
                        {"system": platform.system(), "release": platform.release(), "machine": platform.machine()}))
    need = _python_requires()
    py = platform.python_version()
    ok = _version_ok(py, need) if need else True
    checks.append(Check(g, "Python", OK if ok is not False else FAIL,
                        f"{py} ({platform.python_implementation()}){f', needs {need}' if need else ''}"
                        + ("" if ok is not False else "; fix: use a newer Python for the virtualenv"),
                        {"version": py, "requires": need}))
    return checks


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------
def _plan(cfg: Config, facts: Facts) -> list[Check]:
    g = "plan"
    checks = []
    c = cfg.cluster
    if c.scheduler_address:
        checks += _scheduler(cfg, facts)
    else:
        facts.workers, facts.threads_per_worker = c.n_workers, c.threads_per_worker
        limit = cfg.memory_limit_bytes
        facts.worker_memory = limit
        need = c.n_workers * limit
        avail = facts.mem_available
        values = {"workers": c.n_workers, "memory_limit_bytes": limit, "needed_bytes": need, "available_bytes": avail}
        base = f"{c.n_workers} workers × {fmt_bytes(limit)} = {fmt_bytes(need)}"
        if avail is None:
            checks.append(Check(g, "memory", WARN, f"{base}; available memory unknown (machine check failed)", values))
        else:
            fit = max(0, int(MEMORY_WARN * avail // limit))
            share = f"{_pct(need, avail)} of {fmt_bytes(avail)} available"
            db = " and the embedded database" if not cfg.database.url else ""
            if need > avail:
                checks.append(Check(g, "memory", FAIL, f"{base} > {fmt_bytes(avail)} available ({share}): workers "
                                    f"would be killed or the machine would swap; fix: --workers {max(1, fit)} or "
                                    f"--memory-limit {_suggest_limit(avail, c.n_workers)}", values))
            elif need > MEMORY_WARN * avail:
                checks.append(Check(g, "memory", WARN, f"{base} = {share}: under {100 - 100 * MEMORY_WARN:.0f} % "
                                    f"headroom left for the scheduler, the client{db} and the OS; fix: "
                                    f"--workers {max(1, fit)} or --memory-limit "
                                    f"{_suggest_limit(avail, c.n_workers)}", values))
            else:
                checks.append(Check(g, "memory", OK, f"{base} = {share}", values))
        threads = c.n_workers * c.threads_per_worker
        cpus = facts.cpus or 1
        values = {"workers": c.n_workers, "threads_per_worker": c.threads_per_worker, "threads": threads, "cpus": cpus}
        base = (f"{c.n_workers} workers × {c.threads_per_worker} thread{'s' * (c.threads_per_worker != 1)} "
                f"= {threads} on {cpus} CPUs")
        if threads > cpus:
            checks.append(Check(g, "CPUs", WARN, f"{base}: threads time-share the CPUs, so nothing runs faster "
                                f"past {cpus}, while each extra worker still reserves {c.memory_limit} and holds up to "
                                f"{cfg.database.max_connections_per_worker} database connections; fix: --workers "
                                f"{max(1, cpus // c.threads_per_worker)}", values))
        else:
            idle = f" ({cpus - threads} CPU{'s' * (cpus - threads != 1)} left idle)" if threads < cpus else ""
            checks.append(Check(g, "CPUs", OK, base + idle, values))
    checks.append(_families_check(cfg, facts))
    return checks


def _suggest_limit(avail: int, workers: int) -> str:
    per = MEMORY_WARN * avail / max(1, workers)
    mib = max(256, int(per // 2**20) // 256 * 256)
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


def _scheduler(cfg: Config, facts: Facts) -> list[Check]:
    from distributed import Client

    addr = cfg.cluster.scheduler_address
    t0 = time.perf_counter()
    try:
        client = Client(addr, timeout="5s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        return [Check("plan", "scheduler", FAIL, f"cannot reach the Dask scheduler at {addr} ({first_line(exc)}); "
                      "fix: check --scheduler / cluster.scheduler_address and that the scheduler runs",
                      {"address": addr})]
    try:
        info = client.scheduler_info(n_workers=-1)
        link = None
        try:
            link = client.dashboard_link
        except Exception:
            pass
        software = _worker_software(client)
        parquet_dir = cfg.output.parquet_dir if cfg.output.write_parquet else None
        access = _each("plan", "worker access", probe_workers, client, _run_url(cfg), parquet_dir,
                       read_url=cfg.database.read_url, application_name=CHECK_APPLICATION)
    finally:
        client.close()
    workers = info.get("workers", {})
    n = len(workers)
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    memory = sum(int(w.get("memory_limit") or 0) for w in workers.values())
    facts.workers = n
    facts.threads_per_worker = max(1, threads // n) if n else 1
    facts.worker_memory = min((int(w.get("memory_limit") or 0) for w in workers.values()), default=None) or None
    values = {"address": addr, "workers": n, "threads": threads, "memory_limit_bytes": memory,
              "dashboard": link, "seconds": round(time.perf_counter() - t0, 3)}
    if n == 0:
        return [Check("plan", "scheduler", WARN, f"{addr} answers but has no workers: the run would wait for them; "
                      f"fix: start workers (dask worker {addr}) before bqxdask features", values)]
    return [Check("plan", "scheduler", OK,
                  f"{addr}: {n} workers, {threads} threads, {fmt_bytes(memory)} memory_limit in total "
                  f"(their memory is on their hosts, not checked here){f'; dashboard {link}' if link else ''}",
                  values), software, *access]


def _run_url(cfg: Config) -> str | None:
    """The URL the run's workers use: the configured one, else the embedded server's if it runs."""
    if cfg.database.url:
        return cfg.database.url
    from .db import embedded_server

    server = embedded_server(cfg)
    status = server.status()
    return server.url if status.initialized and status.running else None


#: packages whose versions must match between this client and the workers of a scheduler
MATCHED_PACKAGES = ("python", "dask", "distributed", "numpy", "pandas", "bqxdask")


def _worker_software(client: Any) -> Check:
    """bqxdask importable on every worker, and the same versions of what pickles cross."""
    versions = client.get_versions(check=False, packages=["bqxdask"])
    mine = versions["client"]["packages"]
    workers = versions.get("workers", {})
    without = [a for a, w in workers.items() if not w.get("packages", {}).get("bqxdask")]
    values: dict[str, Any] = {"client": {k: mine.get(k) for k in MATCHED_PACKAGES}, "without_bqxdask": without}
    if without:
        return Check("plan", "worker software", FAIL, f"{len(without)} of {len(workers)} workers cannot import "
                     f"bqxdask (e.g. {without[0]}): every task would fail; fix: pip install bqxdask=={__version__} "
                     "in the workers' environment", values)
    differ = sorted({f"{k} {w['packages'].get(k)} ≠ {mine.get(k)}" for w in workers.values() for k in MATCHED_PACKAGES
                     if w.get("packages", {}).get(k) != mine.get(k)})
    values["mismatches"] = differ
    if differ:
        return Check("plan", "worker software", WARN, f"workers differ from this client: {'; '.join(differ[:4])}; "
                     "fix: install the same versions on the workers (pickled tasks may fail)", values)
    return Check("plan", "worker software", OK, f"{len(workers)} workers run bqxdask {mine.get('bqxdask')}, "
                 f"dask {mine.get('dask')}, pandas {mine.get('pandas')} like this client", values)


def _families_check(cfg: Config, facts: Facts) -> Check:
    from .features import registry  # importing the package registers every family

    known = registry.all_families()
    enabled = list(cfg.families.enabled)
    missing = [f for f in enabled if f not in known]
    facts.families = [f for f in enabled if f in known]
    facts.warmup = registry.warmup_rows(cfg.families, facts.families) if facts.families else 0
    cols = sum(len(known[f].column_names(cfg.families)) for f in facts.families)
    values = {"enabled": enabled, "unavailable": missing, "columns": cols, "warmup_rows": facts.warmup}
    if missing:
        return Check("plan", "families", FAIL, f"{', '.join(missing)} enabled but not in this build of bqxdask "
                     f"(it has {', '.join(known)}); the run would stop at once; fix: remove them from "
                     "families.enabled or update bqxdask", values)
    return Check("plan", "families", OK, f"{len(enabled)} families, {cols} output columns; warm-up "
                 f"{facts.warmup:,} rows before each month", values)


def _plan_late(cfg: Config, facts: Facts) -> list[Check]:
    """The per-unit memory estimate: needs the row counts of the source check."""
    if not facts.families or not facts.worker_memory:
        return []
    from .features import registry
    from .plan import warmup_read_rows

    known = registry.all_families()
    widest = max(facts.families, key=lambda f: len(known[f].column_names(cfg.families)))
    cols = len(known[widest].column_names(cfg.families)) + PREPARED_COLUMNS
    per_month = [r for months in facts.rows.values() for r in months.values()]
    rows = max(per_month, default=0) or 44_640  # unknown: a whole 31-day month of minutes
    rows += warmup_read_rows(facts.warmup)
    threads = facts.threads_per_worker or 1
    need = WORKER_BASELINE_BYTES + threads * rows * cols * 8 * UNIT_COPIES
    limit = facts.worker_memory
    values = {"estimate_bytes": need, "memory_limit_bytes": limit, "rows": rows, "widest_family": widest,
              "columns": cols}
    base = (f"≈ {fmt_bytes(need)} per worker at most ({rows:,} rows incl. warm-up × {widest}'s {cols} columns"
            f"{f' × {threads} threads' if threads > 1 else ''}) of {fmt_bytes(limit)} memory_limit")
    if need > SPILL_SHARE * limit:
        return [Check("plan", "unit memory", WARN, f"{base}: above the {SPILL_SHARE:.0%} where Dask starts spilling "
                      f"and pausing (rough estimate); fix: --memory-limit {fmt_bytes(need / SPILL_SHARE)} or more",
                      values)]
    return [Check("plan", "unit memory", OK, base + " (rough estimate)", values)]


# --------------------------------------------------------------------------------------------
# Database and source tables
# --------------------------------------------------------------------------------------------
def _database(cfg: Config, facts: Facts) -> list[Check]:
    from .db.connect import connect

    g = "database"
    url = cfg.database.url
    if not url:
        from .db import embedded_server

        server = embedded_server(cfg)
        status = server.status()
        facts.embedded = True
        if not status.initialized or not status.running:
            state = "not initialised" if not status.initialized else "stopped"
            facts.db_reason = f"the embedded PostgreSQL is {state}"
            return [Check(g, "embedded server", WARN,
                          f"embedded PostgreSQL in {status.data_dir} is {state}; bqxdask features starts it on "
                          "demand, check does not (it changes nothing); fix: bqxdask db start, then bqxdask check "
                          "again to assess the database and the source tables", {"running": False, "state": state})]
        url = server.url
    checks: list[Check] = []
    if facts.embedded:
        checks.append(Check(g, "embedded server", OK, status.describe().split(": ", 1)[1],
                            {"running": True, "pid": status.pid, "port": status.port}))
    t0 = time.perf_counter()
    try:
        conn = connect(url, application_name=CHECK_APPLICATION, connect_timeout=5, autocommit=True)
    except BqxError as exc:
        facts.db_reason = "the database is not reachable"
        return [*checks, Check(g, "reachable", FAIL, str(exc), {"reachable": False})]
    try:
        ms = 1000 * (time.perf_counter() - t0)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '120s'")
            # check must never queue behind the locks it is about to report
            cur.execute("SET lock_timeout = '5s'")
            cur.execute("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
                        " pg_database_size(current_database())")
            user, superuser, size = cur.fetchone()
            checks.append(Check(g, "reachable", OK, f"{describe_url(url)} in {ms:.0f} ms, role {user}"
                                f"{' (superuser)' if superuser else ''}; database size {fmt_bytes(size)}",
                                {"reachable": True, "connect_ms": round(ms, 1), "user": user,
                                 "superuser": bool(superuser), "database_bytes": size}))
            # each line guards itself: one refused catalog query must not hide the others
            checks += _each(g, "server", _server_version, cur)
            rurl = cfg.database.read_url or url
            urls_on = dict(servers(url, rurl))  # the run's URLs per server, as the run counts them
            checks += _each(g, "connections", _connection_budget, cur, cfg, facts, label="connections",
                            urls_on_server=urls_on[url])
            checks += _each(g, "privileges", _output_privileges, cur, cfg, user)
            checks += _each("neighbours", "neighbours", _neighbours, cur, cfg, facts)
            if rurl != url:
                checks += _each(g, "read_url", _read_replica, cfg, facts, rurl, same_server=rurl not in urls_on)
            else:
                checks += _sources(cur, cfg, facts)
    finally:
        conn.close()
    return checks


def _neighbours(cur, cfg: Config, facts: Facts) -> list[Check]:
    checks, facts.neighbours = neighbour_checks(cur, cfg.database.output_schema,
                                                long_seconds=facts.long_transaction_seconds)
    return checks


def _server_version(cur) -> Check:
    cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, version()")
    short, num, full = cur.fetchone()
    major = num // 10000
    values = {"server_version": short, "server_version_num": num, "version": full}
    platform_ = full.split(",")[0]
    if major < 13:
        return Check("database", "server", WARN, f"{platform_}: older than PostgreSQL 13, which bqxdask is not tested "
                     "on; fix: upgrade the server (production runs Aurora PostgreSQL 16)", values)
    return Check("database", "server", OK, platform_, values)


def _connection_budget(cur, cfg: Config, facts: Facts, *, label: str, urls_on_server: int) -> Check:
    b = server_budget(cur)
    max_c, reserved, current, free = b.max_connections, b.reserved, b.in_use, b.free
    role_limit, db_limit = b.role_limit, b.database_limit
    limits = [b.capped_by] if b.capped_by else []
    workers = facts.workers or cfg.cluster.n_workers
    per = cfg.database.max_connections_per_worker
    need = connections_needed(workers, per, urls_on_server)
    values = {"max_connections": max_c, "reserved": reserved, "in_use": current, "free": free, "needed": need,
              "workers": workers, "per_worker": per, "urls_on_server": urls_on_server,
              "role_connection_limit": role_limit, "database_connection_limit": db_limit}
    plan = f"the run opens {describe_need(workers, per, urls_on_server)}"
    server = (f"max_connections {max_c} − {reserved} reserved − {current} in use = {free} free"
              + (f" (capped by the {limits[0]})" if limits else ""))
    fix_workers = max(1, (int(free * CONNECTIONS_WARN) - urls_on_server) // max(1, per * urls_on_server))
    fix = (f"fix: lower database.max_connections_per_worker or --workers (e.g. --workers {fix_workers}), "
           "or raise max_connections on the server")
    if need > free:
        return Check("database", label, FAIL, f"{plan} > {server}: tasks would fail with 'too many clients'; {fix}",
                     values)
    if need > CONNECTIONS_WARN * free:
        return Check("database", label, WARN, f"{plan} = {_pct(need, free)} of {server}: other clients may push "
                     f"the server over; {fix}", values)
    return Check("database", label, OK, f"{plan} of {server}", values)


def _output_privileges(cur, cfg: Config, user: str) -> Check:
    schema = cfg.database.output_schema
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,))
    exists = bool(cur.fetchone()[0])
    values: dict[str, Any] = {"output_schema": schema, "exists": exists}
    if not exists:
        cur.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
        ok = bool(cur.fetchone()[0])
        values["create_on_database"] = ok
        if ok:
            return Check("database", "privileges", OK, f"role {user} may create the output schema {schema} "
                         "(it does not exist yet; the first run creates it)", values)
        return Check("database", "privileges", FAIL, f"output schema {schema} does not exist and role {user} may not "
                     f"create it (no CREATE on the database); fix: CREATE SCHEMA {schema} AUTHORIZATION {user}, or "
                     f"GRANT CREATE ON DATABASE … TO {user}", values)
    cur.execute("SELECT has_schema_privilege(%s, 'CREATE'), has_schema_privilege(%s, 'USAGE')", (schema, schema))
    create, usage = (bool(v) for v in cur.fetchone())
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT ("
        " has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')"
        " AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE'))"
        " ORDER BY 1", (schema,))
    locked = [r[0] for r in cur.fetchall()]
    values.update({"create": create, "usage": usage, "tables_without_write": locked})
    if not (create and usage):
        return Check("database", "privileges", FAIL, f"role {user} lacks {'CREATE' if not create else 'USAGE'} on "
                     f"schema {schema}; fix: GRANT USAGE, CREATE ON SCHEMA {schema} TO {user}", values)
    if locked:
        shown = ", ".join(f"{schema}.{t}" for t in locked[:4]) + (f" (+{len(locked) - 4})" if len(locked) > 4 else "")
        return Check("database", "privileges", FAIL, f"role {user} cannot write {shown}; fix: GRANT SELECT, INSERT, "
                     f"UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {user} (or run as their owner)", values)
    return Check("database", "privileges", OK, f"role {user}: USAGE and CREATE on schema {schema}, "
                 "read/write on its existing tables", values)


def _read_replica(cfg: Config, facts: Facts, rurl: str, *, same_server: bool) -> list[Check]:
    from .db.connect import connect

    checks = []
    try:
        conn = connect(rurl, application_name=CHECK_APPLICATION, connect_timeout=5, autocommit=True)
    except BqxError as exc:
        facts.rows = {}
        return [Check("database", "read_url", FAIL, f"database.read_url: {exc}", {"reachable": False})]
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '120s'")
            cur.execute("SELECT pg_is_in_recovery()")
            replica = bool(cur.fetchone()[0])
            checks.append(Check("database", "read_url", OK, f"{describe_url(rurl)}: reachable"
                                f"{', a read replica' if replica else ''}", {"reachable": True, "replica": replica}))
            if not same_server:
                checks += _each("database", "read connections", _connection_budget, cur, cfg, facts,
                                label="read connections", urls_on_server=1)
            checks += _sources(cur, cfg, facts)
    finally:
        conn.close()
    return checks


def _sources(cur, cfg: Config, facts: Facts) -> list[Check]:
    months = cfg.months
    lo, _ = month_bounds(months[0])
    _, hi = month_bounds(months[-1])
    cur.execute("SELECT current_user")
    user = cur.fetchone()[0]
    checks = []
    for pair in cfg.run.pairs:
        checks += _each("source tables", pair, _source_pair, cur, cfg, facts, pair, user, lo, hi)
    return checks


def _source_pair(cur, cfg: Config, facts: Facts, pair: str, user: str, lo: dt.datetime, hi: dt.datetime) -> Check:
    """One pair's table: present and readable, its rows, its span, its rows in the requested months."""
    from psycopg2 import sql

    from .db.connect import qualified
    from .db.schema import source_table
    from .db.source import inspect_source
    from .errors import SourceError

    g = "source tables"
    schema, months = cfg.database.source_schema, cfg.months
    label = f"{schema}.{source_table(pair)}"
    # pg_class is readable by every role; information_schema (used by inspect_source) hides
    # the tables a role may not read, which would make a missing GRANT look like a missing table
    cur.execute("SELECT c.oid, has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT')"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s", (schema, source_table(pair)))
    found = cur.fetchone()
    if found is not None and not (found[1] and found[2]):
        lacks = "USAGE on schema " + schema if not found[1] else "SELECT on it"
        return Check(g, pair, FAIL, f"{label} exists but role {user} lacks {lacks}; fix: GRANT USAGE ON "
                     f"SCHEMA {schema} TO {user}; GRANT SELECT ON {label} TO {user}",
                     {"table": label, "exists": True, "select": False})
    try:
        src = inspect_source(cur, schema, pair)
    except SourceError as exc:
        return Check(g, pair, FAIL, str(exc), {"table": label, "exists": found is not None})
    table = qualified(schema, src.table)
    cur.execute(sql.SQL("SELECT count(*), min(time), max(time) FROM {}").format(table))
    total, first, last = cur.fetchone()
    cur.execute(sql.SQL("SELECT to_char(date_trunc('month', time), 'YYYY-MM'), count(*) FROM {}"
                        " WHERE time >= %s AND time < %s GROUP BY 1 ORDER BY 1").format(table), (lo, hi))
    counted = {m: int(n) for m, n in cur.fetchall()}
    per_month = {m: counted.get(m, 0) for m in months}
    facts.rows[pair] = per_month
    in_run = sum(per_month.values())
    span = f"{_fmt_time(first)[:-4]} → {_fmt_time(last)}" if total else "no bars"
    req = f"{months[0]}: {in_run:,} rows" if len(months) == 1 else f"{len(months)} months: {in_run:,} rows"
    tz = "" if src.time_type.endswith("with time zone") else " (time without zone, read as UTC)"
    values = {"table": src.label, "exists": True, "select": True, "rows": int(total),
              "first": first.isoformat() if first else None, "last": last.isoformat() if last else None,
              "rows_in_months": per_month, "time_type": src.time_type, "has_volume": src.has_volume}
    detail = f"{src.label}: {int(total):,} rows, {span}{tz}; {req}"
    empty = [m for m, n in per_month.items() if n == 0]
    if empty:
        shown = ", ".join(empty[:4]) + (f" (+{len(empty) - 4})" if len(empty) > 4 else "")
        return Check(g, pair, WARN, f"{detail}; no rows in {shown}: the run reports those units as failed; fix: "
                     f"bqxdask import/seed --pairs {pair} for them, or narrow run.start/run.end", values)
    return Check(g, pair, OK, detail, values)


def _fmt_time(value: dt.datetime | None) -> str:
    if value is None:
        return "?"
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return f"{value:%Y-%m-%d %H:%M} UTC"


# --------------------------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------------------------
def _setup_cfg() -> configparser.ConfigParser | None:
    path = Path(__file__).resolve().parent.parent / "setup.cfg"
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return None
    if parser.get("metadata", "name", fallback="") != "bqxdask":
        return None
    return parser


def requirements() -> tuple[list[str], str]:
    """``install_requires`` lines and where they came from (setup.cfg, else installed metadata)."""
    parser = _setup_cfg()
    if parser is not None and parser.has_option("options", "install_requires"):
        lines = [ln.strip() for ln in parser.get("options", "install_requires").splitlines()]
        return [ln for ln in lines if ln and not ln.startswith("#")], "setup.cfg"
    try:
        reqs = importlib.metadata.requires("bqxdask") or []
    except importlib.metadata.PackageNotFoundError:
        return [], "nowhere (bqxdask is neither a checkout nor installed)"
    return [r for r in reqs if "extra ==" not in r], "the installed bqxdask metadata"


def _python_requires() -> str | None:
    parser = _setup_cfg()
    if parser is not None:
        return parser.get("options", "python_requires", fallback=None)
    try:
        return importlib.metadata.metadata("bqxdask").get("Requires-Python")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Requirement:
    """A parsed requirement line (``name[extras] specifier; marker``)."""

    name: str
    extras: tuple[str, ...]
    specifier: str
    marker: str | None

    @classmethod
    def parse(cls, line: str) -> Requirement:
        body, _, marker = line.partition(";")
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?\s*\(?([^)]*)\)?", body)
        if m is None:
            raise ValueError(f"cannot parse requirement {line!r}")
        name, extras, spec = m.group(1), m.group(2) or "", m.group(3)
        # keep the specifier as written (packaging would reorder it)
        spec = ",".join(p.strip() for p in spec.split(",") if p.strip())
        return cls(name, tuple(e.strip() for e in extras.split(",") if e.strip()), spec,
                   marker.strip() or None)

    def applies(self, extra: str | None = None) -> bool:
        if not self.marker:
            return True
        try:
            from packaging.markers import Marker

            return Marker(self.marker).evaluate({"extra": extra or ""})
        except ImportError:  # pragma: no cover
            return True


def _version_ok(version: str, specifier: str) -> bool | None:
    """Whether ``version`` satisfies ``specifier``; None if that cannot be decided."""
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion

        try:
            return SpecifierSet(specifier).contains(version, prereleases=True)
        except InvalidVersion:
            return None
    except ImportError:  # pragma: no cover - a simple comparison without packaging
        return _simple_version_ok(version, specifier)


def _simple_version_ok(version: str, specifier: str) -> bool | None:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:4])

    have = key(version)
    for clause in specifier.split(","):
        m = re.match(r"\s*(==|!=|>=|<=|>|<|~=)\s*(\S+)", clause)
        if not m:
            return None
        op, want = m.group(1), key(m.group(2))
        ok = {"==": have[:len(want)] == want, "!=": have[:len(want)] != want, ">=": have >= want,
              "<=": have <= want, ">": have > want, "<": have < want, "~=": have >= want}[op]
        if not ok:
            return False
    return True


def _installed(name: str) -> tuple[str, str] | None:
    """(distribution, version) installed for ``name`` (or an accepted alternate), else None."""
    for dist in ALTERNATE_DISTS.get(name.lower(), (name,)):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _requirement_check(req: Requirement, via: str = "") -> Check:
    found = _installed(req.name)
    need = req.specifier or "any version"
    values = {"package": req.name, "required": req.specifier, "installed": found[1] if found else None}
    if via:
        values["via"] = via
    why = f" (for {via})" if via else ""
    if found is None:
        return Check("dependencies", req.name, FAIL, f"not installed, needs {need}{why}; fix: make venv or "
                     "pip install -e . in the virtualenv", values)
    dist, version = found
    ok = _version_ok(version, req.specifier)
    shown = version + (f" (as {dist})" if dist.lower() != req.name.lower() else "")
    if ok is False:
        return Check("dependencies", req.name, FAIL, f"{shown}, needs {need}{why}; fix: pip install "
                     f"'{req.name}{req.specifier}' (make venv reinstalls everything)", values)
    if ok is None:
        return Check("dependencies", req.name, WARN, f"{shown}: version not comparable with {need}{why}", values)
    return Check("dependencies", req.name, OK, f"{shown}, needs {need}{why}", values)


def _dependencies(cfg: Config, facts: Facts) -> list[Check]:
    lines, origin = requirements()
    if not lines:
        return [Check("dependencies", "requirements", WARN, f"no requirement list found ({origin}); versions not "
                      "checked; fix: run from a checkout or install bqxdask")]
    checks = []
    listed = set()
    reqs = [Requirement.parse(ln) for ln in lines]
    for req in reqs:
        if not req.applies():
            continue
        listed.add(req.name.lower())
        checks.append(_requirement_check(req))
    # the extras a requirement pulls in (dask[distributed] → distributed) carry their own ranges
    for req in reqs:
        if not req.extras or not req.applies() or _installed(req.name) is None:
            continue
        try:
            sub = importlib.metadata.requires(_installed(req.name)[0]) or []
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            continue
        for line in sub:
            dep = Requirement.parse(line)
            if dep.name.lower() in listed or dep.name.lower() == req.name.lower():
                continue
            if any(dep.applies(extra) for extra in req.extras) and not dep.applies(None):
                listed.add(dep.name.lower())
                checks.append(_requirement_check(dep, via=f"{req.name}[{','.join(req.extras)}]"))
    checks.append(_talib_check())
    return checks


def _talib_check() -> Check:
    import numpy as np

    try:
        import talib
    except Exception as exc:
        return Check("dependencies", "TA-Lib works", FAIL, f"import talib failed ({first_line(exc)}); fix: pip "
                     "install the pinned ta-lib wheel (make venv)", {"importable": False})
    version = getattr(talib, "__version__", "?")
    try:
        x = np.arange(1.0, 31.0)
        sma = talib.SMA(x, timeperiod=5)
        rsi = talib.RSI(x, timeperiod=14)
        ok = math.isnan(sma[3]) and abs(sma[-1] - 28.0) < 1e-12 and abs(rsi[-1] - 100.0) < 1e-9
    except Exception as exc:
        return Check("dependencies", "TA-Lib works", FAIL, f"talib {version} imports but SMA/RSI failed "
                     f"({first_line(exc)}); fix: reinstall the ta-lib wheel", {"importable": True, "works": False})
    if not ok:
        return Check("dependencies", "TA-Lib works", FAIL, f"talib {version}: SMA/RSI return wrong values; fix: "
                     "reinstall the pinned ta-lib wheel", {"importable": True, "works": False})
    return Check("dependencies", "TA-Lib works", OK, f"talib {version}: SMA(5) and RSI(14) of 1..30 are right",
                 {"importable": True, "works": True, "version": version})


# --------------------------------------------------------------------------------------------
# Output size
# --------------------------------------------------------------------------------------------
def measured_parquet_ratio(root: str, families: Iterable[str], max_files: int = 24) -> dict[str, tuple[float, int]]:
    """Per family with existing unit files: (Parquet bytes / (8 B × values), files measured).

    Values count the ``time`` column too. At most ``max_files`` files per family are read (their
    footers only), so this stays fast on a large output directory.
    """
    import pyarrow.parquet as pq

    from .outputs.parquet import unit_files

    if _is_remote(root) or not Path(root).is_dir():
        return {}
    out = {}
    for fam in families:
        size = values = files = 0
        try:
            paths = [Path(p) for _, _, p in unit_files(root, fam, None, None, None)][-max_files:]
        except OutputError:  # no output of this family yet
            continue
        for path in paths:
            try:
                meta = pq.read_metadata(path)
                stat = path.stat()
            except Exception:  # a corrupt file is the features run's business, not ours
                continue
            if meta.num_rows == 0:
                continue
            size += stat.st_size
            values += meta.num_rows * meta.num_columns
            files += 1
        if values:
            out[fam] = (size / (8 * values), files)
    return out


def _planned_rows(cfg: Config, facts: Facts) -> tuple[int, dict[str, int], list[str]]:
    """(source rows of the requested months, the measured ones per pair, the pairs assumed)."""
    measured = {p: sum(facts.rows[p].values()) for p in cfg.run.pairs if p in facts.rows}
    assumed = [p for p in cfg.run.pairs if p not in facts.rows]
    return sum(measured.values()) + len(assumed) * len(cfg.months) * ASSUMED_BARS_PER_MONTH, measured, assumed


def _instance(cfg: Config, facts: Facts) -> list[Check]:
    """A burstable cloud instance against the planned run's CPU time (estimate.py's throughput)."""
    from .pipeline.estimate import DEFAULT_PREPARE_SECONDS_PER_ROW, measured_seconds_per_row

    per_row, _ = measured_seconds_per_row(cfg.run.runs_dir)
    rows = _planned_rows(cfg, facts)[0]
    core = rows * (DEFAULT_PREPARE_SECONDS_PER_ROW
                   + sum(per_row.get(f, max(per_row.values())) for f in facts.families)) if facts.families else None
    threads = (facts.workers or 0) * (facts.threads_per_worker or 1) or None
    line = instance_check(core, threads, paths=facts.dmi_files)
    return [line] if line else []


def _output(cfg: Config, facts: Facts) -> list[Check]:
    from .features import registry

    g = "output size"
    if not facts.families:
        return [Check(g, "estimate", WARN, "no enabled family is available in this build: nothing to estimate")]
    known = registry.all_families()
    cols = {f: len(known[f].column_names(cfg.families)) for f in facts.families}
    rows, measured_rows, assumed_pairs = _planned_rows(cfg, facts)
    if assumed_pairs and not measured_rows:
        reason = facts.db_reason or "the source tables were not assessed"
        basis = f"{rows:,} rows assumed ({ASSUMED_BARS_PER_MONTH:,} bars per pair-month; {reason})"
    elif assumed_pairs:
        basis = (f"{rows:,} rows ({', '.join(assumed_pairs)}: no usable table, assumed "
                 f"{ASSUMED_BARS_PER_MONTH:,} bars per month)")
    else:
        basis = f"{rows:,} source rows in the requested months"
    values_n = rows * sum(c + 1 for c in cols.values())  # +1: time
    raw = 8 * values_n
    checks = []

    # -- where each estimate lands: (label, bytes, path or None when not visible) -------------
    loads: dict[Any, dict[str, Any]] = {}

    def add_load(path: str, label: str, nbytes: float) -> None:
        base = existing_ancestor(path)
        usage = shutil.disk_usage(base)
        key = base.stat().st_dev
        entry = loads.setdefault(key, {"path": str(path), "free": usage.free, "bytes": 0.0, "what": []})
        entry["bytes"] += nbytes
        entry["what"].append(label)

    parquet_bytes = sql_bytes = None
    if cfg.output.write_parquet:
        measured = measured_parquet_ratio(cfg.output.parquet_dir, facts.families)
        ratios = {f: measured[f][0] if f in measured else ASSUMED_PARQUET_RATIO for f in cols}
        parquet_bytes = sum(estimate_parquet_bytes(rows, c, 8 * ratios[f]) for f, c in cols.items())
        per_value = parquet_bytes / values_n if values_n else 0.0
        assumed = f"{8 * ASSUMED_PARQUET_RATIO:.1f} B/value assumed (float64 features barely compress)"
        if len(measured) == len(cols):
            how = f"{per_value:.1f} B/value measured on {sum(n for _, n in measured.values())} existing files"
        elif measured:
            how = (f"{per_value:.1f} B/value: measured on existing files of {', '.join(measured)}; for the "
                   f"others {assumed}")
        else:
            how = f"{assumed}; no outputs to measure yet"
        values = {"rows": rows, "values": values_n, "raw_bytes": raw, "bytes_per_value": per_value,
                  "measured_families": sorted(measured), "estimate_bytes": parquet_bytes}
        detail = f"≈ {fmt_bytes(parquet_bytes)}: {basis} × {sum(cols.values()) + len(cols)} columns, {how}"
        if _is_remote(cfg.output.parquet_dir):
            checks.append(Check(g, "Parquet", OK, detail + "; remote storage: free space not checked", values))
        else:
            add_load(cfg.output.parquet_dir, "Parquet", parquet_bytes)
            checks.append(Check(g, "Parquet", OK, detail, values))
    else:
        checks.append(Check(g, "Parquet", OK, "output.write_parquet = false: no Parquet written"))

    if cfg.output.write_sql:
        sql_bytes = float(sum(rows * sql_row_bytes(c) for c in cols.values()))
        values = {"rows": rows, "estimate_bytes": sql_bytes, "overhead": round(sql_bytes / raw, 2) if raw else None}
        detail = (f"≈ {fmt_bytes(sql_bytes)} in PostgreSQL ({values['overhead']}× the raw 8 B/value: tuple headers, "
                  "null bitmaps, the time primary key)")
        if facts.embedded:
            add_load(cfg.database.embedded_dir, "SQL (embedded)", sql_bytes)
            checks.append(Check(g, "SQL", OK, detail + "; the embedded database's disk is checked below", values))
        else:
            checks.append(Check(g, "SQL", OK, detail + "; the database server's disk is not visible from this "
                                "client: make sure it has that much free (plus WAL while loading)", values))
    else:
        checks.append(Check(g, "SQL", OK, "output.write_sql = false: no feature tables written"))

    for entry in loads.values():
        need, free = entry["bytes"], entry["free"]
        what = " + ".join(entry["what"])
        values = {"path": entry["path"], "needed_bytes": need, "free_bytes": free,
                  "share": need / free if free else None}
        base = f"{what}: {fmt_bytes(need)} of {fmt_bytes(free)} free at {entry['path']} ({_pct(need, free)})"
        fix = "fix: free disk space, move output.parquet_dir, or run fewer months at a time"
        if not free or need > DISK_FAIL * free:
            checks.append(Check(g, "disk", FAIL, f"{base}: the disk would fill up; {fix}", values))
        elif need > DISK_WARN * free:
            checks.append(Check(g, "disk", WARN, f"{base}: more than half the free space; {fix}", values))
        else:
            checks.append(Check(g, "disk", OK, base, values))
    return checks
