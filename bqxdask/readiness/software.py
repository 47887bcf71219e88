"""The dependencies group: installed versions against what bqxdask requires (SPEC §8).

The requirement list is ``install_requires`` of the checkout's ``setup.cfg`` (what ``make venv``
installs from), else the installed bqxdask metadata; each line is parsed by
:class:`packaging.requirements.Requirement` and compared with the version
:mod:`importlib.metadata` finds installed. A requirement with extras (``dask[distributed]``)
also checks the packages those extras pull in, with their own ranges. The last line imports
TA-Lib and computes two indicators with it: an importable but broken build is a ❌ too.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import math
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement as Parsed
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .findings import FAIL, OK, WARN, Check, first_line

GROUP = "dependencies"
#: package names as setup.cfg spells them → the distributions that may provide them
ALTERNATE_DISTS = {"psycopg2-binary": ("psycopg2-binary", "psycopg2"), "ta-lib": ("ta-lib", "TA-Lib")}
#: the checkout's setup.cfg (bqxdask/readiness/software.py → the repository root)
SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"


@dataclass(frozen=True)
class Requirement:
    """A requirement line as :mod:`packaging` parses it, its specifier kept in the written order."""

    name: str
    extras: tuple[str, ...]
    specifier: str
    marker: Marker | None

    @classmethod
    def parse(cls, line: str) -> Requirement:
        """``name[extras] specifier; marker``; ValueError (packaging's InvalidRequirement) if malformed."""
        req = Parsed(line)
        # packaging sorts the clauses (">=2025.1,<2027" → "<2027,>=2025.1"): show them as written
        written = sorted(req.specifier, key=lambda s: _written_at(line, s.operator, s.version))
        return cls(req.name, tuple(sorted(req.extras)), ",".join(str(s) for s in written), req.marker)

    def applies(self, extra: str | None = None) -> bool:
        """Whether the marker holds here, for ``extra`` (None: no extra requested)."""
        return self.marker is None or self.marker.evaluate({"extra": extra or ""})


def _written_at(line: str, operator: str, version: str) -> int:
    found = re.search(re.escape(operator) + r"\s*" + re.escape(version), line)
    return found.start() if found else len(line)


def version_ok(version: str, specifier: str) -> bool | None:
    """Whether ``version`` satisfies ``specifier``; None if the version cannot be compared."""
    if not specifier:
        return True
    try:  # packaging ≥ 26 answers False for an unparsable version instead of raising
        Version(version)
    except InvalidVersion:
        return None
    return SpecifierSet(specifier).contains(version, prereleases=True)


def _setup_cfg() -> configparser.ConfigParser | None:
    if not SETUP_CFG.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(SETUP_CFG, encoding="utf-8")
    except configparser.Error:
        return None
    if parser.get("metadata", "name", fallback="") != "bqxdask":
        return None
    return parser


def requirements() -> tuple[list[str], str]:
    """``install_requires`` lines and where they came from (setup.cfg, else installed metadata)."""
    parser = _setup_cfg()
    if parser is not None and parser.has_option("options", "install_requires"):
        lines = [ln.strip() for ln in parser.get("options", "install_requires").splitlines()]
        return [ln for ln in lines if ln and not ln.startswith("#")], "setup.cfg"
    try:
        reqs = importlib.metadata.requires("bqxdask") or []
    except importlib.metadata.PackageNotFoundError:
        return [], "nowhere (bqxdask is neither a checkout nor installed)"
    return reqs, "the installed bqxdask metadata"  # extras' lines do not apply: dependencies_group skips them


def python_requires() -> str | None:
    """bqxdask's ``python_requires`` (setup.cfg, else the installed metadata), None if unknown."""
    parser = _setup_cfg()
    if parser is not None:
        return parser.get("options", "python_requires", fallback=None)
    try:
        return importlib.metadata.metadata("bqxdask").get("Requires-Python")
    except importlib.metadata.PackageNotFoundError:
        return None


def installed(name: str) -> tuple[str, str] | None:
    """(distribution, version) installed for ``name`` (or an accepted alternate), else None."""
    for dist in ALTERNATE_DISTS.get(name.lower(), (name,)):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def requirement_check(req: Requirement, via: str = "") -> Check:
    """One requirement against what is installed: ✅, ❌ missing or out of range, ⚠️ not comparable."""
    found = installed(req.name)
    need = req.specifier or "any version"
    values = {"package": req.name, "required": req.specifier, "installed": found[1] if found else None}
    if via:
        values["via"] = via
    why = f" (for {via})" if via else ""
    if found is None:
        return Check(
            GROUP,
            req.name,
            FAIL,
            f"not installed, needs {need}{why}; fix: make venv or pip install -e . in the virtualenv",
            values,
        )
    dist, version = found
    ok = version_ok(version, req.specifier)
    shown = version + (f" (as {dist})" if dist.lower() != req.name.lower() else "")
    if ok is False:
        return Check(
            GROUP,
            req.name,
            FAIL,
            f"{shown}, needs {need}{why}; fix: pip install "
            f"'{req.name}{req.specifier}' (make venv reinstalls everything)",
            values,
        )
    if ok is None:
        return Check(GROUP, req.name, WARN, f"{shown}: version not comparable with {need}{why}", values)
    return Check(GROUP, req.name, OK, f"{shown}, needs {need}{why}", values)


def dependencies_group(lines: list[str], origin: str) -> list[Check]:
    """The dependencies lines for the requirement ``lines`` (read from ``origin``), then TA-Lib's."""
    if not lines:
        return [
            Check(
                GROUP,
                "requirements",
                WARN,
                f"no requirement list found ({origin}); versions not "
                "checked; fix: run from a checkout or install bqxdask",
            )
        ]
    checks = []
    listed = set()
    reqs = [req for req in map(Requirement.parse, lines) if req.applies()]
    for req in reqs:
        listed.add(canonicalize_name(req.name))
        checks.append(requirement_check(req))
    # the extras a requirement pulls in (dask[distributed] → distributed) carry their own ranges
    for req in reqs:
        found = installed(req.name) if req.extras else None
        if found is None:
            continue
        for line in importlib.metadata.requires(found[0]) or []:
            dep = Requirement.parse(line)
            if canonicalize_name(dep.name) in listed or canonicalize_name(dep.name) == canonicalize_name(req.name):
                continue
            if any(dep.applies(extra) for extra in req.extras) and not dep.applies(None):
                listed.add(canonicalize_name(dep.name))
                checks.append(requirement_check(dep, via=f"{req.name}[{','.join(req.extras)}]"))
    checks.append(talib_check())
    return checks


def talib_check() -> Check:
    """TA-Lib imports and computes SMA(5) and RSI(14) of 1..30 right."""
    import numpy as np

    try:
        import talib
    except Exception as exc:
        return Check(
            GROUP,
            "TA-Lib works",
            FAIL,
            f"import talib failed ({first_line(exc)}); fix: pip install the pinned ta-lib wheel (make venv)",
            {"importable": False},
        )
    version = getattr(talib, "__version__", "?")
    try:
        x = np.arange(1.0, 31.0)
        sma = talib.SMA(x, timeperiod=5)
        rsi = talib.RSI(x, timeperiod=14)
        ok = math.isnan(sma[3]) and abs(sma[-1] - 28.0) < 1e-12 and abs(rsi[-1] - 100.0) < 1e-9
    except Exception as exc:
        return Check(
            GROUP,
            "TA-Lib works",
            FAIL,
            f"talib {version} imports but SMA/RSI failed ({first_line(exc)}); fix: reinstall the ta-lib wheel",
            {"importable": True, "works": False},
        )
    if not ok:
        return Check(
            GROUP,
            "TA-Lib works",
            FAIL,
            f"talib {version}: SMA/RSI return wrong values; fix: reinstall the pinned ta-lib wheel",
            {"importable": True, "works": False},
        )
    return Check(
        GROUP,
        "TA-Lib works",
        OK,
        f"talib {version}: SMA(5) and RSI(14) of 1..30 are right",
        {"importable": True, "works": True, "version": version},
    )
