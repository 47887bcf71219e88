"""Configuration (SPEC §2): TOML, environment overrides, validation with one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bqxdask.calendar import month_bounds, month_index, month_range, months_before, parse_month
from bqxdask.config import ALL_FAMILIES, ALL_PAIRS, build_config, load_config, parse_memory
from bqxdask.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_committed_configs_load_and_match_the_spec_defaults():
    default = load_config(REPO / "configs" / "default.toml", environ={})
    assert default.run.pairs == ("eurusd", "gbpusd", "usdjpy", "audusd")
    assert default.run.start == default.run.end  # the demo: one month
    assert default.database.url is None and default.database.embedded_dir == ".bqx/pgdata"
    prod = load_config(REPO / "configs" / "production.toml", environ={})
    assert sorted(prod.run.pairs) == sorted(ALL_PAIRS) and len(prod.run.pairs) == 28
    assert (prod.run.start, prod.run.end) == ("2024-07", "2025-06") and len(prod.months) == 12
    assert prod.cluster.n_workers == 8 and prod.database.url is None  # URL only from the environment
    spec = build_config({})
    assert (
        spec.cluster.n_workers,
        spec.cluster.threads_per_worker,
        spec.cluster.memory_limit,
        spec.cluster.dashboard_address,
        spec.cluster.scheduler_address,
    ) == (8, 1, "2GiB", "127.0.0.1:8787", None)
    assert (spec.database.source_schema, spec.database.output_schema) == ("public", "features")
    assert (spec.output.parquet_dir, spec.output.write_sql, spec.output.write_parquet) == ("data/features", True, True)
    assert spec.families.enabled == ALL_FAMILIES
    assert spec.families.reg.windows == (15, 30, 45, 60, 75, 90, 150, 240, 390, 630)
    assert spec.families.bqx.windows == (15, 30, 45, 60, 75) and spec.families.bqx.series_window == 15


def test_environment_overrides_are_toml_values(tmp_path):
    env = {
        "BQX_CLUSTER__N_WORKERS": "4",
        "BQX_FAMILIES__REG__WINDOWS": "[15, 2880]",
        "BQX_CLUSTER__MEMORY_LIMIT": '"4GiB"',
        "BQX_OUTPUT__WRITE_SQL": "false",
        "BQX_DATABASE_URL": "postgresql+psycopg2://u:secret@db.example:5432/fx",
        "BQX_RUN__PAIRS": '["eurusd", "usdjpy"]',
        "BQX_INDEX__BASELINE": "2024-07-01T00:00:00Z",  # unquoted string: accepted for string keys
        "BQX_CONFIG_UNUSED": "x",  # no '__': not a config key
    }
    cfg = load_config(REPO / "configs" / "default.toml", environ=env)
    assert cfg.cluster.n_workers == 4
    assert cfg.families.reg.windows == (15, 2880)
    assert cfg.cluster.memory_limit == "4GiB" and cfg.memory_limit_bytes == 4 * 2**30
    assert cfg.output.write_sql is False
    assert cfg.database.url.endswith("/fx")
    assert cfg.run.pairs == ("eurusd", "usdjpy")
    assert cfg.index.baseline == "2024-07-01T00:00:00Z"
    assert "secret" not in str(cfg.redacted())


@pytest.mark.parametrize(
    ("raw", "env", "needle"),
    [
        ({"cluster": {"n_worker": 4}}, {}, "unknown config key 'cluster.n_worker'"),
        ({"cluster": {"n_workers": "four"}}, {}, "cluster.n_workers must be an integer"),
        ({"run": {"pairs": ["eurusd", "EUR/USD"]}}, {}, "unknown pair 'EUR/USD'"),
        ({"run": {"pairs": ["eurusd;drop table x"]}}, {}, "unknown pair"),
        ({"run": {"start": "2024-07", "end": "2024-05"}}, {}, "run.end = 2024-05 is before run.start = 2024-07"),
        ({"run": {"start": "2024-13"}}, {}, "run.start = '2024-13' is not a month"),
        ({"families": {"enabled": ["bqx", "macd_magic"]}}, {}, "unknown family 'macd_magic'"),
        ({"families": {"reg": {"degree": 4}}}, {}, "families.reg.degree = 4 is not supported"),
        ({"database": {"output_schema": "x; drop"}}, {}, "database.output_schema"),
        ({}, {"BQX_CLUSTER__N_WORKERS": "lots"}, "BQX_CLUSTER__N_WORKERS='lots' is not a TOML value"),
        ({}, {"BQX_CLUSTER__NOPE": "1"}, "unknown config key 'cluster.nope'"),
        ({"cluster": {"memory_limit": "a lot"}}, {}, "cluster.memory_limit = 'a lot' is not a memory size"),
        ({"families": {"select": {"lags": [0, -60]}}}, {}, "families.select.lags must be >= 0"),
        ({"families": {"select": {"tree_rows": -1}}}, {}, "families.select.tree_rows must be >= 0"),
        ({"families": {"select": {"n_estimators": 0}}}, {}, "families.select.n_estimators must be >= 1"),
        ({"families": {"select": {"n_jobs": 0}}}, {}, "families.select.n_jobs = 0"),
        ({"families": {"select": {"leakage_future_r2": 1.5}}}, {}, "families.select.leakage_future_r2 must lie in"),
    ],
)
def test_bad_config_is_one_line_naming_key_and_fix(tmp_path, raw, env, needle):
    # (no `import tomllib` here: it is not in Python 3.10, which setup.cfg supports)
    path = tmp_path / "bad.toml"
    lines = []
    for section, values in raw.items():
        flat = {k: v for k, v in values.items() if not isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml(v)}" for k, v in flat.items()]
        for k, v in values.items():
            if isinstance(v, dict):
                lines.append(f"[{section}.{k}]")
                lines += [f"{kk} = {_toml(vv)}" for kk, vv in v.items()]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message and "fix:" in message
    assert info.value.exit_code == 2


def _toml(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_missing_config_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[cluster\nn_workers = 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, environ={})


def test_months_cross_year_ends_and_bad_months_name_their_key():
    """bqxdask.calendar (SPEC §5): the one home of month arithmetic, checked against datetime."""
    assert month_range("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert month_range("2024-07", "2024-05") == []
    assert months_before("2024-01", 1) == "2023-12" and months_before("2024-03", 14) == "2023-01"
    assert months_before("2023-12", -1) == "2024-01"
    lo, hi = month_bounds("2024-12")
    assert (lo.isoformat(), hi.isoformat()) == ("2024-12-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00")
    assert month_index("2024-01") - month_index("2023-12") == 1 and month_index("0001-01") == 12
    for bad in ("2024-13", "2024-7", "July", "2024-00"):
        with pytest.raises(ConfigError, match=f"--start = '{bad}' is not a month; fix: write it as YYYY-MM"):
            parse_month(bad, "--start")
    with pytest.raises(ConfigError, match="--end = '2024-13'"):
        month_range("2024-01", "2024-13", keys=("--start", "--end"))


def test_memory_sizes_read_as_dask_reads_them():
    assert parse_memory("2GiB", "k") == 2 * 2**30 and parse_memory("512MB", "k") == 512 * 10**6
    assert parse_memory(" 1.5 gb ", "k") == 1_500_000_000 and parse_memory(4096, "k") == 4096
    for bad in ("a lot", "-1GB", "", "GB"):
        with pytest.raises(ConfigError, match=f"cluster.memory_limit = {bad!r} is not a memory size"):
            parse_memory(bad, "cluster.memory_limit")
