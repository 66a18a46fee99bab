"""Scoring one source against the target: its features, every metric, paired replicates.

A generator's features come from :func:`advisor.features.samples.sample_features` (cached by
checkpoint hash, seeds, noise mode, truncation and extractor protocol); a source dataset's from
the image-set feature cache. Ranked by swd, the same call also returns the samples themselves
(resized to the target's resolution), and a source folder's images are read at that resolution.
The metrics are :func:`advisor.metrics.compare_features` with the target as reference. For tie
decisions every row also carries the replicates of the ranking metric under resamples SHARED by
all rows (:class:`SharedResamples`): the same target-row resamples for recall and coverage
(target-row outcomes) and the same seed-index resamples for precision and density (sample-row
outcomes; every generator uses the same seeds), both for FID and KID. Differences of two rows'
replicates are then a paired bootstrap.

Anything that makes one source unusable (not cached and offline, a failed download or hash, a
corrupt or unsupported file) becomes a :class:`Skip` with a one-line reason, never an
exception out of the ranking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from advisor.checkpoints.fetch import pull
from advisor.checkpoints.importers import read_checkpoint
from advisor.errors import AdvisorError, one_line
from advisor.features.extract import SharedExtractor
from advisor.features.files import FeatureSet, is_feature_file
from advisor.features.samples import checkpoint_sha256
from advisor.features.samples import sample_features as _sample_features
from advisor.features.store import SampleFeatureStore, SampleKey
from advisor.metrics import MetricOptions, MetricReport, compare_features, frechet, mmd
from advisor.metrics.classifier import Labels
from advisor.metrics.inputs import as_pair
from advisor.metrics.manifold import manifold_indicators
from advisor.metrics.other import MEASURE_GROUP_OF, OtherMeasures
from advisor.networks import Generator
from advisor.progress import Progress
from advisor.ranking.options import RankOptions
from advisor.ranking.select import Candidate
from advisor.ranking.ties import Pairing, pairing_of

#: Errors a broken checkpoint file can raise from torch or numpy after advisor's own checks.
_FILE_ERRORS = (OSError, ValueError, RuntimeError, KeyError, EOFError)


@dataclass(frozen=True, kw_only=True)
class Skip:
    """A source that could not be ranked, with a one-line reason."""

    name: str
    setting: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"checkpoint": self.name, "setting": self.setting, "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Seconds per stage for one row (0 where a cache made the stage unnecessary)."""

    resolve: float = 0.0
    generate: float = 0.0
    extract: float = 0.0
    metrics: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in vars(self).items()}


@dataclass(frozen=True, kw_only=True)
class Scored:
    """One scored source. ``replicates``: float64 [B] of the ranking metric under the shared
    resamples (empty without bootstrap); ``preview``: uint8 NCHW images for report grids."""

    name: str
    setting: str
    report: MetricReport
    replicates: np.ndarray
    n_candidate: int
    from_cache: bool
    device: str
    timings: Timings
    preview: np.ndarray | None = None
    resolution: int | None = None
    other: OtherMeasures = OtherMeasures()
    #: How ``replicates`` pair with another row's (:func:`advisor.ranking.ties.decide_pair`).
    pairing: Pairing = "bootstrap"


class SharedResamples:
    """Bootstrap row counts shared by every row of one ranking: float64 ``[B, n]`` per set size,
    drawn from ``np.random.default_rng([seed, n, role])`` (role 1: target rows, 2: candidate
    rows), so two rows with equal set sizes see the very same resamples."""

    def __init__(self, options: MetricOptions) -> None:
        self.count = options.bootstrap
        self.seed = options.seed
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def counts(self, n: int, role: int) -> np.ndarray:
        key = (n, role)
        if key not in self._cache:
            rng = np.random.default_rng([self.seed, n, role])
            draws = rng.integers(0, n, size=(self.count, n)) + n * np.arange(self.count)[:, None]
            counts = np.bincount(draws.ravel(), minlength=self.count * n)
            self._cache[key] = counts.reshape(self.count, n).astype(np.float64)
        return self._cache[key]


def paired_replicates(
    target: np.ndarray,
    candidate: np.ndarray,
    *,
    by: str,
    options: MetricOptions,
    resamples: SharedResamples,
) -> np.ndarray:
    """The ranking metric ``by`` on each shared resample: float64 [B] (``[0]`` without
    bootstrap). ``target`` is the reference [n1, D], ``candidate`` [n2, D]."""
    if resamples.count == 0 or by in MEASURE_GROUP_OF:
        return np.zeros(0)  # the other measures pair their own way: _other_replicates
    x, y = as_pair(target, candidate)
    w1, w2 = resamples.counts(len(x), 1), resamples.counts(len(y), 2)
    if by in ("recall", "precision"):
        ind = manifold_indicators(x, y, options.k_pr, None, None)
        if by == "recall":
            return w1 @ ind.recall.astype(np.float64) / len(x)
        return w2 @ ind.precision.astype(np.float64) / len(y)
    if by in ("coverage", "density"):
        ind = manifold_indicators(x, y, None, options.k_dc, None)
        if by == "coverage":
            return w1 @ ind.coverage.astype(np.float64) / len(x)
        return w2 @ (ind.density.astype(np.float64) / options.k_dc) / len(y)
    if by == "fid":
        count = frechet.fid_bootstrap_count(len(x), len(y), x.shape[1], resamples.count)
        return frechet.fid_replicates(x, y, w1[:count], w2[:count])
    size, _ = mmd.kid_subset_size(options.kid_subset_size, len(x), len(y))
    idx1, idx2 = mmd.kid_subsets(len(x), len(y), size, options.kid_subsets, options.seed)
    products = mmd.products_dtype(target, candidate)
    return mmd.kid_replicates(x, y, idx1, idx2, w1, w2, products=products)[1]


@dataclass(frozen=True, kw_only=True)
class _Images:
    """A row's images for SWD (uint8 [n, 3, R, R], at the target's resolution R) and what
    they were before resizing, in words (for the row's note)."""

    pixels: np.ndarray
    were: str


@dataclass(frozen=True, kw_only=True)
class ScoreContext:
    """What every job of one ranking shares (read-only across worker threads)."""

    target: np.ndarray
    seeds: tuple[int, ...]
    extractor: SharedExtractor
    options: RankOptions
    resamples: SharedResamples
    store: SampleFeatureStore | None
    source_features: Callable[[str], FeatureSet]
    labels: Labels | None = None
    #: The target's images at the SWD resolution, uint8 [N, 3, R, R], when ranking by swd.
    target_images: np.ndarray | None = None
    #: Where checkpoint downloads report (task ``download FILE``, bytes); None: nowhere.
    on_progress: Progress | None = None


def score_generator(
    candidate: Candidate,
    ctx: ScoreContext,
    device: str,
    on_batch: Callable[[int], None] | None = None,
) -> Scored | Skip:
    """Sample, extract (or read the sample cache) and measure one generator on ``device``."""
    o = ctx.options
    start = time.perf_counter()
    try:
        if candidate.record is not None:
            path = pull(candidate.record, offline=o.offline, progress=ctx.on_progress or False)
        else:
            assert candidate.path is not None
            path = candidate.path
        key = SampleKey(
            checkpoint_sha256=checkpoint_sha256(path),
            seeds=ctx.seeds,
            noise_mode=o.noise_mode,
            truncation_psi=o.truncation_psi,
            protocol=ctx.extractor.protocol,
        )
        resolved = time.perf_counter() - start

        def load_generator() -> Generator:
            ckpt, _ = read_checkpoint(path, name=candidate.name, networks=(), device=device)
            return ckpt.G_ema

        store = ctx.store if o.cache else _NoStore()
        found = _sample_features(
            key,
            load_generator=load_generator,
            extractor=ctx.extractor,
            device=device,
            batch_size=o.batch_size,
            store=store,
            on_batch=on_batch,
            images_at=None if ctx.target_images is None else ctx.target_images.shape[-1],
        )
    except AdvisorError as err:
        return Skip(name=candidate.name, setting="generated", reason=one_line(str(err)))
    except _FILE_ERRORS as err:
        text = " ".join(str(err).split())[:160]
        return Skip(
            name=candidate.name,
            setting="generated",
            reason=f"could not be read as a checkpoint ({type(err).__name__}: {text})",
        )
    return _measure(
        candidate.name,
        "generated",
        found.features,
        ctx,
        device=device,
        from_cache=found.from_cache,
        preview=found.preview,
        timings=Timings(resolve=resolved, generate=found.generate_s, extract=found.extract_s),
        resolution=None if found.preview is None else int(found.preview.shape[-1]),
        images=None
        if found.images is None
        else _Images(pixels=found.images, were=f"samples of {found.resolution} px"),
    )


def score_source(name: str, path: str, ctx: ScoreContext, device: str) -> Scored | Skip:
    """Measure a source dataset (folder, .zip or feature file) against the target.

    Sets larger than the sample count are cut to a seeded random subset of that size, so every
    row of a ranking compares sets of (at most) equal size. Ranked by swd, the source's images
    (the same subset) are measured too; a source given as features is skipped.
    """
    from advisor.other_measures import images_at

    if ctx.target_images is not None and is_feature_file(path):
        return Skip(
            name=name,
            setting="source",
            reason="swd compares images and this source data is a feature file; pass its "
            "images with --source-data NAME=DIR",
        )
    start = time.perf_counter()
    try:
        feature_set = ctx.source_features(path)
    except AdvisorError as err:
        return Skip(name=name, setting="source", reason=one_line(str(err)))
    features = feature_set.features
    n = len(ctx.seeds)
    keep = None
    if len(features) > n:
        keep = np.sort(
            np.random.default_rng(ctx.options.metrics.seed).permutation(len(features))[:n]
        )
        features = features[keep]
    k = max(ctx.options.metrics.k_pr, ctx.options.metrics.k_dc)
    if len(features) <= k:
        return Skip(
            name=name, setting="source", reason=f"{len(features)} usable images, need {k + 1}"
        )
    images = None
    if ctx.target_images is not None:
        try:
            pixels = images_at(path, ctx.target_images.shape[-1], rows=keep)
        except AdvisorError as err:
            return Skip(name=name, setting="source", reason=one_line(str(err)))
        images = _Images(pixels=pixels, were="source images")
    elapsed = time.perf_counter() - start
    return _measure(
        name,
        "source",
        features,
        ctx,
        device=device,
        from_cache=feature_set.from_cache,
        preview=None,
        timings=Timings(extract=elapsed),
        resolution=None,
        images=images,
    )


def _measure(
    name: str,
    setting: str,
    features: np.ndarray,
    ctx: ScoreContext,
    *,
    device: str,
    from_cache: bool,
    preview: np.ndarray | None,
    timings: Timings,
    resolution: int | None,
    images: _Images | None = None,
) -> Scored | Skip:
    start = time.perf_counter()
    try:
        report = compare_features(ctx.target, features, options=ctx.options.metrics)
        other = _other_measure(features, ctx, device, images)
        by = ctx.options.by
        if by not in MEASURE_GROUP_OF:
            replicates = paired_replicates(
                ctx.target, features, by=by, options=ctx.options.metrics, resamples=ctx.resamples
            )
        elif ctx.options.metrics.bootstrap:
            replicates = _other_replicates(other, by)
        else:  # --bootstrap 0: no replicates for any metric
            replicates = np.zeros(0)
    except ValueError as err:
        return Skip(name=name, setting=setting, reason=f"metrics failed: {one_line(str(err))}")
    except AdvisorError as err:
        return Skip(name=name, setting=setting, reason=one_line(str(err)))
    timings = Timings(
        resolve=timings.resolve,
        generate=timings.generate,
        extract=timings.extract,
        metrics=time.perf_counter() - start,
    )
    return Scored(
        name=name,
        setting=setting,
        report=report,
        replicates=replicates,
        n_candidate=len(features),
        from_cache=from_cache,
        device=device,
        timings=timings,
        preview=preview,
        resolution=resolution,
        other=other,
        pairing=pairing_of(ctx.options.by) or "bootstrap",
    )


def _other_measure(
    features: np.ndarray, ctx: ScoreContext, device: str, images: _Images | None
) -> OtherMeasures:
    """The other measure the ranking is ordered by (nothing for the default metrics)."""
    from advisor.metrics.classifier import classifier_measures
    from advisor.metrics.swd import swd
    from advisor.other_measures import inception_score_of

    by = ctx.options.by
    group = MEASURE_GROUP_OF.get(by)
    if group is None:
        return OtherMeasures()
    if group == "is":
        m = ctx.options.metrics
        confidence = m.confidence if m.bootstrap else None  # --bootstrap 0: no intervals
        score = inception_score_of(features, ctx.extractor, confidence=confidence, device=device)
        return OtherMeasures(inception_score=score)
    if group == "swd":
        note = (
            "no paired bootstrap for swd (each replicate would be a whole SWD): neighbours tie "
            "only when their values are equal, so read close values as undecided"
        )
        assert ctx.target_images is not None and images is not None  # made for by=swd
        result = swd(ctx.target_images, images.pixels, options=ctx.options.other_options().swd)
        size = ctx.target_images.shape[-1]
        resized = f"{images.were} compared with the target at its {size} px"
        return OtherMeasures(swd=result, notes=(note, resized, *result.notes))
    assert ctx.labels is not None  # made by rank_with for the classifier measures
    report = classifier_measures(
        ctx.target, ctx.labels, features, options=ctx.options.other_options().classifier_options()
    )
    return OtherMeasures(classifier=report)


def _other_replicates(other: OtherMeasures, by: str) -> np.ndarray:
    """The paired replicates of the other measure ``by`` (see
    :func:`advisor.ranking.ties.pairing_of`): the Inception Score's split scores, the
    classifier measures' bootstrap replicates; none for SWD."""
    if by == "is" and other.inception_score is not None:
        return np.asarray(other.inception_score.scores, dtype=np.float64)
    if other.classifier is not None and by in other.classifier.replicates:
        return np.asarray(other.classifier.replicates[by], dtype=np.float64)
    return np.zeros(0)


class _NoStore(SampleFeatureStore):
    """A store that never hits and never writes (``cache=False``)."""

    def get(self, key: SampleKey) -> None:
        return None

    def put(self, key: SampleKey, features: np.ndarray, preview: np.ndarray | None) -> None:
        return None
