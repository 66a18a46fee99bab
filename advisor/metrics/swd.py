"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, ProGAN).

Pure functions over image arrays: uint8 ``[N, 3, H, W]`` RGB (H = W, the contract everywhere in
advisor), no feature network. The protocol, as the paper describes it:

*Pyramid.* Levels from the image size down to 16 px, halving each time (a 64 px set has levels
64, 32, 16). Level ``l`` of the Laplacian pyramid is ``G_l - up(G_{l+1})`` with ``G_0`` the image
in float (0..255) and ``G_{l+1} = down(G_l)``; the last level is ``G_L`` itself. ``down``
blurs with the 5x5 binomial kernel ``[1, 4, 6, 4, 1]^2 / 256`` and keeps every second pixel;
``up`` puts the pixels on a grid twice as fine (zeros between) and blurs with 4x that kernel
(OpenCV's ``pyrDown``/``pyrUp``); borders are mirrored (``scipy.ndimage`` ``mirror``).

*Descriptors.* Per image and level, 128 neighbourhoods of 7x7 pixels at uniformly drawn
positions (fully inside the level), each flattened to a 147-d descriptor (3 x 7 x 7). Each set's
descriptors at a level are normalised per colour channel to zero mean and unit std (over all its
descriptors and the 49 positions), each set by its own statistics, as the paper does.

*Distance.* 512 random directions (Gaussian, unit length) repeated 4 times: per repeat, both
sets' descriptors are projected on the directions, sorted per direction, and the mean absolute
difference of sorted projections is the repeat's sliced W1; the level's SWD is the mean over
repeats, and ``mean`` is the mean over levels. ProGAN reports values x 1e3; advisor reports
them as computed (x 1).

*Randomness and sizes.* Everything is drawn from ``np.random.default_rng([seed, level])``: the
patch positions of both sets come from the same draws (paired, so two identical sets give
exactly 0 and differences are not patch-sampling noise), then the directions. Sets of unequal
size are first cut to a seeded random subset of the smaller size (equal descriptor counts, as
the sorted-sample formula needs). Both sets must have the same resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Smallest pyramid level, in pixels (the paper's 16 px).
MIN_LEVEL_SIZE = 16
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


@dataclass(frozen=True, kw_only=True)
class SWDOptions:
    """SWD's protocol: ``patch`` side (7), ``patches_per_image`` (128), ``directions`` per
    repeat (512), ``repeats`` (4), ``seed``. Validated on construction (``ValueError``)."""

    patch: int = 7
    patches_per_image: int = 128
    directions: int = 512
    repeats: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{item.name} must be an integer, got {value!r}")
        if self.patch < 1 or self.patch % 2 == 0 or self.patch > MIN_LEVEL_SIZE:
            raise ValueError(f"patch must be odd and 1..{MIN_LEVEL_SIZE}, got {self.patch}")
        for name in ("patches_per_image", "directions", "repeats"):
            if not 1 <= getattr(self, name) <= 100_000:
                raise ValueError(f"{name} must be 1..100000, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be 0..2^32-1, got {self.seed}")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def pyramid_levels(size: int) -> tuple[int, ...]:
    """Level sizes from ``size`` down to 16 px, halving: 64 -> (64, 32, 16)."""
    levels = []
    while size >= MIN_LEVEL_SIZE:
        levels.append(size)
        if size % 2:
            break
        size //= 2
    return tuple(levels)


#: Images per chunk when building pyramids, and floats per block of projections (both bound
#: memory only; neither changes a result).
_IMAGE_CHUNK = 64
_PROJECTION_BLOCK = 1 << 24


def _blur(x: np.ndarray, gain: float) -> np.ndarray:
    """The separable 5x5 binomial blur x ``gain`` of float32 NCHW ``x`` with mirrored borders
    (``d c b | a b c d | c b a``, scipy's ``mirror``, OpenCV's default ``BORDER_REFLECT_101``)."""
    k = (_BINOMIAL * gain).astype(np.float32)
    x = ndimage.correlate1d(x, k, axis=2, mode="mirror")
    return ndimage.correlate1d(x, _BINOMIAL.astype(np.float32), axis=3, mode="mirror")


def _down(x: np.ndarray) -> np.ndarray:
    return _blur(x, 1.0)[:, :, ::2, ::2]


def _up(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.zeros((n, c, 2 * h, 2 * w), dtype=x.dtype)
    out[:, :, ::2, ::2] = x
    return _blur(out, 4.0)


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """float32 Laplacian pyramid of uint8/float ``images`` [N, C, H, W]: ``levels`` arrays,
    finest first (band-pass levels ``G_l - up(G_{l+1})``, then the coarsest ``G``)."""
    gauss = [np.asarray(images, dtype=np.float32)]
    for _ in range(1, levels):
        gauss.append(_down(gauss[-1]))
    bands = [g - _up(nxt) for g, nxt in zip(gauss[:-1], gauss[1:], strict=True)]
    return [*bands, gauss[-1]]


def _patches(level: np.ndarray, positions: tuple[np.ndarray, np.ndarray], patch: int) -> np.ndarray:
    """Descriptors [N * P, C, patch, patch] at top-left ``positions`` (each [N, P])."""
    ys, xs = positions
    n, p = ys.shape
    offsets = np.arange(patch)
    img = np.repeat(np.arange(n), p)[:, None, None, None]
    chan = np.arange(level.shape[1])[None, :, None, None]
    rows = (ys.reshape(-1)[:, None] + offsets)[:, None, :, None]
    cols = (xs.reshape(-1)[:, None] + offsets)[:, None, None, :]
    return level[img, chan, rows, cols]


def _band(images: np.ndarray, depth: int | None, levels: int) -> np.ndarray:
    """One level of the float32 Laplacian pyramid of ``images`` (:func:`laplacian_pyramid`,
    equal to its entry) without the others: band ``depth`` (0: finest), ``G_depth -
    up(G_depth+1)``, or None for ``G_(levels-1)``, the coarsest Gaussian level."""
    last = levels - 1 if depth is None else depth + 1
    gauss = np.asarray(images, dtype=np.float32)
    below = gauss
    for _ in range(last):
        gauss, below = below, _down(below)
    return below if depth is None else gauss - _up(below)


def _level_descriptors(
    images: np.ndarray,
    depth: int | None,
    levels: int,
    positions: tuple[np.ndarray, np.ndarray],
    patch: int,
) -> np.ndarray:
    """Normalised descriptors [N * P, C * patch^2] of one pyramid level of the uint8
    ``images``: band ``depth`` (0: finest), or None for the coarsest Gaussian level of a
    ``levels``-level pyramid. Built in chunks of images, so one level is held at a time."""
    parts = []
    for start in range(0, len(images), _IMAGE_CHUNK):
        rows = slice(start, start + _IMAGE_CHUNK)
        band = _band(images[rows], depth, levels)
        parts.append(_patches(band, (positions[0][rows], positions[1][rows]), patch))
    return _normalise(np.concatenate(parts))


def _normalise(desc: np.ndarray) -> np.ndarray:
    """Per-channel zero mean, unit std over descriptors and positions; flattened to [M, F]."""
    mean = desc.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    desc = desc - mean.astype(np.float32)
    std = desc.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    desc /= np.where(std > 0, std, 1.0)  # a constant channel stays 0 rather than NaN
    return desc.reshape(len(desc), -1)


def sliced_wasserstein(
    a: np.ndarray, b: np.ndarray, *, directions: int, repeats: int, rng: np.random.Generator
) -> float:
    """Sliced W1 between two equal-size point sets ``a``, ``b`` [M, F] (float).

    Per repeat, ``directions`` Gaussian directions (float64 draws) normalised to unit length;
    per direction the W1 of the two projected samples (float32 products, as ProGAN's) is the
    mean |difference| of their sorted values; the result is the mean over directions and
    repeats, accumulated in float64. For F = 1 every direction is +-1, so it equals the 1-D
    W1 of the two samples.

    All repeats' directions are drawn first (the same draws, in the same order, as one repeat
    at a time) and projected in blocks that may span repeats: one matrix product per set and
    block, one in-place sort per projected row.
    """
    if a.ndim != 2 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need two point sets of equal shape [M, F], got {a.shape}, {b.shape}")
    a32 = np.ascontiguousarray(a, dtype=np.float32)
    b32 = np.ascontiguousarray(b, dtype=np.float32)
    dirs = np.empty((repeats * directions, a.shape[1]), dtype=np.float32)
    for r in range(repeats):
        draw = rng.standard_normal((a.shape[1], directions))
        draw /= np.sqrt(np.sum(draw * draw, axis=0, keepdims=True))
        dirs[r * directions : (r + 1) * directions] = draw.T
    sums = np.empty(len(dirs), dtype=np.float64)  # per direction: sum |sorted a - sorted b|
    block = max(1, _PROJECTION_BLOCK // len(a))
    for start in range(0, len(dirs), block):
        d = dirs[start : start + block]
        # [block, M]: each direction's projections contiguous, sorted in place (numpy's
        # SIMD sort); the difference and its absolute value reuse pa's memory.
        pa, pb = d @ a32.T, d @ b32.T
        pa.sort(axis=1)
        pb.sort(axis=1)
        np.subtract(pa, pb, out=pa)
        np.abs(pa, out=pa)
        sums[start : start + len(d)] = pa.sum(axis=1, dtype=np.float64)
    per_repeat = sums.reshape(repeats, directions).sum(axis=1) / (len(a) * directions)
    return float(np.mean(per_repeat))


@dataclass(frozen=True, kw_only=True)
class SWDResult:
    """SWD per pyramid level (``per_level``: (size in px, value), finest first) and their
    ``mean``; ``n``: images per set used; ``options``: the protocol."""

    per_level: tuple[tuple[int, float], ...]
    mean: float
    n: int
    resolution: int
    options: SWDOptions
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.mean,
            "per_level": {str(size): value for size, value in self.per_level},
            "n": self.n,
            "resolution": self.resolution,
            "options": self.options.to_dict(),
            "convention": "Karras et al. 2018: Laplacian pyramid down to 16 px, 7x7 patches, "
            "per-channel normalised per set, sliced W1 (x1, not ProGAN's x1e3); paired patch "
            "positions",
            "notes": list(self.notes),
        }


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise ValueError(
            f"{name} images must be uint8 [N, 3, S, S] RGB, got {x.dtype} {tuple(x.shape)}"
        )
    if x.shape[2] < MIN_LEVEL_SIZE:
        raise ValueError(f"SWD needs images of at least {MIN_LEVEL_SIZE} px, got {x.shape[2]}")
    if len(x) < 2:
        raise ValueError(f"SWD needs at least 2 {name} images, got {len(x)}")
    return x


def swd(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    options: SWDOptions = SWDOptions(),  # noqa: B008 (frozen)
) -> SWDResult:
    """SWD between two image sets, uint8 [N, 3, S, S] each (same S); see the module docstring.

    Raises ``ValueError`` (one line) for other shapes or dtypes, different resolutions, fewer
    than 2 images, or images smaller than 16 px.
    """
    x, y = _check_images(reference, "reference"), _check_images(candidate, "candidate")
    if x.shape[2] != y.shape[2]:
        raise ValueError(
            f"SWD needs both sets at one resolution, got {x.shape[2]} and {y.shape[2]} px"
        )
    o = options
    n = min(len(x), len(y))
    notes = []
    if len(x) != len(y):
        pick = np.random.default_rng([o.seed, 2**31])
        x = x[np.sort(pick.permutation(len(x))[:n])]
        y = y[np.sort(pick.permutation(len(y))[:n])]
        notes.append(f"the larger set was cut to a seeded subset of {n} images (equal sizes)")
    sizes = pyramid_levels(x.shape[2])
    per_level = []
    for level, size in enumerate(sizes):
        rng = np.random.default_rng([o.seed, level])
        span = size - o.patch + 1
        positions = (
            rng.integers(0, span, size=(n, o.patches_per_image)),
            rng.integers(0, span, size=(n, o.patches_per_image)),
        )
        # The last level is the coarsest Gaussian level of a pyramid with len(sizes) levels.
        depth = level if level < len(sizes) - 1 else None
        da = _level_descriptors(x, depth, len(sizes), positions, o.patch)
        db = _level_descriptors(y, depth, len(sizes), positions, o.patch)
        value = sliced_wasserstein(da, db, directions=o.directions, repeats=o.repeats, rng=rng)
        per_level.append((size, value))
    return SWDResult(
        per_level=tuple(per_level),
        mean=float(np.mean([v for _, v in per_level])),
        n=n,
        resolution=int(x.shape[2]),
        options=o,
        notes=tuple(notes),
    )
