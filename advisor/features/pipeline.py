"""Image set -> features: decode, resize, network, through the image-set feature store.

A feature set is a float32 ``[N, D]`` array plus the protocol that made it (extractor, weights
hash, input size, resize policy, precision) and the names of the images it came from, in order.
Feature sets are saved as ``.npz`` (never pickles): ``features`` plus a JSON ``meta`` string,
read back with every field checked (:mod:`advisor.features.files`).

The cache (:mod:`advisor.features.store`) is keyed by :class:`ImageSetKey`: the bytes of every
file in order and everything that changes a feature. A second run on an unchanged folder reads
the files to hash them, but decodes nothing and touches no network. The cache is best effort: an
entry that is not a valid feature file is a miss (and is replaced), and a cache that cannot be
written (full disk, unusable ``ADVISOR_CACHE``) costs a warning, never the run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advisor.devices import AUTO, resolve_device
from advisor.errors import AdvisorError
from advisor.features import check_extractor, check_precision
from advisor.features.extract import SharedExtractor, extract_features
from advisor.features.files import (
    FEATURE_SUFFIXES,
    FeatureSet,
    is_feature_file,
    load_features,
    save_features,
)
from advisor.features.store import ImageSetFeatureStore, ImageSetKey
from advisor.images import (
    ImageSet,
    LoadReport,
    iter_batches,
    open_image_set,
)
from advisor.progress import Progress, default_progress, progress_task

__all__ = [
    "FEATURE_SUFFIXES",
    "ExtractionOptions",
    "FeatureOptions",
    "FeatureSet",
    "compute_features",
    "features_of",
    "is_feature_file",
    "load_features",
    "resolve_device",
    "save_features",
]


@dataclass(frozen=True, kw_only=True)
class ExtractionOptions:
    """How extraction runs; none of these changes a feature. ``device`` "auto" picks CUDA when
    available; ``strict``: any skipped file is an error; ``cache``: read and write the feature
    cache; ``offline``: never download (None: ``ADVISOR_OFFLINE`` / ``HF_HUB_OFFLINE``).

    Validated on construction (unknown device, batch size < 1, workers < 0:
    :class:`AdvisorError`), so a bad option fails before any image is read.
    """

    device: str = AUTO
    batch_size: int = 64
    workers: int | None = None
    strict: bool = False
    cache: bool = True
    offline: bool | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.device != AUTO:  # "auto" always resolves; skip the CUDA query at import time
            resolve_device(self.device)
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise AdvisorError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise AdvisorError(f"workers must be 0 or more, got {self.workers}")


@dataclass(frozen=True, kw_only=True)
class FeatureOptions(ExtractionOptions):
    """How to turn images into features: which features (``extractor``, ``weights``: a local
    weights file instead of the extractor's default, ``precision``) and how extraction runs
    (the :class:`ExtractionOptions` fields).

    Validated on construction (unknown extractor or precision, then the extraction options:
    :class:`AdvisorError`), so a bad option fails before any image is read.
    """

    extractor: str = "inception"
    weights: str | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_extractor(self.extractor)
        check_precision(self.precision)
        super().__post_init__()

    @classmethod
    def of(
        cls,
        run: ExtractionOptions,
        *,
        extractor: str = "inception",
        weights: str | None = None,
        precision: str = "fp32",
    ) -> FeatureOptions:
        """``run``'s extraction options with these protocol choices."""
        fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(ExtractionOptions)}
        return cls(extractor=extractor, weights=weights, precision=precision, **fields)


def compute_features(
    source: str | os.PathLike[str] | ImageSet,
    *,
    options: FeatureOptions = FeatureOptions(),
    extractor: SharedExtractor | None = None,
    on_progress: Progress | None = None,
) -> FeatureSet:
    """Features of an image folder, .zip or file list, from the cache when possible.

    ``extractor``: a :class:`SharedExtractor` made with the same extractor name, weights and
    precision as ``options``, so callers that also extract other images build one network;
    it is built only on a cache miss. None: one is made here from ``options``.

    ``on_progress``: called with the extraction's progress (task ``features NAME``, images) and
    an extractor weights download's (``download FILE``, bytes); None: tqdm bars on stderr when
    ``options.progress``, else nothing.

    The cache is best effort: when it cannot be read or written (an unusable ``ADVISOR_CACHE``,
    a full disk) a warning says so and the features are computed and returned all the same.
    Raises :class:`AdvisorError` for unusable sources, unknown extractors, missing weights,
    a device this machine lacks, no decodable image, and (with ``options.strict``) any skipped
    file.
    """
    device = resolve_device(options.device)
    image_set = source if isinstance(source, ImageSet) else open_image_set(source)
    if options.strict and image_set.skipped:
        first = image_set.skipped[0]
        raise AdvisorError(f"{first.path}: {first.reason} (--strict)")
    if on_progress is None:
        on_progress = default_progress(options.progress)
    if extractor is None:
        extractor = SharedExtractor(
            options.extractor,
            weights=options.weights,
            precision=options.precision,
            offline=options.offline,
            progress=on_progress or False,
        )
    elif (extractor.name, extractor.precision) != (options.extractor, options.precision):
        raise ValueError("the shared extractor was made with other options than these")
    store = ImageSetFeatureStore() if options.cache else None
    key = ImageSetKey.of(image_set, extractor.protocol) if store is not None else None
    if store is not None and key is not None:
        cached = store.get(key)
        expected = len(image_set) + len(image_set.skipped)
        if cached is not None and len(cached.names) + len(cached.skipped) != expected:
            cached = None  # an entry replaced by another set's features: recompute, overwrite
        if cached is not None:
            if options.strict and cached.skipped:
                first = cached.skipped[0]
                raise AdvisorError(f"{first.path}: {first.reason} (--strict)")
            return dataclasses.replace(cached, source=image_set.source)
    network = extractor.on(device)
    report = LoadReport(skipped=[], loaded=0)
    indices: list[np.ndarray] = []
    task = progress_task(
        on_progress, f"features {Path(image_set.source).name}", total=len(image_set)
    )

    def images() -> Iterator[torch.Tensor]:
        for batch in iter_batches(
            image_set,
            size=network.protocol.input_size,
            batch_size=options.batch_size,
            workers=options.workers,
            strict=options.strict,
            report=report,
        ):
            indices.append(batch.indices.numpy())
            yield batch.images

    with task as advance:
        features = extract_features(network, images(), on_batch=advance)
    if not indices:
        raise AdvisorError(
            f"{image_set.source}: none of its {len(image_set)} image file(s) could be decoded"
        )
    order = np.concatenate(indices)
    result = FeatureSet(
        features=features,
        protocol=network.protocol,
        names=tuple(image_set.names[i] for i in order),
        skipped=tuple(report.skipped),
        source=image_set.source,
    )
    if store is not None and key is not None:
        store.put(key, result)
    return result


def features_of(
    source: str | os.PathLike[str], *, options: FeatureOptions = FeatureOptions()
) -> FeatureSet:
    """A feature file is read; anything else is treated as images and featurised."""
    if is_feature_file(source):
        return load_features(source)
    return compute_features(source, options=options)
