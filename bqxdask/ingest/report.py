"""What an import did: its counts, the reasons rows were rejected and where each first occurred."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..db.schema import source_table
from ..quality import REASON_CONFLICT, REASON_HIGH, REASON_LOW

# rejection reasons (the report counts them; keep them short and stable)
R_FIELDS = "malformed line (wrong number of fields)"
R_TIME = "malformed time"
R_PRICE_TEXT = "price missing or not a number"
R_PRICE_VALUE = "price infinite or <= 0"
R_HIGH = REASON_HIGH
R_LOW = REASON_LOW
R_VOLUME = "volume not a non-negative number"
R_CONFLICT = REASON_CONFLICT
R_BID_ONLY = "time only in the bid files"
R_ASK_ONLY = "time only in the ask files"


@dataclass
class ImportReport:
    """Counts of one import. ``rejected_reasons`` maps reason → rows; ``examples`` reason → first file:line."""

    pair: str
    schema: str = "public"
    files: int = 0
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicate: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    mid: bool = False
    seconds: float = 0.0

    @property
    def table(self) -> str:
        return f"{self.schema}.{source_table(self.pair)}"

    def summary_line(self) -> str:
        """One human line, e.g. ``eurusd: read 31,500 rows from 1 file: 31,480 inserted, …``."""
        files = plural(self.files, "file")
        if self.mid:
            files += " (bid+ask -> mid)"
        line = (
            f"{self.pair}: read {self.read:,} rows from {files}: {self.inserted:,} inserted, "
            f"{self.updated:,} updated, {self.unchanged:,} unchanged, {self.duplicate:,} duplicate, "
            f"{self.rejected:,} rejected"
        )
        if self.rejected_reasons:
            why = "; ".join(
                f"{n:,} {reason} (first at {self.examples.get(reason, '?')})"
                for reason, n in sorted(self.rejected_reasons.items(), key=lambda kv: -kv[1])
            )
            line += f" ({why})"
        return line

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class ParsedBars:
    """Bars read from files, cleaned (sorted, unique times), with the bookkeeping of what was dropped.

    ``bars`` has columns time (datetime64[us, UTC]), open, high, low, close (float64) and
    volume (float64, NaN where the file has none).
    """

    bars: pd.DataFrame
    files: int
    read: int
    duplicate: int
    rejected_reasons: dict[str, int]
    examples: dict[str, str]
    mid: bool = False

    @property
    def rejected(self) -> int:
        return sum(self.rejected_reasons.values())


class Rejects:
    """Rejected rows per reason, with the first place (file:line) each reason occurred."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}
        self.names: list[str] = []

    def register(self, path: Path) -> int:
        self.names.append(path.name)
        return len(self.names) - 1

    def where(self, row: Mapping[str, object]) -> str:
        return f"{self.names[int(row['file'])]}:{int(row['line'])}"

    def add(self, reason: str, mask: np.ndarray, where: str) -> None:
        n = int(np.count_nonzero(mask))
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + n
            self.examples.setdefault(reason, where)


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``, ``1,000 rows``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
