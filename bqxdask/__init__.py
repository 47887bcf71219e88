"""bqxdask: feature-engineering ETL for forex machine learning (PostgreSQL → Dask → PostgreSQL + Parquet)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "compute_features", "read_features"]


def __getattr__(name: str):  # lazy: `import bqxdask` stays cheap for the CLI and workers
    if name == "compute_features":
        from .features import compute_features

        return compute_features
    if name == "read_features":
        from .outputs.parquet import read_features

        return read_features
    raise AttributeError(name)
