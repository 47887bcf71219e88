"""The run's graph: Dask DataFrames from the source read to the writers (SPEC §5, §6).

Per pair, one partition per month::

    bars      dd.from_map(read_month)   month divisions, explicit meta ─┐
    warm-up   dd.from_map(read_warmup)  the accepted bars before each month ─┴→
    prepared  map_partitions(prepare_partition)   quarantine (SPEC §3), index, BQX, warm-up rows first
    features  map_partitions(compute_partition)   one frame per family, the family's meta, month rows only
    writes    map_partitions(write_partition)     Parquet, then SQL + checkpoint under the unit's lock

The outputs are the writers' partitions of the (family, unit) outputs to compute, one Dask
future each, so that a failing output fails alone and progress counts outputs. Dask fuses
each family's compute and write into one task and each month's reads into its prepare task;
the prepared partition is shared by the unit's families. Culling leaves out the partitions
of a family whose checkpoint is current for that month.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..config import FamiliesConfig
from ..db.source import BARS_META
from ..features import family_meta
from ..plan import Plan
from . import tasks
from .tasks import PREPARED_META, RESULT_META, UnitSpec


def month_reads(pair_specs: Sequence[UnitSpec], label: str):
    """One pair's bars as a Dask DataFrame: one partition per month (``tasks.read_month``),
    explicit month divisions and meta, so that no task reads to find them out."""
    import dask.dataframe as dd

    divisions = tuple(pd.Timestamp(s.lo) for s in pair_specs) + (pd.Timestamp(pair_specs[-1].hi) - pd.Timedelta(1, "us"),)
    return dd.from_map(tasks.read_month, pair_specs, meta=BARS_META, divisions=divisions, label=label,
                       enforce_metadata=False)


def pair_specs_node(pair_specs: Sequence[UnitSpec]):
    """The pair's unit specs as one graph key: each task finds its own by partition number, and
    the specs travel to a worker once, not inside every task."""
    from dask import delayed

    return delayed(tuple(pair_specs), traverse=False)


def prepared_frame(pair_specs: Sequence[UnitSpec], pair: str, specs_node: Any):
    """The prepared frame of one pair: per month, the warm-up rows then the month's accepted bars.

    Its divisions are unknown: a partition reaches back into the month before (the warm-up).
    """
    import dask.dataframe as dd

    bars = month_reads(pair_specs, f"read-{pair}")
    warm = dd.from_map(tasks.read_warmup, pair_specs, meta=BARS_META, label=f"warmup-{pair}", enforce_metadata=False)
    return bars.map_partitions(tasks.prepare_partition, warm, specs_node, meta=PREPARED_META, clear_divisions=True,
                               enforce_metadata=False, align_dataframes=False)


def feature_frame(prepared, family: str, families: FamiliesConfig, specs_node: Any):
    """One family's features over the prepared frame's months, indexed by time."""
    return prepared.map_partitions(tasks.compute_partition, family, specs_node, meta=family_meta(family, families),
                                   enforce_metadata=False)


def write_frame(features, family: str, specs_node: Any):
    """The writes of one family's feature frame: a partition per month, one row holding its result."""
    return features.map_partitions(tasks.write_partition, family, specs_node, meta=RESULT_META,
                                   enforce_metadata=False)


def unit_outputs(plan: Plan, work: Sequence, specs: dict[str, UnitSpec]) -> tuple[list, list[tuple[str, str, str]]]:
    """The graph's outputs, one per (family, pair, month) to compute, and their labels."""
    import dask.dataframe as dd

    frames, labels = [], []
    for pair in dict.fromkeys(u.pair for u in work):
        units = [u for u in work if u.pair == pair]
        pair_specs = [specs[u.key] for u in units]
        specs_node = pair_specs_node(pair_specs)
        prepared = prepared_frame(pair_specs, pair, specs_node)
        for family in plan.families:
            todo = [family in u.todo for u in units]
            if any(todo):
                features = feature_frame(prepared, family, pair_specs[0].families, specs_node)
                frames.append(write_frame(features, family, specs_node))
                labels += [(family, u.pair, u.month) if t else None for u, t in zip(units, todo)]
    # one collection, optimised once: the prepared partitions stay shared between the families
    writes = frames[0] if len(frames) == 1 else dd.concat(frames)
    parts = writes.to_delayed()
    keep = [i for i, label in enumerate(labels) if label is not None]
    return [parts[i] for i in keep], [labels[i] for i in keep]
