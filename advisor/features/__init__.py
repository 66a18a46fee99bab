"""Feature extractors by name: uint8 NCHW RGB images -> float32 [N, D] features.

>>> extractor = get_extractor("efficientnet-lite0", precision="fp32", device="cpu")
>>> feats = extractor(images_uint8)             # [N, 1280] float32
>>> extractor.protocol.key()                     # what a features/stats cache is keyed by

Registered: ``inception`` (the FID Inception-v3, 2048-d, weights downloaded once and
sha256-pinned) and ``efficientnet-lite0`` (1280-d, weights shipped in a pip package).
"""

from __future__ import annotations

import os

import torch

from advisor.errors import AdvisorError
from advisor.features import efficientnet as _efficientnet  # noqa: F401  (registers itself)
from advisor.features import inception as _inception  # noqa: F401  (registers itself)
from advisor.features.base import (
    EXTRACTORS,
    PRECISIONS,
    FeatureExtractor,
    FeatureProtocol,
    WeightsFile,
    check_precision,
    register_extractor,
)
from advisor.progress import Reporting

__all__ = [
    "EXTRACTORS",
    "PRECISIONS",
    "FeatureExtractor",
    "FeatureProtocol",
    "WeightsFile",
    "check_extractor",
    "check_precision",
    "extractor_protocol",
    "get_extractor",
    "list_extractors",
    "register_extractor",
]


def list_extractors() -> list[str]:
    """Names accepted by ``--extractor``, sorted."""
    return sorted(EXTRACTORS)


def _extractor_class(name: str) -> type[FeatureExtractor]:
    try:
        return EXTRACTORS[name]
    except (KeyError, TypeError):
        raise AdvisorError(
            f"unknown extractor {name!r}; choose one of {', '.join(list_extractors())}"
        ) from None


def check_extractor(name: str) -> str:
    """Return ``name`` if registered, else raise :class:`AdvisorError` listing the known ones."""
    _extractor_class(name)
    return name


def extractor_protocol(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    offline: bool | None = None,
    progress: Reporting = True,
) -> FeatureProtocol:
    """The protocol ``get_extractor`` would give, without building the network.

    Cheap apart from hashing the weights file (memoised across runs); for ``inception`` it
    downloads the weights if they are not cached yet, since their hash is part of the protocol.
    Raises :class:`AdvisorError` like :func:`get_extractor`.
    """
    cls = _extractor_class(name)
    check_precision(precision)
    found = cls.locate_weights(weights, offline=offline, progress=progress)
    return cls.describe(name=name, weights=found, precision=precision)


def get_extractor(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    offline: bool | None = None,
    progress: Reporting = True,
) -> FeatureExtractor:
    """Build extractor ``name`` with its pretrained weights, in eval mode, on ``device``.

    Args:
        name: a registered name (see :func:`list_extractors`).
        weights: a local weights file to use instead of the default one. For ``inception``
            the default is ``$ADVISOR_INCEPTION_WEIGHTS``, else the cached (downloaded once)
            published file.
        precision: "fp32", or "bf16" (bf16 autocast; features are still float32).
        device: where the network runs; images may come from any device.
        offline: forbid downloads (None: decided by ``ADVISOR_OFFLINE`` / ``HF_HUB_OFFLINE``).
        progress: show a download progress bar.

    Raises:
        AdvisorError: unknown name or precision, missing or unusable weights, offline with
            nothing cached (the message names the ways out).
    """
    cls = _extractor_class(name)
    check_precision(precision)
    found = cls.locate_weights(weights, offline=offline, progress=progress)
    extractor = cls(precision=precision)
    extractor.load_weights(found)
    return extractor.to(torch.device(device))
