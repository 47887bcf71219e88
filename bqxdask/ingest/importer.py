"""``bqxdask import``: real bar files into ``<schema>.m1_<pair>`` (SPEC §3, §7 ``import``, §10).

Formats
-------
``histdata``
    HistData.com "Generic ASCII" M1: no header, ``YYYYMMDD HHMMSS;open;high;low;close;volume``.
    Times are EST *without* daylight saving, i.e. fixed UTC−05:00, per HistData's own spec; the
    importer always adds 5 hours. ``tz_offset`` may be omitted or given as ``-05:00``; any other
    offset is refused (a file with another offset is not a HistData file — use ``csv``/``mt4``).
``csv``
    A header row, then one bar per line. Columns (any order, case-insensitive): ``time`` (or
    ``timestamp``/``datetime``/``date``, or separate ``date`` and ``time``), ``open``, ``high``,
    ``low``, ``close`` and an optional ``volume``; other columns are ignored. The separator is sniffed from the header (``,`` ``;``
    tab ``|``). Times are ISO 8601; one carrying an offset (``Z``, ``+02:00``) is converted
    with it, a naive one is read at ``tz_offset`` (default UTC).
``mt4``
    MetaTrader 4 history export: no header, ``YYYY.MM.DD,HH:MM,open,high,low,close,volume`` in
    broker time; ``tz_offset`` (default ``+00:00``) is the broker's offset from UTC, so
    ``+02:00`` means UTC = broker time − 2 h.

Files may be plain, ``.gz`` or a ``.zip`` holding one file (HistData ships zips).

What happens to the rows
------------------------
All files are read before the database is touched (a wrong format, a missing file or a bad
offset fails early with one line naming the file, line and fix). Then, over all files together:

1. lines that cannot be parsed, and bars that violate SPEC §3 (NULL/NaN/inf/≤ 0 price,
   high < max(open, close) or low > min(open, close) beyond 1e-9 relative, negative volume)
   are *rejected* with a reason;
2. rows repeated with identical values are kept once (the extras count as *duplicate*);
3. rows that share a time but differ are all *rejected* ("conflicting duplicate time") — we
   cannot know which one is right, and SPEC §3 quarantines them;
4. with ``ask_files`` the bid and ask sides go through 1–3 separately, then the mid
   ``(bid + ask) / 2`` is taken for the times both sides have; a time only one side has is
   rejected. The counts after *read* then refer to mid bars;
5. the bars are staged through binary COPY into a temporary table and merged under a
   ``SHARE ROW EXCLUSIVE`` lock with ``UPDATE … FROM`` (changed bars) and
   ``INSERT … WHERE NOT EXISTS`` (new bars). No ``ON CONFLICT``, so a target table created by
   someone else without a primary key works too, and importing the same files twice changes
   nothing (second run: everything *unchanged*). A file without volume never overwrites a
   volume already in the table.

For one source the counts add up: read = inserted + updated + unchanged + duplicate + rejected.
"""

from __future__ import annotations

import datetime as dt
import os
import time as _time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2

from ..config import validate_identifier, validate_pair
from ..db.connect import connection, explain_db_error
from ..db.schema import source_table
from ..quality import BAR_VALUES, PRICE_COLUMNS, conflicting, price_faults
from .formats import check_files, check_format, parse_file
from .merge import merge_bars, prepare_target
from .report import (
    R_ASK_ONLY,
    R_BID_ONLY,
    R_CONFLICT,
    R_HIGH,
    R_LOW,
    R_PRICE_TEXT,
    R_PRICE_VALUE,
    R_VOLUME,
    ImportReport,
    ParsedBars,
    Rejects,
)

__all__ = ["import_files", "parse_files"]

_BAR_COLUMNS = ("time", *BAR_VALUES)


def parse_files(
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    fmt: str,
    tz_offset: str | dt.timedelta | None = None,
    ask_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> ParsedBars:
    """Read, validate and deduplicate bar files (no database): see the module docstring."""
    fmt, offset = check_format(fmt, tz_offset)
    bid_paths = check_files(files, "file")
    ask_paths = check_files(ask_files, "ask file") if ask_files is not None else None
    rejects = Rejects()
    bid, read, dup = _read_side(bid_paths, fmt, offset, rejects)
    if ask_paths is None:
        return ParsedBars(bid[list(_BAR_COLUMNS)], len(bid_paths), read, dup, rejects.counts, rejects.examples)
    ask, read_ask, dup_ask = _read_side(ask_paths, fmt, offset, rejects)
    mid = _mid(bid, ask, rejects)
    return ParsedBars(
        mid[list(_BAR_COLUMNS)],
        len(bid_paths) + len(ask_paths),
        read + read_ask,
        dup + dup_ask,
        rejects.counts,
        rejects.examples,
        mid=True,
    )


def import_files(
    url: str,
    schema: str,
    pair: str,
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    fmt: str,
    tz_offset: str | dt.timedelta | None = None,
    ask_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> ImportReport:
    """Import bar files into ``<schema>.m1_<pair>`` (created if missing); see the module docstring.

    Parameters
    ----------
    url : database URL (never printed)
    schema : source schema, e.g. ``public``
    pair : six lower-case letters, e.g. ``eurusd``
    files : one path or several; read in the order given, then sorted by time
    fmt : ``histdata``, ``csv`` or ``mt4``
    tz_offset : ``±HH:MM`` of naive file times (csv, mt4); HistData is always −05:00
    ask_files : ask-price files matching ``files`` (bid): import the mid price

    Raises
    ------
    ConfigError
        bad pair, schema, format or offset.
    SourceError
        a file is missing, unreadable or not in ``fmt``; or the target table is unusable.
    DatabaseError
        the database refused the work.
    """
    began = _time.perf_counter()
    validate_pair(pair, "--pair")
    validate_identifier(schema, "database.source_schema")
    parsed = parse_files(files, fmt, tz_offset, ask_files)
    report = ImportReport(
        pair,
        schema,
        parsed.files,
        parsed.read,
        duplicate=parsed.duplicate,
        rejected=parsed.rejected,
        rejected_reasons=dict(parsed.rejected_reasons),
        examples=dict(parsed.examples),
        mid=parsed.mid,
    )
    with connection(url, application_name="bqxdask/import") as conn:
        try:
            with conn.cursor() as cur:
                prepare_target(cur, schema, pair)
                counts = merge_bars(cur, schema, pair, parsed.bars, update_existing=True)
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise explain_db_error(exc, url, f"importing into {schema}.{source_table(pair)}") from None
    report.inserted, report.updated, report.unchanged = counts.inserted, counts.updated, counts.unchanged
    report.seconds = _time.perf_counter() - began
    return report


def _read_side(
    paths: Iterable[Path], fmt: str, offset: dt.timedelta, rejects: Rejects
) -> tuple[pd.DataFrame, int, int]:
    """All files of one side → clean bars (sorted, unique times), rows read, duplicates dropped."""
    frames, read = [], 0
    for path in paths:
        frame, n, bad_volume = parse_file(path, fmt, offset, rejects)
        frames.append(_drop_invalid(frame, bad_volume, rejects).reset_index(drop=True))
        read += n
    bars = pd.concat(frames, ignore_index=True)
    bars = bars.sort_values("time", kind="stable", ignore_index=True)
    identical = bars.duplicated(list(_BAR_COLUMNS), keep="first").to_numpy()
    bars = bars[~identical]
    conflict = conflicting(pd.Index(bars["time"]), bars)
    if conflict.any():
        first = bars[conflict].iloc[0]
        rejects.add(R_CONFLICT, conflict, f"{rejects.where(first)} ({first['time']:%Y-%m-%d %H:%M} UTC)")
        bars = bars[~conflict]
    return bars.reset_index(drop=True), read, int(identical.sum())


def _drop_invalid(frame: pd.DataFrame, bad_volume: np.ndarray, rejects: Rejects) -> pd.DataFrame:
    """Reject SPEC §3 violations (:mod:`bqxdask.quality`; the first failing reason of a row counts)
    and bad volumes."""
    faults = price_faults(frame[list(PRICE_COLUMNS)].to_numpy(dtype="float64"))
    no_number = faults.missing.any(axis=1)
    bad_value = ~no_number & (faults.infinite | faults.nonpositive).any(axis=1)
    rejected = np.zeros(len(frame), dtype=bool)
    for reason, mask in (
        (R_PRICE_TEXT, no_number),
        (R_PRICE_VALUE, bad_value),
        (R_HIGH, faults.high),
        (R_LOW, faults.low),
        (R_VOLUME, bad_volume),
    ):
        mask = mask & ~rejected
        if mask.any():
            rejects.add(reason, mask, rejects.where(frame.iloc[int(np.argmax(mask))]))
            rejected |= mask
    return frame[~rejected]


def _mid(bid: pd.DataFrame, ask: pd.DataFrame, rejects: Rejects) -> pd.DataFrame:
    """Mid bars for the times both sides have; one-sided times are rejected."""
    both = bid.merge(ask, on="time", how="outer", suffixes=("_bid", "_ask"), indicator=True, sort=True)
    for side, reason, suffix in (("left_only", R_BID_ONLY, "_bid"), ("right_only", R_ASK_ONLY, "_ask")):
        mask = (both["_merge"] == side).to_numpy()
        if mask.any():
            row = both[mask].iloc[0]
            rejects.add(reason, mask, rejects.where({"file": row[f"file{suffix}"], "line": row[f"line{suffix}"]}))
    both = both[(both["_merge"] == "both").to_numpy()]
    out = pd.DataFrame({"time": both["time"].array})
    for c in PRICE_COLUMNS:
        out[c] = (both[f"{c}_bid"].to_numpy() + both[f"{c}_ask"].to_numpy()) / 2
    out["volume"] = both["volume_bid"].fillna(both["volume_ask"]).to_numpy()
    out["file"] = both["file_bid"].to_numpy()
    out["line"] = both["line_bid"].to_numpy()
    return out
