"""One line of a readiness report: a :class:`Check` with its status, numbers and fix (SPEC §8).

Every check group of :mod:`bqxdask.readiness` returns its lines as :class:`Check` objects, and the
pipeline, which calls the worker probes (:mod:`.probes`) before ``features`` starts, shares the
type. :func:`guard` is how a group keeps one failing check from hiding the others: an unexpected
error becomes a ❌ line naming the check, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dask.utils import format_time

OK, WARN, FAIL = "ok", "warn", "fail"
ICON = {OK: "✅", WARN: "⚠️", FAIL: "❌"}
#: application_name of check's own connections (left out of the neighbours it reports)
CHECK_APPLICATION = "bqxdask/check"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    group: str
    name: str
    status: str
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "values": self.values,
        }


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def failed(group: str, name: str, exc: BaseException) -> Check:
    """The ❌ line of a check that raised instead of reporting."""
    return Check(
        group,
        name,
        FAIL,
        f"could not be checked: {type(exc).__name__}: {first_line(exc)}; "
        "fix: correct what it names, or report it as a bug",
    )


def guard(group: str, name: str, fn: Callable[..., Check | list[Check]], *args: Any, **kwargs: Any) -> list[Check]:
    """``fn(*args, **kwargs)`` as a list of checks; an exception becomes one ❌ line named ``name``."""
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # a check must never end in a traceback
        return [failed(group, name, exc)]
    return out if isinstance(out, list) else [out]


def age(seconds: float | None) -> str:
    """A duration as :func:`dask.utils.format_time` writes it (``754`` → ``12m 34s``); None → ``?``."""
    return "?" if seconds is None else format_time(seconds)


def pct(part: float, whole: float) -> str:
    """``part`` as a share of ``whole``: ``42 %``, ``<1 %``, ``∞ %`` when ``whole`` is zero."""
    if not whole:
        return "∞ %"
    share = 100 * part / whole
    return "<1 %" if 0 < share < 1 else f"{share:.0f} %"
