"""The readiness assessment: ``bqxdask check`` (SPEC §8).

Before a long run an operator wants one report and one verdict, the way a readiness review is
written by hand. :func:`assess` gathers it — each line a :class:`Check` with a status
(``ok`` ✅, ``warn`` ⚠️, ``fail`` ❌), its numbers and, when it is not ok, the fix — and
:func:`run_check` prints it as text or JSON. Verdict: NOT READY if any line failed (exit 1),
READY WITH WARNINGS if any warned, else READY (both exit 0).

One module per check group, in the order they are printed:

- :mod:`.machine` — CPUs, memory (the cgroup limit and usage when a container has one), free
  and writable disk where the Parquet files, the run directories and the embedded database go,
  load, OS, Python; on a burstable cloud instance its baseline CPU share against the planned
  run (:mod:`.burstable`);
- :mod:`.cluster` (the plan group) — workers × ``memory_limit`` against available memory,
  workers against CPUs, the enabled families, a rough per-unit memory estimate; or, with
  ``cluster.scheduler_address``, what the existing scheduler offers and whether every worker
  reaches the database and the Parquet location like this client (:mod:`.scheduler`,
  :mod:`.probes`);
- :mod:`.database` — reachable, server version, the connections the plan opens against what
  the server has free, privileges on the output schema;
- :mod:`.neighbours` — other bqxdask runs on the database, sessions locking the output
  schema's tables, long transactions (SPEC §11);
- :mod:`.sources` — per pair: present, SELECT granted, rows, first/last bar, rows in the
  requested months;
- :mod:`.software` (dependencies) — installed versions against ``install_requires``, TA-Lib
  importable and computing;
- :mod:`.sizing` (output size) — the rows of the requested months × the enabled families'
  columns, as Parquet and as PostgreSQL tuples, against free disk.

:mod:`.orchestrate` runs them in their data-flow order, each given the frozen facts of the groups
before it; :mod:`.report` prints the verdict; :mod:`.findings` is the line type they share.

``check`` changes nothing: it never initialises or starts the embedded PostgreSQL (a check that
starts a server changes what it measures and leaves a process behind), and the probe files it
writes to judge a location are removed at once. Every check guards itself: an unexpected error
becomes a ❌ line naming the check, never a traceback.
"""

from __future__ import annotations

from .findings import CHECK_APPLICATION, FAIL, OK, WARN, Check
from .orchestrate import assess, run_check
from .report import GROUPS, WIDTH, Assessment
from .sizing import measured_parquet_ratio
from .software import Requirement, version_ok

__all__ = [
    "CHECK_APPLICATION",
    "FAIL",
    "GROUPS",
    "OK",
    "WARN",
    "WIDTH",
    "Assessment",
    "Check",
    "Requirement",
    "assess",
    "measured_parquet_ratio",
    "run_check",
    "version_ok",
]
