"""Generator samples -> features, through the sample-feature store.

:func:`sample_features` is the generator side of the one extraction path: a checkpoint's
samples (uint8 NCHW, one seed per image, :func:`advisor.sampling.sample`) go through
:func:`advisor.features.extract.extract_features`, keyed in advisor's feature cache by
:class:`advisor.features.store.SampleKey` (checkpoint sha256, seeds, noise mode, truncation psi,
sampler version, extractor protocol). Re-ranking the same zoo against a new target therefore
generates nothing, and on a hit neither a generator nor an extractor is built.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advisor.cache import os_reason
from advisor.errors import AdvisorError
from advisor.features.base import weights_sha256
from advisor.features.extract import SharedExtractor, extract_features
from advisor.features.store import PREVIEW_IMAGES, SampleFeatureStore, SampleKey
from advisor.images import resize_uint8
from advisor.networks import Generator
from advisor.sampling import SAMPLER_VERSION, sample

__all__ = [
    "PREVIEW_IMAGES",
    "SAMPLER_VERSION",
    "SampleFeatures",
    "SampleFeatureStore",
    "SampleKey",
    "checkpoint_sha256",
    "sample_features",
    "seeds_text",
]


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of the file holding a checkpoint's tensors: ``NAME.safetensors`` for advisor's
    format (given as ``NAME``, ``NAME.json`` or ``NAME.safetensors``), else the file itself.
    Memoised across runs by (path, size, mtime), so a zoo is hashed once."""
    from advisor.checkpoints.format import checkpoint_paths, is_advisor_checkpoint

    path = Path(path)
    if is_advisor_checkpoint(path):
        path = checkpoint_paths(path)[0]
    try:
        return weights_sha256(path)
    except OSError as err:
        raise AdvisorError(f"cannot read {path} ({os_reason(err)})") from None


@dataclass(frozen=True, kw_only=True)
class SampleFeatures:
    """Features of a checkpoint's samples: float32 ``[len(seeds), D]``, row i from seed i.

    ``preview``: uint8 ``[m, 3, R, R]`` RGB, the first ``m <= PREVIEW_IMAGES`` samples (None when
    a cache entry lost its preview). ``from_cache``: the features came from the cache (no
    extractor was run; the generator only when ``images`` were asked for).
    ``generate_s`` / ``extract_s``: seconds spent generating and extracting (0 on a hit).
    ``images``: the samples themselves, resized (``images_at``), None unless asked for;
    ``resolution``: the side of the generator's own images, None when it did not run.
    """

    features: np.ndarray
    key: SampleKey
    preview: np.ndarray | None
    from_cache: bool
    generate_s: float = 0.0
    extract_s: float = 0.0
    images: np.ndarray | None = None
    resolution: int | None = None


def sample_features(
    key: SampleKey,
    *,
    load_generator: Callable[[], Generator],
    extractor: SharedExtractor,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    store: SampleFeatureStore | None = None,
    on_batch: Callable[[int], None] | None = None,
    images_at: int | None = None,
) -> SampleFeatures:
    """Features of ``key.seeds`` samples of a checkpoint, from the cache when possible.

    On a miss, ``load_generator()`` gives the checkpoint's ``G_ema`` (whose file
    ``key.checkpoint_sha256`` hashes); its samples (uint8 NCHW, per-image seeds, see
    :func:`advisor.sampling.sample`; single-channel output replicated to RGB) go through
    :func:`extract_features` with ``extractor.on(device)``, and the result is stored.
    ``store`` None: the default store; pass ``SampleFeatureStore`` to choose the folder.
    On a hit neither ``load_generator`` nor the extractor is called, unless ``images_at``.

    ``images_at``: also return the samples themselves (``images``, uint8 [n, 3, S, S]) resized
    to S = ``images_at`` px by the protocol resize (:func:`advisor.images.resize_uint8`), for
    measures on pixels (SWD). The cache keeps features only, so on a hit the generator runs
    again for them (the same seeds give the same images), without extraction.
    """
    if extractor.protocol != key.protocol:
        raise ValueError("the extractor's protocol is not the key's")
    store = store if store is not None else SampleFeatureStore()
    hit = store.get(key)
    kept: list[np.ndarray] = []  # the samples at images_at px, when asked for

    def keep(images: torch.Tensor) -> torch.Tensor:
        if images_at is not None:
            kept.append(resize_uint8(images, images_at).numpy())
        return images

    def gathered() -> np.ndarray | None:
        return np.concatenate(kept) if kept else None

    if hit is not None:
        features, preview = hit
        if images_at is None:
            return SampleFeatures(features=features, key=key, preview=preview, from_cache=True)
        start = time.perf_counter()
        generator = load_generator()
        for images in _rgb_samples(generator, key, batch_size, device):
            keep(images)
        return SampleFeatures(
            features=features,
            key=key,
            preview=preview,
            from_cache=True,
            generate_s=time.perf_counter() - start,
            images=gathered(),
            resolution=generator.config.img_resolution,
        )
    generator = load_generator()
    network = extractor.on(device)
    preview: list[torch.Tensor] = []
    timing = {"generate": 0.0}

    def batches() -> Iterator[torch.Tensor]:
        stream = _rgb_samples(generator, key, batch_size, device)
        while True:
            start = time.perf_counter()
            images = next(stream, None)
            timing["generate"] += time.perf_counter() - start
            if images is None:
                return
            if sum(len(p) for p in preview) < PREVIEW_IMAGES:
                preview.append(images[: PREVIEW_IMAGES - sum(len(p) for p in preview)].clone())
            yield keep(images)

    start = time.perf_counter()
    features = extract_features(network, batches(), on_batch=on_batch)
    total = time.perf_counter() - start
    shown = torch.cat(preview).numpy() if preview else None
    store.put(key, features, shown)
    return SampleFeatures(
        features=features,
        key=key,
        preview=shown,
        from_cache=False,
        generate_s=timing["generate"],
        extract_s=total - timing["generate"],
        images=gathered(),
        resolution=generator.config.img_resolution,
    )


def _rgb_samples(
    generator: Generator, key: SampleKey, batch_size: int, device: str | torch.device
) -> Iterator[torch.Tensor]:
    """``generator``'s uint8 NCHW batches for ``key`` (:func:`advisor.sampling.sample`), a
    single-channel generator's replicated to RGB."""
    for images in sample(
        generator,
        list(key.seeds),
        batch_size=batch_size,
        truncation_psi=key.truncation_psi,
        noise_mode=key.noise_mode,
        device=device,
    ):
        yield images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images


def seeds_text(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the ``--seeds`` syntax), for protocols and reports."""
    parts: list[str] = []
    values = list(seeds)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)
