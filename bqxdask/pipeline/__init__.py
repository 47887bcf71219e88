"""The feature pipeline as a package (SPEC §5, §6, §11).

``run`` (run_features, execute, finish) · ``cluster`` (the Dask cluster, the connection
budget) · ``survey`` (planning on the client) · ``dryrun`` (the printed plan) · ``graph`` (the
Dask graph) · ``tasks`` (what runs on the workers) · ``watch`` (notices, stall reports) ·
``progress`` · ``runlog`` · ``estimate``.

The names below are imported on first use: ``check`` reads :mod:`.estimate` without loading
the feature families. The cluster context is ``bqxdask.pipeline.cluster.cluster`` (the module
of the same name shadows it here).
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "run_features": "run",
    "RunResult": "run",
    "check_connection_budget": "cluster",
    "WORKER_ENVIRON": "cluster",
    "format_plan": "dryrun",
    "month_reads": "graph",
    "plan_run": "survey",
    "unit_spec": "run",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
