"""Ingest: synthetic bars (``seed``) and real bar files (``import``) into ``<schema>.m1_<pair>``.

- :mod:`bqxdask.ingest.seed` — :func:`generate_bars` (pure) and :func:`seed_database`;
- :mod:`bqxdask.ingest.importer` — :func:`import_files` (histdata, csv, mt4; bid+ask → mid),
  :func:`parse_files` (no database) and :func:`merge_bars` (COPY-staged, idempotent upsert).

Names are resolved lazily so that ``import bqxdask.ingest`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FORMATS", "ImportReport", "SeedReport", "database_has_bars", "generate_bars", "import_files",
    "merge_bars", "parse_files", "parse_tz_offset", "seed_database",
]

_SEED = {"SeedReport", "database_has_bars", "generate_bars", "seed_database"}


def __getattr__(name: str) -> Any:
    if name in _SEED:
        from . import seed

        return getattr(seed, name)
    if name in __all__:
        from . import importer

        return getattr(importer, name)
    raise AttributeError(name)
