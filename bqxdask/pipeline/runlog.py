"""Run identity, the run directory and logging (SPEC §5: ``runs/<run_id>/``).

``runs/<run_id>/`` holds ``summary.json``, ``run.log`` (everything, tracebacks included) and
the Dask ``performance_report`` HTML. The console gets one-line messages only. A logging
filter scrubs passwords and credential-bearing URLs from every record, wherever it came from.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from ..db.urls import scrub


def new_run_id() -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


class ScrubFilter(logging.Filter):
    """Remove secrets from log records (message and formatted arguments)."""

    def __init__(self, *secret_values: str | None) -> None:
        super().__init__()
        self.secrets = [s for s in secret_values if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string should not kill the run
            message = str(record.msg)
        record.msg = scrub(message, *self.secrets)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)), *self.secrets)
            record.exc_info = None
        return True


def setup_logging(run_dir: Path | None, *, verbose: bool = False, secrets_: tuple[str | None, ...] = ()) -> Path | None:
    """Console: warnings as one line; file: everything at DEBUG with tracebacks."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bqx", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG)
    scrubber = ScrubFilter(*secrets_)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(_OneLine("%(levelname)s: %(message)s"))
    console.addFilter(scrubber)
    console._bqx = True  # type: ignore[attr-defined]
    root.addHandler(console)
    for noisy in ("distributed", "bokeh", "tornado", "asyncio", "fsspec", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.WARNING)
    log_path = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "run.log"
        fh = logging.FileHandler(log_path, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.addFilter(scrubber)
        fh._bqx = True  # type: ignore[attr-defined]
        root.addHandler(fh)
    return log_path


class _OneLine(logging.Formatter):
    """Console records without tracebacks (those go to the run log)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super().format(record).splitlines()[0]
        finally:
            record.exc_info, record.exc_text = saved


def write_json(path: Path, payload: Any, *secret_values: str | None) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str)
    text = scrub(text, *secret_values)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
