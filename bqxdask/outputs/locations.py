"""Output locations are checked before any unit starts (SPEC §8, §10, §11; issue 13).

A Parquet directory or URL that cannot be created or written, or a runs directory that
cannot hold the run's log, would otherwise fail every unit on its worker with a misleading
error. This module holds the one write probe of bqxdask: it writes a small file, reads it back
and removes it, and leaves nothing behind — a local directory that does not exist yet is judged
by its nearest existing parent, so nothing is created. Its callers:

- the pipeline, before any unit starts (:func:`check_output_locations`: one-line
  :class:`~bqxdask.errors.ConfigError`, exit 2);
- ``bqxdask check``'s disk lines (:mod:`bqxdask.readiness.machine`);
- the probes on the workers of an existing scheduler (:mod:`bqxdask.readiness.probes`), where
  the client's own probe file stays in place while the workers look for it.
"""

from __future__ import annotations

import os
import posixpath
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError

PROBE = ".bqxdask-write-probe"
PROBE_BYTES = b"bqxdask probe\n"


class UnwritableLocation(Exception):
    """The probe could not write, read back or remove its file.

    ``reason`` is one line, ``where`` the directory (local) or URL (remote) it tried; ``local``
    tells which; ``not_a_directory`` when a regular file stands where a directory would be created.
    """

    def __init__(self, reason: str, where: str, local: bool, not_a_directory: bool = False) -> None:
        super().__init__(reason, where, local, not_a_directory)  # the args rebuild it after pickling
        self.reason, self.where, self.local, self.not_a_directory = reason, where, local, not_a_directory

    def __str__(self) -> str:
        if self.not_a_directory:
            return f"{self.where} is a file, not a directory"
        return f"{self.reason} in {self.where}"


@dataclass(frozen=True)
class Probe:
    """A probe file written and read back, still in place: ``remove`` it."""

    fs: Any
    path: str
    where: str
    local: bool

    def remove(self) -> None:
        try:
            self.fs.rm(self.path)
        except Exception as exc:  # any backend's own error type
            raise UnwritableLocation(
                f"cannot remove the file it wrote: {reason(exc)}", self.where, self.local
            ) from None


def is_remote(path: str) -> bool:
    """Whether ``path`` is an fsspec URL of another machine's storage (``file://`` is local)."""
    return "://" in path and not path.startswith("file://")


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` (absolute) or its nearest existing parent: where it would be created."""
    text = os.fspath(path)
    p = Path(text.removeprefix("file://")).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def write_probe(root: str) -> Probe:
    """Write and read back a probe file where ``root`` is, or would be created.

    Raises :class:`UnwritableLocation`, or ImportError/ValueError when ``root`` names a
    filesystem that is not installed or not valid.
    """
    from .parquet import filesystem

    fs, base = filesystem(root)
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    local = bool({"file", "local"} & set(protocols))
    where = root
    if local:
        existing = nearest_existing(base)
        where = base = existing.as_posix()
        if not existing.is_dir():
            raise UnwritableLocation("a file, not a directory", where, local, not_a_directory=True)
    probe = Probe(
        fs, posixpath.join(base, f"{PROBE}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"), where, local
    )
    try:
        fs.pipe_file(probe.path, PROBE_BYTES)
    except Exception as exc:
        raise UnwritableLocation(reason(exc), where, local) from None
    try:
        same = fs.cat_file(probe.path) == PROBE_BYTES
    except Exception as exc:
        same, error = False, reason(exc)
    else:
        error = "the file read back differs from what was written"
    if not same:
        try:
            probe.remove()
        except UnwritableLocation:
            pass  # the read-back failure is the news
        raise UnwritableLocation(error, where, local)
    return probe


def probe_location(root: str) -> None:
    """Write, read back and remove a probe file where ``root`` is (see :func:`write_probe`)."""
    write_probe(root).remove()


def check_output_locations(cfg: Config) -> None:
    """Raise one-line :class:`ConfigError` (exit 2) naming the first unusable output location."""
    check_location(cfg.run.runs_dir, "run.runs_dir")
    if cfg.output.write_parquet:
        check_location(cfg.output.parquet_dir, "output.parquet_dir")


def check_location(root: str, key: str) -> None:
    """A local directory (or where it would be created) or an fsspec URL where a probe file can be
    written, read back and removed; else a one-line :class:`ConfigError` naming ``key`` and the fix."""
    try:
        probe_location(root)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"{key} = {root!r} is not a usable location ({exc}); fix: a local directory, or a URL "
            "whose filesystem is installed (s3://… needs pip install 'bqxdask[s3]')"
        ) from None
    except UnwritableLocation as exc:
        if exc.not_a_directory:
            raise ConfigError(
                f"{key} = {root!r} cannot be created: {exc.where} is a file, not a directory; "
                f"fix: point {key} at a directory (or remove that file)"
            ) from None
        if exc.local:
            raise ConfigError(
                f"{key} = {root!r} cannot be written ({exc}); fix: make it writable for this user "
                f"or point {key} elsewhere"
            ) from None
        raise ConfigError(
            f"{key} = {root!r} cannot be written ({exc.reason}); fix: check the bucket/path and the "
            "credentials, or point it elsewhere"
        ) from None


def reason(exc: BaseException) -> str:
    """One line saying why an I/O call failed (``permission denied``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.errno != 0 else exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = [
    "PROBE",
    "Probe",
    "UnwritableLocation",
    "check_location",
    "check_output_locations",
    "is_remote",
    "nearest_existing",
    "probe_location",
    "write_probe",
]
