"""Error hierarchy.

Every error a user can meet is a :class:`BqxError`: its message is one line that names the
object (key, table, column, pair, file) and the fix. The CLI prints ``error: <message>`` and
exits with :attr:`BqxError.exit_code`; the traceback goes to the run log only.

The exceptions keep their arguments in ``args`` so that they survive pickling across Dask
workers (a custom ``__init__`` with keyword-only arguments would not).
"""

from __future__ import annotations


class BqxError(Exception):
    """Base class: a failure with a one-line, user-facing message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class ConfigError(BqxError):
    """Invalid configuration or arguments, detected before any work starts (exit code 2)."""

    exit_code = 2


class DatabaseError(BqxError):
    """The database is unreachable, refuses us, or lacks an object we need."""


class ConnectionFailed(DatabaseError):
    """The server cannot be reached (yet): down, restarting, wrong host or credentials."""


class DatabaseUnavailable(DatabaseError):
    """The database stayed unreachable through every retry: the run stops (SPEC §11)."""


class SourceError(BqxError):
    """Source bars are missing or unusable (missing table or column, empty month)."""

    exit_code = 2


class OutputError(BqxError):
    """An output (table, Parquet file, checkpoint) is corrupt or cannot be written."""


class LeakageError(BqxError):
    """Stage 3 found a feature that carries information from after bar t."""
