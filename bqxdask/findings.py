"""One line of a readiness report: a :class:`Check` with its status, numbers and fix (SPEC §8).

Kept apart from :mod:`bqxdask.readiness` so that the modules which produce lines for it
(:mod:`bqxdask.neighbours`, :mod:`bqxdask.probes`, :mod:`bqxdask.burstable`) and the pipeline,
which calls the worker probes before ``features`` starts, share the type without importing the
whole assessment (and without an import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"
ICON = {OK: "✅", WARN: "⚠️", FAIL: "❌"}


@dataclass
class Check:
    """One line of the report."""

    group: str
    name: str
    status: str
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "name": self.name, "status": self.status, "detail": self.detail,
                "values": self.values}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def age(seconds: float | None) -> str:
    """``754`` → ``12m34s``; ``None`` (not visible) → ``?``."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h >= 48:
        return f"{h // 24}d{h % 24:02d}h"
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")
