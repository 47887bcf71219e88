"""Stage 3 — ``bqxdask select`` (SPEC §9, §4.7) on real EURUSD bars.

The chain is real: HistData EURUSD 2017-01..03 is loaded into the test PostgreSQL, the
pipeline computes every registered family on the LocalCluster and writes Parquet, and
``run_select`` reads that Parquet with Dask and fits target × fold tasks on the same
cluster. Forests are small here (the mechanics and the control target's signal are under
test, not the model's best R²); the SPEC defaults run in ``bqxdask select``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dbutil import load_bars
from pipeline_util import make_config, unique_schema

from bqxdask import compute_features
from bqxdask.cli import main as cli_main
from bqxdask.config import with_overrides
from bqxdask.errors import ConfigError, LeakageError, OutputError, SourceError
from bqxdask.features import registry
from bqxdask.outputs import parquet
from bqxdask.pipeline import run_features
from bqxdask.select import (
    build_dataset,
    feature_kind,
    feature_name,
    join_families,
    parse_feature,
    read_joined,
    required_rows,
    run_select,
    targets_for,
)
from bqxdask.testing import assert_within, eurusd, relative

SRC = "src_select"
MONTHS = ("2017-01", "2017-03")
HORIZONS = (15, 60)
#: small forests and 3 folds: what is tested is the plumbing and that the control finds signal
SMALL = {
    "n_estimators": 12,
    "max_depth": 6,
    "max_train_rows": 5000,
    "tree_rows": 2000,
    "max_importance_rows": 1000,
    "permutation_repeats": 1,
    "folds": 3,
    "horizons": list(HORIZONS),
}
OUTPUTS = ("dataset.parquet", "ranking.csv", "metrics.json", "top_features.html")
RANKING_COLUMNS = [
    "feature",
    "target",
    "horizon",
    "kind",
    "cluster",
    "importance",
    "importance_std",
    "p_value",
    "significant",
    "rank",
]
TARGETS = [f"target_h{h}" for h in HORIZONS] + [f"target_vol_h{h}" for h in HORIZONS]
#: column stems of the backward volatility features (SPEC §9: std, rmse, ATR, Bollinger width, IQR)
VOLATILITY = ("std_", "_rmse", "atr_", "bb_width_", "iqr_", "_bqx_std", "agg_bqx_volatility", "agg_bqx_range")


# --------------------------------------------------------------------------------------------
# Fixtures: the real chain, features → Parquet, once per module
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def features_cfg(pg_url, tmp_path_factory, dask_client):
    """EURUSD 2017-01..03 in PostgreSQL, every registered family computed by the pipeline."""
    load_bars(pg_url, SRC, "eurusd", eurusd(3))
    tmp = tmp_path_factory.mktemp("select")
    cfg = make_config(
        pg_url,
        tmp,
        source_schema=SRC,
        output_schema=unique_schema("sel"),
        pairs=["eurusd"],
        start=MONTHS[0],
        end=MONTHS[1],
        families=list(registry.all_families()),
        extra={"output": {"write_sql": False}},
    )
    result = run_features(cfg, client=dask_client, out=io.StringIO())
    assert result.exit_code == 0, result.failures
    return with_overrides(cfg, families={f"select.{k}": v for k, v in SMALL.items()})


@pytest.fixture(scope="module")
def selected(features_cfg, dask_client):
    """``run_select`` over the three months, all horizons; its output folder and console text."""
    out = io.StringIO()
    assert run_select(features_cfg, out=out, client=dask_client) == 0
    folder = Path(features_cfg.output.parquet_dir) / "selection" / "pair=eurusd"
    return folder, out.getvalue()


@pytest.fixture(scope="module")
def series(features_cfg, dask_client):
    """The joined feature series the dataset was built from (Parquet, Dask)."""
    return read_joined(features_cfg, "eurusd", list(registry.all_families()), dask_client)


@pytest.fixture(scope="module")
def dataset(selected):
    return pd.read_parquet(selected[0] / "dataset.parquet").set_index("time")


def _original(cfg, family: str, months: tuple[str, str]) -> pd.DataFrame:
    """One family's EURUSD output from the chain's own Parquet folder, unprefixed columns.

    Tests that rewrite files read the original from here, never from the copy they modify:
    Dask names a read after its file paths, so re-reading a rewritten path on the same
    cluster could be served a result still held from the first read.
    """
    cfg = with_overrides(cfg, run={"start": months[0], "end": months[1]}, families={"enabled": [family]})
    return read_joined(cfg, "eurusd", [family]).rename(columns=lambda c: parse_feature(c)[1])


# --------------------------------------------------------------------------------------------
# The command on real bars
# --------------------------------------------------------------------------------------------
def test_real_chain_writes_every_output(selected, features_cfg):
    folder, text = selected
    for name in OUTPUTS:
        assert (folder / name).stat().st_size > 0, name
    assert not list(folder.glob(".*")), "a temporary file was left behind"
    assert not (folder / "top_features.png").exists()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["families"] == list(registry.all_families())
    n_cols = sum(len(f.column_names(features_cfg.families)) for f in registry.all_families().values())
    assert metrics["feature_count"] == metrics["model_feature_count"] == 2 * n_cols  # lags 0 and 60
    assert metrics["layout"]["gap_rows"] == 60 and metrics["seed"] == 42 and len(metrics["layout"]["folds"]) == 3
    assert metrics["rows"]["dataset"] == metrics["rows"]["series"] - metrics["rows"]["without_target"]
    assert metrics["rows"]["without_target"] == 60
    assert list(metrics["targets"]) == TARGETS
    for name, m in metrics["targets"].items():
        assert len(m["r2_folds"]) == 3 and m["r2_folds_mean"] == pytest.approx(np.mean(m["r2_folds"]), rel=1e-9)
        for key in ("r2_test", "r2_test_zero", "fold_rank_spearman"):
            assert np.isfinite(m[key]), (name, key)
        assert m["verdict"].startswith(f"{name}: {m['significant_features']} of {metrics['feature_count']} features")
        assert m["verdict"] in text  # printed in the summary too
        assert m["leakage"]["max_future_r2"] < m["leakage"]["max_future_r2_limit"]
    ranking = pd.read_csv(folder / "ranking.csv")
    assert list(ranking.columns) == RANKING_COLUMNS
    assert len(ranking) == len(TARGETS) * metrics["feature_count"]
    assert set(ranking["kind"]) == {"level", "scale_free"}
    sample = ranking.drop_duplicates("feature").sample(50, random_state=0)
    assert all(feature_kind(f) == k for f, k in zip(sample["feature"], sample["kind"]))
    assert (ranking["kind"] == "level").sum() == len(TARGETS) * metrics["level_features"]
    for name, g in ranking.groupby("target"):
        m = metrics["targets"][name]
        assert int(g["significant"].sum()) == m["significant_features"]
        assert (g["significant"] == (g["p_value"] <= 0.05)).all()
        per_cluster = g.groupby("cluster")
        assert (per_cluster["importance"].nunique() == 1).all() and (per_cluster["rank"].nunique() == 1).all()
        assert sorted(g.drop_duplicates("cluster")["rank"]) == list(range(1, metrics["clusters"] + 1))
        assert g["rank"].is_monotonic_increasing
    html = (folder / "top_features.html").read_text()
    assert "target_vol_h15" in html and "cdn.bokeh.org" not in html  # self-contained, opens offline


def test_control_target_finds_volatility_on_real_bars(selected):
    """The control target: test R² clearly above zero, significant volatility features on top."""
    folder, _ = selected
    metrics = json.loads((folder / "metrics.json").read_text())
    ranking = pd.read_csv(folder / "ranking.csv")
    for h in HORIZONS:
        name = f"target_vol_h{h}"
        m = metrics["targets"][name]
        assert m["r2_test"] > 0.05 and min(m["r2_folds"]) > 0.1 and m["r2_test"] > m["r2_test_zero"] + 1, m
        assert m["significant_features"] >= 5
        sig = ranking[(ranking["target"] == name) & ranking["significant"]]
        best = sig[sig["rank"] == sig["rank"].min()]["feature"]
        assert any(_volatility(f) for f in best), list(best)
        assert sum(map(_volatility, sig["feature"])) >= 0.5 * len(sig), list(sig["feature"])


def _volatility(feature: str) -> bool:
    """A backward volatility feature by name (on the BQX series, a band is mean ± 2σ of returns)."""
    family, column, _ = parse_feature(feature)
    return any(v in column for v in VOLATILITY) or (
        family == "bollinger_bqx" and column.startswith(("bb_upper", "bb_lower"))
    )


def test_dataset_file_layout(dataset, selected):
    schema = pq.read_schema(selected[0] / "dataset.parquet")
    assert schema.names[:3] == ["time", "split", "row"] and str(schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert str(dataset.index.dtype) == "datetime64[us, UTC]"
    assert set(dataset["split"]) == {"initial", "purge", "fold1", "fold2", "fold3", "test"}
    assert [c for c in dataset.columns if c.startswith("target_")] == TARGETS
    assert json.loads(schema.metadata[b"bqxdask"])["gap_rows"] == 60
    counts = dataset["split"].value_counts()
    assert counts["test"] == len(dataset) * 15 // 100 and counts["purge"] == 4 * 60
    assert counts["fold1"] == counts["fold2"] == counts["fold3"]
    assert np.all(np.diff(dataset["row"].to_numpy()) == 1)  # every row with targets, in time order


def test_targets_are_bqx_return_h_rows_ahead(dataset, series):
    """target_h{h}[t] == w{h}_bqx_return[t+h], exactly, on the real series (rows, not minutes)."""
    for h in HORIZONS:
        w = series[feature_name("bqx", f"w{h}_bqx_return")].to_numpy()
        expected = w[dataset["row"].to_numpy() + h]
        np.testing.assert_array_equal(dataset[f"target_h{h}"].to_numpy(), expected)
    # the last max(h) rows have no target and are gone
    assert dataset["row"].max() == len(series) - max(HORIZONS) - 1


def test_control_target_is_the_future_path_length(dataset, series):
    """target_vol_h{h}[t] == Σ_{i=1..h} |idx[t+i] − idx[t+i−1]| / idx[t], summed directly."""
    idx = series["bqx__rate_index"].to_numpy()
    rows = dataset["row"].to_numpy()
    for h in HORIZONS:
        got = dataset[f"target_vol_h{h}"].to_numpy()
        for i in (0, 1, 777, len(rows) // 2, len(rows) - 1):
            t = rows[i]
            expected = np.abs(np.diff(idx[t : t + h + 1])).sum() / idx[t]
            assert abs(got[i] - expected) <= 1e-12 * expected


def test_lag_is_value_60_rows_earlier(dataset, series):
    rows = dataset["row"].to_numpy()
    for col in (
        "bqx__w15_bqx_return",
        "technical_rate__rsi_14",
        "statistics_bqx__skew_30",
        *[c for c in series.columns if c.startswith("reg_")][:3],
    ):
        lagged = dataset[feature_name(*parse_feature(col)[:2], 60)].to_numpy()
        src = rows - 60
        expected = np.where(src >= 0, series[col].to_numpy()[np.maximum(src, 0)], np.nan)
        np.testing.assert_array_equal(lagged, expected)
        np.testing.assert_array_equal(dataset[col].to_numpy(), series[col].to_numpy()[rows])
    assert dataset["bqx__rate_index__lag60"].iloc[:60].isna().all()  # nothing before the pair's first row


def test_lags_stay_within_their_pair(features_cfg, dask_client, tmp_path):
    """Two pairs in one run: each pair's lag-60 comes from its own series, never the other's."""
    root = tmp_path / "parquet"
    month = "2017-02"
    src = Path(features_cfg.output.parquet_dir) / "bqx" / "pair=eurusd" / "year=2017" / "month=02"
    shutil.copytree(src, root / "bqx" / "pair=eurusd" / "year=2017" / "month=02")
    cfg = with_overrides(
        features_cfg,
        run={"pairs": ["eurusd", "gbpusd"], "start": month, "end": month},
        output={"parquet_dir": str(root)},
        families={"enabled": ["bqx"]},
    )
    eur = _original(features_cfg, "bqx", (month, month))
    other = eur + 1000.0  # another series, told apart by its values
    parquet.write_unit(
        str(root), "bqx", "gbpusd", month, other.index.as_unit("us").asi8, list(other.columns), other.to_numpy(), {}
    )
    assert run_select(cfg, horizons=[15], out=io.StringIO(), client=dask_client) == 0
    for pair, series in (("eurusd", eur.to_numpy()), ("gbpusd", other.to_numpy())):
        ds = pd.read_parquet(root / "selection" / f"pair={pair}" / "dataset.parquet")
        rows = ds["row"].to_numpy()
        lagged = ds["bqx__w30_bqx_avg__lag60"].to_numpy()
        col = list(eur.columns).index("w30_bqx_avg")
        expected = np.where(rows >= 60, series[np.maximum(rows - 60, 0), col], np.nan)
        np.testing.assert_array_equal(lagged, expected)


#: families with price levels and scale-free columns, for the tests that need not fit all nine
SOME = ("bqx", "bollinger_rate", "technical_rate", "reg_rate")


def _february(features_cfg, tmp_path, **families):
    """A Parquet folder with February of SOME families; (its root, a config selecting on it)."""
    root = tmp_path / "parquet"
    for fam in SOME:
        src = Path(features_cfg.output.parquet_dir) / fam / "pair=eurusd" / "year=2017" / "month=02"
        shutil.copytree(src, root / fam / "pair=eurusd" / "year=2017" / "month=02")
    return root, with_overrides(
        features_cfg,
        run={"start": "2017-02", "end": "2017-02"},
        output={"parquet_dir": str(root)},
        families={"enabled": list(SOME), **families},
    )


def test_same_inputs_same_seed_identical_outputs(features_cfg, dask_client, tmp_path):
    """Two runs on the same Parquet and seed write byte-identical ranking.csv, metrics.json and dataset."""
    root, cfg = _february(features_cfg, tmp_path)
    copies = []
    for _ in range(2):
        assert run_select(cfg, horizons=[15], out=io.StringIO(), client=dask_client) == 0
        folder = root / "selection" / "pair=eurusd"
        copies.append(
            {name: (folder / name).read_bytes() for name in ("ranking.csv", "metrics.json", "dataset.parquet")}
        )
    assert copies[0] == copies[1]
    assert json.loads(copies[0]["metrics.json"])["months"] == {"start": "2017-02", "end": "2017-02"}


@pytest.mark.slow
def test_same_ranking_on_an_external_scheduler(features_cfg, dask_client, tmp_path):
    """--scheduler: another cluster (one worker) reached by address gives byte-identical outputs."""
    from distributed import LocalCluster

    root, cfg = _february(features_cfg, tmp_path)
    folder = root / "selection" / "pair=eurusd"
    assert run_select(cfg, horizons=[15], out=io.StringIO(), client=dask_client) == 0
    local = {name: (folder / name).read_bytes() for name in ("ranking.csv", "metrics.json")}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as external:
        remote = with_overrides(cfg, cluster={"scheduler_address": external.scheduler_address})
        assert run_select(remote, horizons=[15], out=io.StringIO()) == 0
    assert {name: (folder / name).read_bytes() for name in local} == local


# --------------------------------------------------------------------------------------------
# Leakage
# --------------------------------------------------------------------------------------------
def _lead(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[: len(x) - k] = x[k:]
    return out


LEAKS = {
    # the target shifted by h−1 rows: w15_bqx_return at t+1 (one bar of look-ahead, 93 % past)
    "target_shifted_h_minus_1": lambda bqx: _lead(bqx["w15_bqx_return"].to_numpy(), 1),
    # the target shifted by one row: w15_bqx_return at t+14
    "target_shifted_1": lambda bqx: _lead(bqx["w15_bqx_return"].to_numpy(), 14),
    # the target itself
    "target_copy": lambda bqx: _lead(bqx["w15_bqx_return"].to_numpy(), 15),
    # a centred moving average (center=True), the classic pandas slip
    "centred_mean": lambda bqx: (bqx["rate_index"].rolling(31, center=True).mean() / bqx["rate_index"]).to_numpy(),
    # centred volatility: linear in no future move, so only the control target's check sees it
    "centred_path_length": lambda bqx: (
        bqx["rate_index"].diff().abs().rolling(31, center=True).sum() / bqx["rate_index"]
    ).to_numpy(),
}


@pytest.mark.parametrize("kind", list(LEAKS))
def test_leaking_feature_fails_the_run(features_cfg, dask_client, tmp_path, kind):
    """A column that sees bars after t, slipped into the bqx Parquet, stops the run, naming it."""
    root = tmp_path / "parquet"
    shutil.copytree(Path(features_cfg.output.parquet_dir) / "bqx", root / "bqx")
    cfg = with_overrides(features_cfg, output={"parquet_dir": str(root)}, families={"enabled": ["bqx"]})
    bqx = _original(features_cfg, "bqx", MONTHS)
    leak = LEAKS[kind](bqx)
    columns = [*bqx.columns, "w15_sneaky"]
    for month in cfg.months:
        lo, hi = pd.Timestamp(f"{month}-01", tz="UTC"), pd.Timestamp(f"{month}-01", tz="UTC") + pd.offsets.MonthBegin(1)
        sel = (bqx.index >= lo) & (bqx.index < hi)
        values = np.column_stack([bqx.to_numpy()[sel], leak[sel]])
        parquet.write_unit(
            str(root),
            "bqx",
            "eurusd",
            month,
            bqx.index[sel].as_unit("us").asi8,
            columns,
            values,
            parquet.unit_metadata(str(root), "bqx", "eurusd", month),
        )
    with pytest.raises(LeakageError) as info:
        run_select(cfg, out=io.StringIO(), client=dask_client)
    message = str(info.value)
    assert "bqx__w15_sneaky" in message and "\n" not in message
    assert "horizon 15" in message or "target_h15" in message
    assert ("target_vol_h15" in message) == (kind == "centred_path_length")
    assert "fix:" in message
    assert not (root / "selection").exists() or not any((root / "selection").rglob("metrics.json"))


def test_cli_reports_leak_as_one_line(features_cfg, tmp_path, capsys, monkeypatch):
    """Through the CLI: one line on stderr, no traceback, exit code 1."""
    root = tmp_path / "parquet"
    shutil.copytree(Path(features_cfg.output.parquet_dir) / "bqx", root / "bqx")
    bqx = _original(features_cfg, "bqx", MONTHS)
    leak = _lead(bqx["w30_bqx_return"].to_numpy(), 30)
    for month in features_cfg.months:
        sel = bqx.index.strftime("%Y-%m") == month
        parquet.write_unit(
            str(root),
            "bqx",
            "eurusd",
            month,
            bqx.index[sel].as_unit("us").asi8,
            [*bqx.columns, "peek"],
            np.column_stack([bqx.to_numpy()[sel], leak[sel]]),
            {},
        )
    config = tmp_path / "select.toml"
    config.write_text(
        f'[run]\npairs = ["eurusd"]\nstart = "{MONTHS[0]}"\nend = "{MONTHS[1]}"\nruns_dir = "{tmp_path / "runs"}"\n'
        f'[cluster]\nn_workers = 1\ndashboard_address = ":0"\n'
        f'[output]\nparquet_dir = "{root}"\n[families]\nenabled = ["bqx"]\n'
    )
    monkeypatch.chdir(tmp_path)
    code = cli_main(["select", "--config", str(config), "--horizons", "30"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("error: eurusd: feature bqx__peek") and "\n" not in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# No look-ahead in any registered family (SPEC §9)
# --------------------------------------------------------------------------------------------
def _perturbed(bars: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Bars after row t moved by random factors (each bar keeps high ≥ open, close ≥ low)."""
    rng = np.random.default_rng(seed)
    out = bars.copy()
    factor = np.exp(np.cumsum(rng.normal(0, 5e-4, len(bars) - t - 1))) * (1 + rng.normal(0, 3e-3))
    for c in ("open", "high", "low", "close"):
        out.loc[out.index[t + 1 :], c] = out[c].to_numpy()[t + 1 :] * factor
    return out


def test_no_family_looks_ahead():
    """Perturb every bar after t: every value of every registered family at rows ≤ t stays."""
    bars = eurusd(1)
    families = list(registry.all_families())
    ref = compute_features(bars, families)
    n = len(bars)
    for t in (700, n // 2, n - 40):
        for seed, alt_bars in enumerate((_perturbed(bars, t, 1), bars.iloc[: t + 1])):
            got = compute_features(alt_bars, families)
            for fam in families:
                a = got[fam].iloc[: t + 1]
                e = ref[fam].iloc[: t + 1]
                assert a.index.equals(e.index)
                for col in e.columns:
                    assert_within(
                        a[col].to_numpy(),
                        e[col].to_numpy(),
                        relative(1e-9, e[col]),
                        name=f"{fam}.{col} t={t} variant {seed}",
                    )
            if seed == 0:  # the future really changed
                assert not np.allclose(
                    got["bqx"]["rate_index"].to_numpy()[t + 1 :], ref["bqx"]["rate_index"].to_numpy()[t + 1 :]
                )


def test_dataset_features_do_not_look_ahead():
    """The assembled features (joined families + lags) at rows ≤ t ignore bars after t."""
    bars = eurusd(1)
    t = 20_000
    targets = targets_for((15,), control=True)
    a = build_dataset(join_families(compute_features(bars)), pair="eurusd", lags=(0, 60), targets=targets)
    b = build_dataset(
        join_families(compute_features(_perturbed(bars, t, 7))), pair="eurusd", lags=(0, 60), targets=targets
    )
    assert a.features == b.features and np.array_equal(a.row, b.row)
    past = a.row <= t
    for j, name in enumerate(a.features):
        assert_within(b.X[past, j], a.X[past, j], relative(1e-9, a.X[past, j]), name=name)
    assert not np.array_equal(a.Y[~past], b.Y[~past])  # targets do look ahead, by definition


# --------------------------------------------------------------------------------------------
# Errors and pure parts
# --------------------------------------------------------------------------------------------
def test_missing_month_of_parquet_is_a_clear_error(features_cfg):
    cfg = with_overrides(features_cfg, run={"end": "2017-04"})
    with pytest.raises(
        OutputError,
        match=r"no feature Parquet for family bqx, pair eurusd, month 2017-04.*"
        r"fix: run bqxdask features --pairs eurusd --start 2017-04",
    ):
        run_select(cfg, out=io.StringIO())
    cfg = with_overrides(features_cfg, run={"pairs": ["gbpusd"]})
    with pytest.raises(OutputError, match="gbpusd.*fix: run bqxdask features"):
        run_select(cfg, out=io.StringIO())


def test_families_with_different_bars_are_refused(features_cfg, dask_client, tmp_path):
    """A family missing a bar that the others have (outputs of different source versions) is an error."""
    root = tmp_path / "parquet"
    for fam in ("bqx", "technical_bqx"):
        src = Path(features_cfg.output.parquet_dir) / fam / "pair=eurusd" / "year=2017" / "month=02"
        shutil.copytree(src, root / fam / "pair=eurusd" / "year=2017" / "month=02")
    cfg = with_overrides(
        features_cfg,
        run={"start": "2017-02", "end": "2017-02"},
        output={"parquet_dir": str(root)},
        families={"enabled": ["bqx", "technical_bqx"]},
    )
    tech = _original(features_cfg, "technical_bqx", ("2017-02", "2017-02"))
    tech = tech.drop(index=tech.index[500])
    parquet.write_unit(
        str(root),
        "technical_bqx",
        "eurusd",
        "2017-02",
        tech.index.as_unit("us").asi8,
        list(tech.columns),
        tech.to_numpy(),
        {},
    )
    with pytest.raises(OutputError, match=r"family technical_bqx has no row for eurusd at 2017-02-.*--full-refresh"):
        run_select(cfg, out=io.StringIO(), client=dask_client)


def test_too_few_rows_and_bad_horizons(features_cfg, dask_client):
    cfg = with_overrides(features_cfg, run={"start": "2017-01", "end": "2017-01"}, families={"enabled": ["bqx"]})
    need = required_rows(3, 20_000)
    with pytest.raises(SourceError, match=rf"3 walk-forward folds .* need at least {need:,}; fix: select more months"):
        run_select(cfg, horizons=[15, 20_000], out=io.StringIO(), client=dask_client)
    for bad in ([0], [15, 15], []):
        with pytest.raises(ConfigError, match="--horizons"):
            run_select(cfg, horizons=bad, out=io.StringIO())


def test_horizon_without_bqx_window_uses_rate_index(features_cfg, series):
    """h = 20 is not a bqx window: its target is the §4.2 formula applied to rate_index."""
    joined = series[[c for c in series.columns if c.startswith("bqx__")]]
    ds = build_dataset(joined, pair="eurusd", lags=(0,), targets=targets_for((15, 20), control=False))
    frame = ds.frame()
    assert frame.columns[0] == "row" and list(frame.columns[-2:]) == ["target_h15", "target_h20"]
    idx = joined["bqx__rate_index"].to_numpy()
    for i in (0, 5000, len(ds.row) - 1):
        t = ds.row[i] + 20
        expected = (idx[t - 20 : t].sum() - 20 * idx[t]) / idx[t]
        assert abs(ds.Y[i, 1] - expected) <= 1e-12 * max(1.0, abs(expected))


def test_names_round_trip():
    for name in ("bqx__w15_bqx_return", "reg_rate__w60_slope__lag60"):
        assert feature_name(*parse_feature(name)) == name
    assert parse_feature("reg_rate__w60_slope__lag60") == ("reg_rate", "w60_slope", 60)
    assert feature_kind("reg_rate__w60_const__lag60") == "level" and feature_kind("reg_bqx__w60_const") == "scale_free"
    assert [t.name for t in targets_for((15, 60), control=True)] == TARGETS


def test_drop_levels_leaves_price_levels_out(features_cfg, dask_client, tmp_path):
    """families.select.drop_levels: no level feature in the model or the ranking; the dataset keeps them."""
    root, cfg = _february(features_cfg, tmp_path, **{"select.drop_levels": True, "select.control": False})
    assert run_select(cfg, horizons=[15], out=io.StringIO(), client=dask_client) == 0
    folder = root / "selection" / "pair=eurusd"
    metrics = json.loads((folder / "metrics.json").read_text())
    ranking = pd.read_csv(folder / "ranking.csv")
    assert metrics["levels_dropped"] and metrics["level_features"] > 0
    assert metrics["model_feature_count"] == metrics["feature_count"] - metrics["level_features"]
    assert set(ranking["kind"]) == {"scale_free"} and len(ranking) == metrics["model_feature_count"]
    assert list(metrics["targets"]) == ["target_h15"]
    assert "bqx__rate_index" in pq.read_schema(folder / "dataset.parquet").names
