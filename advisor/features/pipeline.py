"""Image set -> features: decode, resize, network, with a content-keyed feature cache.

A feature set is a float32 ``[N, D]`` array plus the protocol that made it (extractor, weights
hash, input size, resize policy, precision) and the names of the images it came from, in order.
Feature sets are saved as ``.npz`` (never pickles): ``features`` plus a JSON ``meta`` string.

The cache key is ``sha256(image set content hash, protocol key)``: the bytes of every file in
order and everything that changes a feature. A second run on an unchanged folder reads the files
to hash them, but decodes nothing and touches no network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from advisor.cache import atomic_path, cache_dir
from advisor.errors import AdvisorError
from advisor.features import extractor_protocol, get_extractor
from advisor.images import (
    DECODE_POLICY,
    ImageSet,
    LoadReport,
    Skipped,
    iter_batches,
    open_image_set,
)

#: Suffixes read as feature files rather than image sources.
FEATURE_SUFFIXES = (".npz", ".npy")
_FORMAT = "advisor-features/1"


@dataclass(frozen=True)
class FeatureSet:
    """Features of one image set.

    features: float32 ``[N, D]``, row i belongs to ``names[i]``.
    protocol: the extractor protocol as a dict (``FeatureProtocol.to_dict()``); empty when
        unknown (a plain ``.npy`` file).
    names: display paths of the images the rows came from (empty when unknown).
    skipped: files of the source that were skipped, with reasons.
    source: what the user pointed at.
    from_cache: True when the features came from advisor's cache.
    """

    features: np.ndarray
    protocol: dict[str, object]
    names: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    source: str = ""
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True, kw_only=True)
class FeatureOptions:
    """How to turn images into features. ``device`` "auto" picks CUDA when available."""

    extractor: str = "inception"
    weights: str | None = None
    precision: str = "fp32"
    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    strict: bool = False
    cache: bool = True
    offline: bool | None = None
    progress: bool = True


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise AdvisorError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None


def is_feature_file(source: str | os.PathLike[str]) -> bool:
    """True when ``source`` names a feature file (.npz or .npy) rather than images."""
    return Path(source).suffix.lower() in FEATURE_SUFFIXES


def compute_features(
    source: str | os.PathLike[str] | ImageSet, *, options: FeatureOptions = FeatureOptions()
) -> FeatureSet:
    """Features of an image folder, .zip or file list, from the cache when possible.

    Raises :class:`AdvisorError` for unusable sources, unknown extractors, missing weights,
    and (with ``options.strict``) any skipped file.
    """
    image_set = source if isinstance(source, ImageSet) else open_image_set(source)
    if options.strict and image_set.skipped:
        first = image_set.skipped[0]
        raise AdvisorError(f"{first.path}: {first.reason} (--strict)")
    protocol = extractor_protocol(
        options.extractor,
        weights=options.weights,
        precision=options.precision,
        offline=options.offline,
        progress=options.progress,
    )
    key = None
    if options.cache:
        key = _cache_key(image_set, protocol.key())
        cached = _read_cache(key, image_set.source)
        if cached is not None:
            if options.strict and cached.skipped:
                first = cached.skipped[0]
                raise AdvisorError(f"{first.path}: {first.reason} (--strict)")
            return cached
    device = resolve_device(options.device)
    extractor = get_extractor(
        options.extractor,
        weights=options.weights,
        precision=options.precision,
        device=device,
        offline=options.offline,
        progress=options.progress,
    )
    report = LoadReport(skipped=[], loaded=0)
    rows: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    bar = tqdm(
        total=len(image_set),
        unit="img",
        desc=f"features {Path(image_set.source).name}",
        disable=not options.progress,
        leave=False,
    )
    with bar:
        for batch in iter_batches(
            image_set,
            size=extractor.protocol.input_size,
            batch_size=options.batch_size,
            workers=options.workers,
            strict=options.strict,
            report=report,
        ):
            rows.append(extractor(batch.images.to(device)).float().cpu().numpy())
            indices.append(batch.indices.numpy())
            bar.update(len(batch.indices))
    features = np.concatenate(rows).astype(np.float32, copy=False)
    order = np.concatenate(indices)
    result = FeatureSet(
        features=features,
        protocol=extractor.protocol.to_dict(),
        names=tuple(image_set.names[i] for i in order),
        skipped=tuple(report.skipped),
        source=image_set.source,
    )
    if key is not None:
        _write_npz(cache_dir("features") / f"{key}.npz", result)
    return result


def load_features(path: str | os.PathLike[str]) -> FeatureSet:
    """Read a feature file: ``.npz`` as written by :func:`save_features`, or a plain ``.npy``.

    A ``.npz`` needs a ``features`` array; its ``meta`` (protocol, names) is optional. A ``.npy``
    must hold a 2-D float array. Never unpickles (``allow_pickle=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise AdvisorError(f"feature file not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            features = np.load(path, allow_pickle=False)
            meta: dict[str, object] = {}
        else:
            with np.load(path, allow_pickle=False) as data:
                if "features" not in data:
                    raise AdvisorError(f"{path}: no 'features' array in this .npz")
                features = data["features"]
                meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except AdvisorError:
        raise
    except (ValueError, OSError, EOFError, json.JSONDecodeError) as err:
        raise AdvisorError(f"{path}: not a readable feature file ({err})") from None
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
        raise AdvisorError(
            f"{path}: expected a 2-D float array [N, D], got {features.dtype} {features.shape}"
        )
    return FeatureSet(
        features=features.astype(np.float32, copy=False),
        protocol=dict(meta.get("protocol", {})),
        names=tuple(meta.get("names", ())),
        skipped=tuple(Skipped(**s) for s in meta.get("skipped", ())),
        source=str(meta.get("source", path)),
    )


def save_features(path: str | os.PathLike[str], feature_set: FeatureSet) -> Path:
    """Write ``feature_set`` to ``path`` (.npz, atomically); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise AdvisorError(f"feature files are written as .npz; got {path.name}")
    _write_npz(path, feature_set)
    return path


def features_of(
    source: str | os.PathLike[str], *, options: FeatureOptions = FeatureOptions()
) -> FeatureSet:
    """A feature file is read; anything else is treated as images and featurised."""
    if is_feature_file(source):
        return load_features(source)
    return compute_features(source, options=options)


def _meta(feature_set: FeatureSet) -> dict[str, object]:
    return {
        "format": _FORMAT,
        "protocol": feature_set.protocol,
        "names": list(feature_set.names),
        "skipped": [dataclasses.asdict(s) for s in feature_set.skipped],
        "source": feature_set.source,
    }


def _write_npz(path: Path, feature_set: FeatureSet) -> None:
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            features=feature_set.features.astype(np.float32, copy=False),
            meta=np.array(json.dumps(_meta(feature_set))),
        )


def _cache_key(image_set: ImageSet, protocol_key: str) -> str:
    parts = (_FORMAT, DECODE_POLICY, image_set.content_hash(), protocol_key)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read_cache(key: str, source: str) -> FeatureSet | None:
    path = cache_dir("features") / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        cached = load_features(path)
    except AdvisorError:
        return None  # a damaged cache entry is recomputed and rewritten
    return dataclasses.replace(cached, source=source, from_cache=True)
