"""Ingest: synthetic bars (``seed``) and real bar files (``import``) into ``<schema>.m1_<pair>``.

- :mod:`bqxdask.ingest.seed` — :func:`generate_bars` (pure) and :func:`seed_database`;
- :mod:`bqxdask.ingest.importer` — :func:`import_files` (histdata, csv, mt4; bid+ask → mid) and
  :func:`parse_files` (no database), built on
  :mod:`~bqxdask.ingest.formats` (the file formats), :mod:`~bqxdask.ingest.merge`
  (:func:`merge_bars`: COPY-staged, idempotent upsert) and :mod:`~bqxdask.ingest.report`
  (counts and rejection reasons).

Names are resolved lazily so that ``import bqxdask.ingest`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FORMATS",
    "ImportReport",
    "SeedReport",
    "database_has_bars",
    "generate_bars",
    "import_files",
    "merge_bars",
    "parse_files",
    "parse_tz_offset",
    "seed_database",
]

#: where each name lives
_HOME = {
    "SeedReport": "seed",
    "database_has_bars": "seed",
    "generate_bars": "seed",
    "seed_database": "seed",
    "import_files": "importer",
    "parse_files": "importer",
    "FORMATS": "formats",
    "parse_tz_offset": "formats",
    "merge_bars": "merge",
    "ImportReport": "report",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(name)
