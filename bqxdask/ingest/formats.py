"""The bar file formats of ``bqxdask import`` (histdata, csv, mt4): files → rows of bars (SPEC §7, §10).

See :mod:`bqxdask.ingest.importer` for the formats and what happens to the rows next. Here:
the arguments (format, offset, files), the text of a file (plain, ``.gz`` or a one-file
``.zip``), the split into fields and the bar times; a file that is not in the format fails
with one line naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, SourceError
from ..quality import PRICE_COLUMNS
from .report import R_FIELDS, R_TIME, Rejects, plural

FORMATS = ("histdata", "csv", "mt4")
HISTDATA_OFFSET = dt.timedelta(hours=-5)

_TZ_RE = re.compile(r"([+-])(\d{2}):(\d{2})")
_ISO_AWARE = r"(?:Z|[+-]\d{2}:?\d{2})$"
_TIME_NAMES = ("time", "timestamp", "datetime", "date")
_SEPARATORS = (",", ";", "\t", "|")
_EXPECTED = {
    "histdata": "YYYYMMDD HHMMSS;open;high;low;close;volume",
    "mt4": "YYYY.MM.DD,HH:MM,open,high,low,close,volume",
    "csv": "a header with time, open, high, low, close[, volume], then ISO times",
}


def parse_tz_offset(
    value: str | dt.timedelta | None, *, default: dt.timedelta | None = dt.timedelta(0)
) -> dt.timedelta | None:
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


def check_format(fmt: str, tz_offset: str | dt.timedelta | None) -> tuple[str, dt.timedelta]:
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


def check_files(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None, what: str) -> list[Path]:
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
                    raise SourceError(
                        f"{path} is a zip of {len(members)} files; fix: unzip it and import the bar files"
                    )
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
        io.StringIO(text),
        sep=sep,
        header=None,
        names=range(int(counts.max()) + 1),
        index_col=False,
        dtype=str,
        keep_default_na=False,
        na_values=[],
        skip_blank_lines=False,
        quoting=csv.QUOTE_NONE,
        engine="c",
    )
    if len(fields) != len(ends):  # cannot happen with \n-only line ends; never mis-number lines
        raise SourceError("cannot split the file into lines; fix: save it with plain \\n line ends")
    return fields, counts + 1


def parse_file(path: Path, fmt: str, offset: dt.timedelta, rejects: Rejects) -> tuple[pd.DataFrame, int, np.ndarray]:
    """One file → (its bars with ``file`` and ``line`` columns, number of data rows read, bad volumes).

    Lines of the wrong shape or with an unreadable time are counted in ``rejects`` and left
    out; the prices are not judged here (SPEC §3 is applied by the importer). A volume that is
    not a non-negative number is NaN in the frame and flagged in the third value.
    """
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
        return _empty(), 0, np.zeros(0, dtype=bool)
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
        why = "unreadable time" if good_shape[i] else f"{plural(int(n_fields[i]), 'field')}, expected {width}"
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
    return frame, n, bad_volume


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.Series([], dtype="datetime64[us, UTC]"),
            **{c: pd.Series([], dtype="float64") for c in (*PRICE_COLUMNS, "volume")},
            "file": pd.Series([], dtype="int64"),
            "line": pd.Series([], dtype="int64"),
        }
    )


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
        raise _wrong_format(
            path,
            line_no,
            sep.join(header),
            "csv",
            f"the header lacks {', '.join(missing)}; time may also be called timestamp",
        )
    return columns


def _parse_times(
    fmt: str, col: Callable[[str], pd.Series], columns: Mapping[str, int], offset: dt.timedelta
) -> pd.Series:
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
