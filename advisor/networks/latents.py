"""Seeds -> latents, and generator output <-> uint8 images, by NVlabs' conventions.

- ``z_from_seeds``: NVlabs generate.py draws ``np.random.RandomState(seed).randn(1, z_dim)``
  (float64) per seed; the mapping network casts it to float32. Same seed, same z, so an imported
  checkpoint gives the same image in advisor as in the reference tools.
- ``to_uint8``: generate.py and the NVlabs metrics code quantise identically,
  ``(x * 127.5 + 128).clamp(0, 255).to(uint8)``; the cast truncates, so this is
  round-half-up of ``x * 127.5 + 127.5``, mapping [-1, 1] onto 0..255.
- ``from_uint8``: NVlabs' training loop feeds real images to D as ``x / 127.5 - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """One latent per seed: [N, z_dim] float32, row i = ``RandomState(seeds[i]).randn(z_dim)``."""
    rows = []
    for seed in seeds:
        seed = int(seed)
        if not 0 <= seed < 2**32:
            raise ValueError(f"seeds must be in [0, 2**32), got {seed}")
        rows.append(np.random.RandomState(seed).randn(1, z_dim))
    if not rows:
        return torch.empty([0, z_dim], dtype=torch.float32)
    return torch.from_numpy(np.concatenate(rows)).to(torch.float32)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1], NCHW -> uint8 NCHW 0..255 (NVlabs quantisation, see module doc)."""
    if not images.is_floating_point():
        raise ValueError(f"expected floating-point images, got {images.dtype}")
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW 0..255 -> float32 NCHW in [-1, 1] (``x / 127.5 - 1``), the D input scale."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.to(torch.float32) / 127.5 - 1
