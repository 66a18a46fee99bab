"""advisor's feature cache: features (and labels of features) stored under what determines them.

- :class:`ImageSetKey`, image-set content: the feature file format, the decode policy, the
  sha256 of every file's bytes in order (:meth:`advisor.images.ImageSet.content_hash`) and the
  extractor protocol. :class:`ImageSetFeatureStore` keeps one feature file per key in
  ``<cache>/features/<digest>.npz``.
- :class:`SampleKey`, generator samples: the sha256 of the checkpoint's tensor file, the seeds,
  the noise mode, the truncation psi, the sampler version and the extractor protocol.
  :class:`SampleFeatureStore` keeps ``<cache>/samples/<digest>.npz`` (rows named ``seed<N>``,
  ``source`` recording the key) and a preview of the first images (uint8, for report grids) as
  ``<digest>.preview.npy``.
- :class:`LabelKey`, surrogate classes of a feature set (k-means for ``--classes K``): the
  sha256 of the features themselves (dtype, shape, bytes), K, the seed and the clustering
  method with its library version. :class:`LabelStore` keeps ``<cache>/labels/<digest>.npy``
  (int64 [N]), so a second ranking or comparison against the same unlabelled target reuses
  its classes instead of clustering again.

The stores have one shape: ``Store(root=None)`` (None: the folder in advisor's cache),
``get(key)`` (None for a miss) and ``put(key, ...)``. Feature entries are feature files written
atomically (:func:`advisor.features.files.write_npz`) and read back through the hardened
:func:`advisor.features.files.load_features`; label entries are plain int64 ``.npy`` arrays,
written atomically and read without unpickling. Every entry must match its key (protocol, and
for samples the seeds and source; for labels the row count and K), so a damaged, foreign or
stale entry is a miss that the next ``put`` replaces. The cache is best effort: a folder that
cannot be used or written costs a warning, never the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advisor.cache import atomic_write_bytes, cache_dir, os_reason, read_small_file
from advisor.errors import AdvisorError
from advisor.features.base import FeatureProtocol
from advisor.features.files import FORMAT, FeatureSet, load_features, write_npz
from advisor.images import DECODE_POLICY, ImageSet
from advisor.networks import NOISE_MODES
from advisor.sampling import SAMPLER_VERSION, check_truncation

__all__ = [
    "PREVIEW_IMAGES",
    "ImageSetFeatureStore",
    "ImageSetKey",
    "LabelKey",
    "LabelStore",
    "SampleFeatureStore",
    "SampleKey",
]

#: Images kept per sample entry for report grids.
PREVIEW_IMAGES = 16
#: Largest preview file read back.
_MAX_PREVIEW_BYTES = 64 * 2**20


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ImageSetKey:
    """Everything that determines the features of an image set.

    ``content_hash``: :meth:`advisor.images.ImageSet.content_hash` (file bytes in order, not
    names or paths); ``protocol``: the extractor's protocol; ``decode_policy`` and
    ``file_format``: how files become pixels and how features are stored (the defaults are this
    version's).
    """

    content_hash: str
    protocol: FeatureProtocol
    decode_policy: str = DECODE_POLICY
    file_format: str = FORMAT

    @classmethod
    def of(cls, image_set: ImageSet, protocol: FeatureProtocol) -> ImageSetKey:
        """The key of ``image_set`` under ``protocol`` (reads every file once to hash it)."""
        return cls(content_hash=image_set.content_hash(), protocol=protocol)

    def digest(self) -> str:
        """sha256 hex of the file format, decode policy, content hash and protocol key."""
        parts = (self.file_format, self.decode_policy, self.content_hash, self.protocol.key())
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class SampleKey:
    """Everything that determines the features of a checkpoint's samples.

    ``checkpoint_sha256``: of the tensor file (:func:`advisor.features.samples.checkpoint_sha256`);
    ``seeds``: one per image, in order; ``noise_mode``: ``'const'``, ``'random'`` (seeded per
    image) or ``'none'``; ``truncation_psi``: finite; ``protocol``: the extractor's protocol.
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

    def source(self) -> str:
        """The ``source`` recorded in the entry's feature file."""
        return f"samples of {self.checkpoint_sha256} ({self.digest()})"


@dataclass(frozen=True, kw_only=True)
class LabelKey:
    """Everything that determines surrogate class labels of a feature set.

    ``features_sha256``: :func:`features_sha256` of the features clustered; ``rows``: their
    count N; ``classes``: K; ``seed``; ``method``: how they were clustered, library version
    included (a new version may cluster differently, so its labels are not reused).
    """

    features_sha256: str
    rows: int
    classes: int
    seed: int
    method: str

    @classmethod
    def of(cls, features: np.ndarray, *, classes: int, seed: int, method: str) -> LabelKey:
        return cls(
            features_sha256=features_sha256(features),
            rows=len(features),
            classes=classes,
            seed=seed,
            method=method,
        )

    def digest(self) -> str:
        """sha256 hex of every field."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def features_sha256(features: np.ndarray) -> str:
    """sha256 hex of a feature array's dtype, shape and bytes (row order included): equal
    values of another dtype or layout are other features."""
    x = np.ascontiguousarray(features)
    digest = hashlib.sha256(f"{x.dtype.str} {x.shape}\n".encode())
    digest.update(memoryview(x).cast("B"))
    return digest.hexdigest()


# --- stores ----------------------------------------------------------------------------------


class _Store:
    """The folder of one key kind and its best-effort reads and writes."""

    _subdir: str
    _label: str

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._root = Path(root) if root is not None else None

    def _folder(self) -> Path | None:
        if self._root is not None:
            return self._root
        try:
            return cache_dir(self._subdir)
        except AdvisorError as err:
            self._warn(f"not used ({err})")
            return None

    def _load(self, entry: Path) -> FeatureSet | None:
        """The feature file at ``entry``, or None when absent or not a valid feature file."""
        try:
            if not entry.is_file():
                return None
            return load_features(entry)
        except (AdvisorError, OSError):
            return None

    def _warn(self, problem: str) -> None:
        # One text per problem, whichever entry hit it: repeats are shown once.
        warnings.warn(f"{self._label} {problem}; continuing without it", stacklevel=4)


class ImageSetFeatureStore(_Store):
    """Image-set features under ``root`` (default ``<cache>/features``); best effort."""

    _subdir = "features"
    _label = "feature cache"

    def get(self, key: ImageSetKey) -> FeatureSet | None:
        """The stored feature set (``from_cache`` True, ``source`` as stored) or None."""
        folder = self._folder()
        if folder is None:
            return None
        cached = self._load(folder / f"{key.digest()}.npz")
        if cached is None or cached.protocol != key.protocol:
            return None
        return dataclasses.replace(cached, from_cache=True)

    def put(self, key: ImageSetKey, feature_set: FeatureSet) -> None:
        """Store ``feature_set`` (made under ``key.protocol``) under ``key``."""
        if feature_set.protocol != key.protocol:
            raise ValueError("the feature set was made under another protocol than the key's")
        folder = self._folder()
        if folder is None:
            return
        entry = folder / f"{key.digest()}.npz"
        try:
            write_npz(entry, feature_set)
        except OSError as err:
            self._warn(f"not written ({os_reason(err)} in {entry.parent})")


class SampleFeatureStore(_Store):
    """Sample features under ``root`` (default ``<cache>/samples``); best effort."""

    _subdir = "samples"
    _label = "sample-feature cache"

    def get(self, key: SampleKey) -> tuple[np.ndarray, np.ndarray | None] | None:
        """``(features, preview or None)`` for ``key``, or None for a miss. Anything at the
        entry that is not a valid feature file matching ``key`` is a miss."""
        folder = self._folder()
        if folder is None:
            return None
        digest = key.digest()
        cached = self._load(folder / f"{digest}.npz")
        if (
            cached is None
            or cached.protocol != key.protocol
            or cached.names != key.row_names()
            or cached.source != key.source()
        ):
            return None
        return cached.features, _read_preview(folder / f"{digest}.preview.npy")

    def put(self, key: SampleKey, features: np.ndarray, preview: np.ndarray | None) -> None:
        """Store ``features`` (float32 ``[len(key.seeds), D]``) and an optional preview
        (uint8 ``[m, 3, R, R]``)."""
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
            features=features, protocol=key.protocol, names=key.row_names(), source=key.source()
        )
        try:
            write_npz(folder / f"{digest}.npz", feature_set)
            if preview is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(preview, dtype=np.uint8))
                atomic_write_bytes(folder / f"{digest}.preview.npy", buffer.getvalue())
        except OSError as err:
            self._warn(f"not written ({os_reason(err)} in {folder})")


class LabelStore(_Store):
    """Surrogate class labels under ``root`` (default ``<cache>/labels``); best effort."""

    _subdir = "labels"
    _label = "label cache"

    def get(self, key: LabelKey) -> np.ndarray | None:
        """The stored labels, int64 [key.rows] in 0..key.classes-1, or None for a miss
        (absent, or anything at the entry that is not such an array)."""
        folder = self._folder()
        if folder is None:
            return None
        path = folder / f"{key.digest()}.npy"
        try:
            data = read_small_file(path, max_bytes=8 * key.rows + 4096)  # the header is ~128
            labels = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if (
            labels.dtype != np.int64
            or labels.shape != (key.rows,)
            or labels.min(initial=0) < 0
            or labels.max(initial=0) >= key.classes
        ):
            return None
        return labels

    def put(self, key: LabelKey, labels: np.ndarray) -> None:
        """Store ``labels`` (integers [key.rows] in 0..key.classes-1) under ``key``."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (key.rows,):
            raise ValueError(f"labels {labels.shape} do not fit {key.rows} rows")
        folder = self._folder()
        if folder is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, labels, allow_pickle=False)
        try:
            atomic_write_bytes(folder / f"{key.digest()}.npy", buffer.getvalue())
        except OSError as err:
            self._warn(f"not written ({os_reason(err)} in {folder})")


def _read_preview(path: Path) -> np.ndarray | None:
    """The preview array, or None when absent or not a small uint8 NCHW RGB array."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_PREVIEW_BYTES:
            return None
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
        return None
    return array
