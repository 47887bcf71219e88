"""``bqxdask select``: stage 3 on the run's Dask cluster (SPEC §9).

Per pair of ``run.pairs``, over the months ``run.start..run.end``::

    read     every enabled family's Parquet (Dask, on the cluster), joined on time
    build    lagged copies, return and control targets, rows without a target dropped
    check    leakage (bqxdask.select.leakage): fails the run before anything is fitted
    cluster  features by |Spearman ρ| (bqxdask.select.significance)
    fit      target × fold tasks on the cluster (bqxdask.select.fit), live progress
    test     p-values per cluster, Benjamini–Hochberg, verdicts
    write    <parquet_dir>/selection/pair=<pair>/ (bqxdask.select.outputs)

The client holds one pair's dataset at a time: the rows the tasks need (every fold's
training sample and evaluation rows, the test rows) go to the workers once, as one scattered
array, and only small results come back.

Reproducible: every sample is drawn with ``numpy.random.default_rng((seed, stream))``, the
forests and permutations are seeded by (seed, target, fold, cluster), and the results are
put in order by (target, fold) whatever the order they finish in; the outputs contain no
clock, so the same Parquet and seed give byte-identical files on any cluster.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from ..config import Config
from ..errors import BqxError
from ..pipeline.cluster import cluster
from ..pipeline.progress import Progress
from .dataset import build_dataset, plan_families, read_joined
from .fit import FoldResult, FoldTask, ForestParams, run_fold
from .folds import Layout, sample_rows, walk_forward
from .leakage import check_leakage
from .names import targets_for, validate_horizons
from .outputs import PairResult, print_summary, rank_target, write_outputs
from .significance import spearman_clusters

#: rows of the training sample that the leakage check and the clustering look at
CHECK_ROWS = 20_000
CLUSTER_ROWS = 5_000


def forest_params(cfg: Config) -> ForestParams:
    p = cfg.families.select
    return ForestParams(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        max_features=p.max_features,
        tree_rows=p.tree_rows,
        n_jobs=p.n_jobs,
        seed=p.seed,
        repeats=p.permutation_repeats,
        blocks=p.significance_blocks,
    )


def plan_rows(layout: Layout, cfg: Config) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """(dataset rows sent to the workers, per fold: number, training and evaluation positions into them).

    One sample of at most ``max_train_rows`` rows before the test part serves every fold's
    training set (fold k takes its rows before its purge gap); each evaluation block and the
    test part contribute at most ``max_importance_rows`` (test: 4×) rows of their own.
    """
    p = cfg.families.select
    pool = sample_rows(np.arange(*layout.test.train), p.max_train_rows, p.seed, 0)
    evals = {
        f.number: sample_rows(np.arange(*f.evaluate), p.max_importance_rows, p.seed, f.number) for f in layout.folds
    }
    evals[0] = sample_rows(np.arange(*layout.test.evaluate), 4 * p.max_importance_rows, p.seed, 99)
    used = np.unique(np.concatenate([pool, *evals.values()]))
    where = {int(r): i for i, r in enumerate(used)}
    plans = []
    for fold in (*layout.folds, layout.test):
        train = pool[pool < fold.train[1]]
        plans.append(
            (
                fold.number,
                np.array([where[int(r)] for r in train]),
                np.array([where[int(r)] for r in evals[fold.number]]),
            )
        )
    return used, plans


def select_pair(
    cfg: Config,
    client: Any,
    pair: str,
    horizons: tuple[int, ...],
    *,
    families: Sequence[str],
    skipped: Sequence[str],
    out: TextIO,
    progress_stream: TextIO,
) -> PairResult:
    """Stage 3 for one pair: returns what was written."""
    params = cfg.families.select
    t0 = time.perf_counter()
    targets = targets_for(horizons, params.control)
    clock = _Clock()
    joined = read_joined(cfg, pair, families, client)
    clock.lap("read")
    ds = build_dataset(joined, pair=pair, lags=params.lags, targets=targets, folds=params.folds, families=families)
    del joined
    for name, count in ds.infinite_values.items():
        out.write(f"warning: {pair}: {name} has {count} infinite values; they are treated as missing\n")
    layout = walk_forward(len(ds.row), params.folds, ds.gap)
    check = sample_rows(np.arange(*layout.test.train), CHECK_ROWS, params.seed, 1)
    leakage = check_leakage(
        ds.X[check],
        ds.features,
        [(t, ds.Y[check, k]) for k, t in enumerate(ds.targets)],
        ds.level,
        ds.row[check],
        copy_r2=params.leakage_r2,
        future_r2=params.leakage_future_r2,
        pair=pair,
    )
    clock.lap("build + leakage check")
    kinds = ds.kinds
    model = np.array([j for j, k in enumerate(kinds) if not (params.drop_levels and k == "level")])
    sample = sample_rows(np.arange(*layout.test.train), CLUSTER_ROWS, params.seed, 2)
    clusters = spearman_clusters(ds.X[np.ix_(sample, model)], params.cluster_threshold)
    clock.lap("clusters")
    used, plans = plan_rows(layout, cfg)
    X = np.asarray(ds.X[np.ix_(used, model)], dtype=np.float32, order="F")
    Y = ds.Y[used]
    out.write(
        f"{pair}: {len(ds.row):,} rows × {len(model)} features ({int(clusters.max()) + 1} clusters) from "
        f"{len(families)} families; {len(targets)} targets × ({params.folds} folds + test) on the cluster "
        f"({params.n_estimators} trees, depth {params.max_depth}, max_features {params.max_features})\n"
    )
    out.flush()
    fp = forest_params(cfg)
    [x_fut, y_fut, c_fut] = client.scatter([X, Y, clusters], broadcast=True, hash=False)
    del X
    futures, token = [], uuid.uuid4().hex[:8]
    for k, tgt in enumerate(targets):
        for number, train, evaluate in plans:
            task = FoldTask(k, number, train, evaluate)
            futures.append(
                client.submit(
                    run_fold,
                    x_fut,
                    y_fut,
                    task,
                    c_fut,
                    fp,
                    pure=False,
                    key=f"select-{pair}-{tgt.name}-fold{number}-{token}",
                )
            )
    results = _gather(client, futures, progress_stream, pair)
    clock.lap(f"{len(futures)} tasks")
    for f in (x_fut, y_fut, c_fut):
        f.release()
    by_target: dict[int, dict[int, FoldResult]] = {}
    for res in results:
        by_target.setdefault(res.target, {})[res.fold] = res
    model_names = [ds.features[j] for j in model]
    ranked = [
        rank_target(tgt, model_names, [kinds[j] for j in model], clusters, by_target[k], params.alpha)
        for k, tgt in enumerate(targets)
    ]
    result = PairResult(
        ds=ds,
        layout=layout,
        targets=ranked,
        leakage=leakage,
        skipped=list(skipped),
        clusters=int(clusters.max()) + 1,
        model_features=model_names,
        rows_sent=len(used),
    )
    folder = write_outputs(cfg, result)
    clock.lap("write")
    print_summary(out, result, folder, seconds=time.perf_counter() - t0, phases=clock.text())
    return result


class _Clock:
    """Seconds per phase, for the console summary (never written to a file: outputs hold no clock)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def text(self) -> str:
        return ", ".join(f"{name} {sec:.0f} s" for name, sec in self.laps)


def _gather(client: Any, futures: list, stream: TextIO, pair: str) -> list[FoldResult]:
    from distributed import as_completed

    progress = Progress(len(futures), label=f"select {pair}", stream=stream)
    results = []
    try:
        for fut in as_completed(futures):
            res = fut.result()
            results.append(res)
            progress.advance(rows=res.train_rows + res.eval_rows)
    finally:
        progress.close()
    return sorted(results, key=lambda r: (r.target, r.fold))


def run_select(
    cfg: Config, *, horizons: Sequence[int] | None = None, out: TextIO | None = None, client: Any = None
) -> int:
    """``bqxdask select``: stage 3 for every pair of ``cfg.run.pairs``; returns the exit code.

    All pairs are checked (horizons, Parquet coverage) before any is read, so a missing month
    fails in a second, not after the first pair's forests. Errors are :class:`BqxError`.
    """
    out = out or sys.stdout
    hs = validate_horizons(horizons, cfg.families.select)
    plans = {pair: plan_families(cfg, pair) for pair in cfg.run.pairs}
    for pair, (_, skipped) in plans.items():
        if skipped:
            out.write(
                f"note: {pair}: no Parquet output for {', '.join(skipped)}; selecting without "
                f"{'it' if len(skipped) == 1 else 'them'} (fix: bqxdask features --families "
                f"{','.join(skipped)} to include)\n"
            )
    stream = sys.stderr if out is sys.stdout else out
    with cluster(cfg, client, out) as (c, _dashboard):
        for pair, (families, skipped) in plans.items():
            try:
                select_pair(cfg, c, pair, hs, families=families, skipped=skipped, out=out, progress_stream=stream)
            except MemoryError:
                raise BqxError(
                    f"{pair}: out of memory building or fitting the dataset; fix: select fewer months "
                    "or lower families.select.max_train_rows"
                ) from None
    return 0
