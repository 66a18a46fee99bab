"""Precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020).

The k-th nearest-neighbour radius of a row excludes the row itself, and ``d <= radius`` counts as
inside. precision = fraction of candidate rows inside the reference manifold; recall = fraction of
reference rows inside the candidate manifold; density and coverage measure candidate rows against
reference balls (reference = real, candidate = fake). Every comparison is decided on the float64
squared distance ``|x|^2 + |y|^2 - 2 x.y`` (as sklearn's, which prdc uses; :func:`_exact_sq`).
Blocked GEMMs in float32 screen all pairs with a rigorous error bound (:class:`_Screen`); only the
pairs the bound leaves open (each row's k-th neighbour, distances near a radius) are recomputed
in float64, so results equal a float64 pass over every pair. Memory grows with N, never N^2,
and self-distance passes compute each pair once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advisor.metrics.inputs import as_pair, check_k, row_slices

#: pairs per chunk of exact recomputation (two [chunk, D] float64 gathers)
_PAIR_CHUNK = 2048


def _screen_dtype(*arrays: np.ndarray) -> type[np.floating]:
    """float32 unless squared distances could overflow it (float64 screens like any dtype)."""
    dim = arrays[0].shape[1]
    biggest = max(max(float(a.max()), -float(a.min())) for a in arrays)
    return np.float32 if biggest * biggest * dim < 2.0**100 else np.float64


@dataclass(frozen=True)
class _Screen:
    """Features in the screening dtype plus the per-pair error bound of screened distances.

    A screened squared distance ``s`` (``-2 x.y`` from one GEMM in ``dtype``, plus the squared
    norms, not clipped) satisfies ``|s - d| <= rel * (|x|^2 + |y|^2) + tiny`` where ``d`` is the
    float64 value of :func:`_exact_sq`. Why: a dot product over D terms, summed in any order
    (any BLAS blocking, with or without FMA), is off by at most ``gamma_D * sum|x_k y_k|``,
    ``gamma_D = D u / (1 - D u)``, and ``2 sum|x_k y_k| <= |x|^2 + |y|^2``; rounding the float64
    features and norms to ``dtype`` and the two additions add a few ``u (|x|^2 + |y|^2)``, and
    the float64 value itself is off by ``gamma_D`` at float64's ``u``. ``rel`` counts D + 16
    units of both; ``tiny`` covers products lost to underflow.
    """

    rows: np.ndarray  # [N, D] in dtype
    sq: np.ndarray  # [N] float64 squared norms
    sq_screen: np.ndarray  # [N] the same in dtype
    rel: float
    tiny: float

    @classmethod
    def of(cls, x: np.ndarray, sq: np.ndarray, dtype: type[np.floating]) -> _Screen:
        terms = x.shape[1] + 16
        u = float(np.finfo(dtype).eps) / 2
        rel = terms * (u + 2.0**-53) / (1 - terms * u)
        tiny = 4 * terms * float(np.finfo(dtype).smallest_subnormal)
        return cls(x.astype(dtype), sq, sq.astype(dtype), rel, tiny)

    def band(self, other: _Screen) -> np.ndarray:
        """[N] float64: an error bound for every pair of this row with any row of ``other``."""
        return self.rel * (self.sq + other.sq.max()) + self.tiny + other.tiny

    def dists(self, rows: slice, other: _Screen, cols: slice) -> np.ndarray:
        """Screened squared distances [rows, cols] in dtype (not clipped)."""
        s = (self.rows[rows] * -2) @ other.rows[cols].T  # the factor -2 is exact
        s += other.sq_screen[None, cols]
        s += self.sq_screen[rows, None]
        return s


def _exact_sq(
    a: np.ndarray, b: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """float64 squared distances of the pairs ``(a[i], b[j])`` from the ``|x|^2 + |y|^2 - 2 x.y``
    expansion, as sklearn's (which prdc uses), clipped at 0: the value every comparison is
    decided on. ``sq_a``, ``sq_b``: squared norms from ``np.einsum("ij,ij->i", a, a)``."""
    out = np.empty(len(i))
    for start in range(0, len(i), _PAIR_CHUNK):
        ii, jj = i[start : start + _PAIR_CHUNK], j[start : start + _PAIR_CHUNK]
        dots = np.einsum("ij,ij->i", a[ii], b[jj])
        out[start : start + _PAIR_CHUNK] = (sq_a[ii] + sq_b[jj]) - 2.0 * dots  # symmetric
    return np.maximum(out, 0.0, out=out)


def _grouped_smallest(groups: np.ndarray, values: np.ndarray, n: int, k: int) -> np.ndarray:
    """[n, k]: the k smallest ``values`` per group id (each of 0..n-1 has >= k), sorted."""
    order = np.lexsort((values, groups))
    starts = np.searchsorted(groups[order], np.arange(n))
    return values[order][starts[:, None] + np.arange(k)]


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a sparse C-contiguous 2-D mask, scanning 8 bytes at a time."""
    flat = mask.reshape(-1)
    whole = len(flat) // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64)) * 8
    cells = (words[:, None] + np.arange(8)).reshape(-1)
    hits = np.concatenate([cells[flat[cells]], whole + np.flatnonzero(flat[whole:])])
    return np.divmod(hits, mask.shape[1])


def _group_min_bound(s: np.ndarray, k: int, axis: int) -> np.ndarray:
    """An upper bound on the k-th smallest along ``axis``: the largest of the minima of k
    disjoint slices (k actual values lie at or below it); inf when the axis is shorter than k."""
    length = s.shape[axis]
    if length < k:
        return np.full(s.shape[1 - axis], np.inf)
    edges = np.linspace(0, length, k + 1).astype(int)
    mins = [
        s[a:b].min(axis=0) if axis == 0 else s[:, a:b].min(axis=1)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    return np.max(mins, axis=0).astype(np.float64)


def _up(v: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    """``v`` in ``dtype``, rounded up (never below ``v``)."""
    return np.nextafter(v.astype(dtype), np.inf)


def _down(v: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    return np.nextafter(v.astype(dtype), -np.inf)


def _knn_sq_radii(
    x: np.ndarray,
    k: int,
    block_rows: int | None,
    dtype: type[np.floating] | None = None,
    ranks: tuple[int, ...] | None = None,
) -> np.ndarray:
    """The r-th smallest squared distance from each row to the other rows for r in ``ranks``
    (1..k, None: all of 1..k): [N, len(ranks)], as :func:`_exact_sq` gives them.

    Screening: upper row strips of screened distances (each pair computed once: a strip's part
    right of its diagonal block also serves those columns' rows) keep, per row, every column
    whose screened value could still be among the k smallest given a running upper bound on
    the k-th; the survivors (about k plus those within the error band) are recomputed exactly.
    """
    n = len(x)
    ranks = ranks or tuple(range(1, k + 1))
    sq = np.einsum("ij,ij->i", x, x)
    scr = _Screen.of(x, sq, dtype or _screen_dtype(x))
    slack = 2 * scr.band(scr)
    thr = np.full(n, np.inf)  # >= each row's k-th smallest screened value
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for rows in row_slices(n, n, block_rows):
        s = scr.dists(rows, scr, slice(rows.start, n))
        width = rows.stop - rows.start
        s[np.arange(width), np.arange(width)] = np.inf  # the point itself is not a neighbour
        thr[rows] = np.minimum(thr[rows], _group_min_bound(s, k, axis=1))
        r, c = _nonzero(s <= _up(thr[rows] + slack[rows], s.dtype)[:, None])
        found.append((r + rows.start, c + rows.start, s[r, c]))
        if rows.stop < n:  # the columns right of the diagonal block, for their own rows
            tail, after = s[:, width:], slice(rows.stop, n)
            thr[after] = np.minimum(thr[after], _group_min_bound(tail, k, axis=0))
            r, c = _nonzero(tail <= _up(thr[after] + slack[after], s.dtype)[None, :])
            found.append((c + rows.stop, r + rows.start, tail[r, c]))
    i, j, s = (np.concatenate(parts) for parts in zip(*found, strict=True))
    keep = (i != j) & (s <= _up(thr + slack, s.dtype)[i])  # the final bound prunes more
    i, j, s = i[keep], j[keep], s[keep].astype(np.float64)
    err = scr.rel * (sq[i] + sq[j]) + 2 * scr.tiny
    lower, upper = s - err, s + err
    # Per rank r, the r-th exact value lies in [r-th smallest lower, r-th smallest upper]; the
    # pairs whose interval misses that range on the low side are below it, so it is the
    # (r - below)-th smallest exact value among the pairs whose interval meets the range
    # (usually the r-th neighbour alone).
    lo_r = _grouped_smallest(i, lower, n, k)[:, np.asarray(ranks) - 1]
    hi_r = _grouped_smallest(i, upper, n, k)[:, np.asarray(ranks) - 1]
    meets = (upper[:, None] >= lo_r[i]) & (lower[:, None] <= hi_r[i])  # [pairs, ranks]
    need = meets.any(axis=1)
    exact = np.full(len(i), np.nan)
    exact[need] = _exact_sq(x, x, sq, sq, i[need], j[need])
    out = np.empty((n, len(ranks)))
    for col, rank in enumerate(ranks):
        below = np.bincount(i[upper < lo_r[i, col]], minlength=n)
        rows, values = i[meets[:, col]], exact[meets[:, col]]
        order = np.lexsort((values, rows))
        starts = np.searchsorted(rows[order], np.arange(n))
        out[:, col] = values[order][starts + rank - 1 - below]
    return out


@dataclass(frozen=True)
class Indicators:
    """Per-row outcomes with the k-NN manifolds fixed; the metrics are their means.

    precision [n_cand] bool: inside some reference ball (k_pr); recall [n_ref] bool: inside some
    candidate ball (k_pr); density [n_cand] int: how many reference balls (k_dc) hold the row;
    coverage [n_ref] bool: the nearest candidate lies inside the row's own ball (k_dc). Fields
    of a k that was not asked for are None.
    """

    precision: np.ndarray | None
    recall: np.ndarray | None
    density: np.ndarray | None
    coverage: np.ndarray | None


def manifold_indicators(
    x: np.ndarray,
    y: np.ndarray,
    k_pr: int | None,
    k_dc: int | None,
    block_rows: int | None,
    *,
    dtype: type[np.floating] | None = None,
) -> Indicators:
    """One k-NN pass per set (the larger k serves both), then one pass over cross distances.

    ``dtype``: the screening dtype (None: float32 unless that could overflow); it never
    changes a result, every comparison is decided on :func:`_exact_sq`'s float64 value.
    """
    if k_pr is not None:
        check_k(k_pr, len(x), "reference", "precision/recall")
        check_k(k_pr, len(y), "candidate", "precision/recall")
    if k_dc is not None:
        check_k(k_dc, len(x), "reference", "density/coverage")
    dtype = dtype or _screen_dtype(x, y)
    ks = tuple(k for k in (k_pr, k_dc) if k is not None)
    ref_knn = dict(zip(ks, _knn_sq_radii(x, max(ks), block_rows, dtype, ks).T, strict=True))
    sq_x, sq_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    sx, sy = _Screen.of(x, sq_x, dtype), _Screen.of(y, sq_y, dtype)
    band_x, band_y = sx.band(sy), sy.band(sx)
    n1, n2 = len(x), len(y)
    ind = {}
    if k_pr is not None:
        ref_pr = ref_knn[k_pr]
        cand_pr = _knn_sq_radii(y, k_pr, block_rows, dtype, (k_pr,))[:, 0]
        ind["precision"], ind["recall"] = np.zeros(n2, dtype=bool), np.empty(n1, dtype=bool)
        cand_lo, cand_hi = _down(cand_pr - band_y, dtype), _up(cand_pr + band_y, dtype)
    if k_dc is not None:
        ref_dc = ref_knn[k_dc]
        ind["density"], ind["coverage"] = np.zeros(n2, dtype=np.int64), np.empty(n1, dtype=bool)

    def decide(s, rows, lo, hi, radius, per_column=False):
        """``d <= radius`` per pair of the block: the screened verdicts where the error bound
        decides them [rows, n2], and the pairs (i, j) inside among those it leaves open."""
        sure = s <= lo
        open_ = s <= hi
        open_ ^= sure
        i, j = _nonzero(open_)
        d = _exact_sq(x, y, sq_x, sq_y, i + rows.start, j)
        inside = d <= (radius[j] if per_column else radius[i + rows.start])
        return sure, i[inside], j[inside]

    for rows in row_slices(n1, n2, block_rows):
        s = sx.dists(rows, sy, slice(0, n2))
        if k_dc is not None:
            lo, hi = (
                _down(ref_dc[rows] - band_x[rows], dtype),
                _up(ref_dc[rows] + band_x[rows], dtype),
            )
            sure, i, j = decide(s, rows, lo[:, None], hi[:, None], ref_dc)
            ind["density"] += np.add.reduce(sure, axis=0, dtype=np.int64)
            np.add.at(ind["density"], j, 1)
            cover = sure.any(axis=1)
            cover[i] = True
            ind["coverage"][rows] = cover
        if k_pr is not None:
            if k_pr != k_dc:
                lo, hi = (
                    _down(ref_pr[rows] - band_x[rows], dtype),
                    _up(ref_pr[rows] + band_x[rows], dtype),
                )
                sure, i, j = decide(s, rows, lo[:, None], hi[:, None], ref_pr)
            ind["precision"] |= np.logical_or.reduce(sure, axis=0)
            ind["precision"][j] = True
            sure, i, _ = decide(s, rows, cand_lo[None, :], cand_hi[None, :], cand_pr, True)
            recall = sure.any(axis=1)
            recall[i] = True
            ind["recall"][rows] = recall
    return Indicators(**{f: ind.get(f) for f in ("precision", "recall", "density", "coverage")})


def precision_recall_density_coverage(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    k_pr: int = 3,
    k_dc: int = 5,
    block_rows: int | None = None,
) -> tuple[float, float, float, float]:
    """(precision, recall, density, coverage) from shared distance passes.

    ``block_rows`` (rows per distance block; None picks 64 MiB blocks) trades memory only.
    """
    ind = manifold_indicators(*as_pair(reference, candidate), k_pr, k_dc, block_rows)
    assert ind.precision is not None and ind.recall is not None
    assert ind.density is not None and ind.coverage is not None
    return (
        float(ind.precision.mean()),
        float(ind.recall.mean()),
        float(ind.density.mean() / k_dc),
        float(ind.coverage.mean()),
    )


def precision_recall(
    reference: np.ndarray, candidate: np.ndarray, *, k: int = 3, block_rows: int | None = None
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): (precision, recall).

    precision: fraction of candidate rows within some reference row's k-NN radius;
    recall: fraction of reference rows within some candidate row's k-NN radius.
    """
    ind = manifold_indicators(*as_pair(reference, candidate), k, None, block_rows)
    assert ind.precision is not None and ind.recall is not None
    return float(ind.precision.mean()), float(ind.recall.mean())


def density_coverage(
    reference: np.ndarray, candidate: np.ndarray, *, k: int = 5, block_rows: int | None = None
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), reference = real: (density, coverage).

    density: mean over candidate rows of (reference balls holding the row) / k;
    coverage: fraction of reference rows whose nearest candidate lies inside their own ball.
    """
    ind = manifold_indicators(*as_pair(reference, candidate), None, k, block_rows)
    assert ind.density is not None and ind.coverage is not None
    return float(ind.density.mean() / k), float(ind.coverage.mean())
