"""Stage 3 statistics (SPEC §9): folds, clusters, the null and its calibration, feature kinds.

Pure parts are tested against independent computations; the method as a whole on seeded bars
where the truth is known: a random walk (nothing beats the null) and AR(1) returns (the
features that carry the last move must win).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from select_util import bars, select, write_features

from bqxdask.config import FamiliesConfig
from bqxdask.features import registry
from bqxdask.features.reg import RegParams
from bqxdask.select import walk_forward
from bqxdask.select.fit import ForestParams, cluster_importance
from bqxdask.select.significance import benjamini_hochberg, block_pvalues, spearman_clusters

#: small forests: the tests are about the statistics, not the model's strength
SMALL = {
    "n_estimators": 20,
    "max_depth": 6,
    "max_train_rows": 6000,
    "tree_rows": 2000,
    "max_importance_rows": 1500,
    "permutation_repeats": 1,
    "folds": 3,
    "lags": [0],
}


# --------------------------------------------------------------------------------------------
# Folds
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rows", "folds", "gap"), [(1_300, 2, 15), (92_924, 5, 75), (50_001, 7, 60), (10_000, 3, 1)])
def test_folds_never_overlap_their_gaps(rows, folds, gap):
    lay = walk_forward(rows, folds, gap)
    n_test = int(rows * 0.15)
    assert lay.test.evaluate == (rows - n_test, rows)
    assert lay.test.train == (0, rows - n_test - gap)
    sizes = {f.evaluate[1] - f.evaluate[0] for f in lay.folds}
    assert len(sizes) == 1 and min(sizes) >= 100
    previous_end = lay.initial[1]
    for f in lay.folds:
        assert f.train[0] == 0
        assert f.evaluate[0] - f.train[1] == gap  # purge: the last training target ends before the block
        assert f.evaluate[0] - previous_end == gap  # embargo after the previous block
        previous_end = f.evaluate[1]
    assert lay.test.evaluate[0] - lay.folds[-1].evaluate[1] == gap
    labels = lay.labels()
    for f in lay.folds:  # no training row of a fold lies within gap rows of its block, before or after
        train = np.arange(*f.train)
        block = np.arange(*f.evaluate)
        assert train.max() + gap < block.min()
        assert set(labels[block]) == {f"fold{f.number}"}
    assert (labels == "purge").sum() == (folds + 1) * gap


def test_too_few_rows_for_the_folds():
    with pytest.raises(ValueError, match="too few"):
        walk_forward(1_000, 5, 75)


# --------------------------------------------------------------------------------------------
# Importance, p-values, clusters
# --------------------------------------------------------------------------------------------
def test_cluster_importance_equals_the_forest_on_permuted_rows():
    """Re-predicting only the trees that use a cluster gives the whole forest's prediction."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(900, 8)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the learnt side in both paths
    y = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 3]) + rng.normal(size=900)
    forest = RandomForestRegressor(n_estimators=15, max_depth=4, random_state=0, n_jobs=1).fit(X[:600], y[:600])
    clusters = np.array([0, 1, 2, 3, 1, 4, 4, 2])
    params = ForestParams(15, 4, "sqrt", 0, 1, 7, 2, 6)
    Xe, ye = X[600:], y[600:]
    base, importance, blocks = cluster_importance(forest, Xe, ye, clusters, params, (0, 1))
    np.testing.assert_allclose(base, forest.predict(Xe), rtol=1e-12, atol=1e-12)
    err = (ye - forest.predict(Xe)) ** 2
    for c in range(5):
        cols = np.flatnonzero(clusters == c)
        d = np.zeros(len(ye))
        for r in range(2):
            perm = np.random.default_rng((7, 0, 1, c, r)).permutation(len(ye))
            Xp = Xe.copy()
            Xp[:, cols] = Xe[perm][:, cols]
            d += (ye - forest.predict(Xp)) ** 2 - err
        d /= 2 * np.var(ye)
        assert importance[c] == pytest.approx(d.mean(), rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(blocks[c], [b.mean() for b in np.array_split(d, 6)], rtol=1e-9, atol=1e-12)
    assert importance[0] > 0.2 and importance[3] > 0.05  # the informative columns


def test_benjamini_hochberg_against_its_definition():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(40), [1e-5, 3e-4, 0.002, 0.002]])
    m = len(p)
    rank = {i: r + 1 for r, i in enumerate(np.argsort(p, kind="stable"))}
    expected = [min(1.0, min(m * p[j] / rank[j] for j in range(m) if p[j] >= p[i])) for i in range(m)]
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-12)


def test_block_pvalues_are_the_one_sided_t_test():
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(1)
    blocks = rng.normal(0.1, 1.0, (3, 30))
    blocks[2] = 0.0  # a cluster no tree uses
    p = block_pvalues(blocks)
    for c in range(2):
        assert p[c] == pytest.approx(ttest_1samp(blocks[c], 0.0, alternative="greater").pvalue, rel=1e-10)
    assert p[2] == 1.0


def test_spearman_clusters_group_monotone_twins():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 2000))
    X = np.column_stack([a, np.exp(a), b, b + rng.normal(0, 0.05, 2000), rng.normal(size=2000), np.ones(2000)])
    X[:20, 1] = np.nan
    labels = spearman_clusters(X, 0.9)
    assert labels[0] == labels[1] and labels[2] == labels[3]
    assert len({labels[0], labels[2], labels[4], labels[5]}) == 4
    assert labels.tolist() == [0, 0, 1, 1, 2, 3]  # numbered in column order


# --------------------------------------------------------------------------------------------
# Feature kinds
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_every_registered_column_declares_its_kind(degree):
    fams = FamiliesConfig(reg=RegParams(degree=degree))
    for name, fam in registry.all_families().items():
        for column in fam.column_names(fams):
            assert registry.column_kind(name, column) in registry.KINDS, (name, column)
    level = {
        ("bollinger_rate", "bb_middle_20"),
        ("reg_rate", "w60_const"),
        ("bqx", "rate_index"),
        ("statistics_rate", "q75_30"),
        ("reg_rate", "w60_forecast"),
    }
    free = {
        ("reg_bqx", "w60_const"),
        ("technical_rate", "rsi_14"),
        ("bollinger_rate", "bb_width_20"),
        ("reg_rate", "w60_r2"),
        ("bqx", "w15_bqx_return"),
        ("statistics_bqx", "mean_15"),
    }
    assert {registry.column_kind(*c) for c in level} == {"level"}
    assert {registry.column_kind(*c) for c in free} == {"scale_free"}
    with pytest.raises(KeyError, match="declares no kind"):
        registry.column_kind("bqx", "w15_new_thing")


# --------------------------------------------------------------------------------------------
# The method on seeded bars
# --------------------------------------------------------------------------------------------
def test_planted_signal_comes_out_significant_and_on_top(tmp_path, dask_client):
    """AR(1) returns (φ = 0.3): the next move is predictable from the last; what carries it wins."""
    frame = bars(seed=11, phi=0.3)
    write_features(frame, tmp_path)
    ranking, metrics = select(tmp_path, dask_client, horizons=[1], control=False, **SMALL)
    m = metrics["targets"]["target_h1"]
    assert m["r2_test"] > 0.03 and m["r2_folds_mean"] > 0.03
    assert m["significant_features"] >= 1
    # what carries the signal: correlation of each feature with the last log return
    ds = pd.read_parquet(tmp_path / "selection" / "pair=eurusd" / "dataset.parquet")
    last = np.log(frame["close"]).diff().to_numpy()[ds["row"].to_numpy()]
    corr = {f: abs(pd.Series(ds[f].to_numpy()).corr(pd.Series(last))) for f in ranking["feature"]}
    corr = {f: (0.0 if np.isnan(c) else c) for f, c in corr.items()}
    best = max(corr.values())
    top = ranking[ranking["rank"] == 1]["feature"]
    assert max(corr[f] for f in top) >= 0.5 * best, (list(top), best)
    assert ranking.set_index("feature").loc[max(corr, key=corr.get), "significant"]
    sig = ranking[ranking["significant"]]["feature"]
    weak = [f for f in sig if corr[f] < 0.05]
    assert len(weak) <= 0.1 * len(sig), weak


@pytest.mark.slow
def test_random_walk_false_positive_rate_at_most_alpha(tmp_path, dask_client):
    """Random walks: over many seeds, the share of features called significant is ≤ alpha, and
    so is (within binomial noise) the share of runs with any significant feature."""
    alpha, seeds = 0.05, 16
    flagged = total = runs_with_any = runs = 0
    for seed in range(seeds):
        root = tmp_path / f"s{seed}"
        write_features(bars(seed=100 + seed), root)
        ranking, metrics = select(root, dask_client, horizons=[15], alpha=alpha, **SMALL)
        for name, m in metrics["targets"].items():
            flagged += m["significant_features"]
            total += int((ranking["target"] == name).sum())
            runs_with_any += m["significant_features"] > 0
            runs += 1
    assert flagged / total <= alpha
    # P(any) ≤ alpha under the global null; 6 of 32 is beyond the binomial 99 % bound of 0.05
    assert runs_with_any <= 5, (runs_with_any, runs)
