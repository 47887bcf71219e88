"""The readiness report: verdict, header and lines, as text or JSON (SPEC §8).

Verdict: NOT READY if any line failed (exit 1), READY WITH WARNINGS if any warned, else READY
(both exit 0). Every string that leaves the report passes :func:`bqxdask.db.urls.scrub` with the
configured passwords (:func:`scrubbed`), and URLs are only ever shown through ``describe``.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass, replace
from typing import Any

from .. import __version__
from ..config import Config
from ..db.urls import DbTarget, describe_url, scrub
from ..errors import BqxError
from .findings import FAIL, ICON, OK, WARN, Check

GROUPS = ("machine", "plan", "database", "neighbours", "source tables", "dependencies", "output size")
GROUP_TITLE = {
    "machine": "Machine",
    "plan": "Plan",
    "database": "Database",
    "neighbours": "Neighbours (other sessions on the database)",
    "source tables": "Source tables",
    "dependencies": "Dependencies",
    "output size": "Output size estimate",
}
WIDTH = 100
NAME_WIDTH = 18
#: stand-ins for a stream that cannot encode the report (a C-locale pipe, a Windows console)
ASCII = {
    "✅": "[ok]",
    "⚠️": "[!!]",
    "❌": "[XX]",
    "→": "->",
    "×": "x",
    "≈": "~",
    "−": "-",
    "≠": "!=",
    "…": "...",
    "—": "-",
    "·": ".",
    "Σ": "sum",
    "σ": "sigma",
    "∞": "inf",
}


@dataclass(frozen=True)
class Assessment:
    header: dict[str, Any]
    checks: list[Check]

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}

    @property
    def verdict(self) -> str:
        counts = self.counts
        if counts[FAIL]:
            return "NOT READY"
        return "READY WITH WARNINGS" if counts[WARN] else "READY"

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "NOT READY" else 0

    def ordered(self) -> list[Check]:
        return sorted(self.checks, key=lambda c: GROUPS.index(c.group))  # stable within a group

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            **self.header,
            "counts": self.counts,
            "checks": [c.to_dict() for c in self.ordered()],
        }

    def to_text(self) -> str:
        lines = [f"bqxdask {__version__} readiness check — {self.header['config']}"]
        for key in ("run", "cluster", "database"):
            lines += textwrap.wrap(
                self.header["summary"][key],
                width=WIDTH,
                initial_indent=f"{key + ':':<10}",
                subsequent_indent=" " * 10,
                break_long_words=False,
                break_on_hyphens=False,
            )
        for group in GROUPS:
            checks = [c for c in self.ordered() if c.group == group]
            if not checks:
                continue
            lines += ["", GROUP_TITLE[group]]
            for c in checks:
                lines += format_line(c)
        counts = self.counts
        lines += ["", f"verdict: {self.verdict}  ({counts[FAIL]} ❌, {counts[WARN]} ⚠️, {counts[OK]} ✅)"]
        return "\n".join(lines)


def format_line(c: Check) -> list[str]:
    """One check as report lines: icon, name, the detail wrapped under itself."""
    prefix = f"  {ICON[c.status]}  {c.name:<{NAME_WIDTH}} "
    indent = " " * (7 + NAME_WIDTH)
    wrapped = textwrap.wrap(c.detail, width=WIDTH - len(indent), break_long_words=False, break_on_hyphens=False) or [""]
    return [prefix + wrapped[0], *(indent + w for w in wrapped[1:])]


def encodable(text: str, encoding: str | None) -> str:
    """``text`` as is if the stream can encode it, else with ASCII stand-ins: a report must never
    die on a UnicodeEncodeError."""
    try:
        text.encode(encoding or "utf-8")
        return text
    except (UnicodeEncodeError, LookupError):
        pass
    for char, stand_in in ASCII.items():
        text = text.replace(char, stand_in)
    try:
        return text.encode(encoding or "ascii", "replace").decode(encoding or "ascii")
    except LookupError:
        return text.encode("ascii", "replace").decode("ascii")


def secrets(cfg: Config) -> tuple[str, ...]:
    """The passwords of the configured URLs: never to appear in the report."""
    out = []
    for url in (cfg.database.url, cfg.database.read_url):
        if url:
            try:
                pw = DbTarget.parse(url).password
            except BqxError:
                pw = None
            if pw:
                out.append(pw)
    return tuple(out)


def scrubbed(value: Any, hidden: tuple[str, ...]) -> Any:
    """``value`` (a check, or JSON-like data) with every ``hidden`` string and URL password removed."""
    if isinstance(value, Check):
        return replace(value, detail=scrub(value.detail, *hidden), values=scrubbed(value.values, hidden))
    if isinstance(value, str):
        return scrub(value, *hidden)
    if isinstance(value, dict):
        return {k: scrubbed(v, hidden) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(v, hidden) for v in value]
    return value


def header(cfg: Config, neighbours: dict[str, Any] | None) -> dict[str, Any]:
    """The report's header: what is assessed, in words and as data."""
    months = cfg.months
    pairs = list(cfg.run.pairs)
    shown = ", ".join(pairs[:6]) + (", …" if len(pairs) > 6 else "")
    run = (
        f"{len(pairs)} pair{'s' * (len(pairs) != 1)} ({shown}) × {len(months)} "
        f"month{'s' * (len(months) != 1)} {cfg.run.start}..{cfg.run.end}, {len(cfg.families.enabled)} families"
    )
    c = cfg.cluster
    if c.scheduler_address:
        cluster = f"existing Dask scheduler {c.scheduler_address}"
    else:
        cluster = (
            f"LocalCluster {c.n_workers} workers × {c.threads_per_worker} thread"
            f"{'s' * (c.threads_per_worker != 1)} × {c.memory_limit}"
        )
    if cfg.database.url:
        database = describe_url(cfg.database.url)
        if cfg.database.read_url and cfg.database.read_url != cfg.database.url:
            database += f"; reads from {describe_url(cfg.database.read_url)}"
    else:
        database = f"embedded PostgreSQL in {cfg.database.embedded_dir}"
    return {
        "bqxdask_version": __version__,
        "config": cfg.source,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": {"run": run, "cluster": cluster, "database": database},
        "run": {
            "pairs": pairs,
            "start": cfg.run.start,
            "end": cfg.run.end,
            "months": months,
            "families": list(cfg.families.enabled),
        },
        "neighbours": neighbours,
    }
