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

import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from advisor.cache import atomic_path, os_reason
from advisor.devices import fp32_math, resolve_device
from advisor.errors import AdvisorError
from advisor.networks import NOISE_MODES, Generator, to_uint8, z_from_seeds

#: Changes whenever the sampler could give other pixels for the same (checkpoint, seed, noise
#: mode, truncation): z from ``RandomState(seed)``, per-image noise generators, NVlabs
#: quantisation, gray generators replicated to RGB. Part of every sample-feature cache key.
SAMPLER_VERSION = "advisor-sampler/1"
_SEED_PART = re.compile(r"^\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?$", re.ASCII)
#: Images per generator call: real runs use 32-64; a batch of 1024 at 1024 px is already
#: ~13 GB of float32 output.
MAX_BATCH_SIZE = 1024
#: Most images one seed list may ask for: 20x the 50,000 of the FID protocol. The list of
#: seeds and their file names are built up front, so the count is bounded, not streamed.
MAX_SEEDS = 1_000_000
#: Largest |psi|: real use is 0.5-1 (extrapolation rarely beyond 2); larger values overflow
#: float32 w and give saturated or non-finite images.
MAX_TRUNCATION = 100.0


def parse_seeds(text: str) -> list[int]:
    """``"0-63,100,200-210"`` -> ``[0, ..., 63, 100, 200, ..., 210]`` (ranges inclusive).

    Order is kept; duplicates are an error (two files would share a name). ``ValueError`` on
    bad syntax, descending ranges, seeds outside ``[0, 2**32)`` or more than ``MAX_SEEDS``
    seeds in all (counted from the ranges before any list is built).
    """
    ranges: list[tuple[int, int]] = []
    count = 0
    for part in text.split(","):
        match = _SEED_PART.match(part)
        if not match:
            raise ValueError(f"bad seed list {_quoted(text)}: use e.g. 0-63,100,200-210")
        # Checked before int(): a number of thousands of digits is refused, not converted.
        if any(len(g.lstrip("0")) > 10 for g in match.groups() if g):
            raise ValueError(f"seeds must be below 2**32, got {_quoted(part.strip())}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad seed range {_quoted(part.strip())}: the end is below the start")
        if hi >= 2**32:
            raise ValueError(f"seeds must be below 2**32, got {hi}")
        count += hi - lo + 1
        if count > MAX_SEEDS:
            raise ValueError(
                f"seed list {_quoted(text)} asks for more than {MAX_SEEDS:,} images; "
                "split the work into several runs"
            )
        ranges.append((lo, hi))
    seeds = [seed for lo, hi in ranges for seed in range(lo, hi + 1)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed list {_quoted(text)} repeats a seed")
    return seeds


def check_truncation(truncation_psi: float) -> None:
    """``ValueError`` unless ``truncation_psi`` is a finite number (NaN or inf would make every
    image NaN, quantised to black)."""
    if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, int | float):
        raise ValueError(f"truncation psi must be a number, got {type(truncation_psi).__name__}")
    if not math.isfinite(truncation_psi) or abs(truncation_psi) > MAX_TRUNCATION:
        raise ValueError(
            f"truncation psi must be finite and within +-{MAX_TRUNCATION:g}, got {truncation_psi}"
        )


def _quoted(text: str) -> str:
    """``text`` for an error message: quoted, at most 40 characters."""
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


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

    Batches hold ``batch_size`` images (the last may hold fewer; at most ``MAX_BATCH_SIZE``).
    ``generator`` is moved to ``device`` and run in eval mode without gradients or TF32
    (:func:`advisor.devices.fp32_math`).
    ``truncation_psi`` must be finite. ``noise_mode``: ``'const'`` (default, NVlabs
    generate.py's), ``'random'`` (seeded per image) or ``'none'``.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be in [1, {MAX_BATCH_SIZE}], got {batch_size}")
    check_truncation(truncation_psi)
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    device = resolve_device(device)
    generator = generator.to(device).eval()
    z_dim = generator.config.z_dim
    for start in range(0, len(seeds), batch_size):
        chunk = [int(s) for s in seeds[start : start + batch_size]]
        z = z_from_seeds(chunk, z_dim).to(device)
        noise = None
        if noise_mode == "random":
            noise = [torch.Generator(device=device).manual_seed(s) for s in chunk]
        # The numeric mode is part of the sampler, not of the process: no TF32 (fp32_math).
        with torch.inference_mode(), fp32_math():
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
    ``overwrite``. Single-channel generators write greyscale PNGs. Each file is written
    atomically: a failure (a full disk, no permission) leaves the PNGs written so far complete,
    no partial file, and raises :class:`AdvisorError` naming the file and the reason.
    """
    check_truncation(truncation_psi)
    paths = png_paths(out_dir, seeds)
    if not overwrite:
        existing = [p for p in paths if os.path.lexists(p)]
        if existing:
            raise FileExistsError(
                f"{len(existing)} of the PNGs exist already (e.g. {existing[0]}); "
                "choose another folder or allow overwriting"
            )
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AdvisorError(f"cannot create the output folder {out_dir}: {os_reason(err)}") from None
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
    """One uint8 CHW image -> PNG, atomically; an OS failure is one :class:`AdvisorError`."""
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    pil = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format="PNG")
    except OSError as err:
        raise AdvisorError(f"cannot write {path}: {os_reason(err)}") from None
