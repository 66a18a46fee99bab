"""Frechet Inception Distance between two feature sets, through a symmetric eigendecomposition.

``tr sqrt(S1 S2)`` comes from one symmetric eigendecomposition, never ``scipy.linalg.sqrtm``:
of ``L^T S2 L`` with ``S1 = L L^T`` (Cholesky, or eigh when ``S1`` is singular), or, when a set
has fewer rows than about D, of the small ``C C^T`` with ``C = A B^T / sqrt((n1-1)(n2-1))`` (``A``,
``B`` the centred features), whose singular values sum to the same trace. Both routes stay
finite and real for singular covariances (N < D), where FID is also strongly biased: a
:class:`SmallSampleWarning` says so. Covariances use 1/(N-1), accumulated in float64.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from advisor.metrics.inputs import as_features, as_pair

#: FID bootstrap replicates are capped so that they cost about this many multiply-adds (in
#: matrix-product equivalents; a few seconds on two idle cores) ...
_BOOTSTRAP_BUDGET = 5e10
#: ... but never fewer than this many (when ``bootstrap`` asks for at least as many).
_BOOTSTRAP_MIN = 10
#: A symmetric eigendecomposition, with the factor and products around it, costs about this
#: many matrix products of its size (measured with OpenBLAS).
_EIG_COST = 7


class SmallSampleWarning(UserWarning):
    """FID from fewer samples than feature dimensions: finite, but strongly biased upward."""


@dataclass(frozen=True)
class FeatureStats:
    """Gaussian statistics of a feature set: ``mu`` float64 [D], ``sigma`` float64 [D, D] with
    the 1/(N-1) convention, ``n`` the number of rows they came from."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def feature_stats(features: np.ndarray) -> FeatureStats:
    """Mean and covariance (1/(N-1), float64 accumulation) of ``features`` [N, D]."""
    x = as_features(features, "input")
    mu = x.mean(axis=0)
    xc = x - mu
    return FeatureStats(mu=mu, sigma=(xc.T @ xc) / (len(x) - 1), n=len(x))


def small_sample_note(n: int, dim: int) -> str:
    return (
        f"FID from {n} samples in {dim} dimensions (N < D): the covariance is singular, and FID "
        "is biased upward at small N; compare FIDs only at equal sample counts"
    )


def _sum_sqrt_top(eig: np.ndarray, rank: int) -> float:
    """Sum of square roots of the ``rank`` largest of ``eig`` (ascending), negatives clipped.

    The rest are exactly zero in exact arithmetic (a centred set of n rows has rank <= n - 1);
    rounding turns each into about +-eps * max, whose square root would add ~1e-8 * max each.
    """
    top = eig[max(len(eig) - rank, 0) :]
    return float(np.sqrt(np.clip(top, 0.0, None)).sum())


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, rank: int) -> float:
    """``tr sqrt(sigma1 @ sigma2)`` for symmetric PSD matrices, singular ones included.

    With any factor ``sigma1 = L L^T``, ``sigma1 sigma2`` and the symmetric PSD ``L^T sigma2 L``
    share their non-zero eigenvalues, at most ``rank`` of them. Cholesky gives ``L`` cheaply; a
    singular ``sigma1`` falls back to its eigendecomposition.
    """
    try:
        factor = np.linalg.cholesky(sigma1)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(sigma1)
        factor = v * np.sqrt(np.clip(w, 0.0, None))
    m = factor.T @ sigma2 @ factor
    return _sum_sqrt_top(np.linalg.eigvalsh((m + m.T) / 2), rank)


def _nuclear_norm(c: np.ndarray, rank: int) -> float:
    """Sum of the (at most ``rank`` non-zero) singular values of ``c``, via the eigenvalues of
    the smaller Gram matrix."""
    gram = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
    return _sum_sqrt_top(np.linalg.eigvalsh(gram), rank)


def _max_rank(n1: int, n2: int, dim: int) -> int:
    """Rank bound of ``S1 S2`` (or ``A B^T``): centring leaves n - 1 free rows per set."""
    return max(min(n1 - 1, n2 - 1, dim), 0)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance between two Gaussians (symmetric in ``a`` and ``b``).

    Warns with :class:`SmallSampleWarning` when either side came from fewer rows than
    dimensions; the value is then finite and real, but biased.
    """
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise ValueError(f"statistics differ in dimension: {a.dim} vs {b.dim}")
    if min(a.n, b.n) < a.dim:
        warnings.warn(small_sample_note(min(a.n, b.n), a.dim), SmallSampleWarning, stacklevel=2)
    # factor the side with more rows: it is the one more likely to be full rank
    s1, s2 = (a.sigma, b.sigma) if a.n >= b.n else (b.sigma, a.sigma)
    diff = a.mu - b.mu
    value = (
        diff @ diff
        + np.trace(a.sigma)
        + np.trace(b.sigma)
        - 2 * _trace_sqrt_product(s1, s2, _max_rank(a.n, b.n, a.dim))
    )
    return float(value)


def _fid_uses_gram(n1: int, n2: int, dim: int) -> bool:
    """True when the n1 x n2 route costs fewer multiply-adds than the D x D route."""
    small, large = sorted((n1, n2))
    gram = n1 * n2 * dim + small * small * large + _EIG_COST * small**3
    cov = (n1 + n2) * dim * dim + _EIG_COST * dim**3
    return gram < cov


def _fid_gram(x: np.ndarray, y: np.ndarray) -> float:
    """FID from features through the nuclear norm of the centred cross-Gram matrix."""
    n1, n2 = len(x), len(y)
    a, b = x - x.mean(axis=0), y - y.mean(axis=0)
    diff = x.mean(axis=0) - y.mean(axis=0)
    tr1, tr2 = np.einsum("ij,ij->", a, a) / (n1 - 1), np.einsum("ij,ij->", b, b) / (n2 - 1)
    cross = (a @ b.T) / math.sqrt((n1 - 1) * (n2 - 1))
    return float(diff @ diff + tr1 + tr2 - 2 * _nuclear_norm(cross, _max_rank(n1, n2, x.shape[1])))


def fid(reference: np.ndarray, candidate: np.ndarray) -> float:
    """FID between two feature sets [N, D]; finite and real for any N >= 2.

    Picks the cheaper exact route by shape (D x D statistics, or the n1 x n2 cross-Gram when a
    set has fewer rows than about D). Warns with :class:`SmallSampleWarning` when N < D.
    """
    x, y = as_pair(reference, candidate)
    (n1, dim), n2 = x.shape, len(y)
    if min(n1, n2) < dim:
        warnings.warn(small_sample_note(min(n1, n2), dim), SmallSampleWarning, stacklevel=2)
    if _fid_uses_gram(n1, n2, dim):
        return _fid_gram(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        return fid_from_stats(feature_stats(x), feature_stats(y))


def fid_replicates(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """FID of bootstrap resamples given as row counts ``w1`` [R, n1], ``w2`` [R, n2].

    A resample's rows repeat; its covariance is ``sum_i w_i (x_i - m)(x_i - m)^T / (n - 1)``.
    Centred cross-Grams of all resamples derive from one ``A B^T`` (Gram route); the D x D route
    recomputes both covariances per replicate (rows with zero count skipped).
    """
    (n1, dim), n2 = x.shape, len(y)
    mean1, mean2 = x.mean(axis=0), y.mean(axis=0)
    a, b = x - mean1, y - mean2
    sq1, sq2 = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    gram = _fid_uses_gram(n1, n2, dim)
    cross = a @ b.T if gram else None
    out = np.empty(len(w1))
    for r, (c1, c2) in enumerate(zip(w1, w2, strict=True)):
        d1, d2 = a.T @ c1 / n1, b.T @ c2 / n2  # resample mean minus full mean
        diff = mean1 + d1 - mean2 - d2
        tr1 = (c1 @ sq1 - n1 * (d1 @ d1)) / (n1 - 1)
        tr2 = (c2 @ sq2 - n2 * (d2 @ d2)) / (n2 - 1)
        i, j = np.flatnonzero(c1), np.flatnonzero(c2)
        rank = _max_rank(len(i), len(j), dim)  # distinct rows decide the rank
        if cross is not None:
            c = cross[np.ix_(i, j)] - (a[i] @ d2)[:, None] - (b[j] @ d1)[None, :] + d1 @ d2
            c *= np.sqrt(c1[i])[:, None] * np.sqrt(c2[j])[None, :]
            tr_sqrt = _nuclear_norm(c / math.sqrt((n1 - 1) * (n2 - 1)), rank)
        else:
            f1 = (a[i] - d1) * np.sqrt(c1[i])[:, None]
            f2 = (b[j] - d2) * np.sqrt(c2[j])[:, None]
            tr_sqrt = _trace_sqrt_product(f1.T @ f1 / (n1 - 1), f2.T @ f2 / (n2 - 1), rank)
        out[r] = diff @ diff + tr1 + tr2 - 2 * tr_sqrt
    return out


def fid_bootstrap_count(n1: int, n2: int, dim: int, requested: int) -> int:
    """How many FID replicates to run: all requested when cheap, else a budgeted number."""
    kept = 0.64  # a resample holds about 1 - 1/e of the distinct rows
    small, large = sorted((round(n1 * kept), round(n2 * kept)))
    if _fid_uses_gram(n1, n2, dim):  # the cross-Gram itself is computed once
        cost = small * small * large + _EIG_COST * small**3 + (n1 + n2) * dim
    else:
        cost = (small + large) * dim * dim + _EIG_COST * dim**3
    affordable = max(_BOOTSTRAP_MIN, int(_BOOTSTRAP_BUDGET // max(cost, 1)))
    return min(requested, affordable)
