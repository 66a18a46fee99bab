"""Kernel Inception Distance: unbiased MMD^2 with the kernel ``(x.y / D + 1)^3`` over subsets.

``num_subsets`` subsets of ``min(subset_size, N_ref, N_cand)`` rows are drawn exactly as
torch-fidelity draws them (``np.random.RandomState(seed)``; per subset, reference rows then
candidate rows, each ``choice(n, size, replace=False)``), so values equal torch-fidelity's; the
std is over subsets (``ddof=0``), as torch-fidelity's. Kernel sums come either per subset, or
from one blocked pass over the full kernel matrices that serves all subsets at once (and any
bootstrap resamples); the cheaper route is picked by shape.

Precision: kernel values, their sums and everything after are float64. The products ``x.y``
inside the kernel follow the features: float64 features give float64 products (values equal
torch-fidelity's float64 result to ~1e-12); float32 features, as extractors produce them, give
float32 products (as torch-fidelity computes on float32 features, but with float64 sums: about
1e-7 relative from the float64 value, where torch-fidelity's own float32 result is ~1e-5 off),
which halves the dominant cost. Features so large that a float32 product could overflow
(``|x|^2 / D`` near 1e38) get float64 products instead.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from advisor.metrics.inputs import as_pair, row_slices

#: Squared lifted-row norm up to which float32 products are used: float32 overflows at 3.4e38,
#: and by Cauchy-Schwarz every product of two lifted rows (and every partial sum inside the
#: matrix product) is at most the larger of their squared norms.
FLOAT32_PRODUCTS_LIMIT = 1e38
#: Most row indices KID's subsets may draw (``num_subsets * size`` per set, 800 MB of int64):
#: 1000x the standard 100 subsets of 1000, and more kernel work than any real run could do.
MAX_KID_DRAWS = 10**8


def products_dtype(*features: np.ndarray) -> type[np.floating]:
    """float32 when every input ``[N, D]`` arrived as float32 (or narrower) and no product of
    lifted rows can overflow float32 (real extractors' features are far below that), else
    float64."""
    arrays = [np.asarray(f) for f in features]
    if not all(a.dtype.itemsize <= 4 for a in arrays):
        return np.float64
    for a in arrays:
        if a.size == 0:
            continue
        largest = float(np.einsum("ij,ij->i", a, a, dtype=np.float64).max()) / a.shape[1] + 1.0
        if not largest < FLOAT32_PRODUCTS_LIMIT:
            return np.float64
    return np.float32


def _lift(x: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """``[x / sqrt(D), 1]`` [N, D + 1] in ``dtype``: products of lifted rows are ``x.y/D + 1``."""
    n, dim = x.shape
    out = np.empty((n, dim + 1), dtype=dtype)
    np.multiply(x, 1.0 / math.sqrt(dim), out=out[:, :dim], casting="same_kind")
    out[:, dim] = 1.0
    return out


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(x.y / D + 1) ** 3`` float64 [len(a), len(b)] for lifted rows ``a``, ``b``."""
    products = a @ b.T
    k = np.multiply(products, products, dtype=np.float64)  # float64 from here on
    k *= products
    return k


def kid_subset_size(subset_size: int, n1: int, n2: int) -> tuple[int, str | None]:
    if subset_size < 2:
        raise ValueError(f"KID subset size must be at least 2, got {subset_size}")
    size = min(subset_size, n1, n2)
    if size == subset_size:
        return size, None
    note = (
        f"KID subset size {subset_size} exceeds the smaller set "
        f"({min(n1, n2)} samples); used {size}"
    )
    return size, note


def kid_subsets(
    n1: int, n2: int, size: int, num_subsets: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices [S, size] per set, drawn exactly as torch-fidelity draws them."""
    if num_subsets < 1:
        raise ValueError(f"KID needs at least 1 subset, got {num_subsets}")
    if num_subsets * size > MAX_KID_DRAWS:
        raise ValueError(
            f"KID with {num_subsets} subsets of {size} rows draws {num_subsets * size} indices "
            f"per set, more than {MAX_KID_DRAWS}; use fewer or smaller subsets"
        )
    rng = np.random.RandomState(seed)
    idx1 = np.empty((num_subsets, size), dtype=np.int64)
    idx2 = np.empty((num_subsets, size), dtype=np.int64)
    for s in range(num_subsets):
        idx1[s] = rng.choice(n1, size, replace=False)
        idx2[s] = rng.choice(n2, size, replace=False)
    return idx1, idx2


def _within_dense(k: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per column of counts ``w`` [m, C]: mean of kernel matrix ``k`` [m, m] over pairs of
    distinct rows, ``sum_{i != j} w_i w_j k_ij / sum_{i != j} w_i w_j``.

    For a column of ones this is the usual unbiased within-set term; for bootstrap counts it
    leaves out pairs of copies of one row, whose ``k_ii`` would bias the replicate. A column
    with fewer than two distinct rows gives NaN.
    """
    squares = w * w
    quad = np.einsum("ic,ic->c", w, k @ w) - squares.T @ np.diagonal(k)
    return _ratio(quad, w.sum(axis=0) ** 2 - squares.sum(axis=0))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den`` is 0 (a resample that left out the subset's rows)."""
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _direct(
    x: np.ndarray, y: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, w1: np.ndarray, w2: np.ndarray
) -> np.ndarray:
    """MMD^2 [S, C] for lifted ``x``, ``y``: kernel matrices per subset pair, counts ``w1`` [n1, C],
    ``w2`` [n2, C] restricted to the subset's rows (cheap when N is large)."""
    out = np.empty((len(idx1), w1.shape[1]))
    for s, (i, j) in enumerate(zip(idx1, idx2, strict=True)):
        xs, ys, c1, c2 = x[i], y[j], w1[i], w2[j]
        within1 = _within_dense(_kernel(xs, xs), c1)
        within2 = _within_dense(_kernel(ys, ys), c2)
        across = np.einsum("ic,ic->c", c1, _kernel(xs, ys) @ c2)
        out[s] = within1 + within2 - 2 * _ratio(across, c1.sum(axis=0) * c2.sum(axis=0))
    return out


def _mean_within(x: np.ndarray, w: np.ndarray, block_rows: int | None) -> np.ndarray:
    """:func:`_within_dense` for K = kernel(x, x) (``x`` lifted) without holding K: upper row
    strips, each strip right of its diagonal block standing for its mirror image too."""
    n = len(x)
    quad = np.zeros(w.shape[1])
    for rows in row_slices(n, n, block_rows):
        k = _kernel(x[rows], x[rows.start :])
        width = rows.stop - rows.start
        kw = k[:, :width] @ w[rows]
        if rows.stop < n:
            kw += 2.0 * (k[:, width:] @ w[rows.stop :])
        quad += np.einsum("ic,ic->c", w[rows], kw)
    squares = w * w
    quad -= squares.T @ np.einsum("ij,ij->i", x, x, dtype=np.float64) ** 3
    return _ratio(quad, w.sum(axis=0) ** 2 - squares.sum(axis=0))


def _full(
    x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray, block_rows: int | None
) -> np.ndarray:
    """MMD^2 [C] for lifted ``x``, ``y``, per column pair of counts ``w1`` [n1, C], ``w2``
    [n2, C], in one blocked pass over the full kernel matrices: subset indicators and bootstrap
    counts alike."""
    across = np.zeros(w1.shape[1])
    for rows in row_slices(len(x), len(y), block_rows):
        k = _kernel(x[rows], y)
        across += np.einsum("ic,ic->c", w1[rows], k @ w2)
    within1, within2 = _mean_within(x, w1, block_rows), _mean_within(y, w2, block_rows)
    return within1 + within2 - 2 * across / (w1.sum(axis=0) * w2.sum(axis=0))


def uses_full(n1: int, n2: int, size: int, subsets: int, resamples: int, dim: int) -> bool:
    """True when one pass over the full kernel matrices costs fewer multiply-adds than
    ``subsets`` kernel matrices of ``size`` rows (each also serving ``resamples`` columns)."""
    pairs = n1 * n1 + n2 * n2 + n1 * n2
    full = pairs / 2 * dim + pairs * (subsets + resamples)
    direct = subsets * 3 * size * size * (dim + 1 + resamples)
    return full <= direct


def _indicators(idx: np.ndarray, n: int) -> np.ndarray:
    w = np.zeros((n, len(idx)))
    w[idx, np.arange(len(idx))[:, None]] = 1.0
    return w


def kid_replicates(
    x: np.ndarray,
    y: np.ndarray,
    idx1: np.ndarray,
    idx2: np.ndarray,
    counts1: np.ndarray | None = None,
    counts2: np.ndarray | None = None,
    *,
    products: type[np.floating] = np.float64,
    full: bool | None = None,
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MMD^2 per subset [S], and per bootstrap resample [B] (empty without counts).

    ``counts1`` [B, n1], ``counts2`` [B, n2]: how often each row appears in each resample. A
    resample's value is the KID of its weighted rows: over the full data on the full route,
    averaged over the same subsets (weighted) on the direct route. ``products``: the dtype of
    the products inside the kernel (see the module docstring). ``full`` forces a route (None:
    the cheaper one).
    """
    (n1, dim), n2 = x.shape, len(y)
    if counts1 is None or counts2 is None:
        counts1, counts2 = np.empty((0, n1)), np.empty((0, n2))
    subsets, resamples = len(idx1), len(counts1)
    if full is None:
        full = uses_full(n1, n2, idx1.shape[1], subsets, resamples, dim)
    if full:
        w1 = np.hstack([_indicators(idx1, n1), counts1.T])
        w2 = np.hstack([_indicators(idx2, n2), counts2.T])
        values = _full(_lift(x, products), _lift(y, products), w1, w2, block_rows)
        return values[:subsets], values[subsets:]
    w1 = np.hstack([np.ones((n1, 1)), counts1.T])
    w2 = np.hstack([np.ones((n2, 1)), counts2.T])
    values = _direct(_lift(x, products), _lift(y, products), idx1, idx2, w1, w2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN only for 2-row subsets
        return values[:, 0], np.nanmean(values[:, 1:], axis=0)


def kid(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over subsets) of float arrays [N, D], torch-fidelity's on the same seed.

    ``subset_size`` larger than a set is clamped to the smaller set's size, with a warning.
    """
    x, y = as_pair(reference, candidate)
    size, note = kid_subset_size(subset_size, len(x), len(y))
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    subsets = kid_subsets(len(x), len(y), size, num_subsets, seed)
    values, _ = kid_replicates(x, y, *subsets, products=products_dtype(reference, candidate))
    return float(values.mean()), float(values.std())
