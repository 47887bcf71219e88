"""Live progress in a terminal, plain lines elsewhere, and the end-of-run summary table (SPEC §5)."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from dask.utils import format_time

from ..results import Status


class Progress:
    """``units done/total · rows/s · ETA`` — redrawn in place on a TTY, every ~10 % otherwise."""

    def __init__(self, total: int, label: str = "features", stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.done = 0
        self.failed = 0
        self.rows = 0
        self._last_plain = -1
        self._note = ""

    def note(self, text: str) -> None:
        """Show ``text`` after the counters until the next unit ends (a wait, say: SPEC §11).

        On a terminal the line is redrawn with it; elsewhere the caller has logged it already.
        """
        self._note = text
        if self.tty:
            self._draw()

    def advance(self, rows: int = 0, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        self.rows += rows
        self._draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        eta = (elapsed / self.done) * (self.total - self.done) if self.done else 0.0
        failed = f" · {self.failed} failed" if self.failed else ""
        note = f" · {self._note}" if self._note else ""
        return (
            f"[{self.label}] {self.done}/{self.total} units · {self.rows:,} rows · {rate:,.0f} rows/s"
            f" · elapsed {format_time(elapsed)} · ETA {format_time(eta)}{failed}{note}"
        )

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            return
        step = max(1, self.total // 10)
        if self.done == self.total or self.done // step != self._last_plain:
            self._last_plain = self.done // step
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


def summary_rows(results: Iterable[Mapping[str, Any]], families: Iterable[str]) -> list[dict[str, Any]]:
    """Per family: units done/skipped/failed, rows, task seconds, rows/s."""
    table: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"done": 0, "skipped": 0, "failed": 0, "rows": 0, "seconds": 0.0}
    )
    for fam in families:
        table[fam]  # keep SPEC order
    for r in results:
        row = table[r["family"]]
        status = Status(r["status"])
        row["failed" if status.failed else status.value] += 1
        if status is Status.DONE:
            row["rows"] += int(r.get("rows", 0))
            row["seconds"] += float(r.get("seconds", 0.0))
    out = []
    for fam, row in table.items():
        rate = row["rows"] / row["seconds"] if row["seconds"] > 0 else 0.0
        out.append({"family": fam, **row, "rows_per_s": rate})
    return out


def format_summary(rows: list[dict[str, Any]], *, wall: float, rejected: int, duplicates: int) -> str:
    head = f"{'family':<18}{'done':>6}{'skipped':>9}{'failed':>8}{'rows':>12}{'task s':>9}{'rows/s':>12}"
    lines = [head, "-" * len(head)]
    tot = {"done": 0, "skipped": 0, "failed": 0, "rows": 0, "seconds": 0.0}
    for r in rows:
        lines.append(
            f"{r['family']:<18}{r['done']:>6}{r['skipped']:>9}{r['failed']:>8}{r['rows']:>12,}"
            f"{r['seconds']:>9.1f}{r['rows_per_s']:>12,.0f}"
        )
        for k in tot:
            tot[k] += r[k]
    lines.append("-" * len(head))
    rate = tot["rows"] / wall if wall > 0 else 0.0
    lines.append(
        f"{'total':<18}{tot['done']:>6}{tot['skipped']:>9}{tot['failed']:>8}{tot['rows']:>12,}"
        f"{tot['seconds']:>9.1f}{rate:>12,.0f}  (rows/s over wall time {wall:.1f}s)"
    )
    lines.append(
        f"rejected bars (quarantined) in the months computed: {rejected:,} · identical duplicates "
        f"dropped: {duplicates:,} (details: <output_schema>.rejected_bars)"
    )
    return "\n".join(lines)
