"""Exact r-separation of labelled data (YRZSC Section 3, Table 1, Table 8, Figures 2, 5, 8).

For queries Q (labels y_Q) and references R (labels y_R), :func:`nearest_other_label` returns, for
every query q, the exact distance ``min{ ||q - r|| : r in R, label(r) != label(q) }`` and the index
(into R) of one reference achieving it, in the l-inf or l2 norm.

* Train-train separation (Table 1, col. 2) = Q = R = training set. The point itself always has
  the query's label, so "excluding self" is automatic; an exact duplicate with a *different*
  label gives distance 0 (see :func:`conflicting_duplicates`; dropping such points is the explicit
  option ``drop_conflicts``, never silent).
* Test-train separation (Table 1, col. 3) = Q = test set, R = training set.
* The paper's numbers are in [0, 1] pixel units: for uint8 images divide by 255 (``scale``).

Exactness. l-inf: every distance is max_p |q_p - r_p| computed in the input dtype (uint8
differences are exact small integers; float input is converted to float64 and the difference is
one IEEE subtraction, identical to NumPy's ``np.abs(q - r).max()``). Pruning never changes the
result: a candidate is abandoned only once a coordinate proves its distance is >= the running best
(early exit), so the minimum is exact. The returned index is *a* minimiser; among several
references at exactly the same distance the first one met in the (deterministic) scan order is
returned, which need not be the lowest index.

Speed (l-inf), uint8 input: two exact kernels, chosen by a deterministic statistic of the
references (:func:`_u8_kernel_choice`: at least half the pixels 0 or 255 -> bitset kernel, as on
MNIST; otherwise the sorted kernel, as on natural images). Both return the same distances.

* Bitset kernel. For thresholds T (``_TH``) and every coordinate p, a bitset over the references
  (sorted by label) of r_p >= T is precomputed. Per query, the exact distance to a few evenly
  spread candidates gives an upper bound b (an integer). A reference r can only be strictly
  nearer than b if |q_p - r_p| < b for every p, so r is rejected (soundly) if r_p >= T for some p
  with T >= q_p + b, or r_p <= T - 1 for some p with T - 1 <= q_p - b. The query's K bitsets with
  the most members are OR-ed over chunks of references (64 per uint64 word); only unmarked
  references of another label get the exact blocked early-exit distance, and the selection is
  redone as b drops. On MNIST almost every pair has a coordinate with one pixel blank and the
  other saturated, so ~99.9% of the candidates are rejected by bit operations.
* Sorted kernel (:func:`_linf_u8_sorted_kernel`). Per query, its 32 key pixels (most likely to
  differ by the typical separation) give in one vectorised pass a lower bound for every
  candidate; candidates are visited in increasing bound, each is first tested against the
  floor-mean bound of groups of 6 consecutive coordinates (:func:`_group_floor_means`: for
  uint8 data ||q - r||_inf >= |floor mean_G q - floor mean_G r| for any group G), and only then
  gets the exact early-exit distance; the visit stops at the first bound >= the best distance.
  (Speed only: each window's candidate list is built branch-free, and the group means a few
  candidates ahead are prefetched with an LLVM prefetch hint.)

numba, parallel over blocks of queries.

Speed (l-inf), float input (or bitset tables above 2 GiB). Per query the coordinates are ranked
by how likely they are to prove a candidate far (the probability, estimated from a reference
subsample, that |q_p - r_p| >= tau, tau a pilot estimate of the typical separation). (1) A
vectorised pass over the query's top 12 coordinates of every candidate (coordinate-major copy
of R) gives a lower bound lb_j <= ||q - r_j||_inf; (2) candidates are visited in increasing lb_j
(counting sort) and finished with a vectorised distance in blocks of 128 coordinates that stops
as soon as a block reaches the running best; (3) the search stops at the first candidate whose
lower bound is above the best distance found. Candidates of the query's own label are never
touched (R is sorted by label). numba, parallel over blocks of queries.

l2, uint8 input: the blocked GEMM below for small problems, else a projection-bound kernel (a
cost model decides, :func:`_l2_u8_use_kernel`; both exact). Kernel (:func:`_l2_u8_kernel`):
with P 32 orthonormal directions close to the principal ones of a seeded reference subsample
(randomized range finder, re-orthonormalised by QR in float64, :func:`_l2_directions`; the bound
needs only orthonormality), z = P(x - mu) and rho the norm of the residual of x - mu off
span(P), ||q - r||^2 >= ||z_q - z_r||^2 + (rho_q - rho_r)^2 (Pythagoras and the triangle
inequality). This bound is evaluated in float32, tiled (a block of queries against a chunk of
references, :func:`_l2_bounds_tiled`), and lowered by a margin
64 (eta + (d + k + 4) u64 + (k + 8) u32) (||q - mu|| + ||r - mu||)^2 (eta the measured departure
of P from orthonormality) that exceeds its rounding error (:func:`_l2_features`); it only orders
and prunes the candidates. The 32 candidates with the lowest bounds are checked first, then the
rest in index order. Every distance that decides anything is the exact integer sum of squared
differences (float32 blocks of 256 coordinates, where every partial sum is an integer below
2^24). So the squared distances are exact and the returned distance is sqrt of the exact
integer, as in direct summation.

l2, float input (and small uint8 problems): blocked float64 BLAS on ||q||^2 + ||r||^2 - 2 q.r.
uint8: every term and partial sum is an integer below 2^53, so the squared distances are exact.
float: every candidate within the rounding-error bound of the block minimum is recomputed
directly, so the minimum is the direct-summation distance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange
from numba import types as nbtypes
from numba.extending import intrinsic, overload

from plumbing.validation import check_array, check_choice, check_float, check_int

NORMS = ("inf", "2")

# tuning constants of the l-inf kernel (performance only: results never depend on them)
_KEY_PER_QUERY = 12  # key coordinates per query in the vectorised lower-bound pass
_CHUNK = 2048        # references per call of the vectorised pass
_QBLOCK = 32         # queries per parallel block
# uint8 bitset kernel
_K_KILL = 32         # killer bitsets OR-ed per query
_CW = 128            # uint64 words (x 64 references) per chunk between re-selections
_QBLOCK_U8 = 16      # queries per parallel block
_NSEED = 128         # evenly spread candidates giving the initial upper bound
_MASK_BYTES = 2 << 30  # larger bitset tables fall back to the generic kernel


# ----------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------

def _absmax_pass(q_val, row, c0, nc, pm):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_absmax_pass, inline="never")
def _absmax_pass_impl(q_val, row, c0, nc, pm):
    """pm[j] = max(pm[j], |row[c0 + j] - q_val|) for j < nc, written so LLVM vectorises it."""
    from numba import types

    if isinstance(row.dtype, types.Integer) and row.dtype.bitwidth == 8 and not row.dtype.signed:
        def impl(q_val, row, c0, nc, pm):
            seg = row[c0:c0 + nc]
            for j in range(nc):
                a = seg[j]
                dd = np.uint8(a - q_val) if a >= q_val else np.uint8(q_val - a)
                pm[j] = max(pm[j], dd)
        return impl

    def impl_f(q_val, row, c0, nc, pm):
        seg = row[c0:c0 + nc]
        for j in range(nc):
            a = seg[j]
            dd = a - q_val if a >= q_val else q_val - a
            pm[j] = max(pm[j], dd)
    return impl_f


@njit(cache=True)
def _scan_pass(q, keys, RT, c0, nc, pm):
    for j in range(nc):
        pm[j] = 0
    for kk in range(keys.shape[0]):
        k = keys[kk]
        _absmax_pass(q[k], RT[k], c0, nc, pm)


def _chunk_absmax(q, r, a, b):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_chunk_absmax, inline="never")
def _chunk_absmax_impl(q, r, a, b):
    """max_{a <= p < b} |q_p - r_p| as float64, vectorised (uint8 lanes for uint8 input)."""
    from numba import types

    if isinstance(r.dtype, types.Integer) and r.dtype.bitwidth == 8 and not r.dtype.signed:
        def impl(q, r, a, b):
            qs = q[a:b]
            rs = r[a:b]
            m = np.uint8(0)
            for p in range(b - a):
                x = rs[p]
                y = qs[p]
                dd = np.uint8(x - y) if x >= y else np.uint8(y - x)
                m = max(m, dd)
            return np.float64(m)
        return impl

    def impl_f(q, r, a, b):
        qs = q[a:b]
        rs = r[a:b]
        m = 0.0
        for p in range(b - a):
            x = rs[p]
            y = qs[p]
            dd = x - y if x >= y else y - x
            m = max(m, dd)
        return np.float64(m)
    return impl_f


@njit(cache=True)
def _blocked_dist(q, r, mm, best):
    """max(mm, ||q - r||_inf) computed in vectorised blocks of 128 coordinates, natural order,
    returning early (with a value >= best) once a block reaches ``best``."""
    d = q.shape[0]
    for a in range(0, d, 128):
        m = _chunk_absmax(q, r, a, min(d, a + 128))
        if m > mm:
            mm = m
            if mm >= best:
                return mm
    return mm


@njit(cache=True)
def _counting_order(score, order):
    """Coordinates sorted by descending uint8 score (stable), in O(d + 256)."""
    cnt = np.zeros(257, np.int64)
    for p in range(score.shape[0]):
        cnt[255 - score[p] + 1] += 1
    for v in range(256):
        cnt[v + 1] += cnt[v]
    for p in range(score.shape[0]):
        v = 255 - score[p]
        order[cnt[v]] = p
        cnt[v] += 1


@njit(cache=True)
def _lower_bound_levels(pm, n):
    """(min, max) of pm[:n]."""
    lo = pm[0]
    hi = pm[0]
    for j in range(1, n):
        v = pm[j]
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return lo, hi


@njit(cache=True)
def _levels(pm, n, lo, scale, lev):
    """lev[j] = min(255, floor((pm[j] - lo) * scale)): a monotone map of the lower bounds."""
    for j in range(n):
        x = (np.float64(pm[j]) - lo) * scale
        lev[j] = np.uint8(x) if x < 255.0 else np.uint8(255)


@njit(parallel=True, cache=True, fastmath=False)
def _linf_kernel(Q, qcode, R, RT, code_start, code_end, scores, n_keys, chunk, qblock, is_u8):
    """Exact nearest reference with a different label code (l-inf). R is sorted by label code;
    references of code c occupy [code_start[c], code_end[c]). Returns (dist, index into R).

    Per query: (1) a vectorised pass over a few key coordinates gives, for every candidate, the
    partial max lb_j <= ||q - r_j||_inf (a lower bound); (2) candidates are finished with the
    blocked early-exit distance in increasing order of lb_j (counting sort by level), and the
    search stops once the next level proves lb > best: exact."""
    nq, d = Q.shape
    nr = R.shape[0]
    out_d = np.empty(nq, np.float64)
    out_i = np.empty(nq, np.int64)
    nblocks = (nq + qblock - 1) // qblock
    for b in prange(nblocks):
        q0 = b * qblock
        q1 = min(nq, q0 + qblock)
        nb = q1 - q0
        order = np.empty(d, np.int64)
        keys = np.empty(n_keys, np.int64)
        pm = np.zeros(nr, R.dtype)
        lev = np.empty(nr, np.uint8)
        cnt = np.zeros(257, np.int64)
        cnt2 = np.zeros(257, np.int64)
        bucket = np.empty(nr, np.int64)
        srtd = np.empty(nr, np.int64)
        for t in range(nb):
            qi = q0 + t
            q = Q[qi]
            _counting_order(scores[qi], order)
            # key coordinates: the query's n_keys highest-scoring coordinates (``order`` is
            # sorted by descending score)
            for s in range(n_keys):
                keys[s] = order[s]
            c = qcode[qi]
            lo_a, hi_a = nr, nr
            if c >= 0:
                lo_a, hi_a = code_start[c], code_end[c]
            # candidate ranges [0, lo_a) and [hi_a, nr), packed contiguously into pm
            n1 = lo_a
            n2 = nr - hi_a
            ncand = n1 + n2
            best = np.inf
            besti = -1
            if ncand == 0:
                out_d[qi] = best
                out_i[qi] = besti
                continue
            for c0 in range(0, n1, chunk):
                nc = min(chunk, n1 - c0)
                _scan_pass(q, keys, RT, c0, nc, pm[c0:c0 + nc])
            for c0 in range(0, n2, chunk):
                nc = min(chunk, n2 - c0)
                _scan_pass(q, keys, RT, hi_a + c0, nc, pm[n1 + c0:n1 + c0 + nc])
            lo8, hi8 = _lower_bound_levels(pm, ncand)
            lo = np.float64(lo8)
            if is_u8:
                # uint8 lower bounds are their own levels (exact, monotone)
                lo = 0.0
                scale = 1.0
                for v in range(257):
                    cnt[v] = 0
                for j in range(ncand):
                    cnt[np.int64(pm[j])] += 1
            else:
                span = np.float64(hi8) - lo
                scale = 255.0 / span if span > 0 else 0.0
                _levels(pm, ncand, lo, scale, lev)
                for v in range(257):
                    cnt[v] = 0
                for j in range(ncand):
                    cnt[lev[j]] += 1
            # windows of levels [w0, w1], processed in increasing level; the level map is
            # monotone, so a level above the level of ``best`` proves lb > best for it and for
            # every later candidate: stop there (exact)
            lev_best = 255
            w0 = 0
            while w0 <= lev_best:
                tot = cnt[w0]
                w1 = w0
                while w1 < 255 and tot < 2048:
                    w1 += 1
                    tot += cnt[w1]
                if w1 > lev_best:
                    w1 = lev_best
                # gather candidates with w0 <= level <= w1, then order them by level
                ng = 0
                if is_u8:
                    for j in range(ncand):
                        lv = np.int64(pm[j])
                        if lv >= w0 and lv <= w1:
                            bucket[ng] = j
                            ng += 1
                    for u in range(ng):
                        lev[bucket[u]] = pm[bucket[u]]
                else:
                    for j in range(ncand):
                        lv = lev[j]
                        if lv >= w0 and lv <= w1:
                            bucket[ng] = j
                            ng += 1
                for v in range(257):
                    cnt2[v] = 0
                for u in range(ng):
                    cnt2[np.int64(lev[bucket[u]]) + 1] += 1
                for v in range(256):
                    cnt2[v + 1] += cnt2[v]
                for u in range(ng):
                    lv = np.int64(lev[bucket[u]])
                    srtd[cnt2[lv]] = bucket[u]
                    cnt2[lv] += 1
                for u in range(ng):
                    j = srtd[u]
                    if np.int64(lev[j]) > lev_best:
                        break
                    lb = np.float64(pm[j])
                    if lb >= best:
                        continue
                    jj = j if j < n1 else j - n1 + hi_a
                    mm = _blocked_dist(q, R[jj], lb, best)
                    if mm < best:
                        best = mm
                        besti = jj
                        lvb = np.int64((best - np.float64(lo)) * scale)
                        lev_best = lvb if lvb < 255 else 255
                w0 = w1 + 1
            out_d[qi] = best
            out_i[qi] = besti
    return out_d, out_i


# ---- uint8 l-inf kernel: bitset filters ----

_HI_T = [255, 254, 253, 252, 251, 250, 248, 246, 243, 240, 232, 224, 208, 192, 160, 128, 1]
_LO_t = [0, 3, 7, 15, 31, 63, 127]
_TH = np.array(sorted(set(_HI_T) | {t + 1 for t in _LO_t}), np.int64)


@njit(parallel=True, cache=True)
def _build_masks(RT, TH):
    """M[k, p] = bitset over references (64 per uint64 word) of r_p >= TH[k]; pop[k, p] = its
    popcount. Built per coordinate from a counting sort of the column, thresholds descending."""
    d, nr = RT.shape
    nw = (nr + 63) // 64
    nT = TH.shape[0]
    M = np.zeros((nT, d, nw), np.uint64)
    pop = np.zeros((nT, d), np.int64)
    for p in prange(d):
        col = RT[p]
        cnt = np.zeros(257, np.int64)
        for i in range(nr):
            cnt[np.int64(col[i]) + 1] += 1
        for v in range(256):
            cnt[v + 1] += cnt[v]
        pos = cnt.copy()
        srt = np.empty(nr, np.int64)
        for i in range(nr):
            v = np.int64(col[i])
            srt[pos[v]] = i
            pos[v] += 1
        acc = np.zeros(nw, np.uint64)
        top = nr  # refs srt[top:] (values >= current threshold) are in acc
        for k in range(nT - 1, -1, -1):
            start = cnt[TH[k]]
            for u in range(start, top):
                i = srt[u]
                acc[i >> 6] |= np.uint64(1) << np.uint64(i & 63)
            top = start
            M[k, p, :] = acc
            pop[k, p] = nr - start
    return M, pop


@njit(cache=True)
def _range_bits(w, a, b):
    """Bits of word w for the references i with a <= i < b."""
    base = w * 64
    lo = max(a, base) - base
    hi = min(b, base + 64) - base
    if hi <= lo:
        return np.uint64(0)
    n = hi - lo
    if n == 64:
        return ~np.uint64(0)
    return ((np.uint64(1) << np.uint64(n)) - np.uint64(1)) << np.uint64(lo)


@njit(cache=True)
def _select(q, b, hi_idx, lo_idx, pop, nr, K, sel_k, sel_p, sel_neg, pw, ek, ep, en, cnt):
    """Up to K "killer" bitsets for query q and integer bound b, each proving |q_p - r_p| >= b
    for every reference r in it: (high) r_p >= T with T the smallest threshold >= q_p + b, or
    (low, complemented) r_p <= T - 1 with T the largest threshold <= q_p - b + 1. The K with
    the largest popcounts are kept (counting selection on popcount * 255 // nr)."""
    d = q.shape[0]
    ne = 0
    for p in range(d):
        qv = np.int64(q[p])
        v = qv + b
        if v <= 255:
            k = hi_idx[v]
            ek[ne] = k
            ep[ne] = p
            en[ne] = 0
            pw[ne] = (pop[k, p] * 255) // nr
            ne += 1
        v = qv - b + 1
        if v >= 1:
            k = lo_idx[v]
            ek[ne] = k
            ep[ne] = p
            en[ne] = 1
            pw[ne] = ((nr - pop[k, p]) * 255) // nr
            ne += 1
    for v in range(256):
        cnt[v] = 0
    for e in range(ne):
        cnt[pw[e]] += 1
    # cutoff: take entries of the highest power levels until K
    tot = 0
    cut = 256
    while cut > 0 and tot < K:
        cut -= 1
        tot += cnt[cut]
    ns = 0
    # first all with power > cut, then fill with == cut
    for e in range(ne):
        if pw[e] > cut and pw[e] > 0:
            sel_k[ns] = ek[e]; sel_p[ns] = ep[e]; sel_neg[ns] = en[e]; ns += 1
    for e in range(ne):
        if ns >= K:
            break
        if pw[e] == cut and pw[e] > 0:
            sel_k[ns] = ek[e]; sel_p[ns] = ep[e]; sel_neg[ns] = en[e]; ns += 1
    return ns


@njit(parallel=True, cache=True)
def _linf_u8_kernel(Q, qcode, R, M, pop, hi_idx, lo_idx, code_start, code_end, K, CW, qblock, nseed):
    """Exact nearest reference with a different label code (l-inf, uint8 Q and R; R sorted by
    label code, code c in [code_start[c], code_end[c])). Returns (dist, index into R).

    Per query: the exact distance to ``nseed`` evenly spread candidates gives an upper bound
    best. Then, for every chunk of CW words (64 * CW references), the query's K selected killer
    bitsets (:func:`_select`, for b = the current integer best) are OR-ed: a set bit proves
    ||q - r||_inf >= best, so r cannot be strictly better and is skipped (never changes the
    minimum; ties keep the first minimiser found). The remaining candidates of another label get
    the blocked early-exit distance. The selection is redone whenever best has dropped."""
    nq, d = Q.shape
    nr = R.shape[0]
    nw = (nr + 63) // 64
    out_d = np.empty(nq, np.float64)
    out_i = np.empty(nq, np.int64)
    nblocks = (nq + qblock - 1) // qblock
    for blk in prange(nblocks):
        sel_k = np.empty(K, np.int64)
        sel_p = np.empty(K, np.int64)
        sel_neg = np.empty(K, np.int64)
        pw = np.empty(2 * d, np.int64)
        ek = np.empty(2 * d, np.int64)
        ep = np.empty(2 * d, np.int64)
        en = np.empty(2 * d, np.int64)
        cnt = np.zeros(256, np.int64)
        acc = np.empty(CW, np.uint64)
        for qi in range(blk * qblock, min(nq, blk * qblock + qblock)):
            q = Q[qi]
            c = qcode[qi]
            lo_a, hi_a = nr, nr
            if c >= 0:
                lo_a, hi_a = code_start[c], code_end[c]
            ncand = lo_a + (nr - hi_a)
            best = np.inf
            besti = -1
            if ncand == 0:
                out_d[qi] = best
                out_i[qi] = besti
                continue
            # seeds: evenly spread candidates
            for s in range(min(nseed, ncand)):
                j = (s * ncand) // min(nseed, ncand)
                jj = j if j < lo_a else j - lo_a + hi_a
                mm = _blocked_dist(q, R[jj], 0.0, best)
                if mm < best:
                    best = mm
                    besti = jj
            sel_b = -1
            ns = 0
            for w0 in range(0, nw, CW):
                w1 = min(nw, w0 + CW)
                if w0 * 64 >= lo_a and w1 * 64 <= hi_a:
                    continue
                bi = np.int64(best) if best <= 255.0 else 256
                if bi != sel_b:
                    if bi <= 255:
                        ns = _select(q, bi, hi_idx, lo_idx, pop, nr, K, sel_k, sel_p, sel_neg,
                                     pw, ek, ep, en, cnt)
                    else:
                        ns = 0
                    sel_b = bi
                nwc = w1 - w0
                for w in range(nwc):
                    acc[w] = 0
                for s in range(ns):
                    row = M[sel_k[s], sel_p[s]]
                    if sel_neg[s]:
                        for w in range(nwc):
                            acc[w] |= ~row[w0 + w]
                    else:
                        for w in range(nwc):
                            acc[w] |= row[w0 + w]
                for w in range(nwc):
                    ww = w0 + w
                    alive = ~acc[w] & (_range_bits(ww, 0, lo_a) | _range_bits(ww, hi_a, nr))
                    bit = 0
                    while alive != 0:
                        if alive & np.uint64(1):
                            jj = ww * 64 + bit
                            mm = _blocked_dist(q, R[jj], 0.0, best)
                            if mm < best:
                                best = mm
                                besti = jj
                        alive >>= np.uint64(1)
                        bit += 1
            out_d[qi] = best
            out_i[qi] = besti
    return out_d, out_i



# ---- uint8 l-inf kernel: key-pixel lower bounds, group-mean lower bounds, sorted visit ----


@intrinsic
def _prefetch_row(typingctx, arr, i):
    """A cache prefetch hint for the start of row i of a 2-D C-contiguous array (LLVM
    ``llvm.prefetch``; a hint only, no effect on any result)."""
    from llvmlite import ir
    from numba.core import cgutils

    if not (isinstance(arr, nbtypes.Array) and arr.ndim == 2 and isinstance(i, nbtypes.Integer)):
        return None
    sig = nbtypes.void(arr, i)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], nbtypes.intp)
        zero = context.get_constant(nbtypes.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx, zero])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, cgutils.voidptr_t), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return sig, codegen


_KEY_U8 = 32      # key pixels per query in the vectorised lower-bound pass (uint8 kernel)
_GROUP = 6        # coordinates per group in the group-mean lower bound
_U8_KERNEL = "auto"  # uint8 l-inf kernel: "auto", "sorted" or "bitset"
_SATURATED = 0.5     # "auto": bitset kernel when at least this fraction of pixels is 0 or 255
_QBLOCK_SV = 16   # queries per parallel block
_PF_AHEAD = 8     # candidates ahead whose group means are prefetched


@njit(parallel=True, cache=True)
def _group_floor_means(A, g):
    """F[i, k] = floor(mean of A[i, k*g : (k+1)*g]) (the last group may be shorter), uint8.

    Lower bound: for integer-valued l-inf distances, ||q - r||_inf >= |F(q)_k - F(r)_k| for every
    k. The mean of q - r over a group is at most ||q - r||_inf in absolute value; flooring puts
    each mean in [F, F + 1), so ||q - r||_inf > |F(q)_k - F(r)_k| - 1, and both sides are
    integers."""
    n, d = A.shape
    ng = (d + g - 1) // g
    out = np.empty((n, ng), np.uint8)
    for i in prange(n):
        for k in range(ng):
            a = k * g
            b = min(d, a + g)
            s = 0
            for p in range(a, b):
                s += np.int64(A[i, p])
            out[i, k] = np.uint8(s // (b - a))
    return out


@njit(parallel=True, cache=True)
def _linf_u8_sorted_kernel(Q, QG, qcode, R, RG, RT, code_start, code_end, table, n_keys, qblock):
    """Exact nearest reference with a different label code (l-inf, uint8; R sorted by label
    code, code c in [code_start[c], code_end[c])). Returns (dist, index into R).

    Per query: (1) the query's ``n_keys`` key pixels (highest ``table[q_p, p]``, the estimated
    probability that |q_p - r_p| is large) give, in one vectorised pass over a coordinate-major
    copy RT, lb_j = max over keys |q_p - r_jp| <= ||q - r_j||_inf for every candidate; (2) the
    candidates are visited in increasing lb_j (counting sort on the uint8 levels, in windows);
    (3) a candidate with lb_j < best is first tested with the group-mean bound
    (:func:`_group_floor_means`, early exit per block), and only then gets the exact blocked
    early-exit distance; (4) the visit stops at the first level >= best. Every skip is justified
    by a lower bound >= best, so the minimum is exact."""
    nq, d = Q.shape
    nr = R.shape[0]
    out_d = np.empty(nq, np.float64)
    out_i = np.empty(nq, np.int64)
    nblocks = (nq + qblock - 1) // qblock
    for b in prange(nblocks):
        q0 = b * qblock
        q1 = min(nq, q0 + qblock)
        order = np.empty(d, np.int64)
        score = np.empty(d, np.uint8)
        keys = np.empty(n_keys, np.int64)
        pm = np.zeros(nr, np.uint8)
        cnt = np.zeros(257, np.int64)
        bucket = np.empty(nr, np.int64)
        for qi in range(q0, q1):
            q = Q[qi]
            qg = QG[qi]
            for p in range(d):
                score[p] = table[q[p], p]
            _counting_order(score, order)
            for s in range(n_keys):
                keys[s] = order[s]
            c = qcode[qi]
            lo_a, hi_a = nr, nr
            if c >= 0:
                lo_a, hi_a = code_start[c], code_end[c]
            n1 = lo_a
            n2 = nr - hi_a
            ncand = n1 + n2
            best = np.inf
            besti = -1
            if ncand == 0:
                out_d[qi] = best
                out_i[qi] = besti
                continue
            for c0 in range(0, n1, 2048):
                nc = min(2048, n1 - c0)
                _scan_pass(q, keys, RT, c0, nc, pm[c0:c0 + nc])
            for c0 in range(0, n2, 2048):
                nc = min(2048, n2 - c0)
                _scan_pass(q, keys, RT, hi_a + c0, nc, pm[n1 + c0:n1 + c0 + nc])
            for v in range(257):
                cnt[v] = 0
            for j in range(ncand):
                cnt[np.int64(pm[j])] += 1
            # windows of levels [w0, w1] (about 2048 candidates each) in increasing order; a
            # level >= best (integer) cannot hold a strictly nearer candidate: stop there
            lev_stop = 256
            w0 = 0
            while w0 < lev_stop:
                tot = cnt[w0]
                w1 = w0
                while w1 < 255 and tot < 2048:
                    w1 += 1
                    tot += cnt[w1]
                if w1 > lev_stop - 1:
                    w1 = lev_stop - 1
                ng = 0
                wl = np.uint8(w0)
                wspan = np.uint8(w1 - w0)
                for j in range(ncand):
                    bucket[ng] = j
                    ng += np.uint8(pm[j] - wl) <= wspan
                # within a window, candidates in index order (memory locality); the group means
                # of the candidate _PF_AHEAD places ahead are prefetched
                for u in range(ng):
                    if u + _PF_AHEAD < ng:
                        jn = bucket[u + _PF_AHEAD]
                        if np.float64(pm[jn]) < best:
                            _prefetch_row(RG, jn if jn < n1 else jn - n1 + hi_a)
                    j = bucket[u]
                    lb = np.float64(pm[j])
                    if lb >= best:
                        continue
                    jj = j if j < n1 else j - n1 + hi_a
                    mg = _blocked_dist(qg, RG[jj], lb, best)
                    if mg >= best:
                        continue
                    mm = _blocked_dist(q, R[jj], mg, best)
                    if mm < best:
                        best = mm
                        besti = jj
                        lev_stop = np.int64(best)
                w0 = w1 + 1
            out_d[qi] = best
            out_i[qi] = besti
    return out_d, out_i


# ---- uint8 l2 kernel: projection lower bounds, exact integer distances ----

_L2_DIMS = 32       # principal directions in the l2 lower bound
_L2_SAMPLE = 4096   # references used to fit them (seeded subsample)
_L2_QBLOCK = 16     # queries per parallel block
_L2_CHUNK = 512     # references per tile of the lower-bound pass
_L2_FIRST = 32      # candidates with the lowest bounds checked first (initial best)
_L2_TOL = 64.0      # safety factor on the float64 rounding bound of the lower bound
_L2_OVERSAMPLE = 16  # extra columns of the randomized range finder that fits the directions
_L2_POWER = 2       # its power iterations
_L2_U8_KERNEL = "auto"  # "auto": cost model (:func:`_l2_u8_use_kernel`); True: always this
                        # kernel; False: always the blocked float64 GEMM (reference / timing)
_L2_COST_GEMM = 6e-11   # cost model of :func:`_l2_u8_use_kernel`, seconds per query-reference-
_L2_COST_BOUND = 1e-10  # coordinate (GEMM), per query-reference-direction (bound pass), per
_L2_COST_EXACT = 4e-7   # query-coordinate (exact distances of the surviving candidates)


@njit(cache=True, fastmath={"reassoc", "nsz", "arcp", "contract"})
def _exact_sq_u8(q, r, best2):
    """||q - r||_2^2 exactly (int64) for uint8 rows, in blocks of 256 coordinates, returning
    early (with a value >= best2) once the partial sum reaches best2. Within a block every term
    and every partial sum, in any order, is an integer below 256 * 255^2 < 2^24, so float32
    arithmetic is exact and reassociation (vectorisation) cannot change the result."""
    d = q.shape[0]
    s = np.int64(0)
    for a in range(0, d, 256):
        b = min(d, a + 256)
        qs = q[a:b]
        rs = r[a:b]
        acc = np.float32(0.0)
        for p in range(b - a):
            t = np.float32(qs[p]) - np.float32(rs[p])
            acc += t * t
        s += np.int64(acc)
        if s >= best2:
            return s
    return s


@njit(cache=True)
def _l2_bound_init(rq, nq, rho, nrm, tol_c, out):
    """out = (rq - rho)^2 - tol_c (nq + nrm)^2 (vectorised)."""
    for j in range(out.shape[0]):
        t = rq - rho[j]
        m = nq + nrm[j]
        out[j] = t * t - tol_c * m * m


@njit(cache=True)
def _l2_bound_add(zq, row, out):
    """out += (zq - row)^2 (vectorised)."""
    for j in range(out.shape[0]):
        u = zq - row[j]
        out[j] += u * u


@njit(cache=True)
def _l2_bounds_tiled(ZQ, rhoQ, nQ, ZRT, rhoR, nR, tol_c, out):
    """out[i, j] = (rhoQ_i - rhoR_j)^2 + ||ZQ_i - ZR_j||^2 - tol_c (nQ_i + nR_j)^2, float32,
    computed a chunk of references at a time for all the queries, so that the chunk of the
    coordinate-major projections ZRT stays in cache."""
    nr = ZRT.shape[1]
    k = ZRT.shape[0]
    for c0 in range(0, nr, _L2_CHUNK):
        c1 = min(nr, c0 + _L2_CHUNK)
        for i in range(ZQ.shape[0]):
            row = out[i, c0:c1]
            _l2_bound_init(rhoQ[i], nQ[i], rhoR[c0:c1], nR[c0:c1], tol_c, row)
            for t_ in range(k):
                _l2_bound_add(ZQ[i, t_], ZRT[t_, c0:c1], row)


@njit(parallel=True, cache=True)
def _l2_u8_kernel(Q, ZQ, rhoQ, nQ, qcode, R, ZRT, rhoR, nR, code_start, code_end, tol_c, qblock):
    """Exact nearest reference with a different label code (l2, uint8; R sorted by label code).
    Returns (squared distance as int64, index into R); -1 / index -1 when there is none.

    Lower bound (P: k orthonormal directions, mu: a centre, z = P(x - mu), rho = the norm of the
    residual of x - mu off span(P)): ||q - r||^2 = ||P(q - r)||^2 + ||residual(q) - residual(r)||^2
    >= ||z_q - z_r||^2 + (rho_q - rho_r)^2. It is computed in float64 and lowered by
    tol_c * (||q - mu|| + ||r - mu||)^2, a safe margin over its rounding error, so a candidate is
    skipped only when its exact squared distance is >= the exact running best. The bounds are
    computed tiled (a block of queries against a chunk of references whose projections stay in
    cache); candidates are visited in increasing bound; exact distances are integer sums (no
    rounding)."""
    nq, d = Q.shape
    nr = R.shape[0]
    k = ZRT.shape[0]
    out_d = np.empty(nq, np.int64)
    out_i = np.empty(nq, np.int64)
    nblocks = (nq + qblock - 1) // qblock
    for b in prange(nblocks):
        q0 = b * qblock
        q1 = min(nq, q0 + qblock)
        lbs = np.empty((q1 - q0, nr), np.float32)
        cand = np.empty(nr, np.int64)
        # tiled lower bounds for every reference (own-label ones are ignored below)
        _l2_bounds_tiled(ZQ[q0:q1], rhoQ[q0:q1], nQ[q0:q1], ZRT, rhoR, nR, tol_c, lbs)
        for qi in range(q0, q1):
            lb = lbs[qi - q0]
            q = Q[qi]
            c = qcode[qi]
            lo_a, hi_a = nr, nr
            if c >= 0:
                lo_a, hi_a = code_start[c], code_end[c]
            if lo_a + (nr - hi_a) == 0:
                out_d[qi] = -1
                out_i[qi] = -1
                continue
            # initial upper bound: the candidate with the smallest bound
            jmin = 0 if lo_a > 0 else hi_a
            for j in range(lo_a):
                if lb[j] < lb[jmin]:
                    jmin = j
            for j in range(hi_a, nr):
                if lb[j] < lb[jmin]:
                    jmin = j
            # (bounds are float32; every comparison with an exact integer is made in float64)
            best2 = _exact_sq_u8(q, R[jmin], np.int64(1) << 62)
            besti = jmin
            # candidates whose bound is below the best
            nc = 0
            fb = np.float64(best2)
            for j in range(lo_a):
                cand[nc] = j
                nc += np.float64(lb[j]) < fb
            for j in range(hi_a, nr):
                cand[nc] = j
                nc += np.float64(lb[j]) < fb
            # the _L2_FIRST lowest bounds first (a near-final best), then the rest in index order
            if nc > _L2_FIRST:
                thr = np.float64(np.partition(lb[cand[:nc]], _L2_FIRST)[_L2_FIRST])
            else:
                thr = np.inf
            for u in range(nc):
                jj = cand[u]
                lj = np.float64(lb[jj])
                if lj <= thr and jj != besti and lj < np.float64(best2):
                    s = _exact_sq_u8(q, R[jj], best2)
                    if s < best2:
                        best2 = s
                        besti = jj
            if nc > _L2_FIRST:
                for u in range(nc):
                    jj = cand[u]
                    lj = np.float64(lb[jj])
                    if lj > thr and lj < np.float64(best2):
                        s = _exact_sq_u8(q, R[jj], best2)
                        if s < best2:
                            best2 = s
                            besti = jj
            out_d[qi] = best2
            out_i[qi] = besti
    return out_d, out_i


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------

def _prepare(queries, q_labels, references, r_labels):
    q = check_array("queries", queries, min_len=1)
    r = check_array("references", references, min_len=1)
    if q.dtype.kind not in "uif" or r.dtype.kind not in "uif":
        raise TypeError(f"queries and references must be numeric, got {q.dtype} and {r.dtype}")
    q2 = q.reshape(len(q), -1)
    r2 = r.reshape(len(r), -1)
    if q2.shape[1] != r2.shape[1] or q2.shape[1] == 0:
        raise ValueError(f"queries and references must have the same positive number of features, "
                         f"got {q2.shape[1]} and {r2.shape[1]}")
    ql = np.asarray(q_labels)
    rl = np.asarray(r_labels)
    if ql.shape != (len(q2),):
        raise ValueError(f"q_labels must have shape ({len(q2)},), got {ql.shape}")
    if rl.shape != (len(r2),):
        raise ValueError(f"r_labels must have shape ({len(r2)},), got {rl.shape}")
    if ql.dtype.kind not in "iub" or rl.dtype.kind not in "iub":
        raise TypeError("q_labels and r_labels must be integer arrays")
    if q2.dtype == np.uint8 and r2.dtype == np.uint8:
        return np.ascontiguousarray(q2), ql.astype(np.int64), np.ascontiguousarray(r2), rl.astype(np.int64)
    return (np.ascontiguousarray(q2, dtype=np.float64), ql.astype(np.int64),
            np.ascontiguousarray(r2, dtype=np.float64), rl.astype(np.int64))


def _codes(ql, rl):
    """Map labels to codes 0..L-1 of the reference labels; query labels absent from R get -1."""
    uniq, rcode = np.unique(rl, return_inverse=True)
    pos = np.searchsorted(uniq, ql)
    pos_c = np.clip(pos, 0, len(uniq) - 1)
    qcode = np.where(uniq[pos_c] == ql, pos_c, -1).astype(np.int64)
    return qcode, rcode.astype(np.int64), len(uniq)


@njit(cache=True)
def _col_hist_u8(A):
    """hist[v, p] = #{i : A[i, p] == v} for a uint8 (n, d) array (int64)."""
    n, d = A.shape
    hist = np.zeros((256, d), np.int64)
    for i in range(n):
        for p in range(d):
            hist[A[i, p], p] += 1
    return hist


def _kill_table(R, tau, rng_seed=0, sample=4096):
    """(256, d) uint8 table: table[v, p] = 255 * estimated P_r(|v - r_p| >= tau) (uint8 R),
    from a seeded subsample of the references."""
    rng = np.random.default_rng(rng_seed)
    sub = R if len(R) <= sample else R[np.sort(rng.choice(len(R), sample, replace=False))]
    hist = _col_hist_u8(np.ascontiguousarray(sub))
    cdf = np.cumsum(hist, axis=0) / len(sub)              # cdf[v] = P(r <= v), v = 0..255
    t = int(math.ceil(tau))
    v = np.arange(256)
    low_idx = v - t
    p_low = np.where((low_idx >= 0)[:, None], cdf[np.clip(low_idx, 0, 255)], 0.0)
    hi_idx = v + t
    p_high = np.where((hi_idx <= 255)[:, None], 1.0 - cdf[np.clip(hi_idx - 1, 0, 255)], 0.0)
    return np.ascontiguousarray(np.clip(np.rint(255.0 * (p_low + p_high)), 0, 255).astype(np.uint8))


def _kill_scores(Q, R, tau, rng_seed=0, sample=4096):
    """uint8 score per (query, coordinate): 255 * estimated P_r(|q_p - r_p| >= tau)."""
    rng = np.random.default_rng(rng_seed)
    sub = R if len(R) <= sample else R[np.sort(rng.choice(len(R), sample, replace=False))]
    d = Q.shape[1]
    out = np.empty(Q.shape, np.uint8)
    if Q.dtype == np.uint8:
        # cdf[v, p] = P(r_p <= v); P(r_p <= q - tau) + P(r_p >= q + tau)
        cols = np.arange(d)
        hist = np.stack([np.bincount(sub[:, p], minlength=256) for p in range(d)], axis=1)
        cdf = np.cumsum(hist, axis=0) / len(sub)              # cdf[v] = P(r <= v), v = 0..255
        t = int(math.ceil(tau))
        v = np.arange(256)
        low_idx = v - t
        p_low = np.where((low_idx >= 0)[:, None], cdf[np.clip(low_idx, 0, 255)], 0.0)
        hi_idx = v + t
        p_high = np.where((hi_idx <= 255)[:, None], 1.0 - cdf[np.clip(hi_idx - 1, 0, 255)], 0.0)
        table = np.clip(np.rint(255.0 * (p_low + p_high)), 0, 255).astype(np.uint8)  # (256, d)
        for s in range(0, len(Q), 8192):
            blk = Q[s:s + 8192]
            out[s:s + 8192] = table[blk, cols]
        return out
    srt = np.sort(sub, axis=0)
    n = len(sub)
    for p in range(d):
        col = Q[:, p]
        below = np.searchsorted(srt[:, p], col - tau, side="right")
        above = n - np.searchsorted(srt[:, p], col + tau, side="left")
        out[:, p] = np.clip(np.rint(255.0 * (below + above) / n), 0, 255).astype(np.uint8)
    return out


def _pilot_tau(Q, qcode, R, rcode, seed=0, n_q=48, n_r=1500):
    """Median exact separation of a few queries against a reference subsample (an upper
    estimate of the typical separation; used only to order coordinates)."""
    rng = np.random.default_rng(seed)
    qi = rng.choice(len(Q), min(n_q, len(Q)), replace=False)
    ri = rng.choice(len(R), min(n_r, len(R)), replace=False)
    if Q.dtype == np.uint8 and R.dtype == np.uint8:           # same values, compiled
        v = _pilot_u8(Q, qcode, R, rcode, qi.astype(np.int64), ri.astype(np.int64))
        v = v[v >= 0]
        return float(np.median(v)) if len(v) else 0.0
    rq = R[ri].astype(np.float32 if R.dtype == np.uint8 else np.float64)
    vals = []
    for i in qi:
        m = rcode[ri] != qcode[i]
        if not m.any():
            continue
        vals.append(float(np.abs(rq[m] - Q[i].astype(rq.dtype)).max(axis=1).min()))
    if not vals:
        return 0.0
    return float(np.median(vals))


@njit(parallel=True, cache=True)
def _transpose(a):
    """Coordinate-major copy of a (n, d) array, in cache tiles of 64 rows x 64 columns."""
    n, d = a.shape
    out = np.empty((d, n), a.dtype)
    nbi = (n + 63) // 64
    nbp = (d + 63) // 64
    for t in prange(nbi * nbp):
        i0 = (t // nbp) * 64
        p0 = (t % nbp) * 64
        i1 = min(n, i0 + 64)
        p1 = min(d, p0 + 64)
        for p in range(p0, p1):
            for i in range(i0, i1):
                out[p, i] = a[i, p]
    return out


@njit(cache=True)
def _pilot_u8(Q, qcode, R, rcode, qi, ri):
    """For each query Q[qi[k]]: min over references R[ri] of another label code of the exact
    l-inf distance (uint8), or -1 when there is none."""
    out = np.empty(qi.shape[0], np.float64)
    d = Q.shape[1]
    for k in range(qi.shape[0]):
        q = Q[qi[k]]
        best = np.inf
        for j in ri:
            if rcode[j] != qcode[qi[k]]:
                m = _chunk_absmax(q, R[j], 0, d)
                if m < best:
                    best = m
        out[k] = best if best < np.inf else -1.0
    return out


def _u8_kernel_choice(R, sample=4096):
    """Which uint8 kernel is faster (speed only: both are exact and return the same distances).
    The threshold bitsets reject well when many pixels are saturated (0 or 255, as on MNIST);
    on natural images the sorted key-pixel kernel is faster. Deterministic (fixed subsample)."""
    if _U8_KERNEL != "auto":
        return _U8_KERNEL
    step = max(1, len(R) // sample)
    sub = R[::step]
    frac = float(np.count_nonzero((sub == 0) | (sub == 255))) / sub.size
    return "bitset" if frac >= _SATURATED else "sorted"


def _linf(Q, qcode, R, rcode, n_codes):
    perm = np.argsort(rcode, kind="stable")
    Rs = np.ascontiguousarray(R[perm])
    cs = rcode[perm]
    code_start = np.searchsorted(cs, np.arange(n_codes), side="left").astype(np.int64)
    code_end = np.searchsorted(cs, np.arange(n_codes), side="right").astype(np.int64)
    d = Q.shape[1]
    RT = _transpose(Rs)                # coordinate-major copy (vectorised pass / bitset build)
    nw = (len(Rs) + 63) // 64
    if Rs.dtype == np.uint8 and _u8_kernel_choice(Rs) == "sorted":
        tau = _pilot_tau(Q, qcode, R, rcode)
        table = _kill_table(R, tau)
        QG = _group_floor_means(Q, _GROUP)
        RG = _group_floor_means(Rs, _GROUP)
        dist, idx_s = _linf_u8_sorted_kernel(Q, QG, qcode, Rs, RG, RT, code_start, code_end, table,
                                             min(_KEY_U8, d), _QBLOCK_SV)
    elif Rs.dtype == np.uint8 and len(_TH) * d * nw * 8 <= _MASK_BYTES:
        M, pop = _build_masks(RT, _TH)
        del RT
        hi_idx = np.searchsorted(_TH, np.arange(256), side="left").astype(np.int64)
        lo_idx = (np.searchsorted(_TH, np.arange(257), side="right") - 1).astype(np.int64)
        dist, idx_s = _linf_u8_kernel(Q, qcode, Rs, M, pop, hi_idx, lo_idx, code_start, code_end,
                                      _K_KILL, _CW, _QBLOCK_U8, _NSEED)
    else:
        tau = _pilot_tau(Q, qcode, R, rcode)
        scores = _kill_scores(Q, R, tau)
        n_keys = min(_KEY_PER_QUERY, d)
        dist, idx_s = _linf_kernel(Q, qcode, Rs, RT, code_start, code_end, scores, n_keys,
                                   _CHUNK, _QBLOCK, Rs.dtype == np.uint8)
    idx = np.where(idx_s >= 0, perm[np.maximum(idx_s, 0)], -1)
    return dist, idx


def _l2_directions(sub, k, seed=0):
    """k orthonormal rows spanning (approximately) the top-k principal subspace of the centred
    sample ``sub`` (float64, n_s x d), in float64: a seeded randomized range finder with
    _L2_POWER power iterations and a Rayleigh-Ritz step (Halko, Martinsson, Tropp 2011, Alg. 4.4
    and 5.1), cost O(n_s d (k + _L2_OVERSAMPLE)) instead of a d x d eigendecomposition, then a
    Householder QR, so the rows are orthonormal to float64 rounding whatever the sample (also
    rank-deficient or smaller than k). The lower bound of :func:`_l2_u8_kernel` is valid for
    *any* orthonormal P (Pythagoras needs only P P^T = I; the measured departure eta enters the
    margin), so the quality of the directions affects speed only, never the result."""
    d = sub.shape[1]
    m = min(d, k + _L2_OVERSAMPLE)
    g = np.random.default_rng(seed)
    basis = np.linalg.qr(sub.T @ (sub @ g.standard_normal((d, m))))[0]          # d x m
    for _ in range(_L2_POWER):
        basis = np.linalg.qr(sub.T @ (sub @ basis))[0]
    _, _, vt = np.linalg.svd(sub @ basis, full_matrices=True)                  # m x m rotation
    return np.ascontiguousarray(np.linalg.qr(basis @ vt[:k].T)[0].T)          # k x d


def _l2_features(Q, R, fit=None):
    """Inputs of the l2 lower bound (:func:`_l2_u8_kernel`), as float32: the projections z onto
    k = min(_L2_DIMS, d) orthonormal directions P (:func:`_l2_directions`: approximately the
    principal directions of a seeded subsample of R about its mean mu), the residual norms rho
    and the norms ||x - mu||, for Q and (coordinate-major) for R, and the margin factor tol_c.
    The directions are fitted on ``fit`` (default R).

    Rounding. z, rho and ||x - mu|| are computed in float64 (errors below (d + k + 4) u64 and the
    departure eta of P from orthonormality, relative to ||x - mu||), then rounded to float32, and
    the bound is evaluated in float32: each difference is within about 2 u32 (|a| + |b|) of the
    exact one and the sum of k + 1 squares adds at most (k + 2) u32 relative error, so the total
    error is below (k + 8) u32 (||q - mu|| + ||r - mu||)^2 (Minkowski: the squared sums of |z| and
    rho are ||x - mu||^2). The margin is _L2_TOL = 64 times the sum of these rates. (With
    P P^T = I + E, ||E||_2 <= eta, the exact identity is ||q - r||^2 = ||w||^2 - w^T E w +
    ||e_q - e_r||^2 for w = z_q - z_r and e the computed residuals, so the departure costs at most
    eta (1 + eta) (||q - mu|| + ||r - mu||)^2: only orthonormality is used, not that P is
    principal.)"""
    d = R.shape[1]
    k = min(_L2_DIMS, d)
    fit = R if fit is None else fit
    rng = np.random.default_rng(0)
    sub = (fit if len(fit) <= _L2_SAMPLE
           else fit[np.sort(rng.choice(len(fit), _L2_SAMPLE, replace=False))])
    mu = sub.mean(axis=0)
    P = _l2_directions(sub - mu, k)
    eta = float(np.abs(P @ P.T - np.eye(k)).max()) * k   # departure from orthonormality

    def feats(A):
        z = np.empty((len(A), k))
        rho = np.empty(len(A))
        nrm = np.empty(len(A))
        for s in range(0, len(A), 4096):
            x = A[s:s + 4096].astype(np.float64)
            x -= mu
            zz = x @ P.T
            z[s:s + 4096] = zz
            nrm[s:s + 4096] = np.sqrt(np.einsum("ij,ij->i", x, x))
            x -= zz @ P                                   # residual off span(P)
            rho[s:s + 4096] = np.sqrt(np.einsum("ij,ij->i", x, x))
        return z, rho, nrm

    ZR, rhoR, nR = feats(R)
    ZQ, rhoQ, nQ = feats(Q)
    u = np.finfo(np.float64).eps
    u32 = float(np.finfo(np.float32).eps)
    tol_c = _L2_TOL * (eta + (d + k + 4) * u + (k + 8) * u32)
    f32 = np.float32
    return (ZQ.astype(f32), rhoQ.astype(f32), nQ.astype(f32), np.ascontiguousarray(ZR.T, dtype=f32),
            rhoR.astype(f32), nR.astype(f32), f32(tol_c))


def _l2_u8_use_kernel(nq, nr, d):
    """Cost model choosing the uint8 l2 path (speed only: both paths return the exact distances).

    Modelled seconds (constants from ``bench/bench_separation.py --rows l2-small`` and the full
    MNIST row on the 2-core development machine): the GEMM path (:func:`_l2`) costs
    _L2_COST_GEMM nq nr d; the projection kernel costs fitting the directions (about
    2 n_s d (k + 16)(2 _L2_POWER + 3) flops at _L2_COST_GEMM / 2 s per flop, n_s = min(nr,
    _L2_SAMPLE)), the bound pass _L2_COST_BOUND nq nr (k + 1), and the exact distances of the
    candidates that survive the pruning, _L2_COST_EXACT nq d (measured per query: MNIST about
    4.5e-7 d s, CIFAR-10 about 1.1e-7 d s; the larger is used). The kernel is chosen only where its
    modelled cost is below half the GEMM's: a few thousand references or fewer take the GEMM
    path (two CIFAR-10 points: 0.1 ms instead of seconds of set-up), MNIST- and CIFAR-sized
    problems the kernel."""
    k = min(_L2_DIMS, d)
    ns = min(nr, _L2_SAMPLE)
    gemm = _L2_COST_GEMM * nq * nr * d
    kern = (_L2_COST_GEMM * ns * d * (k + _L2_OVERSAMPLE) * (2 * _L2_POWER + 3)
            + _L2_COST_BOUND * nq * nr * (k + 1) + _L2_COST_EXACT * nq * d)
    return kern < 0.5 * gemm


def _l2_u8(Q, qcode, R, rcode, n_codes):
    """uint8 l2 via :func:`_l2_u8_kernel` (projection lower bounds + exact integer distances)."""
    perm = np.argsort(rcode, kind="stable")
    Rs = np.ascontiguousarray(R[perm])
    cs = rcode[perm]
    code_start = np.searchsorted(cs, np.arange(n_codes), side="left").astype(np.int64)
    code_end = np.searchsorted(cs, np.arange(n_codes), side="right").astype(np.int64)
    ZQ, rhoQ, nQ, ZRT, rhoR, nR, tol_c = _l2_features(Q, Rs, fit=R)
    d2, idx_s = _l2_u8_kernel(Q, ZQ, rhoQ, nQ, qcode, Rs, ZRT, rhoR, nR,
                              code_start, code_end, tol_c, _L2_QBLOCK)
    dist = np.where(idx_s >= 0, np.sqrt(np.maximum(d2, 0).astype(np.float64)), np.inf)
    idx = np.where(idx_s >= 0, perm[np.maximum(idx_s, 0)], -1)
    return dist, idx


def _l2(Q, qcode, R, rcode, block=256):
    exact_int = Q.dtype == np.uint8 and R.dtype == np.uint8
    Rf = R.astype(np.float64)
    rn = np.einsum("ij,ij->i", Rf, Rf)
    dist = np.empty(len(Q))
    idx = np.empty(len(Q), np.int64)
    d = Q.shape[1]
    u = np.finfo(np.float64).eps
    for s in range(0, len(Q), block):
        qb = Q[s:s + block].astype(np.float64)
        qn = np.einsum("ij,ij->i", qb, qb)
        d2 = qn[:, None] + rn[None, :] - 2.0 * (qb @ Rf.T)
        same = qcode[s:s + block, None] == rcode[None, :]
        d2[same] = np.inf
        j = np.argmin(d2, axis=1)
        rows = np.arange(len(qb))
        if exact_int:
            best = d2[rows, j]
            dist[s:s + len(qb)] = np.where(np.isfinite(best), np.sqrt(np.maximum(best, 0.0)), np.inf)
            idx[s:s + len(qb)] = np.where(np.isfinite(best), j, -1)
            continue
        # recheck every candidate within the rounding-error bound of the block minimum
        tol = 4.0 * (d + 2) * u * (np.sqrt(qn)[:, None] + np.sqrt(rn)[None, :]) ** 2
        mins = d2[rows, j]
        for t in range(len(qb)):
            if not np.isfinite(mins[t]):
                dist[s + t], idx[s + t] = np.inf, -1
                continue
            cand = np.flatnonzero(d2[t] <= mins[t] + tol[t])
            diff = Rf[cand] - qb[t]
            exact = np.sqrt((diff * diff).sum(axis=1))
            k = int(np.argmin(exact))
            dist[s + t], idx[s + t] = exact[k], cand[k]
    return dist, idx


def nearest_other_label(queries, q_labels, references, r_labels, norm: str = "inf", *,
                        exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance from each query to its nearest reference with a *different* label, and
    that reference's index (YRZSC Section 3; Table 1 uses norm "inf").

    Inputs: arrays of shape (N, ...) (flattened per row), uint8 or real; integer labels.
    ``exclude_self`` documents the train-train case (queries *is* references): the point itself
    has the query's label, so it is excluded automatically; the flag only checks the shapes.
    Returns float64 distances in input units (uint8: 0..255) and int64 indices; a query with no
    reference of another label gets (inf, -1).
    """
    check_choice("norm", norm, NORMS)
    Q, ql, R, rl = _prepare(queries, q_labels, references, r_labels)
    if exclude_self and (Q.shape != R.shape or not np.array_equal(ql, rl)):
        raise ValueError("exclude_self requires queries and references (and labels) to be the same")
    qcode, rcode, n_codes = _codes(ql, rl)
    if norm == "inf":
        return _linf(Q, qcode, R, rcode, n_codes)
    if Q.dtype == np.uint8 and (_L2_U8_KERNEL is True or (
            _L2_U8_KERNEL == "auto" and _l2_u8_use_kernel(len(Q), len(R), Q.shape[1]))):
        return _l2_u8(Q, qcode, R, rcode, n_codes)
    return _l2(Q, qcode, R, rcode)


def nearest_with_label(queries, references, r_labels, label: int, norm: str = "inf"):
    """Exact distance from each query to the nearest reference *with* label ``label`` (and its
    index), via the same kernel: references relabelled 0 (label) / 1 (other), queries as 1."""
    rl = np.asarray(r_labels)
    q = np.asarray(queries)
    return nearest_other_label(q, np.ones(len(q), np.int64), references,
                               np.where(rl == label, 0, 1).astype(np.int64), norm)


# ----------------------------------------------------------------------------------------------
# Table 1 / Table 8, histograms, duplicates
# ----------------------------------------------------------------------------------------------

@dataclass
class SeparationRow:
    """One row of Table 1 / Table 8 (distances divided by ``scale``)."""
    norm: str
    scale: float
    train_train: np.ndarray = field(repr=False)
    train_train_index: np.ndarray = field(repr=False)
    test_train: np.ndarray = field(repr=False)
    test_train_index: np.ndarray = field(repr=False)

    @property
    def train_train_min(self) -> float:
        return float(self.train_train.min())

    @property
    def train_train_mean(self) -> float:
        return float(self.train_train.mean())

    @property
    def test_train_min(self) -> float:
        return float(self.test_train.min()) if self.test_train.size else float("nan")

    @property
    def test_train_mean(self) -> float:
        return float(self.test_train.mean()) if self.test_train.size else float("nan")

    def argmin_pairs(self) -> dict:
        """(query index, reference index) pairs achieving the two minima."""
        i = int(np.argmin(self.train_train))
        out = {"train_train": [i, int(self.train_train_index[i])]}
        if self.test_train.size:
            k = int(np.argmin(self.test_train))
            out["test_train"] = [k, int(self.test_train_index[k])]
        return out

    def summary(self) -> dict:
        return {"norm": self.norm, "train_train_min": self.train_train_min,
                "train_train_mean": self.train_train_mean, "test_train_min": self.test_train_min,
                "test_train_mean": self.test_train_mean, "argmin_pairs": self.argmin_pairs()}


def separation_row(train_x, train_y, test_x=None, test_y=None, norm: str = "inf",
                   scale: float | None = None) -> SeparationRow:
    """Table 1 row: train-train and test-train nearest-different-label distances.

    ``scale`` divides the distances (default 255 for uint8 images, so values lie in [0, 1] as in
    the paper; 1 otherwise)."""
    tx = np.asarray(train_x)
    if scale is None:
        scale = 255.0 if tx.dtype == np.uint8 else 1.0
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    ty = np.asarray(train_y)
    if len(np.unique(ty)) < 2:
        raise ValueError("train_y must contain at least two classes (separation is undefined "
                         "for one class)")
    tt, tti = nearest_other_label(tx, ty, tx, ty, norm, exclude_self=True)
    if test_x is not None:
        ts, tsi = nearest_other_label(test_x, test_y, tx, ty, norm)
    else:
        ts, tsi = np.empty(0), np.empty(0, np.int64)
    return SeparationRow(norm, float(scale), tt / scale, tti, ts / scale, tsi)


def random_labels(labels, seed: int) -> np.ndarray:
    """Table 8 "randomly labeled": each label drawn uniformly from the label set (seeded)."""
    seed = check_int("seed", seed, min_value=0)
    lab = np.asarray(labels)
    classes = np.unique(lab)
    rng = np.random.default_rng(seed)
    return classes[rng.integers(0, len(classes), size=lab.shape)].astype(np.int64)


def random_label_row(train_x, train_y, test_x, test_y, seed: int, norm: str = "inf",
                     scale: float | None = None) -> SeparationRow:
    """Table 8 left half: train and test labels replaced by seeded random labels
    (train with ``seed``, test with ``seed + 1``)."""
    return separation_row(train_x, random_labels(train_y, seed), test_x,
                          None if test_y is None else random_labels(test_y, seed + 1), norm, scale)


def histogram(values, bins: int = 50, range_: tuple[float, float] | None = None,
              lattice: float | None = None):
    """(counts, edges) of separation values (Figures 2 and 5).

    ``lattice``: the values are multiples of this step (l-inf distances of uint8 images are
    k/255): the edges then fall half-way between lattice points and every bin holds the same
    number of them (at most ``bins`` bins), so the histogram has no aliasing stripes (equal-width
    bins over such values hold alternately one and two lattice points)."""
    bins = check_int("bins", bins, min_value=1)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if lattice is None or v.size == 0:
        return np.histogram(v, bins=bins, range=range_)
    lattice = check_float("lattice", lattice, low=0.0, low_open=True)
    lo, hi = (np.asarray(range_, dtype=np.float64) if range_ is not None else (v.min(), v.max()))
    k_lo, k_hi = int(np.floor(lo / lattice + 1e-9)), int(np.ceil(hi / lattice - 1e-9))
    per_bin = max(1, -(-(k_hi - k_lo + 1) // bins))
    edges = (np.arange(k_lo, k_hi + per_bin + 1, per_bin) - 0.5) * lattice
    return np.histogram(v, bins=edges)


def _row_keys(x):
    x2 = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1))
    return x2.view(np.dtype((np.void, x2.dtype.itemsize * x2.shape[1]))).ravel()


def conflicting_duplicates(x, y) -> list[list[int]]:
    """Groups of indices of exactly equal rows of ``x`` that carry more than one label (the
    SVHN / Restricted ImageNet duplicates the paper removes, Section 3 and Appendix C)."""
    y = np.asarray(y)
    keys = _row_keys(x)
    _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    groups = []
    for g in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inv == g)
        if len(np.unique(y[members])) > 1:
            groups.append(members.tolist())
    return groups


def cross_conflicts(test_x, test_y, train_x, train_y) -> list[tuple[int, int]]:
    """(test index, train index) pairs of exactly equal images with different labels."""
    a, b = _row_keys(test_x), _row_keys(train_x)
    lookup: dict = {}
    for j, k in enumerate(b):
        lookup.setdefault(k.tobytes(), []).append(j)
    out = []
    ty, ry = np.asarray(test_y), np.asarray(train_y)
    for i, k in enumerate(a):
        for j in lookup.get(k.tobytes(), ()):
            if ty[i] != ry[j]:
                out.append((i, j))
    return out


def drop_conflicts(x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove every member of every conflicting duplicate group; returns (x, y, kept indices)."""
    drop = sorted({i for g in conflicting_duplicates(x, y) for i in g})
    keep = np.setdiff1d(np.arange(len(x)), np.asarray(drop, dtype=np.int64))
    return np.asarray(x)[keep], np.asarray(y)[keep], keep
