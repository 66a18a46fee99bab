"""The result of a ranking: rows best first, what was skipped, and the protocol, as data.

:class:`Ranking` is what :func:`advisor.ranking.rank` returns and what every output (terminal
table in :mod:`advisor.cli.rank`, JSON, CSV, HTML report) is made from. ``to_dict`` is the JSON
schema::

    {"target": {...}, "protocol": {...}, "selection": {...},
     "rows": [{"checkpoint", "rank", "setting", "recall": {"value", "low", "high"}, "precision",
               "fid", "kid", "density", "coverage", "tied_with", "samples_to_separate", ...}],
     "skipped": [{"checkpoint", "setting", "reason"}], "recommendation": "..."}
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from advisor.features.base import FeatureProtocol
from advisor.metrics import Estimate, MetricOptions, MetricReport
from advisor.metrics.other import MEASURE_GROUP_OF, OtherMeasures
from advisor.ranking.options import LOWER_IS_BETTER, Metric, Setting
from advisor.ranking.score import Skip, Timings
from advisor.ranking.select import Selection
from advisor.ranking.ties import pairing_of

#: Metrics in the order rows show them.
SHOWN_METRICS = ("recall", "precision", "fid", "kid", "density", "coverage")


def tie_rule(by: str, bootstrap: int) -> str:
    """How neighbours ranked by ``by`` are decided tied, in words (``rank.json``'s rule)."""
    pairing = pairing_of(by)
    if not bootstrap:
        return "no bootstrap: neighbours tie only when their values are equal"
    if pairing is None:
        return f"{by} has no paired replicates: neighbours tie only when their values are equal"
    if pairing == "splits":
        return "paired t-interval of neighbours' per-split score differences at the confidence"
    return "paired bootstrap of neighbours over shared resamples at the confidence"


def interval_rule(by: str, bootstrap: int) -> str:
    """What a row's ``[low, high]`` is when ranked by ``by``, in words."""
    pairing = pairing_of(by)
    if not bootstrap:
        return "no intervals (no bootstrap)"
    if pairing is None:
        return f"no interval for {by}"
    return "t-interval over the splits" if pairing == "splits" else "bootstrap interval"


@dataclass(frozen=True, kw_only=True)
class TargetInfo:
    """The target: what the user pointed at, its usable image count, skips and sizes."""

    source: str
    n_images: int
    n_skipped: int
    resolution: int | None
    sizes: tuple[tuple[int, int, int], ...]
    from_cache: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "n_images": self.n_images,
            "n_skipped": self.n_skipped,
            "resolution": self.resolution,
            "sizes": [{"width": w, "height": h, "count": c} for w, h, c in self.sizes[:5]],
            "from_cache": self.from_cache,
        }


@dataclass(frozen=True, kw_only=True)
class RankProtocol:
    """Everything that makes the numbers of one ranking what they are."""

    by: Metric
    setting: Setting
    n_samples: int
    seeds: str
    noise_mode: str
    truncation_psi: float
    sampler_version: str
    extractor: FeatureProtocol
    metrics: MetricOptions
    devices: tuple[str, ...]

    @property
    def lower_is_better(self) -> bool:
        return self.by in LOWER_IS_BETTER

    def to_dict(self) -> dict[str, object]:
        return {
            "by": self.by,
            "direction": "lower is better" if self.lower_is_better else "higher is better",
            "setting": self.setting,
            "n_samples": self.n_samples,
            "seeds": self.seeds,
            "noise_mode": self.noise_mode,
            "truncation_psi": self.truncation_psi,
            "sampler_version": self.sampler_version,
            "extractor": self.extractor.to_dict(),
            "metrics": self.metrics.to_dict(),
            "tie_rule": tie_rule(self.by, self.metrics.bootstrap),
            "devices": list(self.devices),
        }


@dataclass(frozen=True, kw_only=True)
class RankRow:
    """One ranked source. ``rank`` is 1-based; tied rows keep distinct ranks and list each
    other in ``tied_with``. ``samples_to_separate``: estimated set size per side that would
    separate this row from the next one (None: separated already, identical, or last).
    ``preview``: uint8 [m, 3, R, R] sample images (None for source data or a cache without
    them); not part of ``to_dict``."""

    checkpoint: str
    rank: int
    setting: str
    report: MetricReport
    tied_with: tuple[str, ...]
    samples_to_separate: int | None
    n_candidate: int
    from_cache: bool
    device: str
    timings: Timings
    preview: np.ndarray | None = None
    other: OtherMeasures = OtherMeasures()

    def estimate(self, metric: str) -> Estimate:
        """A default metric, or the other measure the ranking is ordered by (``other``)."""
        if metric in MEASURE_GROUP_OF:
            found = self.other.estimate(metric)
            if found is None:
                raise KeyError(f"{metric} was not computed for this row")
            return found
        return getattr(self.report, metric)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "checkpoint": self.checkpoint,
            "rank": self.rank,
            "setting": self.setting,
        }
        for metric in SHOWN_METRICS:
            est = self.estimate(metric)
            out[metric] = {"value": est.value, "low": est.low, "high": est.high}
        out["tied_with"] = list(self.tied_with)
        out["samples_to_separate"] = self.samples_to_separate
        out["n_samples"] = self.n_candidate
        out["from_cache"] = self.from_cache
        out["device"] = self.device
        out["timings_s"] = self.timings.to_dict()
        out.update(self.other.to_dict())  # the other measure ranked by, with its protocol
        out["notes"] = [*self.report.notes, *self.other.notes]
        return out


@dataclass(frozen=True, kw_only=True)
class Ranking:
    """Rows best first by ``protocol.by``; ``skipped`` sources with reasons."""

    target: TargetInfo
    protocol: RankProtocol
    selection: Selection
    rows: tuple[RankRow, ...]
    skipped: tuple[Skip, ...]

    @property
    def best(self) -> RankRow:
        return self.rows[0]

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target.to_dict(),
            "protocol": self.protocol.to_dict(),
            "selection": self.selection.to_dict(),
            "rows": [row.to_dict() for row in self.rows],
            "skipped": [skip.to_dict() for skip in self.skipped],
            "recommendation": recommendation(self),
        }

    def to_csv(self) -> str:
        """One line per row: rank, checkpoint, setting, each metric with low/high, tied_with."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = ["rank", "checkpoint", "setting"]
        for metric in SHOWN_METRICS:
            header += [metric, f"{metric}_low", f"{metric}_high"]
        writer.writerow([*header, "tied_with", "samples_to_separate"])
        for row in self.rows:
            line: list[object] = [row.rank, row.checkpoint, row.setting]
            for metric in SHOWN_METRICS:
                est = row.estimate(metric)
                line += [est.value, _blank(est.low), _blank(est.high)]
            line += [";".join(row.tied_with), _blank(row.samples_to_separate)]
            writer.writerow(line)
        return buffer.getvalue()


def _blank(value: object) -> object:
    return "" if value is None else value


def format_estimate(est: Estimate, metric: str) -> str:
    digits = 5 if metric == "kid" else 2 if metric == "fid" else 3
    text = f"{est.value:.{digits}f}"
    if est.low is not None and est.high is not None:
        text += f" [{est.low:.{digits}f}, {est.high:.{digits}f}]"
    return text


def recommendation(ranking: Ranking) -> str:
    """One paragraph naming the pick, its margin, and how sure the ranking is."""
    by = ranking.protocol.by
    best = ranking.best
    est = best.estimate(by)
    n = len(ranking.rows)
    what = "checkpoint" if best.setting == "generated" else "source"
    pick = (
        f"Fine-tune from {best.checkpoint}"
        if best.setting == "generated"
        else f"Start from a checkpoint trained on {best.checkpoint}"
    )
    text = (
        f"{pick}: its {by} is {format_estimate(est, by)}, the "
        f"{'lowest' if ranking.protocol.lower_is_better else 'highest'} of {n} "
        f"{'sources' if n > 1 else 'source'} ranked"
    )
    if n == 1:
        text += " (nothing to compare it with)."
    elif best.tied_with:
        tied = ", ".join(best.tied_with)
        margin = abs(est.value - ranking.rows[1].estimate(by).value)
        text += (
            f", but it is tied with {tied} at the {ranking.protocol.metrics.confidence} "
            f"confidence (margin {margin:.3g}); any of them is a sound start"
        )
        if best.samples_to_separate is not None:
            text += (
                f", and about {best.samples_to_separate:,} images per side"
                f"{'' if by in MEASURE_GROUP_OF else ' (target and samples)'} would be needed "
                "to separate the top two"
            )
        text += (
            "; --probe separates them by short fine-tunes, at the cost of about one fine-tune."
            if best.setting == "generated"
            else "."
        )
    elif pairing_of(by) is None or not ranking.protocol.metrics.bootstrap:
        second = ranking.rows[1]
        margin = abs(est.value - second.estimate(by).value)
        why = "the bootstrap is off" if pairing_of(by) else f"{by} has no paired bootstrap here"
        text += (
            f", ahead of {second.checkpoint} by {margin:.3g}; {why}, so how sure that margin "
            "is remains undecided."
        )
    else:
        second = ranking.rows[1]
        margin = abs(est.value - second.estimate(by).value)
        splits = pairing_of(by) == "splits"
        test = "the paired t-test over splits" if splits else "the paired bootstrap"
        text += (
            f", ahead of {second.checkpoint} by {margin:.3g}, a margin {test} "
            f"separates at the {ranking.protocol.metrics.confidence} confidence."
        )
    if by == "recall":
        text += (
            " Recall is the transfer paper's recipe (how much of your target the "
            f"{what}'s samples cover); check coverage too, which is robust to scattered samples."
        )
    elif by == "fid":
        text += (
            " FID is advisor's default because its pick was within 5% of the best fine-tune on "
            "every target of advisor's evidence benchmark; recall, the transfer paper's recipe, "
            "is --by recall."
        )
    if ranking.skipped:
        text += f" {len(ranking.skipped)} source(s) could not be ranked (see skipped)."
    return text
