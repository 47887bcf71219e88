"""Calendar months: the unit of partitioning (SPEC §5), as ``pd.Period`` with a ``YYYY-MM`` key.

Every month key, range and bound of bqxdask comes from here; nothing else does month
arithmetic. A month key is the text ``YYYY-MM`` (``2024-07``); its bounds are the first
instant of the month and of the next one, both UTC, so ``lo <= time < hi`` selects it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # pandas is imported on use: validating a config needs only the pattern
    import pandas as pd

MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


def check_month(value: str, key: str) -> str:
    """``value`` if it is a ``YYYY-MM`` month key, else a ConfigError naming ``key``.

    Month keys compare in calendar order as text.
    """
    match = MONTH_RE.fullmatch(str(value))
    if match and 1 <= int(match.group(2)) <= 12 and int(match.group(1)) >= 1:
        return str(value)
    raise ConfigError(f"{key} = {value!r} is not a month; fix: write it as YYYY-MM, e.g. 2024-07")


def parse_month(value: str, key: str) -> pd.Period:
    """``value`` as a monthly ``pd.Period``; a ConfigError naming ``key`` if it is no ``YYYY-MM``."""
    import pandas as pd

    return pd.Period(check_month(value, key), freq="M")


def month_key(month: pd.Period) -> str:
    """The ``YYYY-MM`` text of a monthly period."""
    return f"{month.year:04d}-{month.month:02d}"


def month_range(start: str, end: str, *, keys: tuple[str, str] = ("run.start", "run.end")) -> list[str]:
    """The months ``start``..``end`` (inclusive), in order; empty when ``end`` is before ``start``.

    ``keys`` name the two values in an error message.
    """
    import pandas as pd

    lo, hi = parse_month(start, keys[0]), parse_month(end, keys[1])
    return [month_key(p) for p in pd.period_range(lo, hi, freq="M")] if lo <= hi else []


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """First instant of ``month`` and of the month after it, both UTC."""
    period = parse_month(month, "month")
    return _first_instant(period), _first_instant(period + 1)


def months_before(month: str, n: int) -> str:
    """The month ``n`` months before ``month`` (``n`` may be negative: after it)."""
    return month_key(parse_month(month, "month") - n)


def month_index(month: str) -> int:
    """Months since January of year 0 (``year·12 + month − 1``): a month as one integer."""
    period = parse_month(month, "month")
    return period.year * 12 + period.month - 1


def _first_instant(period: pd.Period) -> dt.datetime:
    return dt.datetime(period.year, period.month, 1, tzinfo=dt.timezone.utc)
