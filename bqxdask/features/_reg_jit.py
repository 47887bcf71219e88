"""The compiled loops of :mod:`._reg_fast` (numba, cached on disk; imported on first use only).

:func:`fit_rows` walks the series in chunks of :data:`CHUNK` rows, three passes per chunk, all
in one scratch array small enough for the core's L2 cache:

A. the window sums of every row (``K0..K3``, ``Σy'²``), block by block: the one loop that must
   run row after row (the sums are carried);
B. every output of every row from its own sums: no row depends on another, so the loop is
   vectorised (the scratch fields sit at constant distances in one array and are indexed
   unsigned, which lets LLVM prove the stores do not overlap the loads); then into the table;
C. the rounding check of each row against the previous block's typical ``|α_k|``
   (vectorised), then the block's own typical ``|α_k|`` (a sum in row order).

The outputs leave the scratch for the table in whole cache lines of non-temporal stores
(:func:`_stream_line`): the table (53 MB for the ten default windows) is far larger than the
caches, and an ordinary store first reads each line it writes. The copy took a third of the
kernel's time; it is ~40 % faster so (``benchmarks/bench_reg.py``), the values unchanged.

The values, the flags and their order of operations are those of the single fused loop this
replaced (bit for bit: ``benchmarks/bench_reg.py`` and the tests hold both against
``np.polyfit`` and the double-double kernel); the split is 1.5× faster at degree 2.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

#: rows per chunk: the scratch (N_FIELDS × FIELD values, 37 KiB) stays in L1/L2; larger chunks (1024) ran
#: 10-20 ms for the ten default windows depending on where the scratch fell, 128 ran 10-14
CHUNK = 128
#: the distance of two scratch fields: not a multiple of 4 KiB, so that the fields of one row
#: do not compete for one L1 cache set (a power-of-two distance made pass B 6× slower)
FIELD = CHUNK + 40
# the scratch fields: what pass A leaves for B, what B leaves for C, then the outputs
K0, K1, K2, K3, SQ, YL, G, REF = 0, 1, 2, 3, 4, 5, 6, 7
ABS_ALPHA = 8  # |α_k| at ABS_ALPHA + k − 1
BOUND = 11  # the rounding bound of α_k at BOUND + k − 1
SSE_BAD = 14  # 1 where the bounds on W·SSE fail, else 0
POSITIVE = 15  # 1 where W·SST > 0, else 0
OUT = 16  # the outputs in output_names order (at most 12)
N_FIELDS = OUT + 12
#: float64 values of the scratch :func:`fit_rows` takes (allocated by the caller, once per
#: thread: allocated per call, its fresh pages made ten windows 1.5× slower)
SCRATCH_SIZE = N_FIELDS * FIELD
#: the constants of one (W, degree) that pass B reads, in :func:`_constants` order
N_CONST = 34
#: float64 values in one cache line: the unit of :func:`_stream_line`
LINE = 8


@intrinsic
def _stream_line(typingctx, dst, di, src, si):
    """``dst[di:di+LINE] = src[si:si+LINE]`` in one non-temporal store, which writes the line
    without reading it first; ``dst[di]`` must sit on a 64-byte boundary (the caller peels)."""
    sig = numba.types.void(dst, di, src, si)

    def codegen(context, builder, signature, args):
        line = ir.VectorType(ir.DoubleType(), LINE)
        pointers = []
        for ty, arr, index in ((signature.args[0], args[0], args[1]), (signature.args[2], args[2], args[3])):
            a = context.make_array(ty)(context, builder, arr)
            p = cgutils.get_item_pointer(context, builder, ty, a, [index], wraparound=False, boundscheck=False)
            pointers.append(builder.bitcast(p, line.as_pointer()))
        store = builder.store(builder.load(pointers[1], align=8), pointers[0], align=64)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_fence(typingctx):
    """A full memory fence: the non-temporal stores are ordered before whatever follows."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return numba.types.void(), codegen


@numba.njit(inline="always", **_JIT)
def _at(field, r):
    """The scratch index of ``field`` at chunk row ``r`` (unsigned: no wrap-around branch)."""
    return np.uint64(field * FIELD) + r


@numba.njit(inline="always", **_JIT)
def _acc(s, e, x, comp):
    """``s + x``; with ``comp`` the exact rounding error of the addition goes into ``e`` (TwoSum)."""
    t = s + x
    if comp:
        bb = t - s
        e += (s - (t - bb)) + (x - bb)
    return t, e


@numba.njit(inline="always", **_JIT)
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


@numba.njit(**_JIT)
def _constants(w, unit, norm_w, inv_norm, at_last, at_next, slope_last, mono, budget):
    wf = float(w)
    c = np.empty(N_CONST)
    c[0] = wf
    c[1] = 2.0 * wf  # the largest |J| in a window
    c[2] = 3.0 * wf * wf - 7.0  # P3 = 5v³ − (3W²−7)v
    c[3] = wf * wf - 1.0  # P2 = 3v² − (W²−1)
    c[4] = unit
    for k in range(3):
        c[5 + k] = norm_w[k + 1]
        c[8 + k] = inv_norm[k + 1]
        c[11 + k] = at_last[k + 1]
        c[14 + k] = at_next[k + 1]
        c[17 + k] = slope_last[k + 1]
        for p in range(4):
            c[20 + 3 * (3 - p) + k] = mono[k + 1, p]
    c[32] = budget[1]
    c[33] = budget[2]
    return c


@numba.njit(**_JIT)
def _window_sums(y, c0, c_end, w, d, comp, suffix, state, scr):
    """Pass A: K0..K3, Σy'² of the windows ending at rows c0..c_end, and y', G, the level.

    A block starts every W rows; at its first row the sums over the previous block's suffixes
    are built backwards into ``suffix`` (``suffix[:, m]``: its last W−1−m rows), and the
    running prefix sums restart. ``state`` carries the prefix sums and the level from one
    chunk to the next: ``[s0, s1, s2, s3, sq, e0, e1, e2, e3, eq, ref]``.
    """
    wf = float(w)
    s0, s1, s2, s3, sq = state[0], state[1], state[2], state[3], state[4]
    e0, e1, e2, e3, eq, ref = state[5], state[6], state[7], state[8], state[9], state[10]
    m = c0 % w
    for t in range(c0, c_end):
        if m == 0:
            ref = y[t]
            if t > 0:
                s0 = s1 = s2 = s3 = sq = e0 = e1 = e2 = e3 = eq = 0.0
                for i in range(1, w):
                    s0, s1, s2, s3, sq, e0, e1, e2, e3, eq = _add_row(
                        s0, s1, s2, s3, sq, e0, e1, e2, e3, eq, y[t - i] - ref, -2.0 * i, d, comp
                    )
                    j = w - 1 - i
                    suffix[0, j] = s0 + e0
                    suffix[1, j] = s1 + e1
                    suffix[2, j] = s2 + e2
                    suffix[3, j] = s3 + e3
                    suffix[4, j] = sq + eq
            s0 = s1 = s2 = s3 = sq = e0 = e1 = e2 = e3 = eq = 0.0
        yl = y[t] - ref
        s0, s1, s2, s3, sq, e0, e1, e2, e3, eq = _add_row(s0, s1, s2, s3, sq, e0, e1, e2, e3, eq, yl, 2.0 * m, d, comp)
        r = np.uint64(t - c0)
        scr[_at(K0, r)] = (s0 + e0) + suffix[0, m]
        scr[_at(K1, r)] = (s1 + e1) + suffix[1, m]
        scr[_at(K2, r)] = (s2 + e2) + suffix[2, m]
        scr[_at(K3, r)] = (s3 + e3) + suffix[3, m]
        scr[_at(SQ, r)] = (sq + eq) + suffix[4, m]
        scr[_at(YL, r)] = yl
        scr[_at(G, r)] = 2.0 * m + 1.0 - wf  # the window centre, in J units
        scr[_at(REF, r)] = ref
        m += 1
        if m == w:
            m = 0
    state[0], state[1], state[2], state[3], state[4] = s0, s1, s2, s3, sq
    state[5], state[6], state[7], state[8], state[9], state[10] = e0, e1, e2, e3, eq, ref


@numba.njit(inline="always", **_JIT)
def _fit(scr, r0, r1, d, c):
    """Pass B: every output of chunk rows r0..r1 from their own sums (``d``: a literal).

    α_k = Σ P_k(v)·y' from the centred moments Σ v^r·y' (v = J − G); h_k·Σ|y'| bounds the
    magnitude of the terms that enter α_k (|J| ≤ 2W), unit·h_k·amag its rounding.
    """
    wf, w2, c1, c2, unit = c[0], c[1], c[2], c[3], c[4]
    nw1, nw2, nw3, in1, in2, in3 = c[5], c[6], c[7], c[8], c[9], c[10]
    al1, al2, al3, an1, an2, an3, sl1, sl2, sl3 = c[11], c[12], c[13], c[14], c[15], c[16], c[17], c[18], c[19]
    # mono[k, p] (the coefficient of i**p in P_k), highest power first
    m13, m23, m33, m12, m22, m32 = c[20], c[21], c[22], c[23], c[24], c[25]
    m11, m21, m31, m10, m20, m30 = c[26], c[27], c[28], c[29], c[30], c[31]
    bsse, bsst = c[32], c[33]
    wm1 = wf - 1.0
    for i in range(r1 - r0):
        r = np.uint64(r0 + i)
        k0 = scr[_at(K0, r)]
        k1 = scr[_at(K1, r)]
        s2w = scr[_at(SQ, r)]
        g = scr[_at(G, r)]
        ag = abs(g)
        amag = np.sqrt(wf * s2w)  # ≥ Σ|y'| (Cauchy–Schwarz)
        m1 = k1 - g * k0
        a1 = m1
        h1 = w2 + ag
        eb1 = unit * h1 * amag
        wsst = wf * s2w - k0 * k0
        wsse = wsst - a1 * a1 * nw1
        esse = 2.0 * abs(a1) * eb1 * nw1 + 4.0 * unit * wf * s2w
        scr[_at(ABS_ALPHA, r)] = abs(a1)
        scr[_at(BOUND, r)] = eb1
        ga1 = a1 * in1
        ga2 = 0.0
        ga3 = 0.0
        if d >= 2:
            k2 = scr[_at(K2, r)]
            hm2 = w2 * w2 + ag * w2 + ag * h1
            m2 = (k2 - g * k1) - g * m1  # Σ v²·y'
            a2 = 3.0 * m2 - c2 * k0
            eb2 = unit * (3.0 * hm2 + c2) * amag
            wsse -= a2 * a2 * nw2
            esse += 2.0 * abs(a2) * eb2 * nw2
            scr[_at(ABS_ALPHA + 1, r)] = abs(a2)
            scr[_at(BOUND + 1, r)] = eb2
            ga2 = a2 * in2
            if d >= 3:
                k3 = scr[_at(K3, r)]
                m3 = ((k3 - g * k2) - g * (k2 - g * k1)) - g * m2  # Σ v³·y'
                a3 = 5.0 * m3 - c1 * m1
                hm3 = w2 * w2 * w2 + ag * w2 * w2 + ag * (w2 * w2 + ag * w2) + ag * hm2
                eb3 = unit * (5.0 * hm3 + c1 * h1) * amag
                wsse -= a3 * a3 * nw3
                esse += 2.0 * abs(a3) * eb3 * nw3
                scr[_at(ABS_ALPHA + 2, r)] = abs(a3)
                scr[_at(BOUND + 2, r)] = eb3
                ga3 = a3 * in3
        wsst = max(wsst, 0.0)
        wsse = min(max(wsse, 0.0), wsst)
        positive = wsst > 0.0
        scr[_at(POSITIVE, r)] = 1.0 if positive else 0.0
        scr[_at(SSE_BAD, r)] = 1.0 if (esse > bsse * wsse) | (esse > bsst * wsst) else 0.0
        mean = k0 / wf
        ref = scr[_at(REF, r)]
        o = OUT  # the coefficients of i**p, highest first, as np.polyfit
        if d >= 3:
            scr[_at(o, r)] = ga1 * m13 + ga2 * m23 + ga3 * m33
            o += 1
        quad = ga1 * m12 + ga2 * m22 + ga3 * m32
        if d >= 2:
            scr[_at(o, r)] = quad
            o += 1
        lin = ga1 * m11 + ga2 * m21 + ga3 * m31
        scr[_at(o, r)] = lin
        scr[_at(o + 1, r)] = ((ga1 * m10 + ga2 * m20 + ga3 * m30) + mean) + ref
        o += 2
        if d >= 2:
            scr[_at(o, r)] = quad * (wm1 * wm1)
            o += 1
        scr[_at(o, r)] = lin * wm1
        last = ga1 * al1 + ga2 * al2 + ga3 * al3
        scr[_at(o + 1, r)] = (mean + last) + ref
        scr[_at(o + 2, r)] = (scr[_at(YL, r)] - mean) - last
        scr[_at(o + 3, r)] = ga1 * sl1 + ga2 * sl2 + ga3 * sl3
        scr[_at(o + 4, r)] = (mean + (ga1 * an1 + ga2 * an2 + ga3 * an3)) + ref
        scr[_at(o + 5, r)] = 1.0 - wsse / wsst if positive else np.nan
        scr[_at(o + 6, r)] = np.sqrt(wsse) / wf


@numba.njit(**_JIT)
def _check(scr, c0, lo, c_end, w, d, bcoef, scale, seen, n_seen, flags):
    """Pass C: flag rows lo..c_end whose rounding bound on some α_k exceeds ``bcoef`` of
    max(|α_k|, scale_k); ``scale`` is the typical |α_k| of the previous block: the mean of
    its rows', each clipped at 4× the block before's (0 before the first block). Returns
    the rows counted in ``seen`` so far in the current block."""
    t = lo
    m = lo % w
    while t < c_end:
        if m == 0 and n_seen > 0:
            for k in range(1, d + 1):
                scale[k] = seen[k] / n_seen
                seen[k] = 0.0
            n_seen = 0
        t_end = min(c_end, t + (w - m))
        sc1, sc2, sc3 = scale[1], scale[2], scale[3]
        r0 = t - c0
        for i in range(t_end - t):
            r = np.uint64(r0 + i)
            bad = scr[_at(BOUND, r)] > bcoef * max(scr[_at(ABS_ALPHA, r)], sc1)
            if d >= 2:
                bad = bad | (scr[_at(BOUND + 1, r)] > bcoef * max(scr[_at(ABS_ALPHA + 1, r)], sc2))
            if d >= 3:
                bad = bad | (scr[_at(BOUND + 2, r)] > bcoef * max(scr[_at(ABS_ALPHA + 2, r)], sc3))
            flag = (scr[_at(POSITIVE, r)] > 0.0) & (bad | (scr[_at(SSE_BAD, r)] > 0.0))
            flags[np.uint64(t + i)] = 1 if flag else 0
        for k in range(1, d + 1):
            sc = scale[k]
            acc = seen[k]
            start = (ABS_ALPHA + k - 1) * FIELD + r0
            if sc > 0.0:
                cap = 4.0 * sc
                for i in range(t_end - t):
                    acc += min(scr[np.uint64(start + i)], cap)
            else:
                for i in range(t_end - t):
                    acc += scr[np.uint64(start + i)]
            seen[k] = acc
        n_seen += t_end - t
        m = (m + (t_end - t)) % w
        t = t_end
    return n_seen


@numba.njit(inline="always", **_JIT)
def _copy_out(scr, start, row, lo, count):
    """``row[lo:lo+count] = scr[start:start+count]``: whole cache lines streamed, the ends stored."""
    head = min(count, ((64 - (row.ctypes.data + lo * 8) % 64) % 64) // 8)
    for i in range(head):
        row[np.uint64(lo + i)] = scr[np.uint64(start + i)]
    i = head
    while i + LINE <= count:
        _stream_line(row, np.uint64(lo + i), scr, np.uint64(start + i))
        i += LINE
    while i < count:
        row[np.uint64(lo + i)] = scr[np.uint64(start + i)]
        i += 1


@numba.njit(**_JIT)
def fit_rows(y, w, d, comp, norm_w, inv_norm, at_last, at_next, slope_last, mono, budget, out, flags, scr):
    """Fill ``out[:, W−1:]`` (rows in :func:`output_names` order) and ``flags`` (1: redo the row).

    ``norm_w[k]`` is ``W/N_k``, ``inv_norm[k]`` ``1/N_k``; ``at_last``, ``at_next``,
    ``slope_last`` the values of P_k at i = W−1, at i = W and ``dP_k/di`` at i = W−1;
    ``mono[k, p]`` the coefficient of i**p in P_k; ``budget`` the relative errors accepted,
    see :data:`._reg_fast.BUDGET`; ``comp``: compensated sums. ``flags`` starts all 0;
    ``scr`` is :data:`SCRATCH_SIZE` float64 values of work space, contents irrelevant.
    """
    n = y.shape[0]
    wf = float(w)
    # rounding error per unit of Σ|terms|: W additions of rounded terms as a random walk, or,
    # compensated, the rounding of the terms themselves and of a few operations
    unit = budget[3] * (5.0 if comp else np.sqrt(wf) + 4.0) * 2.220446049250313e-16
    c = _constants(w, unit, norm_w, inv_norm, at_last, at_next, slope_last, mono, budget)
    suffix = np.zeros((5, w))
    state = np.zeros(11)
    scale = np.zeros(4)
    seen = np.zeros(4)
    n_seen = 0
    for c0 in range(0, n, CHUNK):
        c_end = min(n, c0 + CHUNK)
        _window_sums(y, c0, c_end, w, d, comp, suffix, state, scr)
        lo = max(c0, w - 1)  # rows before W−1 have no full window
        if lo >= c_end:
            continue
        if d == 1:
            _fit(scr, lo - c0, c_end - c0, 1, c)
        elif d == 2:
            _fit(scr, lo - c0, c_end - c0, 2, c)
        else:
            _fit(scr, lo - c0, c_end - c0, 3, c)
        for k in range(out.shape[0]):
            _copy_out(scr, (OUT + k) * FIELD + lo - c0, out[k], lo, c_end - lo)
        n_seen = _check(scr, c0, lo, c_end, w, d, budget[0], scale, seen, n_seen, flags)
    _store_fence()
