"""Inception Score (Salimans et al. 2016) from classifier logits, as torch-fidelity computes it.

``IS = exp(E_x KL(p(y|x) || p(y)))`` per split, ``p(y|x) = softmax(logits)`` and ``p(y)`` the
split's mean of ``p(y|x)``; the score is the mean over ``splits`` (default 10) equal-as-possible
consecutive splits, and ``std`` their spread (``ddof=0``). Rows are first permuted with
``np.random.RandomState(shuffle_seed).permutation(N)`` (torch-fidelity's default seed 2020), and
split ``i`` holds rows ``i*N//splits .. (i+1)*N//splits - 1``; so values equal torch-fidelity's
``isc`` on the same logits. All arithmetic is float64.

*Interval.* ``std`` is the spread of single splits, not the uncertainty of their mean. The
splits hold disjoint rows of independent samples, so their scores are independent estimates and
the score is their mean: its interval is ``mean +- t * s / sqrt(splits)``, ``s`` the splits'
sample std (``ddof=1``) and ``t`` Student's quantile with ``splits - 1`` degrees of freedom. It
covers the sampling variation of the images at this N (not the bias of a small N). A row
bootstrap like FID's and KID's is not used: resampling a split's rows leaves its plug-in
marginal ``p(y)`` from repeated rows, and its spread came out 13-19% too narrow on synthetic
1008-class logits at N = 1,000 and 5,000, where this interval's half-width was within 10% of
the true spread and it covered the mean 94-96% of the time at 95% (20 classes at N = 400,
1008 classes at N = 1,000).

Published IS is this computed on the FID Inception's 1008-way logits *without* the head's bias
(the TF IS code, torch-fidelity's ``logits_unbiased``; :meth:`InceptionV3Features.head`), over
50,000 samples. Any other head (EfficientNet-Lite0's 1000 ImageNet classes) or far fewer
samples gives a number of the same kind that is not comparable with published ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import log_softmax, softmax

#: torch-fidelity's default ``isc`` shuffle seed.
TORCH_FIDELITY_SEED = 2020
#: Samples behind published IS values; fewer give a biased (lower) score.
PUBLISHED_SAMPLES = 50_000


def split_scores(
    logits: np.ndarray, *, splits: int = 10, shuffle_seed: int | None = TORCH_FIDELITY_SEED
) -> np.ndarray:
    """The Inception Score of each of ``splits`` splits of ``logits`` [N, C]: float64 [splits].

    ``shuffle_seed`` None keeps the row order. Raises ``ValueError`` (one line) for a
    non-2-D or non-finite array, fewer than 2 classes, or fewer rows than splits.
    """
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"logits must be a 2-D array [N, C] with C >= 2, got shape {x.shape}")
    if not isinstance(splits, (int, np.integer)) or isinstance(splits, bool) or splits < 1:
        raise ValueError(f"splits must be a positive integer, got {splits!r}")
    n = len(x)
    if n < splits:
        raise ValueError(
            f"the Inception Score with {splits} splits needs >= {splits} rows, got {n}"
        )
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("logits contain NaN or inf")
    if shuffle_seed is not None:
        x = x[np.random.RandomState(shuffle_seed).permutation(n)]
    p, log_p = softmax(x, axis=1), log_softmax(x, axis=1)
    scores = np.empty(splits)
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        log_q = np.log(p[rows].mean(axis=0, keepdims=True))
        kl = (p[rows] * (log_p[rows] - log_q)).sum(axis=1).mean()
        scores[i] = np.exp(kl)
    return scores


def inception_score(
    logits: np.ndarray, *, splits: int = 10, shuffle_seed: int | None = TORCH_FIDELITY_SEED
) -> tuple[float, float]:
    """(mean, std) of the Inception Score over ``splits`` splits of ``logits`` [N, C]
    (:func:`split_scores`; ``std`` with ``ddof=0``, as torch-fidelity's)."""
    scores = split_scores(logits, splits=splits, shuffle_seed=shuffle_seed)
    return float(np.mean(scores)), float(np.std(scores))


def split_interval(scores: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """``mean +- t * s / sqrt(k)`` of ``k`` independent split ``scores`` (``s``: ``ddof=1``,
    ``t``: Student's ``(1 + confidence) / 2`` quantile, ``k - 1`` degrees of freedom), the low
    end clipped at 1 (the least IS there is); None for a single split."""
    k = len(scores)
    if k < 2:
        return None
    mean = float(np.mean(scores))
    half = float(stats.t.ppf((1 + confidence) / 2, k - 1) * np.std(scores, ddof=1) / np.sqrt(k))
    return max(1.0, mean - half), mean + half


@dataclass(frozen=True, kw_only=True)
class InceptionScore:
    """The Inception Score of one image set, with what it was computed from.

    ``mean``/``std``: over ``splits`` splits (``std`` is the split spread, not an interval);
    ``low``/``high``: the ``confidence`` interval of ``mean`` from the splits (None when not
    asked for; see the module docstring); ``n``: rows; ``head``: which classifier gave the
    logits; ``comparable``: whether the number is of the kind published (FID Inception head,
    published weights); ``notes``: caveats.
    """

    mean: float
    std: float
    splits: int
    n: int
    head: str
    comparable: bool
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    notes: tuple[str, ...] = ()
    #: The score of each split, in split order. Splits hold the same rows (positions) for every
    #: set of ``n`` rows, so two generators sampled at the same seeds have paired splits:
    #: ``advisor rank --by is`` decides ties by a paired t-interval over them.
    scores: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.mean,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "std": self.std,
            "splits": self.splits,
            "split_scores": list(self.scores),
            "n": self.n,
            "head": self.head,
            "comparable_with_published": self.comparable,
            "convention": "torch-fidelity isc: exp(E KL(p(y|x) || p(y))) per split, mean and "
            f"std (ddof 0) over splits, rows shuffled with RandomState({TORCH_FIDELITY_SEED}); "
            "interval: mean +- t(splits-1) * sd(ddof 1) / sqrt(splits) of the split scores",
            "notes": list(self.notes),
        }


def score_logits(
    logits: np.ndarray,
    *,
    head: str,
    standard_head: bool,
    splits: int = 10,
    confidence: float | None = None,
) -> InceptionScore:
    """:func:`inception_score` of ``logits`` with its caveats attached, and with a
    ``confidence`` its interval (:func:`split_interval`; None: no interval).

    ``head``: a description of where the logits come from; ``standard_head``: they are the FID
    Inception's unbiased 1008-way logits from the published weights.
    """
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    scores = split_scores(logits, splits=splits)
    interval = None if confidence is None else split_interval(scores, confidence)
    low, high = (None, None) if interval is None else interval
    notes = []
    if not standard_head:
        notes.append(
            f"IS from {head}: not comparable with published IS (those use the FID Inception's "
            "1008-way head)"
        )
    if len(logits) < PUBLISHED_SAMPLES:
        notes.append(
            f"IS from {len(logits)} samples; published IS uses {PUBLISHED_SAMPLES:,}, and fewer "
            "samples bias it low"
        )
    return InceptionScore(
        mean=float(np.mean(scores)),
        std=float(np.std(scores)),
        splits=splits,
        n=len(logits),
        head=head,
        comparable=standard_head and len(logits) >= PUBLISHED_SAMPLES,
        low=low,
        high=high,
        confidence=None if interval is None else confidence,
        notes=tuple(notes),
        scores=tuple(float(v) for v in scores),
    )
