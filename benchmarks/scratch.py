"""The pipeline benchmark's sizes and its scratch database: what is run, where, with which config.

The benchmark starts its own embedded PostgreSQL in a temporary directory (destroyed at the
end) and seeds ``SRC`` there; every run writes into an output schema of its own, dropped
after it (:meth:`Bench.cleanup`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from psycopg2 import sql

from bqxdask.config import ALL_FAMILIES, ClusterConfig, build_config
from bqxdask.db.connect import connect
from bqxdask.db.embedded import EmbeddedPostgres

SRC = "bench_src"


@dataclass(frozen=True)
class Setup:
    """The sizes of one benchmark: full (``make bench``) or quick (the smoke test)."""

    pairs: tuple[str, ...]
    seed_start: str
    seed_end: str
    start: str
    end: str
    families: tuple[str, ...]
    scale_months: tuple[tuple[str, str], ...]  # (start, end) of the 1×, 2×, 4× runs
    one_worker_scale: int  # index into scale_months for the 1-vs-2-workers comparison
    repeat_run: int
    repeat_floor: int
    sample_rows: int
    insert_rows: int
    cli: bool = True
    repeat_small: int = 3  # best-of for the cheap measurements (plan, reads, one unit alone)


FULL = Setup(
    pairs=("eurusd", "usdjpy"),
    seed_start="2024-06",
    seed_end="2024-10",
    start="2024-07",
    end="2024-09",
    families=ALL_FAMILIES,
    scale_months=(("2024-07", "2024-07"), ("2024-07", "2024-08"), ("2024-07", "2024-10")),
    one_worker_scale=1,
    repeat_run=2,
    repeat_floor=2,
    sample_rows=2000,
    insert_rows=2000,
)
QUICK = Setup(
    pairs=("eurusd",),
    seed_start="2024-06",
    seed_end="2024-08",
    start="2024-07",
    end="2024-07",
    families=("bqx", "statistics_bqx", "technical_rate", "reg_rate"),
    scale_months=(("2024-07", "2024-07"), ("2024-07", "2024-08")),
    one_worker_scale=0,
    repeat_run=1,
    repeat_floor=1,
    sample_rows=150,
    insert_rows=150,
    cli=False,
    repeat_small=1,
)


def execute(url: str, *statements: sql.Composable | str) -> None:
    """Statements in autocommit (VACUUM, CHECKPOINT and DDL between measurements)."""
    conn = connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def drop_schema(url: str, schema: str) -> None:
    execute(url, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class Bench:
    """One benchmark: its sizes, its scratch folder and server, the environment it started with."""

    setup: Setup
    tmp: Path
    url: str
    pg: EmbeddedPostgres
    environ: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def config(self, tag: str, start: str, end: str, *, workers: int = 2):
        return build_config(self.raw_config(tag, start, end, workers=workers), source="bench_pipeline")

    def raw_config(self, tag: str, start: str, end: str, *, workers: int = 2) -> dict:
        """The config of one run as TOML would give it: its own output schema and Parquet folder."""
        return {
            "database": {"url": self.url, "source_schema": SRC, "output_schema": f"out_{tag}"},
            "cluster": {
                "n_workers": workers,
                "threads_per_worker": 1,
                "memory_limit": ClusterConfig().memory_limit,
                "dashboard_address": ":0",
            },
            "run": {"pairs": list(self.setup.pairs), "start": start, "end": end, "runs_dir": str(self.tmp / "runs")},
            "output": {"parquet_dir": str(self.tmp / f"parquet_{tag}")},
            "families": {"enabled": list(self.setup.families)},
        }

    def fresh_tag(self, name: str) -> str:
        self.counter += 1
        return f"{name}{self.counter}"

    def cleanup(self, cfg) -> None:
        drop_schema(self.url, cfg.database.output_schema)
        shutil.rmtree(cfg.output.parquet_dir, ignore_errors=True)

    def checkpoint(self) -> None:
        execute(self.url, "CHECKPOINT")


def write_config(cfg, path: Path) -> None:
    """``cfg`` as the TOML file ``bqxdask features --config`` reads (the sections a run uses)."""
    d = cfg.to_dict()
    doc = {
        section: {k: v for k, v in d[section].items() if v is not None}
        for section in ("database", "cluster", "run", "output")
    }
    doc["families"] = {"enabled": list(d["families"]["enabled"])}
    # database.url carries the embedded server's password: readable by this user only (§11)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(doc, fh)
    os.chmod(path, 0o600)
