"""Inception Score (Salimans et al. 2016) from classifier logits, as torch-fidelity computes it.

``IS = exp(E_x KL(p(y|x) || p(y)))`` per split, ``p(y|x) = softmax(logits)`` and ``p(y)`` the
split's mean of ``p(y|x)``; the score is the mean over ``splits`` (default 10) equal-as-possible
consecutive splits, and ``std`` their spread (``ddof=0``). Rows are first permuted with
``np.random.RandomState(shuffle_seed).permutation(N)`` (torch-fidelity's default seed 2020), and
split ``i`` holds rows ``i*N//splits .. (i+1)*N//splits - 1``; so values equal torch-fidelity's
``isc`` on the same logits. All arithmetic is float64.

Published IS is this computed on the FID Inception's 1008-way logits *without* the head's bias
(the TF IS code, torch-fidelity's ``logits_unbiased``; :meth:`InceptionV3Features.head`), over
50,000 samples. Any other head (EfficientNet-Lite0's 1000 ImageNet classes) or far fewer
samples gives a number of the same kind that is not comparable with published ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, softmax

#: torch-fidelity's default ``isc`` shuffle seed.
TORCH_FIDELITY_SEED = 2020
#: Samples behind published IS values; fewer give a biased (lower) score.
PUBLISHED_SAMPLES = 50_000


def inception_score(
    logits: np.ndarray, *, splits: int = 10, shuffle_seed: int | None = TORCH_FIDELITY_SEED
) -> tuple[float, float]:
    """(mean, std) of the Inception Score over ``splits`` splits of ``logits`` [N, C].

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
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        log_q = np.log(p[rows].mean(axis=0, keepdims=True))
        kl = (p[rows] * (log_p[rows] - log_q)).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


@dataclass(frozen=True, kw_only=True)
class InceptionScore:
    """The Inception Score of one image set, with what it was computed from.

    ``mean``/``std``: over ``splits`` splits (``std`` is the split spread, not an interval);
    ``n``: rows; ``head``: which classifier gave the logits; ``comparable``: whether the number
    is of the kind published (FID Inception head, published weights); ``notes``: caveats.
    """

    mean: float
    std: float
    splits: int
    n: int
    head: str
    comparable: bool
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.mean,
            "std": self.std,
            "splits": self.splits,
            "n": self.n,
            "head": self.head,
            "comparable_with_published": self.comparable,
            "convention": "torch-fidelity isc: exp(E KL(p(y|x) || p(y))) per split, mean and "
            f"std (ddof 0) over splits, rows shuffled with RandomState({TORCH_FIDELITY_SEED})",
            "notes": list(self.notes),
        }


def score_logits(
    logits: np.ndarray, *, head: str, standard_head: bool, splits: int = 10
) -> InceptionScore:
    """:func:`inception_score` of ``logits`` with its caveats attached.

    ``head``: a description of where the logits come from; ``standard_head``: they are the FID
    Inception's unbiased 1008-way logits from the published weights.
    """
    mean, std = inception_score(logits, splits=splits)
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
        mean=mean,
        std=std,
        splits=splits,
        n=len(logits),
        head=head,
        comparable=standard_head and len(logits) >= PUBLISHED_SAMPLES,
        notes=tuple(notes),
    )
