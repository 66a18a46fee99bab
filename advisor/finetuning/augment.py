"""Adaptive discriminator augmentation (ADA): StyleGAN2-ADA's ``bgc`` pipeline and its p rule.

Every image D sees (reals and fakes, G and D passes) goes through ``AugmentPipe``; each op fires
per image when a uniform draw is below ``p`` times the op's multiplier (``AugmentConfig``; all 1
for ``bgc``). Facts from NVlabs StyleGAN2-ADA (``training/augment.py``), re-implemented:

- Geometric ops, in this order: x-flip, rotation by a multiple of 90 degrees, integer translation
  (uniform, at most ``xint_max`` of the size, rounded to pixels), isotropic scaling (log2-normal),
  rotation (uniform in +-pi * ``rotate_max``, 1 being the full circle; once before and once after
  the anisotropic scaling, each with probability ``1 - sqrt(1 - p)`` so that P(either) = p),
  anisotropic scaling (log2-normal, x by s and y by 1/s), fractional translation (normal,
  ``xfrac_std`` of the size). They compose one inverse affine matrix per image, in pixels about
  the image centre, mapping an output pixel to the input position it reads (``G_inv = flip @
  rot90 @ xint @ scale @ rot @ aniso @ rot @ xfrac``, each the inverse transform's matrix).
- Colour ops, in this order: brightness (add a normal offset), contrast (multiply by a
  log2-normal factor), luma flip (Householder reflection along the luma axis ``(1, 1, 1) /
  sqrt(3)``), hue (rotation about the luma axis), saturation (scale the part orthogonal to it).
  They compose one 4x4 homogeneous colour matrix per image. Grey images (C = 1) get brightness,
  contrast and luma flip via the mean of its rows, as NVlabs does; hue and saturation need C = 3.

Execution. The integer part of each matrix (flip, rot90, xint) is applied exactly, by one
gather with reflected indices ('reflect' padding: mirror about the edge pixels); with no
fractional op this is the whole geometric stage, so those images are exact pixel permutations.
Images for which a fractional op fired are then resampled once by the fractional part, the way
NVlabs resamples: reflect-pad, 2x upsampling with the orthogonal ``sym6`` wavelet low-pass
filter, bilinear ``grid_sample`` at twice the output resolution, 2x downsampling with the
time-reversed filter (up then down with this pair is the identity). Both filters run as
separable 1-D passes, the upsampling in polyphase form (same result as ``ops.upsample2d`` with
the 12x12 outer-product filter, ~6x less work). Deviations from NVlabs, and why:

1. NVlabs resamples flips and quarter turns through the filters too, which softens them and
   shifts them by ~0.4 px (sym6 is asymmetric); here they are exact. The sampling grid is also
   offset by the filter's low-frequency delay (``_DELAY``, 0.2 px), so that rotations and
   scalings turn about the true centre: a quarter turn through the filters then differs from
   the exact one by a mean 0.004 on smooth images (range 2.8), instead of 0.06.
2. NVlabs reflect-pads each batch by what its transforms reach (up to the image size) and
   reads zeros beyond. Here the padding is fixed per image size (both filters' reach plus 1/8
   of the side: 11 px at 32 px), so an image's result never depends on the rest of its batch
   and the upsampling costs ~3x less at p = 1; positions beyond it are mirrored into the image
   at any distance (no black corners). Far mirrored content then differs from reflect-padding
   by the filter's asymmetry: against padding by the full size, a mean 1.4e-4 (max 0.02) on
   smooth 32 px images, 4e-3 on white noise.
3. The blit's border and the warp's padding mirror the blitted image, not the original, so
   translated-in edges can show a different mirror copy than NVlabs'.

Randomness comes only from the ``torch.Generator`` given to ``forward``: each image takes
``DRAWS_PER_IMAGE`` float64 uniforms (a fixed number, whatever the config and p), so an image's
parameters depend only on the generator state and its position in the batch, and the first k
images of a batch of n are augmented exactly as a batch of k would be (CPU generators). A CPU
generator also keeps the per-image decisions on the CPU, so a CUDA batch never waits on them.
Normal draws are ``sqrt(2) * erfinv(2u - 1)`` of a uniform, which keeps that prefix property.

Every op is linear in the image (affine for brightness), built from ``gather``, ``pad``,
convolutions, ``grid_sample`` (whose double backward w.r.t. its input PyTorch implements) and
``baddbmm``, so gradients w.r.t. the input exist to any order, as R1 needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

#: Low-pass decomposition taps of the Symlet-6 wavelet (orthonormal: unit sum of squares).
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip
#: The ops of the ``bgc`` pipeline, in the order they are applied.
BGC_OPS = (
    "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
    "brightness", "contrast", "lumaflip", "hue", "saturation",
)  # fmt: skip
#: Uniform draws per image per forward: a firing draw and a value draw per op (two rotations),
#: one more for each translation's y; 18 geometric, then 10 colour.
DRAWS_PER_IMAGE = 28
#: 2x samples the downsampling filter reads left of an output pixel's first half (and right of
#: its second): ``ops.downsample2d``'s padding for 12 taps.
_DOWN_LEFT = (len(SYM6) - 1) // 2
#: 1x pixels of input the upsampling filter and the bilinear taps read around a position.
_UP_REACH = len(SYM6) // 4 + 1
_LUMA = (1 / math.sqrt(3),) * 3
#: The filter's low-frequency delay, in 1x pixels: its tap centroid is off the taps' middle.
_DELAY = ((len(SYM6) - 1) / 2 - sum(i * t for i, t in enumerate(SYM6)) / sum(SYM6)) / 2


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Probability multipliers of the ops (0 disables one) and their strengths.

    Defaults are StyleGAN2-ADA's ``bgc`` pipeline. Translations are relative to the image size;
    ``rotate_max`` and ``hue_max`` are ranges in turns (1: angles uniform in [-pi, pi]);
    ``*_std`` of the scalings, contrast and saturation are log2.
    """

    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    xfrac: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    lumaflip: float = 1.0
    hue: float = 1.0
    saturation: float = 1.0
    xint_max: float = 0.125
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"augment option {f.name} must be a finite number >= 0")

    @classmethod
    def only(cls, *names: str) -> AugmentConfig:
        """The ``bgc`` strengths with only the named ops enabled (multiplier 1, others 0)."""
        unknown = sorted(set(names) - set(BGC_OPS))
        if unknown:
            raise ValueError(f"unknown augment op(s) {unknown}; known: {', '.join(BGC_OPS)}")
        return cls(**{op: float(op in names) for op in BGC_OPS})


class AugmentPipe(nn.Module):
    """The ADA pipeline: ``forward(images [N, C, H, W], generator) -> [N, C, H, W]``.

    Images: float32 or float64 in roughly [-1, 1] (half precision is computed in float32 and
    returned in its dtype), C in {1, 3}, H and W >= 2 (>= 5 when a fractional op fires);
    rotate90 needs H - W even. ``p`` is a 0-d float32 buffer (it is in
    ``state_dict``, so a resumed run continues with the same p); set it with ``p.fill_(value)``.
    With p = 0 the input tensor itself is returned.
    """

    p: torch.Tensor

    def __init__(self, config: AugmentConfig | None = None, *, p: float = 0.0) -> None:
        super().__init__()
        self.config = AugmentConfig() if config is None else config
        self.register_buffer("p", torch.tensor(float(p)))
        taps = torch.tensor(SYM6, dtype=torch.float64)
        taps = taps / taps.sum()
        self.register_buffer("taps", taps.float(), persistent=False)
        self.register_buffer("phases", _polyphase(taps).float(), persistent=False)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.4f}, config={self.config}"

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment ``images`` (see the class doc); deterministic given ``generator``'s state."""
        if images.ndim != 4 or images.shape[1] not in (1, 3) or min(images.shape[2:]) < 2:
            raise ValueError(f"expected [N, 1 or 3, H>=2, W>=2] images, got {list(images.shape)}")
        n, c, h, w = images.shape
        dtype = images.dtype
        if dtype not in (torch.float32, torch.float64):
            images = images.float()
        gdev = generator.device
        u = torch.rand([n, DRAWS_PER_IMAGE], generator=generator, dtype=torch.float64, device=gdev)
        p = self.p.detach().to(device=gdev, dtype=torch.float64)
        blit, frac, fired_frac = _geometry(self.config, p, u[:, :18], h, w)
        colour, fired_colour = _colour(self.config, p, u[:, 18:], c)

        out = images
        blit_fired = (blit != torch.eye(3, dtype=blit.dtype, device=gdev)).any(dim=(1, 2))
        if bool(blit_fired.any()):
            if blit[:, 0, 0].abs().ne(1).any() and (h - w) % 2:
                raise ValueError(f"rotate90 needs H - W even, got {h}x{w}")
            out = _blit(images, blit.to(images.device, torch.float32))
        idx = fired_frac.nonzero().squeeze(1)
        if idx.numel():
            if min(h, w) <= _UP_REACH:
                raise ValueError(f"fractional geometric ops need images over {_UP_REACH} pixels")
            g_inv, idx = frac[idx].to(images.device, images.dtype), idx.to(images.device)
            warped = _warp(out[idx], g_inv, self.phases, self.taps)
            out = out.index_copy(0, idx, warped)
        if bool(fired_colour.any()):
            out = _apply_colour(out, colour.to(images.device, images.dtype))
        return out.to(dtype)


Entry = torch.Tensor | float


def _affine(a: Entry, b: Entry, c: Entry, d: Entry, tx: Entry, ty: Entry) -> torch.Tensor:
    """Batched homogeneous 2-D matrices ``[[a, b, tx], [c, d, ty], [0, 0, 1]]`` -> [N, 3, 3];
    the entries are [N] tensors (at least one) or floats."""
    ref = next(v for v in (a, b, c, d, tx, ty) if isinstance(v, torch.Tensor))
    rows = [a, b, tx, c, d, ty, 0.0, 0.0, 1.0]
    rows = [v if isinstance(v, torch.Tensor) else torch.full_like(ref, v) for v in rows]
    return torch.stack(rows, 1).view(-1, 3, 3)


def _normal(u: torch.Tensor) -> torch.Tensor:
    """Standard normal draws from float64 uniforms in [0, 1) (inverse CDF, |z| <= 7)."""
    return math.sqrt(2) * torch.erfinv((2 * u - 1).clamp(-1 + 1e-12, 1 - 1e-12))


def _geometry(
    cfg: AugmentConfig, p: torch.Tensor, u: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse matrices from 18 uniforms per image: (integer part [N, 3, 3], fractional part
    [N, 3, 3], whether a fractional op fired [N] bool). ``G_inv = integer @ fractional``."""
    one = torch.ones_like(u[:, 0])

    def fire(mult: float, col: int) -> torch.Tensor:
        return u[:, col] < p * mult

    # Integer part: x-flip, rotation by k quarter turns, translation by whole pixels.
    flip = torch.where(fire(cfg.xflip, 0) & (u[:, 1] >= 0.5), -one, one)
    k = torch.where(fire(cfg.rotate90, 2), (u[:, 3] * 4).floor(), 0 * one).long()
    cos, sin = one.new_tensor([1, 0, -1, 0])[k], one.new_tensor([0, 1, 0, -1])[k]
    t = (u[:, 5:7] * 2 - 1) * cfg.xint_max * u.new_tensor([w, h])
    t = torch.where(fire(cfg.xint, 4)[:, None], t, 0).round()
    blit = _affine(flip, 0, 0, 1, 0, 0) @ _affine(cos, -sin, sin, cos, 0, 0)
    blit = blit @ _affine(1, 0, 0, 1, -t[:, 0], -t[:, 1])

    # Fractional part: scale, rotate, anisotropic scale, rotate, fractional translation.
    s_fire, s = fire(cfg.scale, 7), torch.exp2(_normal(u[:, 8]) * cfg.scale_std)
    s = torch.where(s_fire, s, one)
    p_rot = 1 - (1 - cfg.rotate * p).clamp(0, 1).sqrt()  # twice: P(either) = rotate * p
    r_fire = [u[:, i] < p_rot for i in (9, 13)]
    angles = [torch.where(f, (u[:, i + 1] * 2 - 1) * math.pi * cfg.rotate_max, 0)
              for f, i in zip(r_fire, (9, 13), strict=True)]  # fmt: skip
    a_fire, a = fire(cfg.aniso, 11), torch.exp2(_normal(u[:, 12]) * cfg.aniso_std)
    a = torch.where(a_fire, a, one)
    f_fire = fire(cfg.xfrac, 15)
    tf = torch.where(f_fire[:, None], _normal(u[:, 16:18]) * cfg.xfrac_std, 0)
    tf = tf * u.new_tensor([w, h])
    rot = [_affine(t.cos(), -t.sin(), t.sin(), t.cos(), 0, 0) for t in angles]
    frac = _affine(1 / s, 0, 0, 1 / s, 0, 0) @ rot[0] @ _affine(1 / a, 0, 0, a, 0, 0) @ rot[1]
    frac = frac @ _affine(1, 0, 0, 1, -tf[:, 0], -tf[:, 1])
    fired = s_fire | a_fire | f_fire | r_fire[0] | r_fire[1]
    return blit, frac, fired


def _colour(
    cfg: AugmentConfig, p: torch.Tensor, u: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour matrices from 10 uniforms per image: ([N, 4, 4] acting on (r, g, b, 1) column
    vectors, whether any colour op fired [N] bool). Hue and saturation only when C = 3."""
    n = u.shape[0]
    eye = torch.eye(4, dtype=u.dtype, device=u.device).expand(n, 4, 4)
    v = u.new_tensor([*_LUMA, 0.0])
    vv = torch.outer(v, v)

    def fire(mult: float, col: int) -> torch.Tensor:
        return u[:, col] < p * mult

    b_fire, c_fire = fire(cfg.brightness, 0), fire(cfg.contrast, 2)
    b = torch.where(b_fire, _normal(u[:, 1]) * cfg.brightness_std, 0)
    c = torch.where(c_fire, torch.exp2(_normal(u[:, 3]) * cfg.contrast_std), 1)
    m = torch.stack([c, c, c, torch.ones_like(c)], 1).diag_embed()  # contrast after brightness:
    m[:, :3, 3] = (c * b)[:, None]  # diag(c, c, c, 1) @ translate(b, b, b)
    l_fire = fire(cfg.lumaflip, 4) & (u[:, 5] >= 0.5)
    m = (eye - 2 * vv * l_fire[:, None, None]) @ m
    fired = b_fire | c_fire | l_fire
    if channels == 3:
        h_fire, s_fire = fire(cfg.hue, 6), fire(cfg.saturation, 8)
        theta = torch.where(h_fire, (u[:, 7] * 2 - 1) * math.pi * cfg.hue_max, 0)
        m = hue_rotation(theta) @ m
        sat = torch.where(s_fire, torch.exp2(_normal(u[:, 9]) * cfg.saturation_std), 1)
        m = (vv + (eye - vv) * sat[:, None, None]) @ m
        fired = fired | h_fire | s_fire
    return m, fired


def hue_rotation(theta: torch.Tensor) -> torch.Tensor:
    """Rotations by ``theta`` [N] radians about the luma axis -> [N, 4, 4] colour matrices.

    Rodrigues' formula ``cos(t) I + sin(t) [v]x + (1 - cos(t)) v v^T`` with v = (1, 1, 1)/sqrt(3);
    a third of a turn maps red to green, green to blue and blue to red.
    """
    v, a = theta.new_tensor(_LUMA), _LUMA[0]
    cross = theta.new_tensor([[0, -a, a], [a, 0, -a], [-a, a, 0]])  # [v]x: [v]x y = v x y
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    r3 = cos * torch.eye(3, dtype=theta.dtype, device=theta.device)
    r3 = r3 + sin * cross + (1 - cos) * torch.outer(v, v)
    out = torch.eye(4, dtype=theta.dtype, device=theta.device).repeat(theta.shape[0], 1, 1)
    out[:, :3, :3] = r3
    return out


def _apply_colour(images: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``m`` [N, 4, 4] applied to each pixel's (r, g, b, 1); C = 1 uses the rows' mean."""
    n, c, h, w = images.shape
    flat = images.reshape(n, c, h * w)
    if c == 3:
        out = torch.baddbmm(m[:, :3, 3:], m[:, :3, :3], flat)
    else:
        row = m[:, :3, :].mean(dim=1)  # [N, 4]: grey in, grey out
        out = torch.addcmul(row[:, 3, None, None], flat, row[:, :3].sum(1)[:, None, None])
    return out.reshape(n, c, h, w)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Positions (integer or real) mirrored into [0, size - 1] about the edge pixels, at any
    distance ('reflect' padding: the edge pixel itself is not repeated)."""
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i > size - 1, period - i, i)


def _centred_grid(
    rows: int, cols: int, start: float, step: float, h: int, w: int, like: torch.Tensor
) -> torch.Tensor:
    """Homogeneous (x, y, 1) positions of a ``rows`` x ``cols`` grid that starts at pixel
    (``start``, ``start``) and advances by ``step``, relative to the centre of an [h, w] image
    -> [rows * cols, 3], dtype and device of ``like``."""
    ys = torch.arange(rows, dtype=like.dtype, device=like.device) * step + start - (h - 1) / 2
    xs = torch.arange(cols, dtype=like.dtype, device=like.device) * step + start - (w - 1) / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten(), torch.ones_like(xx.flatten())], 1)


def _blit(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Exact resampling by integer matrices ``g_inv`` [N, 3, 3] (one gather, reflected edges).

    Pixel centres sit on half-integers relative to the centre of an even-sized image, so the
    positions are computed doubled, where everything is an integer.
    """
    n, c, h, w = images.shape
    grid2 = _centred_grid(h, w, 0.0, 1.0, h, w, g_inv) * g_inv.new_tensor([2.0, 2.0, 1.0])
    g2 = g_inv[:, :2, :] * g_inv.new_tensor([1.0, 1.0, 2.0])  # translation doubled too
    src2 = (grid2 @ g2.transpose(1, 2)).round().long()  # doubled, centred
    sx = _reflect(torch.div(src2[..., 0] + (w - 1), 2, rounding_mode="floor"), w)
    sy = _reflect(torch.div(src2[..., 1] + (h - 1), 2, rounding_mode="floor"), h)
    index = (sy * w + sx)[:, None, :].expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


def _polyphase(taps: torch.Tensor) -> torch.Tensor:
    """The two phases of 2x upsampling with ``2 * taps`` (unit-sum 1-D taps) as correlation
    kernels [2, K], K odd: output 2m + r = sum_e x[m + e] * kernel[r, e + K // 2]. Equals
    ``ops.upsample2d``'s zero insertion, padding and convolution along one axis."""
    size = taps.numel()
    shift = size - 1 - (size + 1) // 2  # upsample2d's left padding, as an offset
    half = max((size - 1 - shift) // 2, (shift + 1) // 2)  # the taps' reach, both phases
    kernel = taps.new_zeros(2, 2 * half + 1)
    for r in (0, 1):
        for e in range(-half, half + 1):
            if 0 <= r + shift - 2 * e < size:
                kernel[r, e + half] = 2 * taps[r + shift - 2 * e]
    return kernel


def _upsample2x(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W] with the separable polyphase ``phases`` [2, K], one 1-D
    pass per axis (2 x K taps per output pixel instead of a 144-tap transposed convolution)."""
    n, c, h, w = x.shape
    k, half = phases.to(x.dtype), phases.shape[1] // 2
    kx = k.view(2, 1, 1, -1).repeat(c, 1, 1, 1)  # [2C, 1, 1, K]: both phases of each channel
    x = F.conv2d(x, kx, padding=(0, half), groups=c).view(n, c, 2, h, w)
    x = x.permute(0, 1, 3, 4, 2).reshape(n, c, h, 2 * w)
    x = F.conv2d(x, kx.view(2 * c, 1, -1, 1), padding=(half, 0), groups=c).view(n, c, 2, h, 2 * w)
    return x.transpose(2, 3).reshape(n, c, 2 * h, 2 * w)


def _downsample2x(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """[N, C, 2H + K - 2, 2W + K - 2] -> [N, C, H, W] for K ``taps`` (unit sum): correlation
    with stride 2 per axis, i.e. convolution with the time-reversed filter of the upsampling,
    so that down(up(x)) == x for an orthonormal wavelet. The input holds the samples that
    ``ops.downsample2d`` would read, its zero padding included: no padding here."""
    c, size = x.shape[1], taps.numel()
    k = taps.to(x.dtype).view(1, 1, -1, 1).expand(c, 1, size, 1)
    x = F.conv2d(x, k, stride=(2, 1), groups=c)  # rows first: the larger pass is contiguous
    return F.conv2d(x, k.view(c, 1, 1, size), stride=(1, 2), groups=c)


def _warp_pad(size: int) -> int:
    """Reflect padding of an image side before upsampling: both filters' reach (so that the
    identity and small shifts are exact to the border) plus an eighth of the side; positions
    further out are mirrored into the image (see the module doc)."""
    return min(size - 1, _UP_REACH + (_DOWN_LEFT + 1) // 2 + -(-size // 8))


def _warp(
    images: torch.Tensor, g_inv: torch.Tensor, phases: torch.Tensor, taps: torch.Tensor
) -> torch.Tensor:
    """Band-limited resampling of [N, C, H, W] (H, W > ``_UP_REACH``) by real matrices
    ``g_inv`` [N, 3, 3] in centred pixel units (output position -> input position).

    Reflect-pad by ``_warp_pad``, upsample 2x (sym6), sample bilinearly at twice the output
    resolution where the downsampling filter reads, downsample 2x (reversed sym6).
    """
    n, c, h, w = images.shape
    py, px = _warp_pad(h), _warp_pad(w)
    up = _upsample2x(F.pad(images, [px, px, py, py], mode="reflect"), phases)
    # 2x samples sit at each pixel's halves (pixel -+ 1/4), starting _DOWN_LEFT halves left
    # of pixel 0's first half; all shifted by the filter delay.
    rows, cols = 2 * h + 2 * _DOWN_LEFT, 2 * w + 2 * _DOWN_LEFT
    grid = _centred_grid(rows, cols, -0.25 - _DOWN_LEFT / 2 + _DELAY, 0.5, h, w, g_inv)
    src = grid @ g_inv[:, :2, :].transpose(1, 2)  # [N, K, 2], centred pixels
    src = src + src.new_tensor([(w - 1) / 2, (h - 1) / 2])  # from the top-left pixel centre
    sx, sy = src.unbind(-1)
    # Upsampled values are exact (as from the reflect-padded image) within the padding less
    # the filter's reach; further out, mirror the position into the image.
    sx = torch.where((sx - (w - 1) / 2).abs() <= (w - 1) / 2 + px - _UP_REACH, sx, _reflect(sx, w))
    sy = torch.where((sy - (h - 1) / 2).abs() <= (h - 1) / 2 + py - _UP_REACH, sy, _reflect(sy, h))
    # Input pixel x is upsampled pixels 2(x + pad) and 2(x + pad) + 1, centred at x -+ 1/4;
    # grid_sample's normalised coordinate of upsampled position j is (2j + 1) / size - 1.
    norm_x = (2 * (2 * (sx + px - _DELAY) + 0.5) + 1) / up.shape[3] - 1
    norm_y = (2 * (2 * (sy + py - _DELAY) + 0.5) + 1) / up.shape[2] - 1
    norm = torch.stack([norm_x, norm_y], -1).view(n, rows, cols, 2)
    sampled = F.grid_sample(up, norm, mode="bilinear", padding_mode="border", align_corners=False)
    return _downsample2x(sampled, taps)


@dataclass(frozen=True, kw_only=True)
class AdaOptions:
    """How ADA steers p: toward ``target`` E[sign(D(real))], adjusting every ``interval``
    minibatches so that p could move by 1 in ``ada_kimg`` thousand images.

    NVlabs uses ada_kimg 500 from scratch and 100 when it resumes from a trained D; advisor uses
    100 when starting from a pretrained discriminator.
    """

    target: float = 0.6
    interval: int = 4
    ada_kimg: float = 500.0

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ValueError(f"ADA target must be in (0, 1], got {self.target}")
        if self.interval < 1:
            raise ValueError(f"ADA interval must be >= 1 minibatch, got {self.interval}")
        if not self.ada_kimg > 0:
            raise ValueError(f"ada_kimg must be > 0, got {self.ada_kimg}")

    def adjust(self, p: float, sign_mean: float, *, batch: int) -> float:
        """``ada_adjust`` with these options."""
        return ada_adjust(
            p, sign_mean, batch=batch, interval=self.interval, ada_kimg=self.ada_kimg,
            target=self.target,
        )  # fmt: skip


def ada_adjust(
    p: float, sign_mean: float, *, batch: int, interval: int, ada_kimg: float, target: float = 0.6
) -> float:
    """The new p after ``interval`` minibatches of ``batch`` images whose mean ``sign(D(real))``
    was ``sign_mean``: ``p + sign(sign_mean - target) * batch * interval / (ada_kimg * 1000)``,
    clamped at 0 from below only (as NVlabs: p > 1 only saturates the op probabilities)."""
    diff = sign_mean - target
    sign = (diff > 0) - (diff < 0)
    return max(p + sign * batch * interval / (ada_kimg * 1000), 0.0)
