"""Stage 3: the training dataset and feature selection that tells signal from noise (SPEC §9).

Modules, in the order data flows: :mod:`.names` (feature and target names, kinds),
:mod:`.dataset` (Parquet → joined features, lags, targets), :mod:`.folds` (walk-forward
layout), :mod:`.leakage` (the look-ahead check), :mod:`.significance` (clusters, the null,
Benjamini–Hochberg), :mod:`.fit` (the task a Dask worker runs), :mod:`.outputs` and
:mod:`.charts` (files and summary), :mod:`.run` (the command on the cluster).
"""

from __future__ import annotations

from .dataset import Dataset, build_dataset, join_families, path_length, plan_families, read_joined
from .folds import Layout, required_rows, walk_forward
from .names import (
    feature_kind,
    feature_name,
    parse_feature,
    target_name,
    targets_for,
    vol_target_name,
)
from .run import run_select, select_pair

__all__ = [
    "Dataset",
    "Layout",
    "build_dataset",
    "feature_kind",
    "feature_name",
    "join_families",
    "parse_feature",
    "path_length",
    "plan_families",
    "read_joined",
    "required_rows",
    "run_select",
    "select_pair",
    "target_name",
    "targets_for",
    "vol_target_name",
    "walk_forward",
]
