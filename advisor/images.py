"""Image sets: folders, zips and file lists -> uint8 NCHW RGB batches.

(Skeleton: the loader is being written; ``resize_uint8`` is the protocol's one resize.)
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

#: Name recorded in every feature protocol for the resize below.
RESIZE_POLICY = "pil-bicubic-antialias"


def resize_uint8(images: torch.Tensor | np.ndarray, size: int) -> torch.Tensor | np.ndarray:
    """Resize a uint8 NCHW RGB batch to ``size`` x ``size`` with PIL's antialiased bicubic filter.

    This is the single resize of advisor's feature protocol (clean-fid's "clean" choice: PIL
    bicubic, whose kernel widens when downsampling, so it antialiases). It is used both for
    images decoded from disk and for generator samples, so the two meet the same protocol.
    Returns the same type as given (torch tensor or numpy array), uint8 NCHW; a batch already
    at ``size`` is returned unchanged.
    """
    if images.dtype not in (torch.uint8, np.uint8) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected uint8 NCHW RGB images, got {images.dtype} {tuple(images.shape)}"
        )
    n, _, h, w = images.shape
    if h == size and w == size:
        return images
    is_torch = isinstance(images, torch.Tensor)
    array = images.cpu().numpy() if is_torch else images
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        out[i] = resize_hwc(np.ascontiguousarray(array[i].transpose(1, 2, 0)), size).transpose(
            2, 0, 1
        )
    return torch.from_numpy(out) if is_torch else out


def resize_hwc(image: np.ndarray, size: int) -> np.ndarray:
    """Resize one uint8 HWC RGB image to ``size`` x ``size`` (PIL bicubic, antialiased)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    pil = Image.fromarray(image, mode="RGB")
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None))
