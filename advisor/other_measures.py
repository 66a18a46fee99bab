"""Inputs of the other measures (IS, SWD, classifier), for compare, rank and finetune.

The math lives in :mod:`advisor.metrics` (pure functions); this module gets what it needs:

- IS: logits from the extractor's classifier head applied to the features already made
  (:func:`advisor.features.extract.logits_of`: the one extraction path, no second pass);
- SWD: the images themselves, uint8 NCHW at one resolution (SWD needs no network); a ranking
  takes generated images from :func:`advisor.features.samples.sample_features` (``images_at``);
- classifier measures: the target's class labels, from its sub-folders or from k-means on its
  features (``classes``), kept in advisor's label cache
  (:class:`advisor.features.store.LabelStore`, keyed by the features' content, K, the seed and
  the clustering method) so the same target is clustered once.

Every failure a user can cause is one :class:`AdvisorError` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from advisor.errors import AdvisorError
from advisor.features.extract import SharedExtractor, logits_of
from advisor.features.files import FeatureSet
from advisor.features.store import LabelKey, LabelStore
from advisor.metrics.classifier import (
    DEFAULT_MIN_COUNT,
    KMEANS_METHOD,
    ClassifierOptions,
    ClassifierReport,
    Labels,
    check_labels,
    classifier_measures,
    folder_labels,
    kmeans_labels,
    surrogate_labels,
)
from advisor.metrics.inception_score import InceptionScore, score_logits
from advisor.metrics.other import MEASURE_GROUPS
from advisor.metrics.swd import MIN_LEVEL_SIZE, SWDOptions

#: Most surrogate classes ``--classes`` accepts.
MAX_CLASSES = 10_000


@dataclass(frozen=True, kw_only=True)
class OtherOptions:
    """Which extra measures to compute and how (validated on construction: AdvisorError).

    ``groups``: of :data:`advisor.metrics.other.MEASURE_GROUPS`; ``classes``: k-means surrogate
    classes for an unlabelled target (None: the target's sub-folders are its classes);
    ``min_count``: mode coverage's m; ``splits``: IS splits; ``swd``: SWD's protocol; ``seed``,
    ``bootstrap``, ``confidence``: of the classifier measures (k-means, split, intervals).
    """

    groups: tuple[str, ...] = ()
    classes: int | None = None
    min_count: int = DEFAULT_MIN_COUNT
    splits: int = 10
    swd: SWDOptions = field(default_factory=SWDOptions)
    seed: int = 0
    bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in MEASURE_GROUPS]
        if unknown:
            raise AdvisorError(
                f"unknown measure group {unknown[0]!r}; choose of {', '.join(MEASURE_GROUPS)}"
            )
        if self.classes is not None and (
            isinstance(self.classes, bool) or not 2 <= self.classes <= MAX_CLASSES
        ):
            raise AdvisorError(f"--classes must be 2..{MAX_CLASSES}, got {self.classes}")
        if isinstance(self.splits, bool) or not 1 <= self.splits <= 1000:
            raise AdvisorError(f"IS splits must be 1..1000, got {self.splits}")
        try:
            self.classifier_options()
        except ValueError as err:
            raise AdvisorError(str(err)) from None

    def classifier_options(self) -> ClassifierOptions:
        return ClassifierOptions(
            min_count=self.min_count,
            seed=self.seed,
            bootstrap=self.bootstrap,
            confidence=self.confidence,
        )


def target_labels(
    target: FeatureSet, *, classes: int | None, seed: int, cache: bool = True
) -> Labels:
    """The target's classes: k-means (``classes`` surrogate classes, seeded) when given, else
    its sub-folders; :class:`AdvisorError` when it has neither, or a class has < 2 images.

    k-means labels are read from and written to advisor's label cache unless ``cache`` is
    False (``--no-cache``); a cached entry is what the clustering gave for these exact features.
    """
    if classes is not None:
        try:
            found = _kmeans_cached(target.features, classes, seed=seed, cache=cache)
        except ValueError as err:
            raise AdvisorError(str(err)) from None
    else:
        labelled = folder_labels(target.names)
        if labelled is None:
            raise AdvisorError(
                f"{target.source}: the classifier measures need a labelled target (one "
                "sub-folder per class) or surrogate classes from k-means (--classes K)"
            )
        found = labelled
    try:
        check_labels(found, len(target))
    except ValueError as err:
        hint = "; use fewer --classes" if classes is not None else ""
        raise AdvisorError(f"{target.source}: {err}{hint}") from None
    return found


def _kmeans_cached(features: np.ndarray, classes: int, *, seed: int, cache: bool) -> Labels:
    """:func:`kmeans_labels`, through the label cache when ``cache``."""
    if not cache:
        return kmeans_labels(features, classes, seed=seed)
    key = LabelKey.of(features, classes=classes, seed=seed, method=KMEANS_METHOD)
    store = LabelStore()
    stored = store.get(key)
    if stored is not None:
        return surrogate_labels(stored, classes, seed=seed)
    found = kmeans_labels(features, classes, seed=seed)
    store.put(key, found.labels)
    return found


def inception_score_of(
    features: FeatureSet | np.ndarray,
    shared: SharedExtractor,
    *,
    splits: int = 10,
    confidence: float | None = None,
    device: str = "cpu",
) -> InceptionScore:
    """IS of a feature set through ``shared``'s classifier head (see :func:`logits_of`), with
    its ``confidence`` interval (None: none); raw arrays are taken to be made by ``shared``.
    AdvisorError for a network without a head or features of another network."""
    if isinstance(features, FeatureSet):
        rows, protocol = features.features, features.protocol
    else:
        rows, protocol = features, shared.protocol
    logits = logits_of(shared, rows, protocol=protocol, device=device)
    network = shared.on(device)
    standard = network.head_is_standard and shared.protocol.comparable
    head = f"{shared.protocol.extractor} {network.head_classes}-class head"
    if network.head_is_standard:
        head += " (unbiased logits)"
    try:
        return score_logits(
            logits, head=head, standard_head=standard, splits=splits, confidence=confidence
        )
    except ValueError as err:
        raise AdvisorError(f"inception score: {err}") from None


def classifier_report(
    target: FeatureSet, labels: Labels, candidate: np.ndarray, options: OtherOptions
) -> ClassifierReport:
    """:func:`advisor.metrics.classifier.classifier_measures`, bad input as AdvisorError."""
    try:
        return classifier_measures(
            target.features, labels, candidate, options=options.classifier_options()
        )
    except ValueError as err:
        raise AdvisorError(f"classifier measures: {err}") from None


def swd_resolution(*sources: str | os.PathLike[str]) -> int:
    """The resolution SWD compares image sets at: the smallest of their most common sizes
    (never upsample one set to meet the other). AdvisorError when unknown or under 16 px."""
    from advisor.images import open_image_set, target_size

    sizes = []
    for source in sources:
        size = target_size(open_image_set(source)).resolution
        if size is None:
            raise AdvisorError(f"{source}: no readable image header, so SWD has no resolution")
        sizes.append(size)
    resolution = min(sizes)
    if resolution < MIN_LEVEL_SIZE:
        raise AdvisorError(f"SWD needs images of at least {MIN_LEVEL_SIZE} px, got {resolution}")
    return resolution


def images_at(
    source: str | os.PathLike[str], resolution: int, *, rows: np.ndarray | None = None
) -> np.ndarray:
    """Every decodable image of ``source`` as uint8 [N, 3, R, R] (the protocol resize), in set
    order, or with ``rows`` (sorted indices into those images) only these, decoding the set
    once without holding the others. AdvisorError when a row is past the last image."""
    from advisor.images import iter_batches, load_images, open_image_set

    if rows is None:
        images, _ = load_images(source, size=resolution)
        return np.ascontiguousarray(images)
    wanted = np.asarray(rows, dtype=np.int64)
    parts, seen = [], 0
    for batch in iter_batches(open_image_set(source), size=resolution):
        lo, hi = np.searchsorted(wanted, [seen, seen + len(batch.images)])
        parts.append(batch.images.numpy()[wanted[lo:hi] - seen])
        seen += len(batch.images)
    if len(wanted) and wanted[-1] >= seen:
        raise AdvisorError(f"{source}: {seen} decodable images, fewer than its features have")
    return np.ascontiguousarray(np.concatenate(parts))
