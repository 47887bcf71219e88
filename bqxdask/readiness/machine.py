"""The machine group: CPUs, memory, free and writable disk, load, OS, Python (SPEC §8).

:func:`read_host` takes the machine's readings once; :func:`machine_group` judges them. The
CPU count is :data:`dask.system.CPU_COUNT` (affinity and the cgroup CPU quota, rounded up) and
the memory limit :data:`distributed.system.MEMORY_LIMIT` (host memory, cgroup v1/v2 limits,
RLIMIT_RSS) — the numbers a Dask worker started here would use. What Dask does not give is
read here: the cgroup's memory *usage*, so that "available" inside a container is its limit
minus what the container already holds. On a burstable cloud instance the group gets one more
line once the planned run is known (:mod:`.burstable`).

Each disk line (Parquet, runs, embedded database) writes, reads back and removes a probe file
where the directory is or would be created (:func:`bqxdask.outputs.locations.probe_location`,
the probe the pipeline refuses a run with), and measures the free space there.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from dask.utils import format_bytes

from ..config import Config
from ..outputs.locations import UnwritableLocation, is_remote, nearest_existing, probe_location
from .findings import FAIL, OK, WARN, Check
from .software import version_ok

GROUP = "machine"
#: free space below which a disk line warns
LOW_DISK_BYTES = 2**30
#: the cgroup's memory usage (v2, then v1): what Dask's MEMORY_LIMIT does not tell
CGROUP_USAGE_FILES = ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")


@dataclass(frozen=True)
class Host:
    """The readings of this machine that the machine group judges."""

    logical: int
    physical: int | None
    #: CPUs this process may run on (its affinity)
    usable: int
    #: dask.system.CPU_COUNT: the affinity and the cgroup quota, rounded up
    cpus: int
    memory_total: int
    memory_available: int
    #: distributed.system.MEMORY_LIMIT: host memory capped by the cgroup and RLIMIT_RSS
    memory_limit: int
    #: bytes the cgroup holds already (None: not readable)
    memory_usage: int | None
    load: tuple[float, float, float] | None
    system: str
    release: str
    machine: str
    python: str
    implementation: str


@dataclass(frozen=True)
class MachineFacts:
    """What the later groups use: CPUs and memory available to the run (None: not measured)."""

    cpus: int | None = None
    mem_available: int | None = None


def cgroup_memory_usage(files: tuple[str, ...] = CGROUP_USAGE_FILES) -> int | None:
    """Bytes this process's memory cgroup holds, None where no file of ``files`` is readable."""
    for path in files:
        try:
            return int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def read_host() -> Host:
    """This machine's readings (psutil, dask, distributed, platform)."""
    import psutil
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    logical = psutil.cpu_count() or os.cpu_count() or 1
    vm = psutil.virtual_memory()
    return Host(
        logical=logical,
        physical=psutil.cpu_count(logical=False),
        usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical,
        cpus=CPU_COUNT,
        memory_total=vm.total,
        memory_available=vm.available,
        memory_limit=MEMORY_LIMIT,
        memory_usage=cgroup_memory_usage() if MEMORY_LIMIT < vm.total else None,
        load=os.getloadavg() if hasattr(os, "getloadavg") else None,
        system=platform.system(),
        release=platform.release(),
        machine=platform.machine(),
        python=platform.python_version(),
        implementation=platform.python_implementation(),
    )


def output_locations(cfg: Config) -> list[tuple[str, str]]:
    """(label, path) of every directory a run writes to."""
    out = []
    if cfg.output.write_parquet:
        out.append(("Parquet", cfg.output.parquet_dir))
    out.append(("runs", cfg.run.runs_dir))
    if not cfg.database.url:
        out.append(("embedded DB", cfg.database.embedded_dir))
    return out


def machine_group(cfg: Config, host: Host, requires_python: str | None) -> tuple[MachineFacts, list[Check]]:
    """The machine lines for ``host``, with a disk line per output location of ``cfg``."""
    facts, checks = cpu_and_memory(host)
    checks += disk_checks(output_locations(cfg))
    if host.load is not None:
        l1, l5, l15 = host.load
        status = WARN if min(l1, l5) > host.cpus else OK  # busy for minutes, not a passing spike
        detail = f"{l1:.2f} / {l5:.2f} / {l15:.2f} (1/5/15 min) on {host.cpus} CPUs"
        if status == WARN:
            detail += "; the machine is busy: workers will compete for the CPUs; fix: wait, or run with fewer workers"
        checks.append(Check(GROUP, "load", status, detail, {"load1": l1, "load5": l5, "load15": l15}))
    checks.append(
        Check(
            GROUP,
            "OS",
            OK,
            f"{host.system} {host.release} {host.machine}",
            {"system": host.system, "release": host.release, "machine": host.machine},
        )
    )
    ok = version_ok(host.python, requires_python) if requires_python else True
    checks.append(
        Check(
            GROUP,
            "Python",
            OK if ok is not False else FAIL,
            f"{host.python} ({host.implementation}){f', needs {requires_python}' if requires_python else ''}"
            + ("" if ok is not False else "; fix: use a newer Python for the virtualenv"),
            {"version": host.python, "requires": requires_python},
        )
    )
    return facts, checks


def cpu_and_memory(host: Host) -> tuple[MachineFacts, list[Check]]:
    """The CPUs and memory lines; inside a container, its quota and its limit minus its usage."""
    quota = host.cpus if host.cpus < host.usable else None
    detail = f"{host.logical} logical, {host.physical or '?'} physical; {host.usable} usable by this process"
    if quota:
        detail += f"; container CPU quota {quota:g}"
    checks = [
        Check(
            GROUP,
            "CPUs",
            OK,
            detail,
            {
                "logical": host.logical,
                "physical": host.physical,
                "usable": host.usable,
                "quota": quota,
                "cpus": host.cpus,
            },
        )
    ]
    total, available, note = host.memory_total, host.memory_available, ""
    if host.memory_limit < host.memory_total:
        total = host.memory_limit
        available = min(available, max(0, host.memory_limit - (host.memory_usage or 0)))
        note = f" (container limit {format_bytes(host.memory_limit)}, host {format_bytes(host.memory_total)})"
    checks.append(
        Check(
            GROUP,
            "memory",
            OK,
            f"{format_bytes(total)} total, {format_bytes(available)} available{note}",
            {"total_bytes": total, "available_bytes": available},
        )
    )
    return MachineFacts(cpus=host.cpus, mem_available=available), checks


def disk_checks(locations: list[tuple[str, str]]) -> list[Check]:
    """Per (label, path): writable by this user, its free space, and which share a filesystem."""
    checks = []
    seen: dict[int, str] = {}
    for label, path in locations:
        name = f"disk ({label})"
        if is_remote(path):
            checks.append(
                Check(
                    GROUP,
                    name,
                    OK,
                    f"{path.split('://')[0]}:// storage: free space is not measurable from here",
                    {"path": path},
                )
            )
            continue
        base = nearest_existing(path)
        usage = shutil.disk_usage(base)
        dev = base.stat().st_dev
        same = f"; same filesystem as {seen[dev]}" if dev in seen else ""
        seen.setdefault(dev, label)
        values = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total, "device": dev}
        try:
            probe_location(path)
        except UnwritableLocation as exc:
            why = (
                f"{exc.where} is a file, not a directory; fix: point the setting at a directory"
                if exc.not_a_directory
                else f"{exc.where} is not writable by this user ({exc.reason}); fix: make it writable or point the "
                "setting elsewhere"
            )
            checks.append(Check(GROUP, name, FAIL, f"{path}: {why}", values))
            continue
        status, fix = OK, ""
        if usage.free < LOW_DISK_BYTES:
            status, fix = WARN, "; fix: free some space (the output size estimate below says how much a run needs)"
        checks.append(
            Check(
                GROUP,
                name,
                status,
                f"{format_bytes(usage.free)} free of {format_bytes(usage.total)} at {path}{same}{fix}",
                values,
            )
        )
    return checks
