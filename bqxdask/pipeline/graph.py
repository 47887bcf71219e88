"""The run's Dask graph (SPEC §5, §6): bars read by month → prepared unit → one write per output.

    read_month (dd.from_map, month divisions, explicit meta) ─┐
    read_warmup (last `warmup` accepted bars before the month) ─┴→ prepare_unit → compute_and_write × family

The bars are a Dask DataFrame with month divisions; each of its partitions then feeds one
unit's delayed tasks, one future per (family, pair, month) output, so that a failing output
fails alone and progress counts outputs. A graph of frames all the way (prepared frame → a
feature frame per family by ``map_partitions`` → writer frames) ran every test but measured
slower in ``make bench`` (issue 14); the lazy frames are public through
``bqxdask.compute_features`` on Dask bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pandas as pd

from ..db.source import BARS_META
from ..plan import Plan
from . import tasks
from .tasks import UnitSpec


def month_reads(pair_specs: Sequence[UnitSpec], label: str):
    """One pair's bars as a Dask DataFrame: one partition per month (``tasks.read_month``),
    explicit month divisions and meta, so that no task reads to find them out."""
    import dask.dataframe as dd

    divisions = tuple(pd.Timestamp(s.lo) for s in pair_specs) + (
        pd.Timestamp(pair_specs[-1].hi) - pd.Timedelta(1, "us"),
    )
    return dd.from_map(
        tasks.read_month, pair_specs, meta=BARS_META, divisions=divisions, label=label, enforce_metadata=False
    )


def unit_outputs(plan: Plan, work: Sequence, specs: dict[str, UnitSpec]) -> tuple[list, list[tuple[str, str, str]]]:
    """The graph's outputs, one per (family, pair, month) to compute, and their labels."""
    from dask import delayed

    outputs, labels = [], []
    for pair in dict.fromkeys(u.pair for u in work):
        units = [u for u in work if u.pair == pair]
        pair_specs = [specs[u.key] for u in units]
        bars = month_reads(pair_specs, f"read-{pair}")
        for unit, spec, part in zip(units, pair_specs, bars.to_delayed()):
            tag = f"{unit.pair}-{unit.month}-{plan.run_id}"
            # the spec is bound to the task's function, not passed as an argument: Dask searches
            # arguments for collections, and a UnitSpec (a dataclass holding the families'
            # config) cost it ~300 calls per task, 16k for 2 pairs × 3 months (issue 15)
            warm = delayed(partial(tasks.read_warmup, spec), name=f"read_warmup-{tag}")(dask_key_name=f"warmup-{tag}")
            prep = delayed(partial(tasks.prepare_unit, spec=spec), name=f"prepare_unit-{tag}")
            prep = prep(part, warm, dask_key_name=f"prepare-{tag}")
            write = delayed(partial(tasks.compute_and_write, spec=spec), name=f"compute_and_write-{tag}")
            for fam in unit.todo:
                outputs.append(write(prep, fam, dask_key_name=f"{fam}-{tag}"))
                labels.append((fam, unit.pair, unit.month))
    return outputs, labels
