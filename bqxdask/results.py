"""What the pipeline hands from step to step: a family's values and a unit's outcome (SPEC §5, §6).

:class:`FeatureBlock` is one family's output for one stretch of time — the kernel's columns as
one float64 block (columns × rows) with their times — and it travels as it is from
``Family.compute_block`` to the COPY encoder and the Parquet writer; nobody rebuilds it.

:class:`UnitResult` is what one (family, pair, month) output came to; its :class:`Status` is
the word the summary table and ``summary.json`` print.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd


class Status(StrEnum):
    """The outcome of one output; its value is the word printed and written to ``summary.json``."""

    DONE = "done"  # computed and written
    SKIPPED = "skipped"  # a current checkpoint, or another run wrote it meanwhile (SPEC §11)
    FAILED = "failed"  # an error, named in the run's failures
    EMPTY = "empty"  # the month has no bars in the source

    @property
    def counted(self) -> bool:
        """Whether the unit's rejected bars and duplicates count in the run's totals."""
        return self in (Status.DONE, Status.SKIPPED)

    @property
    def failed(self) -> bool:
        return self in (Status.FAILED, Status.EMPTY)


@dataclass(frozen=True)
class UnitResult(Mapping[str, Any]):
    """One output's outcome; reads like the ``summary.json`` record it becomes (:meth:`as_dict`).

    ``detail`` holds the task's numbers (``rows``, ``seconds_*``, ``parquet``, …) or the ``error``,
    in the order ``summary.json`` lists them.
    """

    family: str
    pair: str
    month: str
    status: Status
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.detail.get("rows", 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "pair": self.pair,
            "month": self.month,
            "status": self.status.value,
            **self.detail,
        }

    def __getitem__(self, key: str) -> Any:
        if key in ("family", "pair", "month", "status"):
            return getattr(self, key)
        return self.detail[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return 4 + len(self.detail)


@dataclass(frozen=True)
class FeatureBlock:
    """One family's values: ``values[j, i]`` is column ``columns[j]`` at ``times[i]`` (float64, NaN undefined).

    The block is the kernels' own layout (reg fills one in place), so the Parquet writer takes
    its rows as columns and the COPY encoder its transpose as rows, both without a copy.
    """

    times: pd.DatetimeIndex
    columns: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.columns), len(self.times)):
            raise ValueError(
                f"a feature block of {len(self.columns)} columns × {len(self.times)} rows cannot hold "
                f"values of shape {self.values.shape}"
            )

    @classmethod
    def from_rows(cls, times_us: np.ndarray, columns: Sequence[str], rows: np.ndarray) -> FeatureBlock:
        """From Unix microseconds and a rows × columns array (the writers' older calling form)."""
        times = pd.DatetimeIndex(np.asarray(times_us, dtype="int64").view("datetime64[us]"), name="time")
        return cls(times.tz_localize("UTC"), tuple(columns), np.asarray(rows, dtype="float64").T)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FeatureBlock:
        """A float64 frame's values as a block: a view of its memory when it holds one block (as
        :meth:`frame` makes it)."""
        return cls(frame.index, tuple(frame.columns), frame.to_numpy(dtype="float64").T)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def times_us(self) -> np.ndarray:
        """The times as Unix microseconds (int64), as COPY and Parquet store them."""
        return self.times.as_unit("us").asi8 if len(self.times) else np.empty(0, dtype="int64")

    @property
    def rows(self) -> np.ndarray:
        """The values as rows × columns: a view, the COPY encoder's layout."""
        return self.values.T

    def tail(self, start: int) -> FeatureBlock:
        """The rows from ``start`` on (the warm-up rows before it dropped); a view."""
        return FeatureBlock(self.times[start:], self.columns, self.values[:, start:])

    def frame(self) -> pd.DataFrame:
        """The block as a DataFrame indexed by ``time``, sharing its memory."""
        return pd.DataFrame(self.values.T, index=self.times, columns=list(self.columns), copy=False)
