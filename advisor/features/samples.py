"""Generator samples -> features, with a typed sample-feature cache.

The second key kind of advisor's feature cache (the first, image-set content, lives in
:mod:`advisor.features.pipeline`). An entry is keyed by :class:`SampleKey`: the sha256 of the
checkpoint's tensor file, the seeds, the noise mode, the truncation psi, the sampler version and
the extractor protocol key. Re-ranking the same zoo against a new target therefore generates
nothing, and :func:`sample_features` on a hit builds neither a generator nor an extractor.

Entries are feature files (``<cache>/samples/<digest>.npz``, written atomically through
:func:`advisor.features.files.write_npz`) whose rows are named ``seed<N>`` and whose ``source``
records the key; they are read back through the hardened :func:`load_features` and must match
the key (protocol, seeds, row count), so a damaged, foreign or stale entry is a miss that gets
replaced. A preview of the first images (uint8, for report grids) is kept beside the entry as
``<digest>.preview.npy``. The cache is best effort: a cache that cannot be read or written costs
a warning, never the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advisor.cache import atomic_write_bytes, cache_dir, os_reason
from advisor.errors import AdvisorError
from advisor.features.base import FeatureProtocol, weights_sha256
from advisor.features.extract import SharedExtractor, extract_features
from advisor.features.files import FeatureSet, load_features, write_npz
from advisor.networks import NOISE_MODES, Generator
from advisor.sampling import check_truncation, sample

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

#: Changes whenever the sampler could give other pixels for the same (checkpoint, seed, noise
#: mode, truncation): z from ``RandomState(seed)``, per-image noise generators, NVlabs
#: quantisation, gray generators replicated to RGB.
SAMPLER_VERSION = "advisor-sampler/1"
#: Images kept per entry for report grids.
PREVIEW_IMAGES = 16
_SUBDIR = "samples"


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
class SampleKey:
    """Everything that determines the features of a checkpoint's samples.

    ``checkpoint_sha256``: of the tensor file (:func:`checkpoint_sha256`); ``seeds``: one per
    image, in order; ``noise_mode``: ``'const'``, ``'random'`` (seeded per image) or
    ``'none'``; ``truncation_psi``: finite; ``protocol``: the extractor's protocol.
    """

    checkpoint_sha256: str
    seeds: tuple[int, ...]
    noise_mode: str
    truncation_psi: float
    protocol: FeatureProtocol
    sampler_version: str = SAMPLER_VERSION

    def __post_init__(self) -> None:
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        check_truncation(self.truncation_psi)
        if not self.seeds:
            raise ValueError("a sample key needs at least one seed")

    def digest(self) -> str:
        """sha256 hex of every field (seeds hashed in order; psi as its exact float repr)."""
        seeds = hashlib.sha256(np.asarray(self.seeds, dtype=np.uint64).tobytes()).hexdigest()
        parts = {
            "checkpoint_sha256": self.checkpoint_sha256,
            "seeds": seeds,
            "n": len(self.seeds),
            "noise_mode": self.noise_mode,
            "truncation_psi": float(self.truncation_psi).hex(),
            "sampler_version": self.sampler_version,
            "protocol": self.protocol.key(),
        }
        blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def row_names(self) -> tuple[str, ...]:
        return tuple(f"seed{s}" for s in self.seeds)


@dataclass(frozen=True)
class SampleFeatures:
    """Features of a checkpoint's samples: float32 ``[len(seeds), D]``, row i from seed i.

    ``preview``: uint8 ``[m, 3, R, R]`` RGB, the first ``m <= PREVIEW_IMAGES`` samples (None when
    a cache entry lost its preview). ``from_cache``: no generator or extractor was run.
    ``generate_s`` / ``extract_s``: seconds spent generating and extracting (0 on a hit).
    """

    features: np.ndarray
    key: SampleKey
    preview: np.ndarray | None
    from_cache: bool
    generate_s: float = 0.0
    extract_s: float = 0.0


class SampleFeatureStore:
    """The sample-feature cache under ``root`` (default ``<cache>/samples``); best effort."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._root = Path(root) if root is not None else None

    def _folder(self) -> Path | None:
        if self._root is not None:
            return self._root
        try:
            return cache_dir(_SUBDIR)
        except AdvisorError as err:
            _warn(f"not used ({err})")
            return None

    def get(self, key: SampleKey) -> tuple[np.ndarray, np.ndarray | None] | None:
        """``(features, preview or None)`` for ``key``, or None for a miss. Anything at the
        entry that is not a valid feature file matching ``key`` is a miss."""
        folder = self._folder()
        if folder is None:
            return None
        digest = key.digest()
        entry = folder / f"{digest}.npz"
        try:
            if not entry.is_file():
                return None
            cached = load_features(entry)
        except (AdvisorError, OSError):
            return None
        if (
            cached.protocol != key.protocol.to_dict()
            or cached.names != key.row_names()
            or cached.source != _source(key)
        ):
            return None
        return cached.features, _read_preview(folder / f"{digest}.preview.npy")

    def put(self, key: SampleKey, features: np.ndarray, preview: np.ndarray | None) -> None:
        """Store ``features`` (float32 ``[len(key.seeds), D]``) and an optional preview."""
        if features.shape != (len(key.seeds), key.protocol.dim):
            raise ValueError(
                f"features {features.shape} do not fit {len(key.seeds)} seeds x "
                f"{key.protocol.dim} dims"
            )
        folder = self._folder()
        if folder is None:
            return
        digest = key.digest()
        feature_set = FeatureSet(
            features=features,
            protocol=key.protocol.to_dict(),
            names=key.row_names(),
            source=_source(key),
        )
        try:
            write_npz(folder / f"{digest}.npz", feature_set)
            if preview is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(preview, dtype=np.uint8))
                atomic_write_bytes(folder / f"{digest}.preview.npy", buffer.getvalue())
        except OSError as err:
            _warn(f"not written ({os_reason(err)} in {folder})")


def sample_features(
    key: SampleKey,
    *,
    load_generator: Callable[[], Generator],
    extractor: SharedExtractor,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    store: SampleFeatureStore | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> SampleFeatures:
    """Features of ``key.seeds`` samples of a checkpoint, from the cache when possible.

    On a miss, ``load_generator()`` gives the checkpoint's ``G_ema`` (whose file
    ``key.checkpoint_sha256`` hashes); its samples (uint8 NCHW, per-image seeds, see
    :func:`advisor.sampling.sample`; single-channel output replicated to RGB) go through
    :func:`extract_features` with ``extractor.on(device)``, and the result is stored.
    ``store`` None: the default store; pass ``SampleFeatureStore`` to choose the folder.
    On a hit neither ``load_generator`` nor the extractor is called.
    """
    if extractor.protocol != key.protocol:
        raise ValueError("the extractor's protocol is not the key's")
    store = store if store is not None else SampleFeatureStore()
    hit = store.get(key)
    if hit is not None:
        features, preview = hit
        return SampleFeatures(features=features, key=key, preview=preview, from_cache=True)
    generator = load_generator()
    network = extractor.on(device)
    preview: list[torch.Tensor] = []
    timing = {"generate": 0.0}

    def batches() -> Iterator[torch.Tensor]:
        stream = sample(
            generator,
            list(key.seeds),
            batch_size=batch_size,
            truncation_psi=key.truncation_psi,
            noise_mode=key.noise_mode,
            device=device,
        )
        while True:
            start = time.perf_counter()
            images = next(stream, None)
            timing["generate"] += time.perf_counter() - start
            if images is None:
                return
            if images.shape[1] == 1:
                images = images.expand(-1, 3, -1, -1).contiguous()
            if sum(len(p) for p in preview) < PREVIEW_IMAGES:
                preview.append(images[: PREVIEW_IMAGES - sum(len(p) for p in preview)].clone())
            yield images

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
    )


def _source(key: SampleKey) -> str:
    return f"samples of {key.checkpoint_sha256} ({key.digest()})"


def _read_preview(path: Path) -> np.ndarray | None:
    """The preview array, or None when absent or not a small uint8 NCHW RGB array."""
    try:
        if not path.is_file() or path.stat().st_size > 64 * 2**20:
            return None
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
        return None
    return array


def _warn(problem: str) -> None:
    warnings.warn(f"sample-feature cache {problem}; continuing without it", stacklevel=4)


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
