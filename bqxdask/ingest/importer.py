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

import csv
import dataclasses
import datetime as dt
import gzip
import io
import os
import re
import time as _time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from ..config import validate_identifier, validate_pair
from ..db.connect import connection, explain_db_error, qualified, table_columns, table_exists
from ..db.schema import create_source_table, source_table
from ..db.writer import copy_bars
from ..errors import ConfigError, SourceError

__all__ = [
    "FORMATS", "ImportReport", "MergeCounts", "ParsedBars", "import_files", "merge_bars",
    "parse_files", "parse_tz_offset", "prepare_target",
]

FORMATS = ("histdata", "csv", "mt4")
HISTDATA_OFFSET = dt.timedelta(hours=-5)
PRICE_COLUMNS = ("open", "high", "low", "close")
_BAR_COLUMNS = ("time", *PRICE_COLUMNS, "volume")
REL_TOL = 1e-9  #: SPEC §3: OHLC consistency is checked beyond this relative tolerance

# rejection reasons (the report counts them; keep them short and stable)
R_FIELDS = "malformed line (wrong number of fields)"
R_TIME = "malformed time"
R_PRICE_TEXT = "price missing or not a number"
R_PRICE_VALUE = "price infinite or <= 0"
R_HIGH = "high < max(open, close)"
R_LOW = "low > min(open, close)"
R_VOLUME = "volume not a non-negative number"
R_CONFLICT = "conflicting duplicate time"
R_BID_ONLY = "time only in the bid files"
R_ASK_ONLY = "time only in the ask files"

_TZ_RE = re.compile(r"([+-])(\d{2}):(\d{2})")
_ISO_AWARE = r"(?:Z|[+-]\d{2}:?\d{2})$"
_TIME_NAMES = ("time", "timestamp", "datetime", "date")
_SEPARATORS = (",", ";", "\t", "|")
_EXPECTED = {
    "histdata": "YYYYMMDD HHMMSS;open;high;low;close;volume",
    "mt4": "YYYY.MM.DD,HH:MM,open,high,low,close,volume",
    "csv": "a header with time, open, high, low, close[, volume], then ISO times",
}
_STAGE = "bqx_ingest_stage"


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------
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
        files = _plural(self.files, "file")
        if self.mid:
            files += " (bid+ask -> mid)"
        line = (f"{self.pair}: read {self.read:,} rows from {files}: {self.inserted:,} inserted, "
                f"{self.updated:,} updated, {self.unchanged:,} unchanged, {self.duplicate:,} duplicate, "
                f"{self.rejected:,} rejected")
        if self.rejected_reasons:
            why = "; ".join(f"{n:,} {reason} (first at {self.examples.get(reason, '?')})"
                            for reason, n in sorted(self.rejected_reasons.items(), key=lambda kv: -kv[1]))
            line += f" ({why})"
        return line

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MergeCounts:
    """What :func:`merge_bars` did with the staged bars."""

    inserted: int
    updated: int
    unchanged: int


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


class _Rejects:
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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def parse_tz_offset(value: str | dt.timedelta | None, *, default: dt.timedelta | None = dt.timedelta(0)) -> dt.timedelta | None:
    """``±HH:MM`` → timedelta (UTC = local − offset); ``None`` → ``default``; else ConfigError."""
    if value is None:
        return default
    if isinstance(value, dt.timedelta):
        offset = value
    else:
        match = _TZ_RE.fullmatch(str(value).strip())
        if not match or int(match.group(3)) >= 60:
            raise ConfigError(f"--tz-offset {value!r} is not ±HH:MM; fix: write e.g. --tz-offset +02:00 or -05:00")
        sign = -1 if match.group(1) == "-" else 1
        offset = sign * dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    if abs(offset) > dt.timedelta(hours=14):
        raise ConfigError(f"--tz-offset {value!r} is beyond ±14:00; fix: give the broker's UTC offset, e.g. +02:00")
    return offset


def parse_files(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], fmt: str,
                tz_offset: str | dt.timedelta | None = None,
                ask_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> ParsedBars:
    """Read, validate and deduplicate bar files (no database): see the module docstring."""
    fmt, offset = _check_format(fmt, tz_offset)
    bid_paths = _check_files(files, "file")
    ask_paths = _check_files(ask_files, "ask file") if ask_files is not None else None
    rejects = _Rejects()
    bid, read, dup = _read_side(bid_paths, fmt, offset, rejects)
    if ask_paths is None:
        return ParsedBars(bid[list(_BAR_COLUMNS)], len(bid_paths), read, dup, rejects.counts, rejects.examples)
    ask, read_ask, dup_ask = _read_side(ask_paths, fmt, offset, rejects)
    mid = _mid(bid, ask, rejects)
    return ParsedBars(mid[list(_BAR_COLUMNS)], len(bid_paths) + len(ask_paths), read + read_ask,
                      dup + dup_ask, rejects.counts, rejects.examples, mid=True)


def import_files(url: str, schema: str, pair: str,
                 files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], fmt: str,
                 tz_offset: str | dt.timedelta | None = None,
                 ask_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> ImportReport:
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
    report = ImportReport(pair, schema, parsed.files, parsed.read, duplicate=parsed.duplicate,
                          rejected=parsed.rejected, rejected_reasons=dict(parsed.rejected_reasons),
                          examples=dict(parsed.examples), mid=parsed.mid)
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


def prepare_target(cur: psycopg2.extensions.cursor, schema: str, pair: str) -> bool:
    """Create ``<schema>.m1_<pair>`` if missing and check its columns; return whether it has volume."""
    table = source_table(pair)
    if not table_exists(cur, schema, table):
        create_source_table(cur, schema, pair)
    cols = table_columns(cur, schema, table)
    if cols.get("time") not in ("timestamp with time zone", "timestamp without time zone"):
        raise SourceError(
            f"{schema}.{table}.time is {cols.get('time', 'missing')}; fix: the table needs a timestamptz "
            f"column time (drop or rename the table and import again to have it created)"
        )
    for col in PRICE_COLUMNS:
        if cols.get(col) not in ("double precision", "numeric", "real"):
            raise SourceError(
                f"{schema}.{table}.{col} is {cols.get(col, 'missing')}; fix: the table needs a double precision "
                f"column {col} (drop or rename the table and import again to have it created)"
            )
    return "volume" in cols


def merge_bars(cur: psycopg2.extensions.cursor, schema: str, pair: str, bars: pd.DataFrame,
               *, update_existing: bool) -> MergeCounts:
    """Merge clean bars (unique times) into ``<schema>.m1_<pair>`` through a COPY-staged temp table.

    ``update_existing=True`` (import): bars whose values differ from the table's are updated.
    ``update_existing=False`` (seed): only times absent from the table are inserted.
    Works without a primary key on the target; the caller commits.
    """
    target = qualified(schema, source_table(pair))
    cols = table_columns(cur, schema, source_table(pair))
    has_volume = "volume" in cols
    if not update_existing and len(bars) and _copy_compatible(cols) and bars["volume"].notna().all():
        # fast path (seed into an empty range): COPY straight into the table, no staging
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE time >= %s AND time <= %s)").format(target),
                    (bars["time"].min().to_pydatetime(), bars["time"].max().to_pydatetime()))
        if not cur.fetchone()[0]:
            copy_bars(cur, target, bars)
            return MergeCounts(len(bars), 0, 0)
    cur.execute(sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {} (time timestamptz NOT NULL, open float8, high float8,"
        " low float8, close float8, volume bigint) ON COMMIT DELETE ROWS"
    ).format(sql.Identifier(_STAGE)))
    cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_STAGE)))
    copy_bars(cur, sql.Identifier(_STAGE), bars)
    staged = len(bars)
    if not staged:
        return MergeCounts(0, 0, 0)
    cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(_STAGE)))
    # SHARE ROW EXCLUSIVE: readers go on, a concurrent import or seed of the same table waits
    cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
    stage = sql.Identifier(_STAGE)
    updated = 0
    if update_existing:
        prices = sql.SQL(", ").join(sql.Identifier(c) for c in PRICE_COLUMNS)
        s_prices = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in PRICE_COLUMNS)
        t_prices = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in PRICE_COLUMNS)
        if has_volume:  # -1 marks "no volume in the file": keep the table's
            set_cols = sql.SQL("({}, volume) = ({}, COALESCE(NULLIF(s.volume, -1), t.volume))").format(prices, s_prices)
            differs = sql.SQL("(({}) IS DISTINCT FROM ({}) OR (s.volume <> -1 AND t.volume IS DISTINCT FROM s.volume))"
                              ).format(t_prices, s_prices)
        else:
            set_cols = sql.SQL("({}) = ({})").format(prices, s_prices)
            differs = sql.SQL("({}) IS DISTINCT FROM ({})").format(t_prices, s_prices)
        cur.execute(sql.SQL(
            "WITH u AS (UPDATE {target} AS t SET {set_cols} FROM {stage} AS s"
            " WHERE t.time = s.time AND {differs} RETURNING s.time)"
            " SELECT count(DISTINCT time) FROM u"
        ).format(target=target, set_cols=set_cols, stage=stage, differs=differs))
        updated = int(cur.fetchone()[0])
    columns = ["time", *PRICE_COLUMNS] + (["volume"] if has_volume else [])
    values = [sql.SQL("s.{}").format(sql.Identifier(c)) for c in ["time", *PRICE_COLUMNS]]
    if has_volume:
        values.append(sql.SQL("COALESCE(NULLIF(s.volume, -1), 0)"))
    cur.execute(sql.SQL(
        "INSERT INTO {target} ({cols}) SELECT {values} FROM {stage} AS s"
        " WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.time = s.time)"
    ).format(target=target, cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
             values=sql.SQL(", ").join(values), stage=stage))
    inserted = cur.rowcount
    cur.execute(sql.SQL("TRUNCATE {}").format(stage))
    return MergeCounts(inserted, updated, staged - inserted - updated)


# --------------------------------------------------------------------------------------------
# Arguments and files
# --------------------------------------------------------------------------------------------
def _check_format(fmt: str, tz_offset: str | dt.timedelta | None) -> tuple[str, dt.timedelta]:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is unknown; fix: use one of {', '.join(FORMATS)}")
    if fmt == "histdata":
        offset = parse_tz_offset(tz_offset, default=HISTDATA_OFFSET)
        if offset != HISTDATA_OFFSET:
            raise ConfigError(
                f"--tz-offset {tz_offset} does not apply to HistData files, which are fixed UTC-05:00 "
                "(EST without daylight saving); fix: drop --tz-offset, or use --format csv/mt4 for other files"
            )
        return fmt, offset
    return fmt, parse_tz_offset(tz_offset)


def _check_files(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None, what: str) -> list[Path]:
    if files is None or isinstance(files, (str, os.PathLike)):
        files = [] if files is None else [files]
    paths = [Path(f) for f in files]
    if not paths:
        raise ConfigError(f"no {what} given; fix: name at least one bar file")
    for path in paths:
        if not path.exists():
            raise SourceError(f"{what} {path} does not exist; fix: check the path")
        if not path.is_file():
            raise SourceError(f"{what} {path} is not a file; fix: name the bar files themselves, e.g. {path}/*.csv")
        if not os.access(path, os.R_OK):
            raise SourceError(f"{what} {path} cannot be read (permission denied); fix: check its permissions")
    return paths


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise SourceError(f"{path} is a zip of {len(members)} files; fix: unzip it and import the bar files")
                raw = zf.read(members[0])
    except OSError as exc:
        raise SourceError(f"{path} cannot be read ({exc.strerror or exc}); fix: check the file") from None
    except (zipfile.BadZipFile, EOFError, gzip.BadGzipFile) as exc:
        raise SourceError(f"{path} is a damaged archive ({exc}); fix: download it again") from None
    if b"\x00" in raw[:65536]:
        raise SourceError(f"{path} is a binary file, not a text bar file; fix: export the bars as text (csv)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path} is not UTF-8 text (byte {exc.start}); fix: export the bars as plain text") from None


def _guess_format(line: str) -> str | None:
    text = line.strip()
    if re.match(r"\d{8} \d{6};", text):
        return "histdata"
    if re.match(r"\d{4}\.\d{2}\.\d{2},\d{2}:\d{2}", text):
        return "mt4"
    if (re.search(r"[a-z]", text, re.I) and "open" in text.lower()) or re.match(r"\d{4}-\d{2}-\d{2}[ T]\d", text):
        return "csv"
    return None


def _wrong_format(path: Path, line_no: int, line: str, fmt: str, why: str, first_line: str = "") -> SourceError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    guess = _guess_format(first_line or line)
    if guess and guess != fmt:
        fix = f"this looks like a {guess} file: use --format {guess}"
    else:
        fix = f"check the file; --format {fmt} expects {_EXPECTED[fmt]}"
    return SourceError(f"{path} line {line_no}: {shown!r} is not a {fmt} bar ({why}); fix: {fix}")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def _read_side(paths: Iterable[Path], fmt: str, offset: dt.timedelta, rejects: _Rejects) -> tuple[pd.DataFrame, int, int]:
    """All files of one side → clean bars (sorted, unique times), rows read, duplicates dropped."""
    frames, read = [], 0
    for path in paths:
        frame, n = _parse_file(path, fmt, offset, rejects)
        frames.append(frame)
        read += n
    bars = pd.concat(frames, ignore_index=True)
    bars = bars.sort_values("time", kind="stable", ignore_index=True)
    identical = bars.duplicated(["time", *PRICE_COLUMNS, "volume"], keep="first").to_numpy()
    bars = bars[~identical]
    conflict = bars.duplicated("time", keep=False).to_numpy()
    if conflict.any():
        first = bars[conflict].iloc[0]
        rejects.add(R_CONFLICT, conflict, f"{rejects.where(first)} ({first['time']:%Y-%m-%d %H:%M} UTC)")
        bars = bars[~conflict]
    return bars.reset_index(drop=True), read, int(identical.sum())


def _split_fields(text: str, sep: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One row of string fields per line ('' where a line is short) and each line's field count.

    The C parser of :func:`pandas.read_csv` does the splitting (several times faster than
    ``str.split``); the field counts come from counting separators per line with numpy, so a
    line with too few or too many fields is noticed even though the parser pads short lines.
    """
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if len(raw) and raw[-1] != 10:
        ends = np.append(ends, len(raw))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    seps = np.concatenate([[0], np.cumsum(raw == ord(sep))])
    counts = seps[ends] - seps[starts]
    if not len(ends):
        return pd.DataFrame(), counts + 1
    fields = pd.read_csv(
        io.StringIO(text), sep=sep, header=None, names=range(int(counts.max()) + 1), index_col=False,
        dtype=str, keep_default_na=False, na_values=[], skip_blank_lines=False,
        quoting=csv.QUOTE_NONE, engine="c",
    )
    if len(fields) != len(ends):  # cannot happen with \n-only line ends; never mis-number lines
        raise SourceError("cannot split the file into lines; fix: save it with plain \\n line ends")
    return fields, counts + 1


def _parse_file(path: Path, fmt: str, offset: dt.timedelta, rejects: _Rejects) -> tuple[pd.DataFrame, int]:
    """One file → (valid bars with ``file`` and ``line`` columns, number of data rows read)."""
    text = _read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    file_id = rejects.register(path)
    if fmt == "histdata":
        sep, columns = ";", {"time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
    elif fmt == "mt4":
        sep, columns = ",", {"date": 0, "time": 1, "open": 2, "high": 3, "low": 4, "close": 5, "volume": 6}
    else:
        first = next((line for line in text.split("\n", 50) if line.strip()), "")
        sep = max(_SEPARATORS, key=first.count)
    fields, n_fields = _split_fields(text, sep)
    line_no = np.arange(1, len(n_fields) + 1)
    blank = (n_fields == 1) & (fields[0].str.strip() == "").to_numpy() if len(fields) else np.zeros(0, bool)
    fields, n_fields, line_no = fields[~blank], n_fields[~blank], line_no[~blank]
    first_line = sep.join(str(v) for v in fields.iloc[0, : n_fields[0]]) if len(fields) else ""
    if fmt == "csv" and len(fields):
        header = [str(v) for v in fields.iloc[0, : n_fields[0]]]
        columns = _csv_header(path, int(line_no[0]), header, sep)
        fields, n_fields, line_no = fields.iloc[1:], n_fields[1:], line_no[1:]
    elif fmt == "mt4" and len(fields) and not str(fields.iat[0, 0]).strip()[:1].isdigit():
        fields, n_fields, line_no = fields.iloc[1:], n_fields[1:], line_no[1:]  # an export header
    n = len(fields)
    if not n:
        return _empty(), 0
    width = len(header) if fmt == "csv" else len(columns)
    fields = fields.reset_index(drop=True).reindex(columns=range(max(width, fields.shape[1])), fill_value="")

    def col(name: str) -> pd.Series:
        return fields[columns[name]].str.strip().str.strip("\"'")

    good_shape = n_fields == width
    times = _parse_times(fmt, col, columns, offset)
    good_time = good_shape & times.notna().to_numpy()
    malformed = ~good_time
    if malformed.sum() * 2 > n:
        i = int(np.flatnonzero(malformed)[0])
        line = sep.join(str(v) for v in fields.iloc[i, : n_fields[i]])
        why = "unreadable time" if good_shape[i] else f"{_plural(int(n_fields[i]), 'field')}, expected {width}"
        raise _wrong_format(path, int(line_no[i]), line, fmt, why, first_line)
    rejects.add(R_FIELDS, ~good_shape, f"{path.name}:{line_no[np.argmin(good_shape)]}")
    bad_time = good_shape & ~good_time
    rejects.add(R_TIME, bad_time, f"{path.name}:{line_no[np.argmax(bad_time)]}")

    frame = pd.DataFrame({"time": times[good_time].array})
    for c in PRICE_COLUMNS:
        frame[c] = pd.to_numeric(col(c)[good_time], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad_volume = np.zeros(len(frame), dtype=bool)
    frame["volume"] = np.nan
    if "volume" in columns:
        text_vol = col("volume")[good_time]
        vol = pd.to_numeric(text_vol, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad_volume = (np.isnan(vol) & (text_vol != "").to_numpy()) | (vol < 0) | np.isinf(vol)
        frame["volume"] = np.where(bad_volume, np.nan, np.round(vol))
    frame["file"] = file_id
    frame["line"] = line_no[good_time]
    frame = _drop_invalid(frame, bad_volume, rejects)
    return frame.reset_index(drop=True), n


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "time": pd.Series([], dtype="datetime64[us, UTC]"),
        **{c: pd.Series([], dtype="float64") for c in (*PRICE_COLUMNS, "volume")},
        "file": pd.Series([], dtype="int64"), "line": pd.Series([], dtype="int64"),
    })


def _csv_header(path: Path, line_no: int, header: list[str], sep: str) -> dict[str, int]:
    names = [h.strip().strip("\"'").lower() for h in header]
    columns: dict[str, int] = {}
    for name in _TIME_NAMES:
        if name in names:
            columns["time"] = names.index(name)
            break
    for name in (*PRICE_COLUMNS, "volume"):
        if name in names:
            columns[name] = names.index(name)
    if "date" in names and "time" in names:  # separate Date and Time columns (MT4 with a header)
        columns["date"], columns["time"] = names.index("date"), names.index("time")
    missing = [c for c in ("time", *PRICE_COLUMNS) if c not in columns]
    if missing:
        raise _wrong_format(path, line_no, sep.join(header), "csv",
                            f"the header lacks {', '.join(missing)}; time may also be called timestamp")
    return columns


def _parse_times(fmt: str, col: Callable[[str], pd.Series], columns: Mapping[str, int],
                 offset: dt.timedelta) -> pd.Series:
    """Bar times as datetime64[us, UTC] (NaT where unreadable)."""
    if fmt == "histdata":
        local = _fixed_times(col("time"), ("YYYYMMDD hhmmss",))
    elif fmt == "mt4":
        local = _fixed_times(col("date") + " " + col("time"), ("YYYY.MM.DD hh:mm", "YYYY.MM.DD hh:mm:ss"))
    else:
        text = col("time")
        if "date" in columns:
            text = col("date").str.replace(".", "-", regex=False) + " " + text
        aware = text.str.contains(_ISO_AWARE, regex=True)
        out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
        if aware.any():
            out[aware] = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce").dt.as_unit("us")
        naive = ~aware
        if naive.any():
            local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce").dt.as_unit("us")
            out[naive] = (local - offset).dt.tz_localize("UTC")
        return out
    return (local.dt.as_unit("us") - offset).dt.tz_localize("UTC")


def _fixed_times(text: pd.Series, layouts: Sequence[str]) -> pd.Series:
    """Fixed-width date-times → datetime64[us] (NaT where a line matches no layout or is no date).

    A layout spells digits as Y M D h m s and anything else literally. Vectorised with numpy:
    several times faster than ``strptime`` on the hundreds of thousands of lines of a bar file.
    """
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    lengths = text.str.len().to_numpy(dtype="int64", na_value=-1)
    values = text.to_numpy(dtype=object, na_value="")
    for layout in layouts:
        rows = np.flatnonzero(lengths == len(layout))
        if not len(rows):
            continue
        blob = "".join(values[rows]).encode("ascii", errors="replace")  # one byte per character
        grid = np.frombuffer(blob, dtype=np.uint8).reshape(len(rows), len(layout)).astype(np.int64)
        ok = np.ones(len(rows), dtype=bool)
        fields: dict[str, np.ndarray] = {}
        for pos, ch in enumerate(layout):
            if ch in "YMDhms":
                digit = grid[:, pos] - ord("0")
                ok &= (digit >= 0) & (digit <= 9)
                fields[ch] = fields.get(ch, 0) * 10 + digit
            else:
                ok &= grid[:, pos] == ord(ch)
        year, month, day = fields["Y"], fields["M"], fields["D"]
        hour, minute, second = fields["h"], fields["m"], fields.get("s", np.zeros_like(year))
        ok &= (month >= 1) & (month <= 12) & (day >= 1) & (hour < 24) & (minute < 60) & (second < 60)
        months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
        days = months.astype("datetime64[D]") + np.where(ok, day - 1, 0)
        ok &= days.astype("datetime64[M]") == months  # 31 April and the like
        stamp = days.astype("datetime64[us]") + ((hour * 60 + minute) * 60 + second) * 1_000_000
        out[rows[ok]] = stamp[ok]
    return pd.Series(out, index=text.index)


def _drop_invalid(frame: pd.DataFrame, bad_volume: np.ndarray, rejects: _Rejects) -> pd.DataFrame:
    """Reject SPEC §3 violations (the first failing reason of a row counts) and bad volumes."""
    prices = frame[list(PRICE_COLUMNS)].to_numpy()
    o, h, lo, c = prices.T
    with np.errstate(invalid="ignore"):
        no_number = np.isnan(prices).any(axis=1)
        bad_value = ~no_number & (np.isinf(prices) | (prices <= 0)).any(axis=1)
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        bad_high = h < top - REL_TOL * np.abs(top)
        bad_low = lo > bottom + REL_TOL * np.abs(bottom)
    rejected = np.zeros(len(frame), dtype=bool)
    for reason, mask in ((R_PRICE_TEXT, no_number), (R_PRICE_VALUE, bad_value), (R_HIGH, bad_high),
                         (R_LOW, bad_low), (R_VOLUME, bad_volume)):
        mask = mask & ~rejected
        if mask.any():
            rejects.add(reason, mask, rejects.where(frame.iloc[int(np.argmax(mask))]))
            rejected |= mask
    return frame[~rejected]


def _mid(bid: pd.DataFrame, ask: pd.DataFrame, rejects: _Rejects) -> pd.DataFrame:
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


def _copy_compatible(cols: Mapping[str, str]) -> bool:
    """Whether binary COPY of our six columns fits the table's types exactly."""
    wanted = {"time": "timestamp with time zone", **{c: "double precision" for c in PRICE_COLUMNS},
              "volume": "bigint"}
    return all(cols.get(c) == t for c, t in wanted.items())


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"
