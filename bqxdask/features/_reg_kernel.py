"""Rolling least-squares polynomial fits in O(1) work per row, in double-double arithmetic.

The reference and the fallback of :mod:`._reg_fast`, the compiled float64 kernel behind
:mod:`bqxdask.features.reg`: it redoes, block by block, the rows whose float64 rounding
bound is too large to vouch for (nearly exact fits), and ``benchmarks/bench_reg.py`` times it
as what the compiled kernel replaced.

The fit
-------
For the window of W rows ending at bar t, with positions i = 0..W−1 and the centred, doubled
(hence integer) coordinate ``v = 2i − (W−1)``, the least-squares polynomial of degree d is
expanded in the discrete orthogonal (Gram) polynomials of the window, scaled to integer
coefficients::

    P0 = 1,   P1 = v,   P2 = 3v² − (W²−1),   P3 = 5v³ − (3W²−7)·v

so ``ŷ = mean + Σ_k γ_k P_k(v)`` with ``γ_k = α_k / N_k``, ``α_k = Σ_i P_k(v_i) y_i`` and
``N_k = Σ_i P_k(v_i)²`` (an exact integer); ``SSE = SST − Σ_k α_k²/N_k``. Everything a column
needs follows from the window's power sums ``K_r = Σ J^r y`` (r ≤ d) and ``Σ y²``.

The window sums: only rows inside the window, O(1) work per row
----------------------------------------------------------------
The series is cut into blocks of exactly W rows. Every window ending in block k+1 starts in
block k or at the boundary row ``b`` between them, so it is the union of a *suffix* of block
k and a *prefix* of block k+1, and it always contains row b. Per boundary:

* the local level ``y' = y − y[b]``: y[b] lies inside every window that uses it (the windows
  never see a level they do not contain, so a quiet window after a jump is as accurate as
  any), and it is a past row for each of them (no row depends on later bars, not even
  through rounding);
* the local position ``J = 2(j − b)``; the window's centre G and the map from ``K_r`` to
  ``α_k`` are integer polynomials in G, exact in float64 while ``8·W³ < 2**53``;
* the window sum is a suffix sum of block k (accumulated backwards) plus a prefix sum of
  block k+1: only rows inside the window enter it. (A difference of two long prefix sums
  would cancel the magnitude of rows outside the window, e.g. the level before a jump.)

Nothing runs across blocks, so a value depends only on its own window, up to where the
block boundaries fall: a partitioned run agrees with the whole-series run to ~1e-16 relative.

Precision
---------
All sums are carried in double-double (Dekker/Knuth error-free transformations, ~106 bits):
products ``J^r·y'`` and ``y'²`` are split exactly, ``np.cumsum`` — a sequential
accumulate, ``s[m] = fl(s[m−1] + x[m])`` — is followed by the exact error of each of its
additions (TwoSum), those errors are summed in a second cumulative sum (they are ~1e-16 of
the sums, so this one may run over both blocks), and every later combination (the shift from
the boundary to the window centre, ``W·SST = W·Σy'² − (Σy')²``, ``W·SSE = W·SST − Σ_k
α_k²·W/N_k``) is done in double-double with exact integer or rational constants. The
cancellations of a textbook rolling formula (level ≈ 100 against a spread of 1e-4; r² → 1)
cost digits out of 106 instead of out of 53; results are rounded to float64 at the end.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from math import comb

import numpy as np

#: largest window: keeps 8·W³ (the largest G-polynomial coefficient and J³) below 2**53
MAX_WINDOW = 100_000
#: float64 values per 2-D work array (a group of block pairs): the ~40 temporaries of a group
#: then stay close to the cache; larger groups are bound by memory traffic, smaller by numpy calls
CHUNK_VALUES = 1 << 13

_SPLITTER = 134217729.0  # 2**27 + 1 (Dekker)

#: integer coefficients (lowest power first) of the scaled Gram polynomials P_k(v), given W
_GRAM = (
    lambda w: (1,),
    lambda w: (0, 1),
    lambda w: (-(w * w - 1), 0, 3),
    lambda w: (0, -(3 * w * w - 7), 0, 5),
)

#: names of the fitted monomial coefficients, highest degree first (as np.polyfit)
_COEF_NAMES = ("cubic", "quad", "lin", "const")

DD = tuple  # a double-double value: (hi, lo) float64 arrays, value = hi + lo


def output_names(degree: int) -> tuple[str, ...]:
    """Per-window outputs in SPEC §4.6 order (degree 3 puts ``cubic`` first)."""
    coefs = _COEF_NAMES[3 - degree :]
    terms = ("quad_term", "lin_term") if degree >= 2 else ("lin_term",)
    return (*coefs, *terms, "pred", "resid", "slope", "forecast", "r2", "rmse")


# -------------------------------------------------------------------------------------------
# Error-free transformations and double-double helpers.
# -------------------------------------------------------------------------------------------
def _split(a):
    """Dekker's split: ``a == hi + lo`` exactly, each half with at most 26 significant bits."""
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _prod_err(a, a_split, b, b_split, p):
    """The exact rounding error of ``p = fl(a·b)`` (Dekker), from pre-split operands."""
    ah, al = a_split
    bh, bl = b_split
    e = ah * bh
    e -= p
    e += ah * bl
    e += al * bh
    e += al * bl
    return e


def _sum_err(a, b, s):
    """The exact rounding error of ``s = fl(a + b)`` (Knuth's TwoSum)."""
    bb = s - a
    e = s - bb
    np.subtract(a, e, out=e)
    e += b - bb
    return e


def _dd_add(x: DD, y: DD) -> DD:
    s = x[0] + y[0]
    e = _sum_err(x[0], y[0], s)
    e += x[1]
    e += y[1]
    return s, e


def _dd_sum(terms: list[DD]) -> DD:
    hi, lo = terms[0][0], terms[0][1].copy()
    for th, tl in terms[1:]:
        s = hi + th
        lo += _sum_err(hi, th, s)
        lo += tl
        hi = s
    return hi, lo


def _dd_lincomb(terms) -> DD:
    """``Σ c·x`` over ``(x, x_hi_split, c, c_split)`` (x double-double, c exact float64; None = 1)."""
    parts = []
    for x, xs, c, cs in terms:
        if c is None:
            parts.append(x)
            continue
        p = x[0] * c
        e = _prod_err(x[0], xs, c, cs, p)
        e += x[1] * c
        parts.append((p, e))
    return _dd_sum(parts)


def _dd_square(x: DD, xs) -> DD:
    """``x²`` for x double-double (``xs``: the split of its high part), unnormalised."""
    hi, lo = x
    sq = hi * hi
    e = _prod_err(hi, xs, hi, xs, sq)
    e += (2.0 * hi) * lo
    return sq, e


def _dd_square_times(x: DD, xs, const: tuple[float, float]) -> DD:
    """``x²·k`` for x double-double and ``k = (kh, kl)`` a double-double constant."""
    sq, e = _dd_square(x, xs)
    kh, kl = const
    p = sq * kh
    f = _prod_err(sq, _split(sq), kh, _split(np.float64(kh)), p)
    f += e * kh
    f += sq * kl
    return p, f


def _dd_const(q: Fraction) -> tuple[float, float]:
    hi = float(q)
    return hi, float(q - Fraction(hi))


# -------------------------------------------------------------------------------------------
# Exact constants of one (W, degree).
# -------------------------------------------------------------------------------------------
def _poly_eval(coefs: tuple[int, ...], v: int) -> int:
    return sum(c * v**p for p, c in enumerate(coefs))


def _poly_deriv_eval(coefs: tuple[int, ...], v: int) -> int:
    return sum(p * c * v ** (p - 1) for p, c in enumerate(coefs) if p)


@functools.lru_cache(maxsize=64)
def gram_constants(window: int, degree: int) -> dict[str, np.ndarray]:
    """The float64 constants of the fit of one (W, degree), padded to degree 3 with zeros.

    ``norm_w[k] = W/N_k``, ``inv_norm[k] = 1/N_k``; ``at_last``, ``at_next``: P_k at i = W−1
    and i = W; ``slope_last``: dP_k/di at i = W−1; ``mono[k, p]``: the coefficient of i**p in
    P_k(2i − (W−1)) (the monomial coefficients of np.polyfit per unit γ_k).
    """
    w = window
    polys = [_GRAM[k](w) for k in range(degree + 1)]
    norms = [sum(_poly_eval(p, v) ** 2 for v in range(-(w - 1), w, 2)) for p in polys]
    # ŷ(i) = Σ_k γ_k P_k(2i − (W−1)): expand each P_k in powers of i (np.polyfit's coefficients)
    mono = np.zeros((4, 4))
    for k, poly in enumerate(polys):
        for pv, c in enumerate(poly):
            for p in range(pv + 1):
                mono[k, p] += c * comb(pv, p) * 2**p * (-(w - 1)) ** (pv - p)

    def padded(values) -> np.ndarray:
        out = np.zeros(4)
        out[: len(values)] = values
        return out

    return {
        "norms": norms,
        "norm_w": padded([float(Fraction(w, n)) for n in norms]),
        "inv_norm": padded([1.0 / n for n in norms]),
        "at_last": padded([_poly_eval(p, w - 1) for p in polys]),  # i = W−1
        "at_next": padded([_poly_eval(p, w + 1) for p in polys]),  # i = W
        "slope_last": padded([2 * _poly_deriv_eval(p, w - 1) for p in polys]),
        "mono": mono,
    }


@functools.lru_cache(maxsize=64)
def _constants(window: int, degree: int) -> dict:
    w = window
    polys = [_GRAM[k](w) for k in range(degree + 1)]
    base = gram_constants(w, degree)
    norms = base["norms"]
    m = np.arange(w, dtype=np.int64)  # output position in its block (t = b + m)
    g = 2 * m + 1 - w  # the window centre in J units
    # α_k = Σ_r c_kr(G)·K_r with c_kr = Σ_p a_kp·comb(p, r)·(−G)**(p−r)   (v = J − G)
    coef = []
    for k in range(1, degree + 1):
        a = polys[k]
        row = []
        for r in range(k + 1):
            c = np.zeros(w, dtype=np.int64)
            for p in range(r, len(a)):
                if a[p]:
                    c += a[p] * comb(p, r) * (-g) ** (p - r)
            if np.abs(c).max() >= 2**53:
                raise AssertionError(f"window {w} too long for exact float64 coefficients")
            row.append(c.astype(float))
        coef.append(row)
    j_right = 2.0 * m  # J of block k+1's rows: 0, 2, .., 2W−2
    j_left = 2.0 * (m - w)  # J of block k's rows: −2W, .., −2
    jpow_right = [j_right**r for r in range(degree + 1)]
    jpow_left = [j_left**r for r in range(degree + 1)]
    return {
        "w_over_norm": [_dd_const(Fraction(w, n)) for n in norms],
        "inv_norm": base["inv_norm"][: degree + 1],
        "at_last": base["at_last"][: degree + 1],
        "at_next": base["at_next"][: degree + 1],
        "slope_last": base["slope_last"][: degree + 1],
        "mono": base["mono"][: degree + 1, : degree + 1],
        "coef": coef,
        "coef_split": [[_split(c) for c in row] for row in coef],
        "jpow": (jpow_left, jpow_right),
        "jpow_split": ([_split(x) for x in jpow_left], [_split(x) for x in jpow_right]),
    }


# -------------------------------------------------------------------------------------------
# The kernel.
# -------------------------------------------------------------------------------------------
def checked_series(y: np.ndarray) -> np.ndarray:
    """``y`` as a contiguous float64 array, after checking that it is finite.

    ``window`` and ``degree`` obey :func:`bqxdask.features.reg.check_fit` (the one rule of the
    fits, applied to the config and to every call of :func:`bqxdask.features.reg.reg`).
    """
    y = np.ascontiguousarray(y, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("rolling_polyfit needs a finite series; fix: cut leading NaNs off first")
    return y


def rolling_polyfit_dd(y: np.ndarray, window: int, degree: int) -> dict[str, np.ndarray]:
    """All per-window outputs of a rolling degree-``degree`` fit over ``window`` rows.

    ``y`` is a finite float64 series in time order. Row t uses ``y[t−W+1..t]``; the first
    ``W − 1`` rows are NaN. Returns ``{name: array}`` for :func:`output_names` ``(degree)``.
    """
    y = checked_series(y)
    w = window
    n = len(y)
    names = output_names(degree)
    if n < w:
        return {name: np.full(n, np.nan) for name in names}
    # one allocation; every row from W−1 on is written below, the first W−1 rows are NaN
    table = np.empty((len(names), n))
    table[:, : w - 1] = np.nan
    out = dict(zip(names, table))
    # Block k holds padded rows [kW, (k+1)W); y[j] sits at padded row W + j. The windows ending
    # in block k (k ≥ 1) are suffix(block k−1) + prefix(block k). The pads only ever reach
    # windows that are not full (rows < W−1) or rows past the end; both are discarded.
    n_blocks = -(-(n + w) // w)
    padded = np.empty(n_blocks * w)
    padded[:w] = y[0]
    padded[w : w + n] = y
    padded[w + n :] = y[-1]
    blocks = padded.reshape(n_blocks, w)
    consts = _constants(w, degree)
    group = max(1, CHUNK_VALUES // w)
    for k0 in range(1, n_blocks, group):
        k1 = min(n_blocks, k0 + group)
        part = _fit_pairs(blocks[k0 - 1 : k1 - 1], blocks[k0:k1], w, degree, consts)
        r0 = (k0 - 1) * w  # y row of the first output of block k0
        r1 = min(n, (k1 - 1) * w)
        lo = max(r0, w - 1)  # rows before W−1 belong to windows that reach into the pad
        for name in names:
            out[name][lo:r1] = part[name].ravel()[lo - r0 : r1 - r0]
    return out


def _window_sums(left: tuple[np.ndarray, np.ndarray | None], right: tuple[np.ndarray, np.ndarray | None]) -> DD:
    """Per output position m, the double-double sum of ``left[m+1:] + right[:m+1]``.

    ``left``/``right`` are ``(hi, lo)`` terms (``lo`` may be None) of block k and block k+1;
    the window of the output at row m of block k+1 is rows m+1.. of block k and ..m of k+1.
    The ``hi`` parts are accumulated *within the window only* — backwards over block k,
    forwards over block k+1 — so no rows outside it enter their sum. The exact errors of those
    additions and the ``lo`` parts, all ~1e-16 of the hi parts, need no such care: they go
    into one prefix sum over both blocks, read as a difference.
    """
    lh, ll = left
    rh, rl = right
    g, w = lh.shape
    back = np.empty((g, w + 1))  # back[:, i] = sum of the last i values of block k
    back[:, 0] = 0.0
    lh_rev = lh[:, ::-1]
    np.cumsum(lh_rev, axis=1, out=back[:, 1:])
    fwd = np.cumsum(rh, axis=1)
    z = np.empty((g, 2 * w + 1))  # prefix sums of [errors+lo of block k, errors+lo of block k+1]
    z[:, 0] = 0.0
    zl, zr = z[:, 1 : w + 1], z[:, w + 1 :]
    # the error of adding the value at row j of block k to the backward sum (j = W−2..0)
    zl[:, w - 2 :: -1] = _sum_err(back[:, 1:w], lh_rev[:, 1:], back[:, 2:])
    zl[:, w - 1] = 0.0
    zr[:, 0] = 0.0
    zr[:, 1:] = _sum_err(fwd[:, :-1], rh[:, 1:], fwd[:, 1:])
    if ll is not None:
        zl += ll
    if rl is not None:
        zr += rl
    np.cumsum(z[:, 1:], axis=1, out=z[:, 1:])
    suffix = back[:, w - 1 :: -1]  # the sum of block k from row m+1 on, for m = 0..W−1
    h = suffix + fwd
    e = _sum_err(suffix, fwd, h)
    e += z[:, w + 1 :]
    e -= z[:, 1 : w + 1]
    return h, e


def _times(x: np.ndarray, xs, f: np.ndarray, fs) -> tuple[np.ndarray, np.ndarray]:
    """``x·f`` as an exact pair ``(p, e)``."""
    p = x * f
    return p, _prod_err(x, xs, f, fs, p)


def fit_blocks(left: np.ndarray, right: np.ndarray, window: int, degree: int) -> dict[str, np.ndarray]:
    """Every output, in double-double, of the windows ending in ``right``.

    ``left`` and ``right`` are ``(g, W)`` arrays: g pairs of consecutive blocks; output
    ``[p, m]`` is the fit of ``left[p, m+1:]`` followed by ``right[p, :m+1]``.
    """
    return _fit_pairs(left, right, window, degree, _constants(window, degree))


def _fit_pairs(left: np.ndarray, right: np.ndarray, w: int, d: int, consts: dict) -> dict[str, np.ndarray]:
    ref = right[:, :1].copy()  # y at the boundary row: inside, and at or before, every window
    yl_left = left - ref
    yl_right = right - ref  # exact (Sterbenz) whenever y and ref are within a factor 2
    lhs = (yl_left, _split(yl_left))
    rhs = (yl_right, _split(yl_right))
    (jl, jr), (jls, jrs) = consts["jpow"], consts["jpow_split"]

    # K_r = Σ_window J^r·y' (r = 0..d) and Σ_window y'², all in double-double
    moments = [_window_sums((yl_left, None), (yl_right, None))]
    for r in range(1, d + 1):
        moments.append(_window_sums(_times(*lhs, jl[r], jls[r]), _times(*rhs, jr[r], jrs[r])))
    s2 = _window_sums(_times(*lhs, *lhs), _times(*rhs, *rhs))

    ksplit = [_split(k[0]) for k in moments]
    # α_k = Σ_r c_kr(G)·K_r   (k = 1..d; the leading coefficient of P_1 is 1)
    alphas = []
    for k in range(1, d + 1):
        coef, csplit = consts["coef"][k - 1], consts["coef_split"][k - 1]
        terms = [(moments[r], ksplit[r], coef[r], csplit[r]) for r in range(k)]
        terms.append((moments[k], ksplit[k], None, None) if k == 1 else (moments[k], ksplit[k], coef[k], csplit[k]))
        alphas.append(_dd_lincomb(terms))
    # W·SST = W·Σy'² − (Σy')²,   W·SSE = W·SST − Σ_k α_k²·W/N_k
    w_f = float(w)
    s1 = moments[0]
    terms = [
        _dd_lincomb([(s2, _split(s2[0]), w_f, (w_f, 0.0))]),
        _neg(_dd_square(s1, ksplit[0])),
    ]
    wsst = _dd_sum(terms)
    for k, alpha in enumerate(alphas, start=1):
        terms.append(_neg(_dd_square_times(alpha, _split(alpha[0]), consts["w_over_norm"][k])))
    wsse = _dd_sum(terms)

    # a constant window has y' ≡ 0 (its boundary row is inside it): every sum is exactly 0
    wsst_d = wsst[0] + wsst[1]
    np.maximum(wsst_d, 0.0, out=wsst_d)
    wsse_d = wsse[0] + wsse[1]
    np.clip(wsse_d, 0.0, wsst_d, out=wsse_d)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - wsse_d / wsst_d
    r2[wsst_d == 0.0] = np.nan
    rmse = np.sqrt(wsse_d)
    rmse /= w_f

    # the fit in float64: ŷ(i) = ref + mean' + Σ_k γ_k P_k(2i − (W−1)),  γ_k = α_k / N_k
    mean = s1[0] + s1[1]
    mean /= w_f
    gam = []
    for k, alpha in enumerate(alphas, start=1):
        g = alpha[0] + alpha[1]
        g *= consts["inv_norm"][k]
        gam.append(g)

    def combine(values: np.ndarray) -> np.ndarray:
        acc = gam[0] * values[1]
        for k in range(2, d + 1):
            acc += gam[k - 1] * values[k]
        return acc

    out: dict[str, np.ndarray] = {}
    mono = consts["mono"]
    for p, name in zip(range(d, -1, -1), _COEF_NAMES[3 - d :]):
        out[name] = combine(mono[:, p])
    out["const"] += mean
    out["const"] += ref
    out["lin_term"] = out["lin"] * float(w - 1)
    if d >= 2:
        out["quad_term"] = out["quad"] * float((w - 1) ** 2)
    last = combine(consts["at_last"])
    out["resid"] = (yl_right - mean) - last
    pred = mean + last
    pred += ref
    out["pred"] = pred
    out["slope"] = combine(consts["slope_last"])
    forecast = combine(consts["at_next"])
    forecast += mean
    forecast += ref
    out["forecast"] = forecast
    out["r2"] = r2
    out["rmse"] = rmse
    return out


def _neg(x: DD) -> DD:
    return -x[0], -x[1]
