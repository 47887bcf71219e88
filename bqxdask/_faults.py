"""Fault injection for the crash-safety tests (issue: kill -9, worker death, database restart).

Production code calls :func:`point` at the moments where a crash is most harmful (a Parquet
temporary file written but not renamed, rows copied but not committed …). Unless the
environment variable ``BQX_FAULT`` names that point, the call is a dictionary lookup and
nothing else. ``BQX_FAULT=<point>:<marker file>[:<seconds>]`` makes the first process that
reaches the point create the marker (containing its pid) and sleep, so a test can kill it,
its worker or the database at exactly that moment. Only the first arrival pauses (the marker
is created exclusively), so a restarted worker runs on.
"""

from __future__ import annotations

import os
import time

ENV = "BQX_FAULT"


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, rest = spec.partition(":")
    if target != name:
        return
    marker, _, seconds = rest.partition(":")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(float(seconds or 600))
