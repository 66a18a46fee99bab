"""Synthetic targets for the benchmarks: folders of uniform-noise RGB images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_noise_images(folder: Path, count: int, *, size: int, rng: np.random.Generator) -> Path:
    """``count`` PNGs of uniform noise (``size`` x ``size`` RGB, drawn from ``rng`` one image
    after another) in the new folder ``folder``, named ``00000.png``, ``00001.png``, ...;
    returns ``folder``."""
    folder.mkdir()
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    return folder
