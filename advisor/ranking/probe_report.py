"""What probe fine-tunes are asked (:class:`ProbeOptions`) and what they leave: one row per
candidate, best first, and the one-line advice. :mod:`advisor.ranking.probe` runs them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import AdvisorError
from advisor.finetuning.options import MAX_KIMG, FinetuneOptions
from advisor.metrics.directions import METRIC_MODES
from advisor.ranking.halving import HalvingRound

#: One evaluated G_ema sample costs about as much as one trained image (32 px, 2-core CPU:
#: 12.6 s per 1,000-sample evaluation, 13.2 s per trained kimg; benchmarks/results/finetune.json).
EVAL_IMAGE_COST = 1.0
DEFAULT_PROBE_KIMG = 10.0
"""Default probe budget: about the cost of a 32 px CPU fine-tune of 8 kimg with five
500-sample evaluations (the evidence benchmark's default full run)."""
DEFAULT_PROBE_TOP = 8
DEFAULT_PROBE_SAMPLES = 250


@dataclass(frozen=True, kw_only=True)
class ProbeOptions:
    """How probe fine-tunes run; validated on construction (:class:`AdvisorError`).

    ``budget_kimg``: total cost of all probes in training kimg, evaluations included at
    ``eval_image_cost`` trained images per evaluated sample. ``top``: at most this many
    candidates (the best by the zero-shot ranking in ``advisor rank --probe``). ``eta``: keep
    ``1/eta`` of the candidates per round. ``metric``: what ranks them at each round's end, on
    ``metric_samples`` G_ema samples. ``finetune``: the fine-tune recipe (inits, batch, seed,
    extractor...); its schedule fields (kimg, metric_every, snapshots, stop rules) are set by
    the probe.
    """

    budget_kimg: float = DEFAULT_PROBE_KIMG
    top: int = DEFAULT_PROBE_TOP
    eta: int = 2
    metric: str = "fid"
    metric_samples: int = DEFAULT_PROBE_SAMPLES
    eval_image_cost: float = EVAL_IMAGE_COST
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)

    def __post_init__(self) -> None:
        if not _real(self.budget_kimg) or not 0 < self.budget_kimg <= MAX_KIMG:
            raise AdvisorError(f"--probe-kimg must be > 0 and <= {MAX_KIMG:g}")
        if not _int(self.top) or self.top < 2:
            raise AdvisorError(f"--probe-top must be an integer >= 2, got {self.top!r}")
        if not _int(self.eta) or self.eta < 2:
            raise AdvisorError(f"the halving factor eta must be an integer >= 2, got {self.eta!r}")
        if self.metric not in METRIC_MODES:
            raise AdvisorError(
                f"unknown probe metric {self.metric!r}; choose one of {', '.join(METRIC_MODES)}"
            )
        if not _int(self.metric_samples) or not 2 <= self.metric_samples <= 100_000:
            raise AdvisorError("probe metric samples must be an integer from 2 to 100000")
        if not _real(self.eval_image_cost) or self.eval_image_cost < 0:
            raise AdvisorError("eval_image_cost must be a finite number >= 0")

    @property
    def eval_kimg(self) -> float:
        """One evaluation's cost in training kimg."""
        return self.metric_samples * self.eval_image_cost / 1000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class ProbeCandidate:
    """One checkpoint to probe: a display ``name`` and a local checkpoint file."""

    name: str
    checkpoint: str


@dataclass(frozen=True, kw_only=True)
class ProbeRow:
    """One candidate's probe: ``rank`` (1 = pick), the last round it ran (1-based), its kimg,
    its metrics at that round's end, and its run folder. ``skipped``: why it could not run."""

    name: str
    rank: int
    rounds: int
    kimg: float
    value: float | None
    metrics: Mapping[str, float]
    run_dir: str
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.name,
            "rank": self.rank,
            "rounds": self.rounds,
            "kimg": self.kimg,
            "value": _finite_or_none(self.value),
            "metrics": {k: _finite_or_none(v) for k, v in self.metrics.items()},
            "run_dir": self.run_dir,
            "skipped": self.skipped,
        }


@dataclass(frozen=True, kw_only=True)
class ProbeReport:
    """The probes of one target: rows best first, the plan, and the cost.

    ``cost_s``: training wall time plus evaluation time of every probe; ``cost_kimg``: the
    plan's cost in training kimg (at most ``options.budget_kimg``).
    """

    options: ProbeOptions
    schedule: tuple[HalvingRound, ...]
    rows: tuple[ProbeRow, ...]
    work_dir: str
    train_s: float
    eval_s: float
    cost_kimg: float

    @property
    def cost_s(self) -> float:
        return self.train_s + self.eval_s

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rows if r.skipped is None)

    @property
    def pick(self) -> str | None:
        return self.order[0] if self.order else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.options.metric,
            "direction": "lower is better"
            if METRIC_MODES[self.options.metric] == "min"
            else "higher is better",
            "budget_kimg": self.options.budget_kimg,
            "eval_kimg": self.options.eval_kimg,
            "metric_samples": self.options.metric_samples,
            "eta": self.options.eta,
            "schedule": [r.to_dict() for r in self.schedule],
            "cost_kimg": self.cost_kimg,
            "cost_s": round(self.cost_s, 3),
            "train_s": round(self.train_s, 3),
            "eval_s": round(self.eval_s, 3),
            "order": list(self.order),
            "pick": self.pick,
            "rows": [r.to_dict() for r in self.rows],
            "work_dir": self.work_dir,
            "recommendation": probe_recommendation(self),
        }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def probe_recommendation(report: ProbeReport) -> str:
    """One sentence naming the probe's pick and how far the probes went."""
    if report.pick is None:
        return "No candidate could be probed (see skipped)."
    best = report.rows[0]
    metric = report.options.metric
    text = (
        f"Probe fine-tunes pick {best.name}: its {metric} after {best.kimg:g} kimg of "
        f"fine-tuning is {best.value:.4g}"
        if best.value is not None and math.isfinite(best.value)
        else f"Probe fine-tunes pick {best.name}"
    )
    if len(report.rows) > 1:
        second = report.rows[1]
        if second.value is not None and second.rounds == best.rounds:
            text += f" ({second.name}: {second.value:.4g})"
    return text + f"; the probes cost {report.cost_s:.0f} s ({report.cost_kimg:.3g} kimg)."
