"""The compiled loops of :mod:`._reg_fast` (numba, cached on disk; imported on first use only)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _acc(s, e, x, comp):
    """``s + x``; with ``comp`` the exact rounding error of the addition goes into ``e`` (TwoSum)."""
    t = s + x
    if comp:
        bb = t - s
        e += (s - (t - bb)) + (x - bb)
    return t, e


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add_row(s0, s1, s2, s3, sq, e0, e1, e2, e3, eq, yl, jj, d, comp):
    """Add one row (level y', position J) to the sums Σy', ΣJy', ΣJ²y', ΣJ³y' (to degree d),
    Σy'² (``s*``), and with ``comp`` their compensations (``e*``)."""
    t1 = jj * yl
    t2 = jj * t1
    s0, e0 = _acc(s0, e0, yl, comp)
    s1, e1 = _acc(s1, e1, t1, comp)
    sq, eq = _acc(sq, eq, yl * yl, comp)
    if d >= 2:
        s2, e2 = _acc(s2, e2, t2, comp)
        if d >= 3:
            s3, e3 = _acc(s3, e3, jj * t2, comp)
    return s0, s1, s2, s3, sq, e0, e1, e2, e3, eq


@numba.njit(cache=True, nogil=True, error_model="numpy")
def fit_rows(y, w, d, comp, norm_w, inv_norm, at_last, at_next, slope_last, mono, budget, out, flags):
    """Fill ``out[:, W−1:]`` (rows in :func:`output_names` order) and ``flags``; return #flags.

    ``norm_w[k]`` is ``W/N_k``,
    ``inv_norm[k]`` ``1/N_k``; ``at_last``, ``at_next``, ``slope_last`` the values of P_k at
    i = W−1, at i = W and ``dP_k/di`` at i = W−1; ``mono[k, p]`` the coefficient of i**p in
    P_k; ``budget`` the relative errors accepted, see :data:`BUDGET`; ``comp``: compensated sums.
    """
    n = y.shape[0]
    wf = float(w)
    w2 = 2.0 * wf  # the largest |J| in a window
    # rounding error per unit of Σ|terms|: W additions of rounded terms as a random walk, or,
    # compensated, the rounding of the terms themselves and of a few operations
    unit = budget[3] * (5.0 if comp else np.sqrt(wf) + 4.0) * 2.220446049250313e-16
    c1 = 3.0 * wf * wf - 7.0  # P3 = 5v³ − (3W²−7)v
    c2 = wf * wf - 1.0  # P2 = 3v² − (W²−1)
    suff = np.zeros((w, 5))  # suff[i]: K0..K3 and Σy'² over the last i rows of the block before b
    # the typical |α_k| of the previous block's rows: their mean, each clipped at 4× the block
    # before's (one outlier does not inflate it); 0 before the first block
    scale = np.zeros(4)
    seen = np.zeros(4)
    n_flag = 0
    for b in range(0, n, w):
        ref = y[b]
        seen[:] = 0.0
        if b > 0:
            s0 = s1 = s2 = s3 = sq = e0 = e1 = e2 = e3 = eq = 0.0
            for i in range(1, w):
                s0, s1, s2, s3, sq, e0, e1, e2, e3, eq = _add_row(
                    s0, s1, s2, s3, sq, e0, e1, e2, e3, eq, y[b - i] - ref, -2.0 * i, d, comp
                )
                suff[i, 0] = s0 + e0
                suff[i, 1] = s1 + e1
                suff[i, 2] = s2 + e2
                suff[i, 3] = s3 + e3
                suff[i, 4] = sq + eq
        s0 = s1 = s2 = s3 = sq = e0 = e1 = e2 = e3 = eq = 0.0
        m0 = w - 1 if b == 0 else 0  # before: windows that reach before the series
        m_end = min(w, n - b)
        for m in range(m_end):
            t = b + m
            yl = y[t] - ref
            s0, s1, s2, s3, sq, e0, e1, e2, e3, eq = _add_row(
                s0, s1, s2, s3, sq, e0, e1, e2, e3, eq, yl, 2.0 * m, d, comp
            )
            if m < m0:
                continue
            i = w - 1 - m
            p0 = s0 + e0
            p1 = s1 + e1
            p2 = s2 + e2
            p3 = s3 + e3
            pq = sq + eq
            k0 = p0 + suff[i, 0]
            k1 = p1 + suff[i, 1]
            s2w = pq + suff[i, 4]
            g = 2.0 * m + 1.0 - wf  # the window centre, in J units
            ag = abs(g)
            amag = np.sqrt(wf * s2w)  # ≥ Σ|y'| (Cauchy–Schwarz)
            # α_k = Σ P_k(v)·y' from the centred moments Σ v^r·y' (v = J − G); h_k·Σ|y'| bounds
            # the magnitude of the terms that enter α_k (|J| ≤ 2W), unit·h_k·amag its rounding
            m1 = k1 - g * k0
            a1 = m1
            h1 = w2 + ag
            eb1 = unit * h1 * amag
            wsst = wf * s2w - k0 * k0
            wsse = wsst - a1 * a1 * norm_w[1]
            esse = 2.0 * abs(a1) * eb1 * norm_w[1] + 4.0 * unit * wf * s2w
            bad = eb1 > budget[0] * max(abs(a1), scale[1])
            seen[1] += min(abs(a1), 4.0 * scale[1]) if scale[1] > 0.0 else abs(a1)
            ga1 = a1 * inv_norm[1]
            ga2 = 0.0
            ga3 = 0.0
            if d >= 2:
                k2 = p2 + suff[i, 2]
                hm2 = w2 * w2 + ag * w2 + ag * h1
                m2 = (k2 - g * k1) - g * m1  # Σ v²·y'
                a2 = 3.0 * m2 - c2 * k0
                eb2 = unit * (3.0 * hm2 + c2) * amag
                wsse -= a2 * a2 * norm_w[2]
                esse += 2.0 * abs(a2) * eb2 * norm_w[2]
                bad = bad or eb2 > budget[0] * max(abs(a2), scale[2])
                seen[2] += min(abs(a2), 4.0 * scale[2]) if scale[2] > 0.0 else abs(a2)
                ga2 = a2 * inv_norm[2]
                if d >= 3:
                    k3 = p3 + suff[i, 3]
                    m3 = ((k3 - g * k2) - g * (k2 - g * k1)) - g * m2  # Σ v³·y'
                    a3 = 5.0 * m3 - c1 * m1
                    hm3 = w2 * w2 * w2 + ag * w2 * w2 + ag * (w2 * w2 + ag * w2) + ag * hm2
                    eb3 = unit * (5.0 * hm3 + c1 * h1) * amag
                    wsse -= a3 * a3 * norm_w[3]
                    esse += 2.0 * abs(a3) * eb3 * norm_w[3]
                    bad = bad or eb3 > budget[0] * max(abs(a3), scale[3])
                    seen[3] += min(abs(a3), 4.0 * scale[3]) if scale[3] > 0.0 else abs(a3)
                    ga3 = a3 * inv_norm[3]
            if wsst < 0.0:
                wsst = 0.0
            if wsse < 0.0:
                wsse = 0.0
            if wsse > wsst:
                wsse = wsst
            if wsst > 0.0 and (bad or esse > budget[1] * wsse or esse > budget[2] * wsst):
                flags[t] = 1
                n_flag += 1
            mean = k0 / wf
            # the coefficients of i**p, highest first, as np.polyfit
            row = 0
            if d >= 3:
                out[row, t] = ga1 * mono[1, 3] + ga2 * mono[2, 3] + ga3 * mono[3, 3]
                row += 1
            quad = ga1 * mono[1, 2] + ga2 * mono[2, 2] + ga3 * mono[3, 2]
            if d >= 2:
                out[row, t] = quad
                row += 1
            lin = ga1 * mono[1, 1] + ga2 * mono[2, 1] + ga3 * mono[3, 1]
            out[row, t] = lin
            out[row + 1, t] = ((ga1 * mono[1, 0] + ga2 * mono[2, 0] + ga3 * mono[3, 0]) + mean) + ref
            row += 2
            if d >= 2:
                out[row, t] = quad * ((wf - 1.0) * (wf - 1.0))
                row += 1
            out[row, t] = lin * (wf - 1.0)
            last = ga1 * at_last[1] + ga2 * at_last[2] + ga3 * at_last[3]
            out[row + 1, t] = (mean + last) + ref
            out[row + 2, t] = (yl - mean) - last
            out[row + 3, t] = ga1 * slope_last[1] + ga2 * slope_last[2] + ga3 * slope_last[3]
            out[row + 4, t] = (mean + (ga1 * at_next[1] + ga2 * at_next[2] + ga3 * at_next[3])) + ref
            out[row + 5, t] = 1.0 - wsse / wsst if wsst > 0.0 else np.nan
            out[row + 6, t] = np.sqrt(wsse) / wf
        for k in range(1, d + 1):
            scale[k] = seen[k] / (m_end - m0)
    return n_flag
