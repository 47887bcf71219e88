"""Output locations are checked before any unit starts (SPEC §10, §11; issue 13).

A Parquet directory or URL that cannot be created or written, or a runs directory that
cannot hold the run's log, would otherwise fail every unit on its worker with a misleading
error. The check writes and removes a small probe file and leaves nothing behind: a
directory that does not exist yet is judged by its nearest existing parent.
"""

from __future__ import annotations

import posixpath
import uuid
from pathlib import Path

from ..config import Config
from ..errors import ConfigError

PROBE = ".bqxdask-write-probe"


def check_output_locations(cfg: Config) -> None:
    """Raise one-line :class:`ConfigError` (exit 2) naming the first unusable output location."""
    check_local_dir(cfg.run.runs_dir, "run.runs_dir")
    if cfg.output.write_parquet:
        check_parquet_location(cfg.output.parquet_dir, "output.parquet_dir")


def check_local_dir(path: str, key: str) -> None:
    target = Path(path).expanduser()
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{key} = {path!r} cannot be created: {existing} is a file, not a directory; "
                          f"fix: point {key} at a directory (or remove that file)")
    probe = existing / f"{PROBE}-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{key} = {path!r} cannot be written ({_reason(exc)} in {existing}); fix: make it "
                          f"writable for this user or point {key} elsewhere") from None


def check_parquet_location(root: str, key: str) -> None:
    """A local path as :func:`check_local_dir`; an fsspec URL by writing and removing a probe."""
    from .parquet import filesystem

    try:
        fs, base = filesystem(root)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{key} = {root!r} is not a usable location ({exc}); fix: a local directory, or a URL "
                          "whose filesystem is installed (s3://… needs pip install 'bqxdask[s3]')") from None
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        check_local_dir(base, key)
        return
    probe = posixpath.join(base, f"{PROBE}-{uuid.uuid4().hex}")
    try:
        with fs.open(probe, "wb") as fh:
            fh.write(b"")
        fs.rm(probe)
    except Exception as exc:  # any backend's own error type
        raise ConfigError(f"{key} = {root!r} cannot be written ({_reason(exc)}); fix: check the bucket/path and "
                          "the credentials, or point it elsewhere") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.errno != 0 else exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["check_output_locations", "check_local_dir", "check_parquet_location"]
