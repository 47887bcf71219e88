"""Stage 3 task: one forest for one (target, fold), its R² and clustered permutation importance.

This module runs inside Dask workers (SPEC §9: pair × target × fold tasks). A task gets the
pair's sampled rows (``X``, ``Y``, shared by every task of the pair, scattered once) and a
:class:`FoldTask` naming its rows, and returns a small :class:`FoldResult`.

- **Threads.** The cluster's workers are the parallelism: the forest runs with
  ``n_jobs = families.select.n_jobs`` (default 1) and BLAS/OpenMP pools are limited to one
  thread (``threadpoolctl``), so two workers on two cores never run four threads.
- **Importance.** For each cluster of correlated features (bqxdask.select.significance) the
  cluster's columns of the evaluation rows are permuted together (one row permutation for all
  of them) and the per-row increase of the squared error is recorded,
  ``d_i = (y_i − ŷ_i^perm)² − (y_i − ŷ_i)²``. Its mean over the rows divided by the rows'
  variance of y is the drop in R² — scikit-learn's ``permutation_importance`` with R² scoring,
  for clusters. Per block of consecutive evaluation rows the mean of d is kept for the
  significance test.
- **Speed.** A tree's prediction changes only if the tree splits on a feature of the cluster.
  Each tree's predictions on the evaluation rows are computed once; a permuted cluster
  re-predicts only the trees that use it (a depth-10 tree uses ~65 of ~830 features), which
  gives exactly the forest's prediction on the permuted rows at a tenth of the cost.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ForestParams:
    n_estimators: int
    max_depth: int
    max_features: str
    tree_rows: int
    n_jobs: int
    seed: int
    repeats: int
    blocks: int

    def sklearn_max_features(self) -> str | float:
        return self.max_features if self.max_features in ("sqrt", "log2") else float(self.max_features)


@dataclass(frozen=True)
class FoldTask:
    target: int  #: column of Y
    fold: int  #: 1..K, or 0 for the test part (scored, no importance)
    train: np.ndarray  #: positions into X/Y, time order
    evaluate: np.ndarray


@dataclass
class FoldResult:
    target: int
    fold: int
    r2: float
    r2_zero: float
    importance: np.ndarray | None  #: (clusters,) drop in R²
    block_means: np.ndarray | None  #: (clusters, blocks) mean d / var(y) per block
    train_rows: int
    eval_rows: int
    seconds: float


def tree_predictions(forest, X: np.ndarray) -> np.ndarray:
    """(trees, rows): each tree's prediction; their mean is the forest's."""
    return np.stack([est.tree_.predict(X)[:, 0] for est in forest.estimators_])


def trees_using(forest, clusters: np.ndarray) -> list[np.ndarray]:
    """Per cluster id (0..C−1), the trees that split on one of its features."""
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    users: list[list[int]] = [[] for _ in range(n_clusters)]
    for t, est in enumerate(forest.estimators_):
        feats = est.tree_.feature
        for c in np.unique(clusters[np.unique(feats[feats >= 0])]):
            users[int(c)].append(t)
    return [np.array(u, dtype=np.int64) for u in users]


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss if ss > 0 else float("nan")


def cluster_importance(
    forest, X: np.ndarray, y: np.ndarray, clusters: np.ndarray, params: ForestParams, stream: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base prediction, importance per cluster, block means per cluster) on rows ``X`` (C order).

    ``clusters`` gives each column's cluster id (0..C−1). The permutations are drawn from
    ``numpy.random.default_rng((seed, *stream, cluster, repeat))``: the same whatever worker
    or order the clusters run in.
    """
    X = np.array(X, dtype=np.float32, order="C")  # a private copy: columns are permuted in place
    per_tree = tree_predictions(forest, X)
    n_trees = len(per_tree)
    base = per_tree.mean(axis=0)
    err = (y - base) ** 2
    var = float(np.var(y))
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    blocks = np.array_split(np.arange(len(y)), min(params.blocks, len(y)))
    label = np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)])
    counts = np.bincount(label, minlength=len(blocks)).astype("float64")
    importance = np.zeros(n_clusters)
    means = np.zeros((n_clusters, len(blocks)))
    users = trees_using(forest, clusters)
    members = [np.flatnonzero(clusters == c) for c in range(n_clusters)]
    for c in range(n_clusters):
        trees = users[c]
        if not len(trees) or var == 0:
            continue  # no tree splits on it: permuting it changes no prediction (d = 0)
        cols = members[c]
        original = X[:, cols].copy()
        d = np.zeros(len(y))
        for r in range(params.repeats):
            perm = np.random.default_rng((params.seed, *stream, c, r)).permutation(len(y))
            X[:, cols] = original[perm]
            delta = np.zeros(len(y))
            for t in trees:
                delta += forest.estimators_[t].tree_.predict(X)[:, 0] - per_tree[t]
            d += (y - (base + delta / n_trees)) ** 2 - err
        X[:, cols] = original
        d /= params.repeats * var
        importance[c] = d.mean()
        means[c] = np.bincount(label, weights=d, minlength=len(blocks)) / counts
    return base, importance, means


def run_fold(X: np.ndarray, Y: np.ndarray, task: FoldTask, clusters: np.ndarray, params: ForestParams) -> FoldResult:
    """Fit the forest on ``task.train`` and score (and, for a fold, explain) ``task.evaluate``."""
    from sklearn.ensemble import RandomForestRegressor
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    y = Y[:, task.target]
    train_y = y[task.train]
    tree_rows = min(params.tree_rows, len(task.train)) if params.tree_rows else None
    forest = RandomForestRegressor(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        max_features=params.sklearn_max_features(),
        max_samples=tree_rows,
        random_state=params.seed,
        n_jobs=params.n_jobs,
    )
    ye = y[task.evaluate]
    # catch_warnings(): sklearn's threads reset the process-wide warning filters (Python < 3.14);
    # this restores the worker's filters afterwards and suppresses nothing
    with threadpool_limits(1), warnings.catch_warnings():
        forest.fit(np.asarray(X[task.train], dtype=np.float32, order="F"), train_y)
        if task.fold == 0:
            base = forest.predict(np.ascontiguousarray(X[task.evaluate], dtype=np.float32))
            importance = means = None
        else:
            base, importance, means = cluster_importance(
                forest, X[task.evaluate], ye, clusters, params, (task.target, task.fold)
            )
    return FoldResult(
        task.target,
        task.fold,
        r2(ye, base),
        r2(ye, np.zeros(len(ye))),
        importance,
        means,
        len(task.train),
        len(task.evaluate),
        time.perf_counter() - t0,
    )
