"""Successive halving for probe fine-tunes: the schedule and the order it leaves.

*Schedule* (:func:`halving_schedule`). With ``n`` candidates and ``eta`` (2: keep the better
half), round ``r`` runs ``n_r`` candidates, ``n_0 = n`` and ``n_{r+1} = ceil(n_r / eta)``, until
a round would keep one (6 -> 3 -> 2, 4 -> 2, 2). Every round gets an equal share
``budget / rounds`` of the budget (Karnin et al.'s successive halving); a candidate's training in
round ``r`` is ``share / n_r - eval_kimg``, floored to whole batches, so each round costs at most
its share and the total at most the budget. ``eval_kimg`` is one evaluation's cost in training
kimg: ``metric_samples * eval_image_cost / 1000``, where
:data:`advisor.ranking.probe_report.EVAL_IMAGE_COST` (one evaluated
sample costs about one trained image) is measured: at 32 px on a 2-core CPU a 1,000-sample
evaluation takes 12.6 s and a trained kimg 13.2 s (``benchmarks/results/finetune.json``).

*Order* (:func:`halving_order`). Candidates that reached a later round rank above those dropped
earlier; within a round, by the metric at that round's end (``mode`` from
:data:`advisor.metrics.directions.METRIC_MODES`), then by name. The pick is the best of the last
round.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import AdvisorError


@dataclass(frozen=True, kw_only=True)
class HalvingRound:
    """One round: ``candidates`` run, each trained ``added_kimg`` more to a total of ``kimg``,
    then evaluated once; ``cost_kimg = candidates * (added_kimg + eval_kimg)``."""

    index: int
    candidates: int
    kimg: float
    added_kimg: float
    cost_kimg: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def halving_counts(n: int, eta: int = 2) -> tuple[int, ...]:
    """Candidates per round: ``n``, ``ceil(n / eta)``, ... down to the last round with more
    than one (``(6, 3, 2)`` for 6 and eta 2); ``()`` for fewer than two candidates."""
    if n < 2:
        return ()
    counts = [n]
    while math.ceil(counts[-1] / eta) > 1:
        counts.append(math.ceil(counts[-1] / eta))
    return tuple(counts)


def halving_schedule(
    n: int, *, budget_kimg: float, eval_kimg: float = 0.0, eta: int = 2, step_images: int = 1
) -> tuple[HalvingRound, ...]:
    """The successive-halving plan for ``n`` candidates within ``budget_kimg`` (see the module
    docstring); ``step_images`` (the batch) is the granularity of training. Every round's cost
    is at most ``budget_kimg / rounds``, so the sum is at most ``budget_kimg``.

    Raises :class:`AdvisorError` when a round cannot give each candidate one step of training.
    """
    counts = halving_counts(n, eta)
    if not counts:
        return ()
    share = budget_kimg * 1000 / len(counts)  # images per round
    rounds, total = [], 0
    for index, count in enumerate(counts):
        added = math.floor((share / count - eval_kimg * 1000) / step_images) * step_images
        if added < step_images:
            raise AdvisorError(
                f"a probe budget of {budget_kimg:g} kimg is too small for {n} candidates "
                f"(round {index + 1} of {len(counts)} would train {count} of them less than "
                f"one batch each, an evaluation costing {eval_kimg:g} kimg); raise the budget, "
                "probe fewer candidates or evaluate fewer samples"
            )
        total += added
        rounds.append(
            HalvingRound(
                index=index,
                candidates=count,
                kimg=total / 1000,
                added_kimg=added / 1000,
                cost_kimg=count * (added / 1000 + eval_kimg),
            )
        )
    return tuple(rounds)


def halving_order(values: Sequence[Mapping[str, float]], *, mode: str) -> tuple[str, ...]:
    """Best first, from the per-round values (``values[r][name]``) of the candidates that ran
    round ``r``: a later round beats an earlier one; then the value (NaN last); then the name."""
    last: dict[str, tuple[int, float]] = {}
    for r, round_values in enumerate(values):
        for name, value in round_values.items():
            last[name] = (r, value)

    def key(name: str) -> tuple[int, int, float, str]:
        r, value = last[name]
        finite = math.isfinite(value)
        signed = (value if mode == "min" else -value) if finite else 0.0
        return (-r, 0 if finite else 1, signed, name)

    return tuple(sorted(last, key=key))


def survivors(values: Mapping[str, float], keep: int, *, mode: str) -> tuple[str, ...]:
    """The ``keep`` best of one round (see :func:`halving_order`), best first."""
    return halving_order([values], mode=mode)[:keep]
