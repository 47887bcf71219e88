"""``bqxdask check``: run the check groups in order, each given the facts of those before (SPEC §8).

The order is the data flow, spelled out in :func:`assess`: the plan needs the machine's CPUs
and memory, the connection budget the plan's workers, and the per-unit memory, the instance
line and the size estimate the source rows the database group counted. Every group returns a
frozen dataclass of facts with its lines; nothing is shared or mutated behind the call. A group
that raises becomes one ❌ line and its "not known" facts, never a traceback. The report prints
the lines by group (:data:`~.report.GROUPS`), not in this order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO, TypeVar

from ..config import Config
from .burstable import DMI_PRODUCT_FILES, instance_group
from .cluster import PlanFacts, plan_group, unit_memory_check
from .database import DatabaseFacts, database_group
from .findings import Check, failed, guard
from .machine import MachineFacts, machine_group, read_host
from .neighbours import LONG_TRANSACTION_SECONDS
from .report import Assessment, encodable, header, scrubbed, secrets
from .sizing import sizing_group
from .software import dependencies_group, python_requires, requirements

F = TypeVar("F")


def run_check(cfg: Config, *, as_json: bool = False, out: TextIO | None = None, **options: Any) -> int:
    """Assess readiness for ``cfg``, print the report (text or JSON) to ``out``; return the exit code.

    ``options`` go to :func:`assess`.
    """
    out = out or sys.stdout
    result = assess(cfg, **options)
    if as_json:
        out.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    else:
        out.write(encodable(result.to_text(), getattr(out, "encoding", None)) + "\n")
    out.flush()
    return result.exit_code


def assess(
    cfg: Config,
    *,
    long_transaction_seconds: float = LONG_TRANSACTION_SECONDS,
    dmi_files: Iterable[str] = DMI_PRODUCT_FILES,
) -> Assessment:
    """Run every check for ``cfg``; never raises for a problem it can describe.

    ``long_transaction_seconds``: report transactions open longer than this (SPEC §11: 5 min);
    ``dmi_files``: where the machine's DMI product name is read (a burstable instance's type).
    """
    machine, checks = in_group("machine", MachineFacts(), lambda: machine_group(cfg, read_host(), python_requires()))
    plan, lines = in_group("plan", PlanFacts(), plan_group, cfg, machine)
    checks += lines
    database, lines = in_group(
        "database",
        DatabaseFacts(embedded=not cfg.database.url),
        database_group,
        cfg,
        plan,
        long_transaction_seconds=long_transaction_seconds,
    )
    checks += lines
    checks += guard("plan", "check failed", unit_memory_check, cfg, plan, database.rows)
    checks += guard("machine", "check failed", instance_group, cfg, plan, database.rows, paths=tuple(dmi_files))
    checks += guard("dependencies", "check failed", lambda: dependencies_group(*requirements()))
    checks += guard("output size", "check failed", sizing_group, cfg, plan, database)
    hidden = secrets(cfg)
    return Assessment(scrubbed(header(cfg, database.neighbours), hidden), [scrubbed(c, hidden) for c in checks])


def in_group(
    group: str, unknown: F, fn: Callable[..., tuple[F, list[Check]]], *args: Any, **kwargs: Any
) -> tuple[F, list[Check]]:
    """``fn(*args, **kwargs)``: (its facts, its lines); an exception gives ``unknown`` facts and one ❌ line."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a check must never end in a traceback
        return unknown, [failed(group, "check failed", exc)]
