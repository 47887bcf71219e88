"""Typed, frozen configuration: TOML file + ``BQX_*`` environment overrides (SPEC §2).

Load order, later wins:

1. the defaults written in the dataclasses below (they are the SPEC §2 defaults);
2. the TOML file given with ``--config`` (or ``$BQX_CONFIG``, or ``configs/default.toml`` when
   it exists in the working directory);
3. environment variables ``BQX_<SECTION>__<KEY>[__<SUBKEY>]`` whose value is read as a TOML
   value (``BQX_CLUSTER__N_WORKERS=4``, ``BQX_FAMILIES__REG__WINDOWS="[15, 2880]"``); a plain
   string value may be left unquoted where the key is a string;
4. ``BQX_DATABASE_URL`` for ``database.url``;
5. command-line options (``--pairs``, ``--workers`` …), applied by the CLI through
   :func:`with_overrides`.

Every problem is a :class:`~bqxdask.errors.ConfigError` with one line that names the key and
the fix; nothing has started when it is raised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PAIR_RE = re.compile(r"[a-z]{6}")
MONTH_RE = re.compile(r"(\d{4})-(\d{2})")
IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: ``database.embedded_listen_addresses``: comma-separated host names, IPv4/IPv6 addresses or ``*``
LISTEN_RE = re.compile(r"\s*[A-Za-z0-9.:*%_-]+\s*(,\s*[A-Za-z0-9.:*%_-]+\s*)*")
MEMORY_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*", re.I)
ENV_PREFIX = "BQX_"
URL_ENV = "BQX_DATABASE_URL"

CURRENCIES = ("aud", "cad", "chf", "eur", "gbp", "jpy", "nzd", "usd")
# The 28 pairs of the 8 majors, quoted the way the market quotes them.
_PRIORITY = ("eur", "gbp", "aud", "nzd", "usd", "cad", "chf", "jpy")
ALL_PAIRS: tuple[str, ...] = tuple(
    a + b for i, a in enumerate(_PRIORITY) for b in _PRIORITY[i + 1 :]
)
DEMO_PAIRS = ("eurusd", "gbpusd", "usdjpy", "audusd")


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatabaseConfig:
    """Where the bars live and where the features go."""

    url: str | None = None  #: SQLAlchemy URL; None -> the embedded PostgreSQL
    read_url: str | None = None  #: optional read replica for the source bars
    source_schema: str = "public"
    output_schema: str = "features"
    embedded_dir: str = ".bqx/pgdata"
    #: where the embedded PostgreSQL listens for TCP (PostgreSQL ``listen_addresses``); widen it
    #: only for Dask workers on other hosts. Every connection needs the generated password.
    embedded_listen_addresses: str = "127.0.0.1"
    max_connections_per_worker: int = 2  #: concurrent connections one worker may hold
    #: seconds a connection attempt may take before it counts as failed (SPEC §11)
    connect_timeout: int = 10
    #: seconds a statement may wait on a lock before the run reports who holds it (SPEC §11)
    lock_timeout: float = 30.0
    #: seconds a unit keeps waiting on a lock before it fails, naming the holder (SPEC §11)
    lock_wait_limit: float = 600.0


@dataclass(frozen=True)
class ClusterConfig:
    """The Dask cluster: a LocalCluster from these numbers, or an existing scheduler."""

    n_workers: int = 8
    threads_per_worker: int = 1
    memory_limit: str = "2GiB"
    dashboard_address: str = "127.0.0.1:8787"  #: loopback only; "0.0.0.0:8787" opens it to the network
    scheduler_address: str | None = None


@dataclass(frozen=True)
class RunConfig:
    """What to compute: pairs and an inclusive range of calendar months."""

    pairs: tuple[str, ...] = DEMO_PAIRS
    start: str = "2024-07"
    end: str = "2024-07"
    runs_dir: str = "runs"
    #: when no unit has finished for this many seconds, print what every busy worker does (SPEC §11)
    stall_seconds: float = 120.0


@dataclass(frozen=True)
class IndexConfig:
    """Baseline of the index series (SPEC §4.1): ``"first"`` or an ISO time (UTC)."""

    baseline: str = "first"


@dataclass(frozen=True)
class BqxParams:
    windows: tuple[int, ...] = (15, 30, 45, 60, 75)
    series_window: int = 15


@dataclass(frozen=True)
class BollingerParams:
    periods: tuple[int, ...] = (20, 30, 60, 120)
    k: float = 2.0


@dataclass(frozen=True)
class StatisticsParams:
    windows: tuple[int, ...] = (15, 30, 60, 120)


#: Smallest ``families.technical.warmup`` accepted. The longest memory is Wilder's period 21
#: (RSI 21 keeps 20/21 of its start-up error per row; Wilder 14 keeps 13/14, EMA 26 keeps 25/27).
#: After k rows the start-up difference in RSI is ≈ 100·R·(20/21)^k, R the ratio of the average
#: move where the partition starts to the one at the cut; §4.9 wants ≤ 1e-7·50, so
#: k ≥ (ln(2e7) + ln R)/ln(21/20) ≈ 345 + 47·log10(R). Measured on the real EURUSD, GBPUSD and
#: USDJPY bars (worst |Δ|/tolerance, always rsi_21): 4.4 at 350 rows, 0.38 at 400, 0.053 at 450,
#: 0.0018 at 500; at 1000 the recursive columns are bit-identical to the whole series.
MIN_TECHNICAL_WARMUP = 500


@dataclass(frozen=True)
class TechnicalParams:
    #: rows of history fed to TA-Lib before the first output row of a partition; recursive
    #: indicators (RSI, MACD, ADX, ATR) forget their start geometrically, and this many rows
    #: bring the partitioned result within SPEC §4.9 of the whole-series one.
    warmup: int = 1000


@dataclass(frozen=True)
class RegParams:
    windows: tuple[int, ...] = (15, 30, 45, 60, 75, 90, 150, 240, 390, 630)
    degree: int = 2


@dataclass(frozen=True)
class SelectParams:
    """Stage 3 (SPEC §9); bqxdask.select explains each choice."""

    lags: tuple[int, ...] = (0, 60)
    horizons: tuple[int, ...] = (15, 30, 45, 60, 75)
    #: also fit the control target target_vol_h{h} (future path length), where signal exists
    control: bool = True
    #: walk-forward folds before the test part (the last 15 % of rows)
    folds: int = 5
    #: leave price-level features (registry kind ``level``) out of the model
    drop_levels: bool = False
    #: |Spearman ρ| at or above which features are permuted together as one cluster
    cluster_threshold: float = 0.9
    #: false-discovery rate of the Benjamini–Hochberg correction (``significant``)
    alpha: float = 0.05
    #: blocks per fold evaluation block for the significance test
    significance_blocks: int = 10
    #: rows sampled from the rows before the test part, shared by every fold's training set
    max_train_rows: int = 50_000
    #: rows each tree is grown on (RandomForestRegressor ``max_samples``), drawn from the
    #: fold's training rows. 0: every tree on all of them.
    tree_rows: int = 3_000
    n_estimators: int = 100
    max_depth: int = 10
    #: features tried per split: "sqrt", "log2" or a share such as "0.3" (README: cost in R²)
    max_features: str = "sqrt"
    #: threads of one forest inside a task; 1, since the cluster's workers are the parallelism
    n_jobs: int = 1
    seed: int = 42
    permutation_repeats: int = 1
    #: rows sampled from each fold's evaluation block for R² and importance
    max_importance_rows: int = 2_000
    #: a feature that alone explains a target with this R² is a copy of it (leak)
    leakage_r2: float = 0.98
    #: a feature that explains this much of the future index moves beyond the past leaks
    #: (bqxdask.select.leakage explains the test)
    leakage_future_r2: float = 0.1


ALL_FAMILIES: tuple[str, ...] = (
    "bqx",
    "bollinger_rate",
    "bollinger_bqx",
    "statistics_rate",
    "statistics_bqx",
    "technical_rate",
    "technical_bqx",
    "reg_rate",
    "reg_bqx",
)


@dataclass(frozen=True)
class FamiliesConfig:
    enabled: tuple[str, ...] = ALL_FAMILIES
    bqx: BqxParams = field(default_factory=BqxParams)
    bollinger: BollingerParams = field(default_factory=BollingerParams)
    statistics: StatisticsParams = field(default_factory=StatisticsParams)
    technical: TechnicalParams = field(default_factory=TechnicalParams)
    reg: RegParams = field(default_factory=RegParams)
    select: SelectParams = field(default_factory=SelectParams)


@dataclass(frozen=True)
class OutputConfig:
    parquet_dir: str = "data/features"
    write_sql: bool = True
    write_parquet: bool = True


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    run: RunConfig = field(default_factory=RunConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    families: FamiliesConfig = field(default_factory=FamiliesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    #: where the values came from, for messages ("configs/default.toml")
    source: str = field(default="<defaults>", compare=False)

    # -- derived -------------------------------------------------------------------------
    @property
    def months(self) -> list[str]:
        """The requested months, ``YYYY-MM``, in order."""
        return month_range(self.run.start, self.run.end)

    @property
    def memory_limit_bytes(self) -> int:
        return parse_memory(self.cluster.memory_limit, "cluster.memory_limit")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with every URL reduced to something safe to print."""
        from .db.urls import redact_url

        d = self.to_dict()
        for key in ("url", "read_url"):
            if d["database"].get(key):
                d["database"][key] = redact_url(d["database"][key])
        return d


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def month_range(start: str, end: str) -> list[str]:
    y, m = parse_month(start, "run.start")
    y2, m2 = parse_month(end, "run.end")
    out = []
    while (y, m) <= (y2, m2):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def parse_month(value: str, key: str) -> tuple[int, int]:
    match = MONTH_RE.fullmatch(str(value))
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ConfigError(f"{key} = {value!r} is not a month; fix: write it as YYYY-MM, e.g. 2024-07")
    return int(match.group(1)), int(match.group(2))


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """First instant of ``month`` and of the month after it, both UTC."""
    y, m = parse_month(month, "month")
    lo = dt.datetime(y, m, 1, tzinfo=dt.timezone.utc)
    hi = dt.datetime(y + (m == 12), 1 if m == 12 else m + 1, 1, tzinfo=dt.timezone.utc)
    return lo, hi


def parse_memory(value: str | int, key: str) -> int:
    if isinstance(value, int):
        return value
    match = MEMORY_RE.fullmatch(str(value))
    if not match:
        raise ConfigError(f"{key} = {value!r} is not a memory size; fix: write e.g. \"2GiB\" or \"512MB\"")
    number, unit = float(match.group(1)), (match.group(2) or "b").lower()
    scale = {
        "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
        "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    }[unit]
    return int(number * scale)


def validate_pair(pair: str, key: str = "run.pairs") -> str:
    """Return ``pair`` if it is six lower-case letters, else raise a ConfigError naming it."""
    if not isinstance(pair, str) or not PAIR_RE.fullmatch(pair):
        raise ConfigError(
            f"{key}: unknown pair {pair!r}; fix: a pair is 6 lower-case letters such as eurusd "
            f"(the source table is m1_<pair>)"
        )
    return pair


def validate_identifier(name: str, key: str) -> str:
    if not isinstance(name, str) or not IDENT_RE.fullmatch(name):
        raise ConfigError(
            f"{key} = {name!r} is not a valid schema name; fix: use lower-case letters, digits and _"
        )
    return name


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def default_config_path() -> Path | None:
    env = os.environ.get("BQX_CONFIG")
    if env:
        return Path(env)
    candidate = Path("configs/default.toml")
    return candidate if candidate.is_file() else None


def load_config(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Load, merge and validate the configuration (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    source = "<defaults>"
    cfg_path = Path(path) if path is not None else default_config_path()
    if cfg_path is not None:
        source = str(cfg_path)
        try:
            text = cfg_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {cfg_path} does not exist; fix: pass --config with a file from configs/") from None
        except OSError as exc:
            raise ConfigError(f"config file {cfg_path} cannot be read ({exc.strerror}); fix: check its permissions") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path} is not valid TOML ({exc}); fix: correct the syntax") from None
    overrides = env_overrides(environ)
    for dotted, value in overrides:
        _set_dotted(raw, dotted, value)
    return build_config(raw, source=source)


def env_overrides(environ: Mapping[str, str]) -> list[tuple[tuple[str, ...], Any]]:
    """``BQX_*`` variables as (key path, value) pairs; the value is parsed as TOML."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        if name == URL_ENV:
            if environ[name]:
                out.append((("database", "url"), environ[name]))
            continue
        body = name[len(ENV_PREFIX) :]
        if "__" not in body:
            continue  # BQX_CONFIG and friends: not a config key
        parts = tuple(p.lower() for p in body.split("__"))
        out.append((parts, _parse_env_value(name, environ[name], parts)))
    return out


def _parse_env_value(name: str, text: str, parts: tuple[str, ...]) -> Any:
    expected = _expected_type(parts)
    wants_str = expected is str or expected == (str | None)
    if wants_str and not text.strip().startswith(('"', "'")):
        return text  # an unquoted string (a URL, an ISO time) is what the user meant
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            f"environment variable {name}={text!r} is not a TOML value; fix: write a TOML value, "
            f"e.g. {name}=4, {name}='\"4GiB\"' or {name}=\"[15, 30]\""
        ) from None


def _expected_type(parts: tuple[str, ...]) -> Any:
    cls: Any = Config
    hint: Any = None
    for part in parts:
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        hint = hints[part]
        cls = hint
    return hint


def _set_dotted(raw: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    node = raw
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(parts)}: {part} is not a section; fix: check the variable name")
        node = nxt
    node[parts[-1]] = value


def build_config(raw: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    """Turn a nested dict (parsed TOML) into a validated :class:`Config`."""
    cfg = _build(Config, raw, prefix="", source=source)
    cfg = dataclasses.replace(cfg, source=source)
    validate(cfg)
    return cfg


def with_overrides(cfg: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy of ``cfg`` with ``section={key: value}`` overrides applied and validated.

    Used by the CLI for ``--pairs`` and friends; ``None`` values are ignored.
    """
    raw = cfg.to_dict()
    for section, values in sections.items():
        for key, value in values.items():
            if value is not None:
                _set_dotted(raw, (section, *key.split(".")), value)
    return build_config(raw, source=cfg.source)


def _build(cls: type, raw: Any, *, prefix: str, source: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table; fix: write it as [{prefix.rstrip('.')}]")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = prefix + unknown[0]
        close = ", ".join(names)
        raise ConfigError(f"unknown config key '{key}' (in {source}); fix: remove it or use one of: {close}")
    kwargs = {}
    for name in names:
        if name in raw:
            kwargs[name] = _coerce(hints[name], raw[name], prefix + name, source)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=key + ".", source=source)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (type(None) in args and value in ("", "none", "None")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(inner, value, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}; fix: write e.g. {key.split('.')[-1]} = [15, 30]")
        return tuple(_coerce(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}; fix: write {key.split('.')[-1]} = true")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}; fix: write a whole number without quotes")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}; fix: write a number without quotes")
        return float(value)
    if hint is str:
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return value.isoformat()  # TOML reads an unquoted time as a datetime
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}; fix: quote it, e.g. {key.split('.')[-1]} = \"{value}\"")
        return value
    raise AssertionError(f"unsupported config type {hint} for {key}")  # pragma: no cover


def validate(cfg: Config) -> None:
    """Cross-field checks that the type system cannot express."""
    validate_identifier(cfg.database.source_schema, "database.source_schema")
    validate_identifier(cfg.database.output_schema, "database.output_schema")
    if not LISTEN_RE.fullmatch(cfg.database.embedded_listen_addresses):
        raise ConfigError(
            f"database.embedded_listen_addresses = {cfg.database.embedded_listen_addresses!r} is not a list of "
            "addresses; fix: write comma-separated host names or IP addresses, e.g. \"127.0.0.1\" or \"10.0.0.5,127.0.0.1\" (workers are handed the first)"
        )
    if cfg.database.max_connections_per_worker < 1:
        raise ConfigError("database.max_connections_per_worker must be >= 1; fix: set it to 1 or more")
    for key in ("connect_timeout", "lock_timeout", "lock_wait_limit"):
        if getattr(cfg.database, key) <= 0:
            raise ConfigError(f"database.{key} must be > 0 seconds; fix: set it to a positive number")
    if cfg.database.lock_wait_limit < cfg.database.lock_timeout:
        raise ConfigError(
            f"database.lock_wait_limit = {cfg.database.lock_wait_limit:g} is below database.lock_timeout = "
            f"{cfg.database.lock_timeout:g}; fix: make the limit at least the report threshold"
        )
    if cfg.run.stall_seconds <= 0:
        raise ConfigError("run.stall_seconds must be > 0; fix: set it to a positive number of seconds")
    if not cfg.run.pairs:
        raise ConfigError("run.pairs is empty; fix: list at least one pair, e.g. pairs = [\"eurusd\"]")
    for i, pair in enumerate(cfg.run.pairs):
        validate_pair(pair, f"run.pairs[{i}]")
    if len(set(cfg.run.pairs)) != len(cfg.run.pairs):
        raise ConfigError("run.pairs lists a pair twice; fix: list each pair once")
    start, end = parse_month(cfg.run.start, "run.start"), parse_month(cfg.run.end, "run.end")
    if end < start:
        raise ConfigError(f"run.end = {cfg.run.end} is before run.start = {cfg.run.start}; fix: swap them")
    if cfg.cluster.n_workers < 1 or cfg.cluster.threads_per_worker < 1:
        raise ConfigError("cluster.n_workers and cluster.threads_per_worker must be >= 1; fix: set them to 1 or more")
    parse_memory(cfg.cluster.memory_limit, "cluster.memory_limit")
    if cfg.index.baseline != "first":
        try:
            parse_time(cfg.index.baseline)
        except ValueError:
            raise ConfigError(
                f"index.baseline = {cfg.index.baseline!r} is neither \"first\" nor an ISO time; "
                "fix: write e.g. \"2024-07-01T00:00:00Z\""
            ) from None
    validate_families(cfg.families)


def validate_families(fam: FamiliesConfig) -> None:
    """Checks of the ``families`` section (also applied to ``compute_features(params=...)``)."""
    unknown = [f for f in fam.enabled if f not in ALL_FAMILIES]
    if unknown:
        raise ConfigError(
            f"families.enabled: unknown family {unknown[0]!r}; fix: use some of {', '.join(ALL_FAMILIES)}"
        )
    _check_windows(fam.bqx.windows, "families.bqx.windows", minimum=1)
    if fam.bqx.series_window < 1:
        raise ConfigError("families.bqx.series_window must be >= 1; fix: the SPEC default is 15")
    _check_windows(fam.bollinger.periods, "families.bollinger.periods", minimum=2)
    if not fam.bollinger.k > 0:
        raise ConfigError("families.bollinger.k must be > 0; fix: the SPEC default is 2")
    _check_windows(fam.statistics.windows, "families.statistics.windows", minimum=4)
    if fam.technical.warmup < MIN_TECHNICAL_WARMUP:
        raise ConfigError(
            f"families.technical.warmup = {fam.technical.warmup} is below {MIN_TECHNICAL_WARMUP}, too short for "
            "partitions to match the whole series within SPEC §4.9; fix: leave the default 1000"
        )
    if fam.reg.degree not in (1, 2, 3):
        raise ConfigError(f"families.reg.degree = {fam.reg.degree} is not supported; fix: use 1, 2 or 3")
    _check_windows(fam.reg.windows, "families.reg.windows", minimum=fam.reg.degree + 2)
    _check_windows(fam.select.horizons, "families.select.horizons", minimum=1)
    if any(lag < 0 for lag in fam.select.lags):
        raise ConfigError("families.select.lags must be >= 0 (a negative lag looks into the future); fix: remove it")
    sel = fam.select
    for key in ("max_train_rows", "n_estimators", "max_depth", "permutation_repeats", "max_importance_rows",
                "significance_blocks"):
        if getattr(sel, key) < 1:
            raise ConfigError(f"families.select.{key} must be >= 1, got {getattr(sel, key)}; fix: leave the default "
                              f"{getattr(SelectParams, key)}")
    if sel.folds < 2:
        raise ConfigError(f"families.select.folds must be >= 2 (fold-to-fold stability needs two), got {sel.folds}; "
                          "fix: leave the default 5")
    if sel.tree_rows < 0:
        raise ConfigError("families.select.tree_rows must be >= 0 (0: every tree on all training rows); fix: the "
                          "default is 3000")
    if sel.n_jobs == 0 or sel.n_jobs < -1:
        raise ConfigError(f"families.select.n_jobs = {sel.n_jobs}; fix: a number of cores >= 1, or -1 for all")
    for key in ("leakage_r2", "leakage_future_r2", "cluster_threshold"):
        if not 0 < getattr(sel, key) <= 1:
            raise ConfigError(f"families.select.{key} must lie in (0, 1], got {getattr(sel, key)}; fix: leave the "
                              f"default {getattr(SelectParams, key)}")
    if not 0 < sel.alpha < 1:
        raise ConfigError(f"families.select.alpha must lie in (0, 1), got {sel.alpha}; fix: e.g. 0.05")
    if sel.max_features not in ("sqrt", "log2"):
        try:
            share = float(sel.max_features)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ConfigError(f"families.select.max_features = {sel.max_features!r}; fix: \"sqrt\", \"log2\" or a "
                              "share of the features in (0, 1] written as a string, e.g. \"0.3\"")


def _check_windows(windows: tuple[int, ...], key: str, *, minimum: int) -> None:
    if not windows:
        raise ConfigError(f"{key} is empty; fix: list at least one window")
    bad = [w for w in windows if w < minimum]
    if bad:
        raise ConfigError(f"{key} contains {bad[0]}, below the minimum {minimum}; fix: use windows >= {minimum}")
    if len(set(windows)) != len(windows):
        raise ConfigError(f"{key} lists a window twice; fix: list each window once")


def parse_time(text: str) -> dt.datetime:
    """Parse an ISO time; a naive time is UTC."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def stable_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (used for config hashes)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
