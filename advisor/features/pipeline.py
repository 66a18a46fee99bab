"""Image set -> features: decode, resize, network, with a content-keyed feature cache.

A feature set is a float32 ``[N, D]`` array plus the protocol that made it (extractor, weights
hash, input size, resize policy, precision) and the names of the images it came from, in order.
Feature sets are saved as ``.npz`` (never pickles): ``features`` plus a JSON ``meta`` string,
read back with every field checked (:mod:`advisor.features.files`).

The cache key is ``sha256(image set content hash, protocol key)``: the bytes of every file in
order and everything that changes a feature. A second run on an unchanged folder reads the files
to hash them, but decodes nothing and touches no network. The cache is best effort: an entry that
is not a valid feature file is a miss (and is replaced), and a cache that cannot be written
(full disk, unusable ``ADVISOR_CACHE``) costs a warning, never the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from advisor.cache import cache_dir, os_reason
from advisor.devices import AUTO, resolve_device
from advisor.errors import AdvisorError
from advisor.features import check_extractor, check_precision
from advisor.features.extract import SharedExtractor, extract_features
from advisor.features.files import (
    FEATURE_SUFFIXES,
    FORMAT,
    FeatureSet,
    is_feature_file,
    load_features,
    save_features,
    write_npz,
)
from advisor.images import (
    DECODE_POLICY,
    ImageSet,
    LoadReport,
    iter_batches,
    open_image_set,
)

__all__ = [
    "FEATURE_SUFFIXES",
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
class FeatureOptions:
    """How to turn images into features. ``device`` "auto" picks CUDA when available.

    Validated on construction (unknown extractor, precision or device, batch size < 1,
    workers < 0: :class:`AdvisorError`), so a bad option fails before any image is read.
    ``weights``: a local weights file instead of the extractor's default.
    """

    extractor: str = "inception"
    weights: str | None = None
    precision: str = "fp32"
    device: str = AUTO
    batch_size: int = 64
    workers: int | None = None
    strict: bool = False
    cache: bool = True
    offline: bool | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check_extractor(self.extractor)
        check_precision(self.precision)
        if self.device != AUTO:  # "auto" always resolves; skip the CUDA query at import time
            resolve_device(self.device)
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise AdvisorError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise AdvisorError(f"workers must be 0 or more, got {self.workers}")


def compute_features(
    source: str | os.PathLike[str] | ImageSet,
    *,
    options: FeatureOptions = FeatureOptions(),
    extractor: SharedExtractor | None = None,
) -> FeatureSet:
    """Features of an image folder, .zip or file list, from the cache when possible.

    ``extractor``: a :class:`SharedExtractor` made with the same extractor name, weights and
    precision as ``options``, so callers that also extract other images build one network;
    it is built only on a cache miss. None: one is made here from ``options``.

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
    if extractor is None:
        extractor = SharedExtractor(
            options.extractor,
            weights=options.weights,
            precision=options.precision,
            offline=options.offline,
            progress=options.progress,
        )
    elif (extractor.name, extractor.precision) != (options.extractor, options.precision):
        raise ValueError("the shared extractor was made with other options than these")
    protocol = extractor.protocol
    entry = None
    if options.cache:
        entry = _cache_entry(_cache_key(image_set, protocol.key()))
    if entry is not None:
        cached = _read_cache(entry, image_set.source)
        if cached is not None:
            if options.strict and cached.skipped:
                first = cached.skipped[0]
                raise AdvisorError(f"{first.path}: {first.reason} (--strict)")
            return cached
    network = extractor.on(device)
    report = LoadReport(skipped=[], loaded=0)
    indices: list[np.ndarray] = []
    bar = tqdm(
        total=len(image_set),
        unit="img",
        desc=f"features {Path(image_set.source).name}",
        disable=not options.progress,
        leave=False,
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

    with bar:
        features = extract_features(network, images(), on_batch=bar.update)
    if not indices:
        raise AdvisorError(
            f"{image_set.source}: none of its {len(image_set)} image file(s) could be decoded"
        )
    order = np.concatenate(indices)
    result = FeatureSet(
        features=features,
        protocol=network.protocol.to_dict(),
        names=tuple(image_set.names[i] for i in order),
        skipped=tuple(report.skipped),
        source=image_set.source,
    )
    if entry is not None:
        _write_cache(entry, result)
    return result


def features_of(
    source: str | os.PathLike[str], *, options: FeatureOptions = FeatureOptions()
) -> FeatureSet:
    """A feature file is read; anything else is treated as images and featurised."""
    if is_feature_file(source):
        return load_features(source)
    return compute_features(source, options=options)


def _cache_key(image_set: ImageSet, protocol_key: str) -> str:
    parts = (FORMAT, DECODE_POLICY, image_set.content_hash(), protocol_key)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _cache_warning(problem: str) -> None:
    # One text per problem, whichever entry hit it: repeats are shown once.
    warnings.warn(f"feature cache {problem}; continuing without it", stacklevel=4)


def _cache_entry(key: str) -> Path | None:
    """Where the entry for ``key`` lives, or None (with a warning) when the cache folder cannot
    be used."""
    try:
        return cache_dir("features") / f"{key}.npz"
    except AdvisorError as err:
        _cache_warning(f"not used ({err})")
        return None


def _read_cache(entry: Path, source: str) -> FeatureSet | None:
    """The cached feature set, or None for a miss. Anything at ``entry`` that is not a valid
    feature file (damaged, another file type, unreadable) is a miss; the new result replaces
    it."""
    try:
        if not entry.is_file():
            return None
        cached = load_features(entry)
    except (AdvisorError, OSError):
        return None
    return dataclasses.replace(cached, source=source, from_cache=True)


def _write_cache(entry: Path, feature_set: FeatureSet) -> None:
    try:
        write_npz(entry, feature_set)
    except OSError as err:
        _cache_warning(f"not written ({os_reason(err)} in {entry.parent})")
