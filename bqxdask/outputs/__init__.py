"""Output writers and readers other than SQL (Parquet)."""
