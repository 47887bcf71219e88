"""Burstable cloud instances: what a CPU-bound run of the planned size gets (SPEC §8, issue 13).

An EC2 T instance (t2, t3, t3a, t4g) runs every vCPU at 100 % only while it has CPU credits;
a run that keeps all cores busy spends them faster than the instance earns them and then falls
to the *baseline* — 40 % of each vCPU on a t3.2xlarge — in ``standard`` mode, or keeps its
speed and is billed for the surplus vCPU-hours in ``unlimited`` mode (the default of T3, T3a
and T4g). A hand-written review once called a t3.2xlarge "perfect" for this work; this module
puts the numbers next to the plan instead.

The instance type comes from the DMI product name (``/sys/class/dmi/id/product_name``), which
EC2's Nitro hypervisor sets to the type, e.g. ``t3.2xlarge``. Xen-based instances (most t2)
report ``HVM domU`` there and are not recognised; reading the metadata service would need the
network, which ``check`` does not use for the machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..pipeline.estimate import DEFAULT_PREPARE_SECONDS_PER_ROW, measured_seconds_per_row
from .cluster import PlanFacts, planned_rows
from .findings import OK, WARN, Check

#: where Linux exposes the DMI product name (the second is the same file on older kernels)
DMI_PRODUCT_FILES = ("/sys/class/dmi/id/product_name", "/sys/devices/virtual/dmi/id/product_name")


@dataclass(frozen=True)
class Burstable:
    """One burstable instance type, from AWS's credit table.

    ``baseline`` is the share of *each* vCPU the instance may use without spending credits;
    ``credits_per_hour`` are earned (one credit = one vCPU at 100 % for a minute), at most
    ``max_credits`` accrue (24 h of earning).
    """

    name: str
    vcpus: int
    credits_per_hour: float
    max_credits: float
    baseline: float

    @property
    def baseline_vcpus(self) -> float:
        """vCPUs' worth of sustained work: 3.2 on a t3.2xlarge."""
        return self.vcpus * self.baseline


#: (vCPUs, credits earned per hour, maximum accrued credits, baseline per vCPU) per type, from
#: the "CPU credits and baseline utilization" table of the Amazon EC2 User Guide
#: (doc_source/burstable-credits-baseline-concepts.md, awsdocs/amazon-ec2-user-guide).
#: t3a and t4g have the same numbers as t3.
_T3 = {
    "nano": (2, 6, 144, 0.05),
    "micro": (2, 12, 288, 0.10),
    "small": (2, 24, 576, 0.20),
    "medium": (2, 24, 576, 0.20),
    "large": (2, 36, 864, 0.30),
    "xlarge": (4, 96, 2304, 0.40),
    "2xlarge": (8, 192, 4608, 0.40),
}
_T2 = {
    "nano": (1, 3, 72, 0.05),
    "micro": (1, 6, 144, 0.10),
    "small": (1, 12, 288, 0.20),
    "medium": (2, 24, 576, 0.20),
    "large": (2, 36, 864, 0.30),
    "xlarge": (4, 54, 1296, 0.225),
    "2xlarge": (8, 81.6, 1958.4, 0.17),
}
CREDIT_TABLE: dict[str, tuple[int, float, float, float]] = {
    **{f"t2.{size}": v for size, v in _T2.items()},
    **{f"{family}.{size}": v for family in ("t3", "t3a", "t4g") for size, v in _T3.items()},
}
_TYPE = re.compile(r"\b(t2|t3a|t3|t4g)\.(nano|micro|small|medium|large|xlarge|2xlarge)\b")


def product_name(paths: Iterable[str] = DMI_PRODUCT_FILES) -> str | None:
    """The DMI product name of this machine, or None when no file of ``paths`` is readable."""
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace").strip()
        except OSError:
            continue
        if text:
            return text
    return None


def burstable_type(name: str | None) -> Burstable | None:
    """The burstable type a DMI product name names (``t3.2xlarge``), else None."""
    m = _TYPE.search((name or "").lower())
    if m is None:
        return None
    key = f"{m[1]}.{m[2]}"
    return Burstable(key, *CREDIT_TABLE[key])


def instance_group(
    cfg: Config, plan: PlanFacts, rows: Mapping[str, Mapping[str, int]], *, paths: Iterable[str] = DMI_PRODUCT_FILES
) -> list[Check]:
    """The instance line against the planned run: its CPU time from the counted source ``rows`` and the
    task seconds per row that :mod:`bqxdask.pipeline.estimate` measured on recent runs."""
    per_row, _ = measured_seconds_per_row(cfg.run.runs_dir)
    n_rows = planned_rows(cfg, rows)[0]
    core = (
        n_rows * (DEFAULT_PREPARE_SECONDS_PER_ROW + sum(per_row.get(f, max(per_row.values())) for f in plan.families))
        if plan.families
        else None
    )
    threads = (plan.workers or 0) * (plan.threads_per_worker or 1) or None
    line = instance_check(core, threads, paths=paths)
    return [line] if line else []


def instance_check(
    core_seconds: float | None, threads: int | None, *, paths: Iterable[str] = DMI_PRODUCT_FILES
) -> Check | None:
    """The machine group's "instance" line; None when the DMI product name is not readable.

    ``core_seconds`` is the planned run's CPU time (None when unknown) and ``threads`` how many
    worker threads it keeps busy at once.
    """
    name = product_name(paths)
    if name is None:
        return None
    kind = burstable_type(name)
    if kind is None:
        return Check(
            "machine",
            "instance",
            OK,
            f"DMI product name {name!r}: not a burstable cloud instance type",
            {"product_name": name, "burstable": False},
        )
    busy = min(max(1, threads or kind.vcpus), kind.vcpus)
    values = {
        "product_name": name,
        "burstable": True,
        "type": kind.name,
        "vcpus": kind.vcpus,
        "baseline_per_vcpu": kind.baseline,
        "baseline_vcpus": kind.baseline_vcpus,
        "credits_per_hour": kind.credits_per_hour,
        "max_credits": kind.max_credits,
        "busy_vcpus": busy,
        "core_seconds": core_seconds,
    }
    base = (
        f"EC2 {kind.name} is burstable: baseline {100 * kind.baseline:g} % of each of {kind.vcpus} vCPUs "
        f"({kind.baseline_vcpus:g} vCPUs' worth)"
    )
    if busy <= kind.baseline_vcpus:
        return Check(
            "machine",
            "instance",
            OK,
            f"{base}; the plan keeps {busy} thread{'s' * (busy != 1)} busy, "
            "within the baseline, so it runs at full speed without spending credits",
            values,
        )
    # credits: one per vCPU-minute at 100 %; the instance earns credits_per_hour meanwhile
    burn = busy - kind.credits_per_hour / 60  # net credits per minute at full speed
    hours_on_full = kind.max_credits / burn / 60
    slowdown = busy / kind.baseline_vcpus
    values.update(
        {"net_credits_per_minute": burn, "hours_on_full_balance": hours_on_full, "slowdown_at_baseline": slowdown}
    )
    balance = (
        f"a full balance ({kind.max_credits:,.0f} credits) lasts ~{_duration(60 * hours_on_full)} of "
        "this load, but a T3/T3a/T4g starts with none and a T2 with its launch credits only"
    )
    if core_seconds:
        minutes = core_seconds / 60 / busy
        need = burn * minutes
        values.update({"wall_minutes_at_full_speed": minutes, "net_credits_needed": need})
        fits = "within a full balance" if need <= kind.max_credits else "more than even a full balance holds"
        size = (
            f"a sustained {busy}-thread run of ~{core_seconds / 60:,.0f} core-min (~{_duration(minutes)} at "
            f"full speed) spends ~{need:,.0f} credits more than it earns, {fits}; {balance}"
        )
    else:
        size = f"the run's size is unknown; at {busy} busy threads {balance}"
    detail = (
        f"{base}; {size}; once the credits are spent it falls to the baseline, ~{slowdown:.1f}× slower "
        "(unlimited mode keeps the speed and bills the surplus vCPU-hours); fix: a fixed-performance type "
        "(m/c family) for long runs, or watch CPUCreditBalance in CloudWatch"
    )
    return Check("machine", "instance", WARN, detail, values)


def _duration(minutes: float) -> str:
    # not dask.utils.format_time ("20hr 0m"): the line reads, and is tested, as "~20.0 h"
    if minutes < 90:
        return f"{max(1, math.ceil(minutes))} min"
    return f"{minutes / 60:.1f} h"
