"""Stage 3 significance: feature clusters, a null for importances, multiple testing (SPEC §9).

Clusters
--------
Many of the ~830 columns are near-duplicates (a window's mean and its Bollinger middle; lag 0
and lag 60 of a slow feature). Permuting one twin leaves the other in the model, so both
look useless. Features are therefore clustered by |Spearman ρ| on a sample of the rows before
the test part: complete-linkage hierarchical clustering of the distance 1 − |ρ| cut at
1 − ``cluster_threshold``, so every two features of one cluster have |ρ| ≥ the threshold.
A cluster is permuted as one (bqxdask.select.fit) and tested as one.

The null and the test
---------------------
A cluster that carries no information the forest can use on new data leaves the expected
squared error unchanged when it is permuted: the per-row increase d of the squared error on
the evaluation rows has mean 0 (and the importance, mean d / var y, too). Each fold's
evaluation rows are cut into ``significance_blocks`` blocks of consecutive rows; over the
K × blocks block means of d / var y (blocks of ~1,300 rows are far longer than the
dependence of the targets, which is h rows) a one-sided t-test gives the p-value of
"mean > 0". This is the Diebold–Mariano comparison of the forest with and without the
cluster's information, with block means instead of a HAC variance. A cluster no tree splits
on has d = 0 and p = 1.

Multiple testing: the Benjamini–Hochberg step-up adjustment over the clusters of one target
(``p_value`` in ranking.csv is the adjusted one, so ``significant`` ⇔ ``p_value ≤ alpha``).
With no signal anywhere it keeps the chance of any false discovery at ``alpha``, and so the
share of features wrongly called significant far below it (tests/test_select_stats.py
measures it on random walks).
"""

from __future__ import annotations

import numpy as np


def spearman_clusters(X: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster id (0..C−1, numbered in column order) of each column of ``X`` (rows × features).

    NaN takes the column's middle rank; a constant column is a cluster of its own.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from scipy.stats import rankdata

    n, p = X.shape
    if p == 1:
        return np.zeros(1, dtype=np.int64)
    ranks = np.empty((n, p))
    for j in range(p):
        col = X[:, j]
        finite = np.isfinite(col)
        r = np.full(n, (finite.sum() + 1) / 2.0)
        r[finite] = rankdata(col[finite])
        ranks[:, j] = r
    ranks -= ranks.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", ranks, ranks))
    varying = norm > 0
    z = np.zeros_like(ranks)
    z[:, varying] = ranks[:, varying] / norm[varying]
    dist = 1.0 - np.abs(z.T @ z)
    dist[~varying, :] = 1.0
    dist[:, ~varying] = 1.0
    np.fill_diagonal(dist, 0.0)
    dist = np.clip((dist + dist.T) / 2.0, 0.0, 1.0)
    raw = fcluster(linkage(squareform(dist, checks=False), "complete"), 1.0 - threshold, "distance")
    # number in order of first appearance: deterministic and readable
    order = {c: i for i, c in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[c] for c in raw.tolist()], dtype=np.int64)


def block_pvalues(block_means: np.ndarray) -> np.ndarray:
    """One-sided t-test p-value of mean > 0 per row of ``block_means`` (clusters × blocks)."""
    from scipy.stats import t as student

    n = block_means.shape[1]
    mean = block_means.mean(axis=1)
    sd = block_means.std(axis=1, ddof=1) if n > 1 else np.zeros(len(mean))
    p = np.ones(len(mean))
    ok = sd > 0
    p[ok] = student.sf(mean[ok] / (sd[ok] / np.sqrt(n)), df=n - 1)
    return p


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def fold_rank_spearman(importances: np.ndarray) -> float:
    """Mean Spearman correlation between the folds' importance vectors (folds × clusters)."""
    from scipy.stats import spearmanr

    k = importances.shape[0]
    values = []
    for a in range(k):
        for b in range(a + 1, k):
            x, y = importances[a], importances[b]
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            values.append(float(spearmanr(x, y).statistic))
    return float(np.mean(values)) if values else float("nan")


def verdict(
    target: str, n_features: int, n_significant: int, n_clusters: int, n_sig_clusters: int, best: str, best_p: float
) -> str:
    """``target_h15: 0 of 834 features (0 of 404 clusters) beat the null; best … p = 0.41``."""
    return (
        f"{target}: {n_significant} of {n_features} features ({n_sig_clusters} of {n_clusters} clusters) "
        f"beat the null; best {best} p = {best_p:.2g}"
    )
