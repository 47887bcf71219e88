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

The ``[families.<section>]`` parameter classes live with their families and are gathered from
:data:`bqxdask.features.registry.SECTIONS`; the generic coercion of TOML values into the
dataclasses is :mod:`bqxdask.coerce`; months are :mod:`bqxdask.calendar`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calendar import check_month, month_range
from .coerce import build_dataclass, set_dotted, type_at
from .errors import ConfigError
from .features import registry
from .features.params import check_windows

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PAIR_RE = re.compile(r"[a-z]{6}")
IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: ``database.embedded_listen_addresses``: comma-separated host names, IPv4/IPv6 addresses or ``*``
LISTEN_RE = re.compile(r"\s*[A-Za-z0-9.:*%_-]+\s*(,\s*[A-Za-z0-9.:*%_-]+\s*)*")
ENV_PREFIX = "BQX_"
URL_ENV = "BQX_DATABASE_URL"

CURRENCIES = ("aud", "cad", "chf", "eur", "gbp", "jpy", "nzd", "usd")
# The 28 pairs of the 8 majors, quoted the way the market quotes them.
_PRIORITY = ("eur", "gbp", "aud", "nzd", "usd", "cad", "chf", "jpy")
ALL_PAIRS: tuple[str, ...] = tuple(a + b for i, a in enumerate(_PRIORITY) for b in _PRIORITY[i + 1 :])
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


#: every feature family, in SPEC §4 order (the registry's)
ALL_FAMILIES: tuple[str, ...] = registry.NAMES

#: ``[families]``: ``enabled``, one section per family parameter class of the registry
#: (``bqx``, ``bollinger``, ``statistics``, ``technical``, ``reg``) and ``select`` (stage 3)
FamiliesConfig = dataclasses.make_dataclass(
    "FamiliesConfig",
    [
        ("enabled", tuple[str, ...], field(default=ALL_FAMILIES)),
        *((section, params, field(default_factory=params)) for section, params in registry.SECTIONS),
        ("select", SelectParams, field(default_factory=SelectParams)),
    ],
    frozen=True,
)
FamiliesConfig.__module__ = __name__  # (make_dataclass's own ``module=`` needs Python 3.12) for pickling
FamiliesConfig.__doc__ = "The ``[families]`` section: which families run, and the parameters of each."


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
def parse_memory(value: str | int, key: str) -> int:
    """A memory size (``"2GiB"``, ``"512MB"``, bytes as an integer) in bytes, as Dask reads ``memory_limit``."""
    if isinstance(value, int):
        return value
    from dask.utils import parse_bytes  # on use: `import dask` is not free for every CLI start

    text = str(value)
    try:  # parse_bytes reads "" and "GB" as 1 byte and 1 GB: a size starts with its number
        size = parse_bytes(text) if re.match(r"\s*\d", text) else -1
    except (ValueError, TypeError):
        size = -1
    if size < 0:
        raise ConfigError(f'{key} = {value!r} is not a memory size; fix: write e.g. "2GiB" or "512MB"')
    return size


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
        raise ConfigError(f"{key} = {name!r} is not a valid schema name; fix: use lower-case letters, digits and _")
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
            raise ConfigError(
                f"config file {cfg_path} does not exist; fix: pass --config with a file from configs/"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"config file {cfg_path} cannot be read ({exc.strerror}); fix: check its permissions"
            ) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path} is not valid TOML ({exc}); fix: correct the syntax") from None
    overrides = env_overrides(environ)
    for dotted, value in overrides:
        set_dotted(raw, dotted, value)
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
    expected = type_at(Config, parts)
    wants_str = expected is str or expected == (str | None)
    if wants_str and not text.strip().startswith(('"', "'")):
        return text  # an unquoted string (a URL, an ISO time) is what the user meant
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            f"environment variable {name}={text!r} is not a TOML value; fix: write a TOML value, "
            f'e.g. {name}=4, {name}=\'"4GiB"\' or {name}="[15, 30]"'
        ) from None


def build_config(raw: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    """Turn a nested dict (parsed TOML) into a validated :class:`Config`."""
    cfg = build_dataclass(Config, raw, prefix="", source=source)
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
                set_dotted(raw, (section, *key.split(".")), value)
    return build_config(raw, source=cfg.source)


def families_config(params: Mapping[str, Any] | Any = None) -> Any:
    """The ``families`` section with ``params`` (a dict like the TOML section) applied, checked.

    A :data:`FamiliesConfig` is checked as it is; ``None`` gives the defaults. Used by
    ``compute_features(params=...)``.
    """
    fam = (
        params
        if isinstance(params, FamiliesConfig)
        else build_dataclass(FamiliesConfig, dict(params or {}), prefix="families.", source="params")
    )
    validate_families(fam)
    return fam


def validate(cfg: Config) -> None:
    """Cross-field checks that the type system cannot express."""
    validate_identifier(cfg.database.source_schema, "database.source_schema")
    validate_identifier(cfg.database.output_schema, "database.output_schema")
    if not LISTEN_RE.fullmatch(cfg.database.embedded_listen_addresses):
        raise ConfigError(
            f"database.embedded_listen_addresses = {cfg.database.embedded_listen_addresses!r} is not a list of "
            'addresses; fix: write comma-separated host names or IP addresses, e.g. "127.0.0.1" or "10.0.0.5,127.0.0.1" (workers are handed the first)'
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
        raise ConfigError('run.pairs is empty; fix: list at least one pair, e.g. pairs = ["eurusd"]')
    for i, pair in enumerate(cfg.run.pairs):
        validate_pair(pair, f"run.pairs[{i}]")
    if len(set(cfg.run.pairs)) != len(cfg.run.pairs):
        raise ConfigError("run.pairs lists a pair twice; fix: list each pair once")
    start, end = check_month(cfg.run.start, "run.start"), check_month(cfg.run.end, "run.end")
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
                f'index.baseline = {cfg.index.baseline!r} is neither "first" nor an ISO time; '
                'fix: write e.g. "2024-07-01T00:00:00Z"'
            ) from None
    validate_families(cfg.families)


def validate_families(fam: Any) -> None:
    """Checks of the ``families`` section (a :data:`FamiliesConfig`): each family's own, then stage 3's."""
    registry.check_names(fam.enabled, "families.enabled")
    for section, _ in registry.SECTIONS:
        getattr(fam, section).check(f"families.{section}")
    check_windows(fam.select.horizons, "families.select.horizons", minimum=1)
    if any(lag < 0 for lag in fam.select.lags):
        raise ConfigError("families.select.lags must be >= 0 (a negative lag looks into the future); fix: remove it")
    sel = fam.select
    for key in (
        "max_train_rows",
        "n_estimators",
        "max_depth",
        "permutation_repeats",
        "max_importance_rows",
        "significance_blocks",
    ):
        if getattr(sel, key) < 1:
            raise ConfigError(
                f"families.select.{key} must be >= 1, got {getattr(sel, key)}; fix: leave the default "
                f"{getattr(SelectParams, key)}"
            )
    if sel.folds < 2:
        raise ConfigError(
            f"families.select.folds must be >= 2 (fold-to-fold stability needs two), got {sel.folds}; "
            "fix: leave the default 5"
        )
    if sel.tree_rows < 0:
        raise ConfigError(
            "families.select.tree_rows must be >= 0 (0: every tree on all training rows); fix: the default is 3000"
        )
    if sel.n_jobs == 0 or sel.n_jobs < -1:
        raise ConfigError(f"families.select.n_jobs = {sel.n_jobs}; fix: a number of cores >= 1, or -1 for all")
    for key in ("leakage_r2", "leakage_future_r2", "cluster_threshold"):
        if not 0 < getattr(sel, key) <= 1:
            raise ConfigError(
                f"families.select.{key} must lie in (0, 1], got {getattr(sel, key)}; fix: leave the "
                f"default {getattr(SelectParams, key)}"
            )
    if not 0 < sel.alpha < 1:
        raise ConfigError(f"families.select.alpha must lie in (0, 1), got {sel.alpha}; fix: e.g. 0.05")
    if sel.max_features not in ("sqrt", "log2"):
        try:
            share = float(sel.max_features)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ConfigError(
                f'families.select.max_features = {sel.max_features!r}; fix: "sqrt", "log2" or a '
                'share of the features in (0, 1] written as a string, e.g. "0.3"'
            )


def parse_time(text: str) -> dt.datetime:
    """Parse an ISO time; a naive time is UTC."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
