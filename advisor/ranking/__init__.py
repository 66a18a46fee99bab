"""Ranking source checkpoints for a target: which one to fine-tune, how sure, and why.

Layout (data flow): ``options`` (what to measure, validated) -> ``select`` (which sources, and
the target's resolution) -> ``score`` (one source: features from the caches or the generator,
metrics with intervals, paired replicates) spread over devices by ``spread`` -> ``ties``
(order, paired-bootstrap ties) -> ``result`` (:class:`Ranking`, tables, JSON, CSV) ->
``report`` (the self-contained HTML report). ``core`` holds :func:`rank`.
"""

from advisor.ranking.core import rank, rank_with, ranked_rows
from advisor.ranking.options import (
    DEFAULT_BY,
    LOWER_IS_BETTER,
    RANK_METRICS,
    SETTINGS,
    RankOptions,
    SourceData,
    default_samples,
)
from advisor.ranking.result import Ranking, RankProtocol, RankRow, TargetInfo
from advisor.ranking.score import Skip
from advisor.ranking.select import Selection

__all__ = [
    "DEFAULT_BY",
    "LOWER_IS_BETTER",
    "RANK_METRICS",
    "SETTINGS",
    "RankOptions",
    "RankProtocol",
    "RankRow",
    "Ranking",
    "Selection",
    "Skip",
    "SourceData",
    "TargetInfo",
    "default_samples",
    "rank",
    "rank_with",
    "ranked_rows",
]
