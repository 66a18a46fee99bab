"""Generator samples by seed: uint8 NCHW batches (the image-set contract) or PNG files.

Every image has its own seed: z is ``np.random.RandomState(seed).randn(z_dim)`` (NVlabs
generate.py's convention, :func:`advisor.networks.z_from_seeds`), constant noise mode uses the
generator's stored noise buffers, and ``'random'`` noise draws from a ``torch.Generator`` seeded
with the image's seed. So an image depends on its seed, the checkpoint and ``truncation_psi``
only, never on the batch it was computed in. Output is quantised as NVlabs does
(:func:`advisor.networks.to_uint8`).

``write_pngs`` names files ``seed%04d.png`` like generate.py. It refuses to overwrite existing
files unless asked (checked before any image is generated); each file is written atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from advisor.cache import atomic_path
from advisor.networks import NOISE_MODES, Generator, to_uint8, z_from_seeds

_SEED_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(text: str) -> list[int]:
    """``"0-63,100,200-210"`` -> ``[0, ..., 63, 100, 200, ..., 210]`` (ranges inclusive).

    Order is kept; duplicates are an error (two files would share a name). ``ValueError`` on
    bad syntax, descending ranges or seeds outside ``[0, 2**32)``.
    """
    seeds: list[int] = []
    for part in text.split(","):
        match = _SEED_PART.match(part)
        if not match:
            raise ValueError(f"bad seed list {text!r}: use e.g. 0-63,100,200-210")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad seed range {part.strip()!r}: the end is below the start")
        if hi >= 2**32:
            raise ValueError(f"seeds must be below 2**32, got {hi}")
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed list {text!r} repeats a seed")
    return seeds


def sample(
    generator: Generator,
    seeds: Sequence[int],
    *,
    batch_size: int = 32,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    device: str | torch.device = "cpu",
) -> Iterator[torch.Tensor]:
    """Yield uint8 NCHW CPU batches of ``generator``'s images, one image per seed, in order.

    Batches hold ``batch_size`` images (the last may hold fewer). ``generator`` is moved to
    ``device`` and run in eval mode without gradients. ``noise_mode``: ``'const'`` (default,
    NVlabs generate.py's), ``'random'`` (seeded per image) or ``'none'``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    device = torch.device(device)
    generator = generator.to(device).eval()
    z_dim = generator.config.z_dim
    for start in range(0, len(seeds), batch_size):
        chunk = [int(s) for s in seeds[start : start + batch_size]]
        z = z_from_seeds(chunk, z_dim).to(device)
        noise = None
        if noise_mode == "random":
            noise = [torch.Generator(device=device).manual_seed(s) for s in chunk]
        with torch.inference_mode():
            images = generator(
                z, truncation_psi=truncation_psi, noise_mode=noise_mode, noise_generator=noise
            )
        yield to_uint8(images).cpu()


def png_paths(out_dir: str | os.PathLike[str], seeds: Sequence[int]) -> list[Path]:
    """The files ``write_pngs`` writes: ``out_dir/seed%04d.png`` per seed."""
    return [Path(out_dir) / f"seed{int(s):04d}.png" for s in seeds]


def write_pngs(
    generator: Generator,
    seeds: Sequence[int],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> list[Path]:
    """Write one PNG per seed into ``out_dir`` (created); returns the paths in seed order.

    Raises ``FileExistsError`` before generating anything if a target exists and not
    ``overwrite``. Single-channel generators write greyscale PNGs.
    """
    paths = png_paths(out_dir, seeds)
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            raise FileExistsError(
                f"{len(existing)} of the PNGs exist already (e.g. {existing[0]}); "
                "choose another folder or allow overwriting"
            )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    index = 0
    for batch in sample(
        generator,
        seeds,
        batch_size=batch_size,
        truncation_psi=truncation_psi,
        noise_mode=noise_mode,
        device=device,
    ):
        for image in batch.numpy():
            _write_png(paths[index], image)
            index += 1
    return paths


def _write_png(path: Path, image: np.ndarray) -> None:
    """One uint8 CHW image -> PNG, atomically."""
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    pil = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
