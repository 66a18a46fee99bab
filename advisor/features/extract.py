"""The one extraction path: uint8 NCHW RGB batches (from disk or a generator) -> float32 [N, D].

Where images come from is not this module's business: :func:`extract_features` takes a built
extractor and any iterable of batches, so decoded image sets (:mod:`advisor.features.pipeline`)
and generator samples (:mod:`advisor.features.samples`) go through the same code, the same
resize (the extractor's, :func:`advisor.images.resize_uint8`) and the same network.

:class:`SharedExtractor` builds an extractor at most once per device, and only when a batch
actually needs it, so ranking N checkpoints against a target builds (and hashes the weights
of) one extractor, and a run served entirely from caches builds none.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

import numpy as np
import torch

from advisor.devices import resolve_device
from advisor.errors import AdvisorError
from advisor.features import extractor_protocol, get_extractor
from advisor.features.base import FeatureExtractor, FeatureProtocol
from advisor.progress import Reporting

__all__ = ["SharedExtractor", "extract_features", "logits_of"]

#: Feature rows per block when logits are computed from features (bounds memory only).
LOGIT_BLOCK_ROWS = 4096


def extract_features(
    extractor: FeatureExtractor,
    batches: Iterable[torch.Tensor],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Features of every image in ``batches``, in order.

    Args:
        extractor: a built extractor (see :func:`advisor.features.get_extractor`); it resizes
            batches that are not at its input size and moves them to its device.
        batches: uint8 ``[n, 3, H, W]`` RGB tensors, 0..255, on any device; batch sizes may
            differ. Batch boundaries never change a feature row.
        on_batch: called with each batch's image count after it is done (progress reporting).

    Returns:
        float32 ``[N, D]`` numpy array, N the total image count (``[0, D]`` for no batch).
    """
    rows: list[np.ndarray] = []
    for images in batches:
        rows.append(extractor(images).float().cpu().numpy())
        if on_batch is not None:
            on_batch(int(images.shape[0]))
    if not rows:
        return np.zeros((0, extractor.protocol.dim), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32, copy=False)


class SharedExtractor:
    """An extractor by name, built on first use, once per device; safe to share across threads.

    ``protocol`` is known at construction without building the network (it hashes the weights
    file, memoised across runs, and for ``inception`` downloads the weights if they are not
    cached), so cache lookups can happen before anything is built. ``built`` counts the
    networks built so far (tests and benchmarks read it).
    """

    def __init__(
        self,
        name: str,
        *,
        weights: str | os.PathLike[str] | None = None,
        precision: str = "fp32",
        offline: bool | None = None,
        progress: Reporting = True,
    ) -> None:
        self.name = name
        self.weights = weights
        self.precision = precision
        self.offline = offline
        self.progress = progress
        self.protocol: FeatureProtocol = extractor_protocol(
            name, weights=weights, precision=precision, offline=offline, progress=progress
        )
        self._built: dict[str, FeatureExtractor] = {}
        self._lock = threading.Lock()

    @property
    def built(self) -> int:
        return len(self._built)

    def on(self, device: str | torch.device) -> FeatureExtractor:
        """The extractor on ``device`` (resolved; "auto" allowed), built the first time."""
        key = str(resolve_device(device))
        with self._lock:
            extractor = self._built.get(key)
            if extractor is None:
                extractor = get_extractor(
                    self.name,
                    weights=self.weights,
                    precision=self.precision,
                    device=key,
                    offline=self.offline,
                    progress=self.progress,
                )
                self._built[key] = extractor
        return extractor


def logits_of(
    shared: SharedExtractor,
    features: np.ndarray,
    *,
    protocol: FeatureProtocol | None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Classifier logits of features made under ``protocol``: float32 ``[N, head_classes]``.

    The second output of the one extraction path: every extractor's head is linear on its
    pooled features (:meth:`FeatureExtractor.head_logits`), so logits come from the features
    (fresh or cached) through ``shared``'s network on ``device``, and no image is read twice.
    ``protocol`` (the features' own, None when unknown) must name ``shared``'s network and
    weights; a mismatch is an :class:`AdvisorError`, since another network's head would give
    meaningless logits.
    """
    if protocol is None:
        raise AdvisorError(
            "logits need features of known protocol (a .npz from advisor), not a plain .npy"
        )
    ours = shared.protocol
    if (protocol.extractor, protocol.weights_sha256, protocol.dim) != (
        ours.extractor,
        ours.weights_sha256,
        ours.dim,
    ):
        raise AdvisorError(
            f"these features were made with {protocol.extractor} (weights "
            f"{protocol.weights_sha256[:12]}), not {ours.extractor} (weights "
            f"{ours.weights_sha256[:12]}); logits need the head of the same network"
        )
    network = shared.on(device)
    blocks = [
        network.head_logits(
            torch.from_numpy(np.ascontiguousarray(features[i : i + LOGIT_BLOCK_ROWS]))
        )
        .cpu()
        .numpy()
        for i in range(0, len(features), LOGIT_BLOCK_ROWS)
    ]
    if not blocks:
        return np.zeros((0, network.head_classes or 0), dtype=np.float32)
    return np.concatenate(blocks).astype(np.float32, copy=False)
