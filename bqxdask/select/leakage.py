"""Stage 3 leakage check: no feature may carry information from bars after t (SPEC §9).

Why this works
--------------
``target_h{h}`` at row t is ``w{h}_bqx_return`` at row t+h, a function of the index moves
*after* t only (``idx[t+1] − idx[t]``, …, ``idx[t+h] − idx[t+h−1]``). A feature built from
bars ≤ t can explain those moves only as far as the past predicts the future, which on
1-minute FX bars is a few per mille of the variance. A feature that looks ahead — a
``shift(−k)``, ``center=True``, a back-fill, a window off by one bar — carries them, but often
diluted by a large backward-looking part: ``w75_bqx_return`` read one bar early has 96 % of
its variance in the past and 4 % in the next move, so a plain correlation misses it.

So the check first removes, by least squares, everything a feature shares with the recent
past of the index (its level and the last K one-bar moves, K = max(h)), then measures how
much of the *future* the remainder explains — the squared semipartial correlation

    ΔR²(x, p) = corr(x − proj_past(x), p)²

i.e. the R² that x adds to a probe p on top of the past. Probes: the relative index change
over the next m bars (m = 1, 2, 4, … < h, and h) and the target itself. A feature leaks when

    ΔR² ≥ max(leakage_future_r2, Z² · m / span)

The first term says the future information is material (default 0.1); the second that it is
far beyond sampling noise: a probe that spans m bars overlaps its neighbours, so over
``span`` consecutive rows a causal feature's correlation with it has variance ≈ m/span
(Bartlett), and Z = 6 keeps the largest of thousands of (feature, probe) pairs below the
limit. Measured with every registered family (9) and lags 0 and 60: on EURUSD 2017-01..06
the largest ΔR² of a genuine feature is 0.003, on 2017-01..03 0.019, on one synthetic
month (``bqxdask seed``) 0.03; leaks score 0.69 (the target one bar early), 0.83 (a centred
31-bar mean) and 0.995 (``w15``/``w75_bqx_return`` one bar early).

The control target ``target_vol_h{h}`` (future path length) is checked the same way, with the
past basis extended by the past path lengths over 1, 2, 4, … 1024 bars: volatility clusters,
so backward volatility features genuinely predict it, and only what they add beyond the
past volatility counts. A feature computed over a window centred on t (future volatility)
is caught there.

Besides, the plain copy test: a feature that on its own explains a target with
R² ≥ ``leakage_r2`` (0.98) is rejected whatever its past.

Missing values are replaced by the feature's mean for this check only: a constant fill is a
function of the past, so it cannot create information about the future.

Limits: the check sees information that is linear in the future moves of the index. A
feature that leaks only a nonlinear function of the future (future volatility, say), or
leaks on a handful of rows (a back-filled warm-up), passes it; the no-look-ahead test of
the suite (``tests/test_select.py``), which perturbs future bars and recomputes every
registered family, guards against those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LeakageError
from .names import CONTROL, Target

#: ΔR² above which a feature carries material information about future index moves
DEFAULT_FUTURE_R2 = 0.1
#: how many standard deviations of sampling noise a ΔR² must also exceed
NOISE_Z = 6.0
#: spans of the past path lengths in the control target's basis
PATH_SPANS = tuple(2**k for k in range(11))
#: a residual this small relative to the feature means "fully explained by the past"
_EXPLAINED = 1e-10
_FIX = "fix: make it use bars ≤ t only (no shift(-k), center=True or bfill) or drop it"


@dataclass(frozen=True)
class TargetLeakage:
    """The largest scores of one target over all features (for metrics.json)."""

    target: str
    copy_r2: float
    copy_feature: str
    future_r2: float
    future_limit: float
    future_feature: str
    future_probe: str
    rows: int

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "max_copy_r2": _g(self.copy_r2),
            "max_copy_r2_feature": self.copy_feature,
            "max_future_r2": _g(self.future_r2),
            "max_future_r2_limit": _g(self.future_limit),
            "max_future_r2_feature": self.future_feature,
            "max_future_r2_probe": self.future_probe,
        }


def _g(x: float) -> float:
    return float(f"{x:.6g}")


def probe_spans(horizon: int) -> list[int]:
    """Forward spans m probed for horizon h: 1, 2, 4, … below h, and h itself."""
    spans, m = [], 1
    while m < horizon:
        spans.append(m)
        m *= 2
    return [*spans, horizon]


def probe_label(span: int) -> str:
    return f"the index change over the next {span} bar{'s' if span > 1 else ''}"


def relative_change(level: np.ndarray, rows: np.ndarray, span: int) -> np.ndarray:
    """``level[t+span]/level[t] − 1`` for t in ``rows``; NaN where either end is off the series."""
    other = rows + span
    ok = (rows >= 0) & (rows < len(level)) & (other >= 0) & (other < len(level))
    out = np.full(len(rows), np.nan)
    out[ok] = level[other[ok]] / level[rows[ok]] - 1.0
    return out


def past_basis(level: np.ndarray, rows: np.ndarray, depth: int) -> np.ndarray:
    """Columns ``1, level[t], move[t], …, move[t−depth+1]`` with move[s] = level[s]/level[s−1] − 1."""
    cols = [np.ones(len(rows)), level[rows].astype("float64")]
    cols += [relative_change(level, rows - k - 1, 1) for k in range(depth)]
    return np.column_stack(cols)


def past_paths(level: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Columns ``Σ_{i<m} |level[t−i] − level[t−i−1]| / level[t]`` for m in :data:`PATH_SPANS` (NaN off the series)."""
    moves = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(level)))])
    cols = []
    for m in PATH_SPANS:
        start = rows - m
        ok = start >= 0
        col = np.full(len(rows), np.nan)
        col[ok] = (moves[rows[ok]] - moves[start[ok]]) / level[rows[ok]]
        cols.append(col)
    return np.column_stack(cols)


@dataclass
class LeakageScores:
    """Scores of every feature: copy R² per target, ΔR² per target and probe, and the limits."""

    names: list[str]
    copy: dict[str, np.ndarray]  #: target → (features,)
    future: dict[str, np.ndarray]  #: target → (features, probes)
    limits: dict[str, np.ndarray]  #: target → (probes,)
    labels: dict[str, list[str]]  #: target → probe names
    rows: int


def leakage_scores(
    features: np.ndarray,
    names: Sequence[str],
    targets: Sequence[tuple[Target, np.ndarray]],
    level: np.ndarray,
    rows: np.ndarray,
    *,
    future_r2: float = DEFAULT_FUTURE_R2,
) -> LeakageScores:
    """Copy R² and future ΔR² of every feature for every target (see the module docstring).

    ``features`` is ``(n, p)`` at the series positions ``rows`` (NaN allowed, time order);
    ``targets`` pairs each target with its ``(n,)`` values; ``level`` is ``rate_index`` over
    the whole series.
    """
    rows = np.asarray(rows)
    depth = max(t.horizon for t, _ in targets)
    basis = past_basis(level, rows, depth)
    control = any(t.kind == CONTROL for t, _ in targets)
    paths = past_paths(level, rows) if control else np.zeros((len(rows), 0))
    keep = np.isfinite(basis).all(axis=1) & np.isfinite(paths).all(axis=1)
    for _, y in targets:
        keep &= np.isfinite(y)
    basis, paths, x, kept_rows = basis[keep], paths[keep], np.asarray(features, dtype="float64")[keep], rows[keep]
    n, p = x.shape
    names = list(names)
    scores = LeakageScores(names, {}, {}, {}, {}, n)
    if n <= 2 * (basis.shape[1] + paths.shape[1]):
        for t, _ in targets:  # too few rows to say anything; the fold check refuses such data anyway
            scores.copy[t.name], scores.future[t.name] = np.zeros(p), np.zeros((p, 1))
            scores.limits[t.name], scores.labels[t.name] = np.ones(1), [t.name]
        return scores
    span = int(kept_rows[-1] - kept_rows[0] + 1)
    finite = np.isfinite(x)
    count = finite.sum(axis=0)
    mean = np.nansum(np.where(finite, x, 0.0), axis=0) / np.maximum(count, 1)
    xc = np.where(finite, x - mean, 0.0)  # mean fill: a constant is causal (module docstring)
    residuals = {False: _residual(xc, basis)}
    if control:
        residuals[True] = _residual(xc, np.column_stack([basis, paths]))
    for tgt, y_all in targets:
        y = y_all[keep]
        resid, usable = residuals[tgt.kind == CONTROL]
        h = tgt.horizon
        scores.copy[tgt.name] = _pairwise_r2(x, finite, y)
        spans = probe_spans(h)
        probes = np.column_stack([relative_change(level, kept_rows, m) for m in spans] + [y])
        probes -= probes.mean(axis=0)
        ss_p = np.einsum("ij,ij->j", probes, probes)
        ss_r = np.einsum("ij,ij->j", resid, resid)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (resid.T @ probes) / np.sqrt(np.outer(ss_r, ss_p))
        r2 = np.where(usable[:, None] & (ss_p > 0)[None, :], r * r, 0.0)
        scores.future[tgt.name] = np.nan_to_num(r2, nan=0.0)
        noise = np.array([max(m / span, 1.0 / n) for m in [*spans, h]])
        scores.limits[tgt.name] = np.maximum(future_r2, NOISE_Z**2 * noise)
        scores.labels[tgt.name] = [probe_label(m) for m in spans] + [tgt.name]
    return scores


def _residual(xc: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x minus its least-squares projection on the basis, which columns keep a residual)."""
    q, _ = np.linalg.qr(basis)
    resid = xc - q @ (q.T @ xc)
    ss_x = np.einsum("ij,ij->j", xc, xc)
    ss_r = np.einsum("ij,ij->j", resid, resid)
    return resid, (ss_x > 0) & (ss_r > _EXPLAINED * ss_x)


def _pairwise_r2(x: np.ndarray, finite: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation of each column of ``x`` with ``y`` over the rows where x is finite."""
    w = finite.astype("float64")
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(finite, x, 0.0).sum(axis=0) / n
        my = (w.T @ y) / n
        dx = np.where(finite, x - mx, 0.0)
        dy = w * (y[:, None] - my)
        r = np.einsum("ij,ij->j", dx, dy) / np.sqrt(np.einsum("ij,ij->j", dx, dx) * np.einsum("ij,ij->j", dy, dy))
    out = r * r
    return np.where(np.isfinite(out) & (n > 2), out, 0.0)


def check_leakage(
    features: np.ndarray,
    names: Sequence[str],
    targets: Sequence[tuple[Target, np.ndarray]],
    level: np.ndarray,
    rows: np.ndarray,
    *,
    copy_r2: float,
    future_r2: float,
    pair: str,
) -> dict[str, TargetLeakage]:
    """Raise :class:`LeakageError` naming the first leaking feature and target; else the largest scores."""
    s = leakage_scores(features, names, targets, level, rows, future_r2=future_r2)
    out = {}
    for tgt, _ in targets:
        name = tgt.name
        j = int(np.argmax(s.copy[name]))
        if s.copy[name][j] >= copy_r2:
            raise LeakageError(
                f"{pair}: feature {names[j]} leaks {name}: on its own it explains it with R² {s.copy[name][j]:.3f} "
                f"(≥ families.select.leakage_r2 = {copy_r2:g}) on the training rows; {_FIX}"
            )
        excess = s.future[name] / s.limits[name][None, :]
        jf, kf = np.unravel_index(int(np.argmax(excess)), excess.shape)
        if excess[jf, kf] >= 1.0:
            raise LeakageError(
                f"{pair}: feature {names[jf]} carries information from bars after t ({name}, horizon {tgt.horizon}): "
                f"beyond what the past index moves explain, it explains R² {s.future[name][jf, kf]:.3f} of "
                f"{s.labels[name][kf]} on the training rows (causal features stay near 0; limit "
                f"{s.limits[name][kf]:.3g}); {_FIX}"
            )
        jm, km = np.unravel_index(int(np.argmax(s.future[name])), s.future[name].shape)
        out[name] = TargetLeakage(
            name,
            float(s.copy[name][j]),
            names[j],
            float(s.future[name][jm, km]),
            float(s.limits[name][km]),
            names[jm],
            s.labels[name][km],
            s.rows,
        )
    return out
