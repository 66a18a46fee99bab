"""Precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020).

The k-th nearest-neighbour radius of a row excludes the row itself, and ``d <= radius`` counts as
inside. precision = fraction of candidate rows inside the reference manifold; recall = fraction of
reference rows inside the candidate manifold; density and coverage measure candidate rows against
reference balls (reference = real, candidate = fake). Squared distances come from the
``|x|^2 + |y|^2 - 2 x.y`` expansion in float64 (as sklearn's, which prdc uses), in row
blocks: memory grows with N, never with N^2, and self-distance passes compute each pair once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advisor.metrics.inputs import as_pair, check_k, row_slices


def _sq_dists(a: np.ndarray, b: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [len(a), len(b)], clipped at 0."""
    d2 = a @ b.T
    d2 *= -2.0
    d2 += sq_a[:, None]
    d2 += sq_b[None, :]
    return np.maximum(d2, 0.0, out=d2)


def _knn_sq_radii(x: np.ndarray, k: int, block_rows: int | None) -> np.ndarray:
    """The k smallest squared distances from each row to the other rows, sorted: [N, k].

    Upper row strips only: a strip's part right of its diagonal block also serves those
    columns' rows, so each pair's distance is computed once.
    """
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    best = np.full((n, k), np.inf)
    for rows in row_slices(n, n, block_rows):
        d2 = _sq_dists(x[rows], x[rows.start :], sq[rows], sq[rows.start :])
        width = rows.stop - rows.start
        d2[np.arange(width), np.arange(width)] = np.inf  # the point itself is not a neighbour
        if rows.stop < n:  # first the columns right of the diagonal block, for their own rows
            tail = d2[:, width:]
            cols = np.partition(tail, k - 1, axis=0)[:k] if width > k else tail
            best[rows.stop :] = _merge_smallest(best[rows.stop :], cols.T, k)
        kk = min(k, d2.shape[1])
        if kk < d2.shape[1]:
            d2.partition(kk - 1, axis=1)  # in place: the columns were read above
        best[rows] = _merge_smallest(best[rows], d2[:, :kk], k)
    return np.sort(best, axis=1)


def _merge_smallest(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """The k smallest of each row of ``a`` [m, k] and ``b`` [m, j] together (unsorted)."""
    return np.partition(np.concatenate([a, b], axis=1), k - 1, axis=1)[:, :k]


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
    x: np.ndarray, y: np.ndarray, k_pr: int | None, k_dc: int | None, block_rows: int | None
) -> Indicators:
    """One k-NN pass per set (the larger k serves both), then one pass over cross distances."""
    if k_pr is not None:
        check_k(k_pr, len(x), "reference", "precision/recall")
        check_k(k_pr, len(y), "candidate", "precision/recall")
    if k_dc is not None:
        check_k(k_dc, len(x), "reference", "density/coverage")
    ref_knn = _knn_sq_radii(x, max(k for k in (k_pr, k_dc) if k is not None), block_rows)
    sq_x, sq_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    n1, n2 = len(x), len(y)
    ind = {}
    if k_pr is not None:
        ref_pr = ref_knn[:, k_pr - 1]
        cand_pr = _knn_sq_radii(y, k_pr, block_rows)[:, k_pr - 1]
        ind["precision"], ind["recall"] = np.zeros(n2, dtype=bool), np.empty(n1, dtype=bool)
    if k_dc is not None:
        ref_dc = ref_knn[:, k_dc - 1]
        ind["density"], ind["coverage"] = np.zeros(n2, dtype=np.int64), np.empty(n1, dtype=bool)
    for rows in row_slices(n1, n2, block_rows):
        d2 = _sq_dists(x[rows], y, sq_x[rows], sq_y)
        if k_dc is not None:
            inside = d2 <= ref_dc[rows, None]
            ind["density"] += inside.sum(axis=0)
            ind["coverage"][rows] = d2.min(axis=1) <= ref_dc[rows]
        if k_pr is not None:
            if k_pr != k_dc:
                inside = d2 <= ref_pr[rows, None]
            ind["precision"] |= inside.any(axis=0)
            ind["recall"][rows] = (d2 <= cand_pr[None, :]).any(axis=1)
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
