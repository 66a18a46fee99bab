"""What a ranking measures and how: :class:`RankOptions`, validated before any work."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from advisor.devices import AUTO, resolve_device
from advisor.errors import AdvisorError
from advisor.features import check_extractor, check_precision
from advisor.metrics import MetricOptions
from advisor.metrics.classifier import DEFAULT_MIN_COUNT
from advisor.metrics.directions import METRIC_MODES
from advisor.metrics.other import MEASURE_GROUP_OF
from advisor.networks import NOISE_MODES
from advisor.sampling import MAX_BATCH_SIZE, MAX_SEEDS, check_truncation

if TYPE_CHECKING:
    from advisor.other_measures import OtherOptions

Metric = Literal[
    "recall",
    "coverage",
    "fid",
    "kid",
    "precision",
    "density",
    "is",
    "swd",
    "gan_train",
    "gan_test_confidence",
    "mode_coverage",
]
Setting = Literal["generated", "source", "both"]

#: The default ranking metric, chosen by advisor's evidence benchmark (``benchmarks/README.md``,
#: "Every target"): of the predictors that need no source data, FID of each generator's
#: samples against the target was the only one whose pick was within 5% of the best fine-tune
#: on all four targets, two of them held out (mean Spearman with the true order 0.51).
#: Coverage, the default chosen on the two example targets, failed on a held-out one (pick 7%
#: worse, Spearman -0.14); recall, the transfer paper's recipe, was near 0 for every weak
#: source (mean Spearman 0.11).
DEFAULT_BY: Metric = "fid"

#: Metrics a ranking can be ordered by; ``recall`` is the transfer paper's recipe.
#: The other measures (:mod:`advisor.metrics.other`) are computed only for the one ranked by:
#: ``is`` (the samples' Inception Score through the extractor's head), ``swd`` (on images: the
#: target's, and each generator's samples or each source folder's images, all resized to the
#: target's resolution; a source given as features is skipped), and the classifier measures
#: (``--classes K`` for an unlabelled target).
RANK_METRICS: tuple[str, ...] = get_args(Metric)
#: Metrics where a lower value is better; for the others higher is better (read from advisor's
#: one table of metric directions, :data:`advisor.metrics.directions.METRIC_MODES`).
LOWER_IS_BETTER = frozenset(m for m in RANK_METRICS if METRIC_MODES[m] == "min")
SETTINGS: tuple[str, ...] = get_args(Setting)
#: Default sample count: the target's image count, clamped to this range (equal set sizes keep
#: k-NN metrics comparable; 1,000 keeps intervals narrow on tiny targets; 10,000 bounds cost).
MIN_DEFAULT_SAMPLES = 1_000
MAX_DEFAULT_SAMPLES = 10_000


def default_samples(n_target: int) -> int:
    """``clamp(n_target, 1000, 10000)``."""
    return max(MIN_DEFAULT_SAMPLES, min(MAX_DEFAULT_SAMPLES, n_target))


@dataclass(frozen=True, kw_only=True)
class SourceData:
    """A source dataset to rank in the ``source`` setting: ``name`` and a folder, .zip or
    feature file (``.npz``/``.npy``) at ``path``."""

    name: str
    path: str

    @classmethod
    def parse(cls, text: str) -> SourceData:
        """``"NAME=DIR"`` -> SourceData; one-line :class:`AdvisorError` for anything else."""
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise AdvisorError(f"--source-data takes NAME=DIR, got {text!r}")
        return cls(name=name.strip(), path=path.strip())


@dataclass(frozen=True, kw_only=True)
class RankOptions:
    """How :func:`advisor.ranking.rank` scores and orders checkpoints.

    Selection: ``checkpoints`` (registry names or checkpoint files; default: every registry
    entry at the target's resolution), ``tags``, ``include_all``; ``source_data`` for the
    ``source`` setting. Sampling: ``n_samples`` images per checkpoint (None: the target's image
    count clamped to 1,000..10,000), seeds ``first_seed .. first_seed + n - 1``, one per image,
    ``noise_mode`` ``'random'`` seeded per image and ``truncation_psi`` 1 (NVlabs' metric
    protocol). ``devices``: where checkpoints run, one worker per device (empty: every visible
    CUDA device, else the CPU). ``metrics``: k, bootstrap resamples, confidence (also the
    confidence of tie decisions). Validated on construction (:class:`AdvisorError`).
    """

    by: Metric = DEFAULT_BY
    setting: Setting = "generated"
    n_samples: int | None = None
    checkpoints: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    include_all: bool = False
    source_data: tuple[SourceData, ...] = ()
    extractor: str = "inception"
    extractor_weights: str | os.PathLike[str] | None = None
    precision: str = "fp32"
    devices: tuple[str, ...] = ()
    batch_size: int = 32
    workers: int | None = None
    first_seed: int = 0
    noise_mode: str = "random"
    truncation_psi: float = 1.0
    metrics: MetricOptions = field(default_factory=MetricOptions)
    classes: int | None = None
    min_count: int = DEFAULT_MIN_COUNT
    cache: bool = True
    offline: bool | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.by not in RANK_METRICS:
            raise AdvisorError(
                f"unknown metric {self.by!r}; rank by one of {', '.join(RANK_METRICS)}"
            )
        if self.setting not in SETTINGS:
            raise AdvisorError(
                f"unknown setting {self.setting!r}; choose one of {', '.join(SETTINGS)}"
            )
        check_extractor(self.extractor)
        check_precision(self.precision)
        if self.by in MEASURE_GROUP_OF:
            self.other_options()  # validates classes and min_count
        k = max(self.metrics.k_pr, self.metrics.k_dc)
        if self.n_samples is not None and (
            isinstance(self.n_samples, bool) or not k < self.n_samples <= MAX_SEEDS
        ):
            raise AdvisorError(
                f"--n-samples must be between {k + 1} (k + 1) and {MAX_SEEDS:,}, "
                f"got {self.n_samples}"
            )
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise AdvisorError(f"batch size must be in 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if not 0 <= self.first_seed < 2**32 - MAX_SEEDS:
            raise AdvisorError(f"the first seed must be in 0..{2**32 - MAX_SEEDS - 1}")
        if self.noise_mode not in NOISE_MODES:
            raise AdvisorError(f"noise mode must be one of {', '.join(NOISE_MODES)}")
        try:
            check_truncation(self.truncation_psi)
        except ValueError as err:
            raise AdvisorError(str(err)) from None
        for device in self.devices:
            if device != AUTO:
                resolve_device(device)
        names = [s.name for s in self.source_data]
        if len(set(names)) != len(names):
            raise AdvisorError("--source-data names a source twice")
        if self.setting == "generated" and self.source_data:
            raise AdvisorError("--source-data is used with --setting source or both")
        if (
            self.setting == "source"
            and self.source_data
            and (self.checkpoints or self.include_all or self.tags)
        ):
            raise AdvisorError(
                "--checkpoint, --tag and --all choose registry entries; with --source-data, "
                "--setting source ranks the given source data only"
            )

    def other_options(self) -> OtherOptions:
        """Options of the other measure ranked by (``by``), sharing the metrics' seed,
        bootstrap and confidence."""
        from advisor.other_measures import OtherOptions

        return OtherOptions(
            groups=(MEASURE_GROUP_OF[self.by],) if self.by in MEASURE_GROUP_OF else (),
            classes=self.classes,
            min_count=self.min_count,
            seed=self.metrics.seed,
            bootstrap=self.metrics.bootstrap,
            confidence=self.metrics.confidence,
        )

    @property
    def lower_is_better(self) -> bool:
        return self.by in LOWER_IS_BETTER
