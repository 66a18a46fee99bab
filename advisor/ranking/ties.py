"""Ordering rows and deciding ties by a paired bootstrap (or paired splits).

Two neighbours in the order are tied when the percentile interval (at the ranking's
confidence) of the difference of their replicates under the SAME resamples contains 0 (see
:mod:`advisor.ranking.score` for which rows are resampled per metric). The Inception Score
pairs splits instead: the t-interval of the mean per-split difference (its own interval's
method, applied to the difference). Ties chain into groups:
if A~B and B~C, A, B and C form one group, and every member lists the others in ``tied_with``.

How many samples would separate a tied pair: the bootstrap spread of a mean difference shrinks
like ``1/sqrt(n)``, so the difference ``d`` becomes significant at ``z * sd(d)`` when the set
sizes grow from ``n`` to ``n * (z * sd / |d|)^2`` (target images and samples alike, since
their counts are kept equal). It is an estimate under the assumption that the observed ``d``
is the true one; identical rows (``d == 0``) cannot be separated by any count (None).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

#: How a row's replicates pair with its neighbour's (see :func:`decide_pair`).
Pairing = Literal["bootstrap", "splits"]
#: Ranking metrics that do not pair by the bootstrap: the Inception Score pairs its splits,
#: SWD has no paired replicates (None: neighbours tie only on equal values).
_PAIRING: dict[str, Pairing | None] = {"is": "splits", "swd": None}


def pairing_of(by: str) -> Pairing | None:
    """How rows ranked by ``by`` are paired to decide ties (None: they are not)."""
    return _PAIRING.get(by, "bootstrap")


@dataclass(frozen=True, kw_only=True)
class PairDecision:
    """The comparison of row i with row i+1 in ranked order."""

    tied: bool
    difference: float
    low: float | None
    high: float | None
    #: Estimated set size (per side) at which the pair would separate; None when the pair is
    #: already separated, identical, or without bootstrap.
    samples_to_separate: int | None


def order(values: Sequence[float], names: Sequence[str], *, lower_is_better: bool) -> list[int]:
    """Indices best first; equal values are ordered by name (a stable, documented tiebreak)."""
    sign = 1.0 if lower_is_better else -1.0
    return sorted(range(len(values)), key=lambda i: (sign * values[i], names[i]))


def decide_pair(
    value_a: float,
    value_b: float,
    replicates_a: np.ndarray,
    replicates_b: np.ndarray,
    *,
    confidence: float,
    n: int,
    method: Pairing = "bootstrap",
) -> PairDecision:
    """Whether two neighbours are tied; ``n`` is the current set size per side.

    ``method``: ``"bootstrap"`` (replicates under shared resamples: the percentile interval of
    their differences) or ``"splits"`` (per-split scores of the same rows: the Student
    t-interval of the mean of their differences, as the Inception Score's own interval).
    Without replicates (bootstrap 0, or a measure without paired replicates) rows are tied only
    when their values are equal.
    """
    difference = value_a - value_b
    count = min(len(replicates_a), len(replicates_b))
    if count < 2:
        return PairDecision(
            tied=difference == 0, difference=difference, low=None, high=None,
            samples_to_separate=None,
        )  # fmt: skip
    diffs = replicates_a[:count] - replicates_b[:count]
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) < 2:
        return PairDecision(
            tied=True, difference=difference, low=None, high=None, samples_to_separate=None
        )
    if method == "splits":
        spread = float(diffs.std(ddof=1)) / math.sqrt(len(diffs))  # the mean's standard error
        half = float(stats.t.ppf((1 + confidence) / 2, len(diffs) - 1)) * spread
        low, high = float(diffs.mean()) - half, float(diffs.mean()) + half
    else:
        spread = float(diffs.std(ddof=1))  # the bootstrap spread is the estimate's error
        low, high = (
            float(q) for q in np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
        )
    tied = low <= 0.0 <= high
    needed = None
    if tied and difference != 0 and spread > 0:
        z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
        needed = max(n + 1, math.ceil(n * (z * spread / abs(difference)) ** 2))
    return PairDecision(
        tied=tied, difference=difference, low=low, high=high, samples_to_separate=needed
    )


def tie_groups(decisions: Sequence[PairDecision], count: int) -> list[int]:
    """Group id per ranked position: consecutive tied neighbours share a group."""
    groups = [0] * count
    for i in range(1, count):
        groups[i] = groups[i - 1] if decisions[i - 1].tied else groups[i - 1] + 1
    return groups
