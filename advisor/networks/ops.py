"""The numerical building blocks of StyleGAN2, in plain PyTorch (no custom CUDA/C++ ops).

Conventions follow NVlabs StyleGAN2-ADA (facts, re-implemented here):

- FIR resampling filters are 2-D, built as the outer product of 1-D taps normalised to unit DC
  gain (``[1, 3, 3, 1]`` -> ``[4, 4]`` summing to 1). Upsampling by ``up`` inserts ``up - 1``
  zeros after each pixel and scales the filter by ``up**2`` so that a constant signal keeps its
  magnitude. Filtering is a true convolution (the filter is flipped; ``[1, 3, 3, 1]`` is
  symmetric, so it does not matter in practice).
- Paddings are ``(x0, x1, y0, y1)``, counted on the upsampled image; negative values crop.
- A layer's output is ``clamp(act(conv(x) + bias) * gain, -c, c)`` with leaky ReLU slope 0.2
  and gain sqrt(2) for lrelu (1 for linear). Since ``act(a) * g == act(a * g)`` for g > 0,
  advisor folds the gain into the (small) weights and biases before the convolution and runs
  only ``act`` and the clamp on the big activations (``act_clamp``), which saves several memory
  passes per layer, forward and backward. The clamp is ``hardtanh``: same values as
  ``clamp``, one-pass backward (its gradient is zero at exactly +-c, clamp's passes there).
- Weight demodulation divides each output channel by sqrt(sum of squared modulated weights +
  1e-8).

All functions take NCHW tensors and keep their dtype (float32, or bfloat16 under autocast).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Default activation gains (NVlabs ``def_gain``): keep the signal's second moment unchanged.
ACT_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}
LRELU_SLOPE = 0.2
DEMOD_EPS = 1e-8

Padding = tuple[int, int, int, int]


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """1-D taps -> 2-D separable FIR filter ``[k, k]`` float32 with unit sum."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or not 1 <= f.numel() < 8:
        raise ValueError(f"expected 1 to 7 filter taps, got {list(taps)}")
    f = torch.outer(f, f)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    return f.to(dtype)[None, None].expand(channels, 1, *f.shape).contiguous()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad, convolve with the FIR filter ``f``, downsample.

    ``x``: [N, C, H, W]; ``f``: [fh, fw] float32; ``padding`` (x0, x1, y0, y1) on the upsampled
    image. Output: [N, C, (H*up + y0 + y1 - fh + 1) / down, likewise for W] (rounded up).
    Each channel is filtered independently, so every sample is computed on its own.
    """
    n, c, h, w = x.shape
    fh, fw = f.shape
    px0, px1, py0, py1 = padding
    kernel = _depthwise(f * gain, c, x.dtype)
    if up == 1:
        # Flip: conv2d correlates, the FIR convention convolves. Symmetric padding goes to the
        # convolution itself (no padded copy); F.pad handles the rest, cropping on negatives.
        if px0 == px1 >= 0 and py0 == py1 >= 0:
            return F.conv2d(x, kernel.flip([2, 3]), stride=down, padding=(py0, px0), groups=c)
        x = F.pad(x, [px0, px1, py0, py1])
        return F.conv2d(x, kernel.flip([2, 3]), stride=down, groups=c)
    # Zero insertion + convolution == transposed convolution with the unflipped filter; take its
    # full output and shift it into the requested window.
    full = F.conv_transpose2d(x, kernel, stride=up, groups=c)  # [(H-1)*up + fh] per side
    out_h = h * up + py0 + py1 - fh + 1
    out_w = w * up + px0 + px1 - fw + 1
    shift_y, shift_x = fh - 1 - py0, fw - 1 - px0
    full = F.pad(
        full,
        [-shift_x, out_w + shift_x - full.shape[3], -shift_y, out_h + shift_y - full.shape[2]],
    )
    return full[:, :, ::down, ::down] if down > 1 else full


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample [N, C, H, W] -> [N, C, H*up, W*up] with the FIR filter ``f`` (DC gain kept)."""
    fh, fw = f.shape
    pad = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Downsample [N, C, H, W] -> [N, C, H/down, W/down] with the FIR filter ``f``."""
    fh, fw = f.shape
    pad = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """2-D convolution with optional FIR up- or downsampling (not both), plus optional bias.

    ``x``: [N, groups*I, H, W]; ``w``: [groups*O, I, kh, kw]; ``bias``: [groups*O] added to the
    output; ``padding`` is on the upsampled image. ``flip_weight=True`` correlates (like
    ``F.conv2d``), ``False`` convolves; NVlabs uses ``False`` exactly for the upsampling layers,
    and stored weights assume that. Output: [N, groups*O, H*up/down, W*up/down] for
    ``padding = kernel_size // 2``. The paddings follow NVlabs' conv2d_resample.
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does both up- and downsampling in one call: unsupported")
    out_ch, in_per_group, kh, kw = w.shape
    if up == 1 and down == 1:
        if not flip_weight:
            w = w.flip([2, 3])
        return F.conv2d(x, w, bias, padding=padding, groups=groups)
    if f is None:
        raise ValueError("resampling needs a FIR filter")
    fh, fw = f.shape
    if up > 1:
        px0, px1 = padding + (fw + up - 1) // 2, padding + (fw - up) // 2
        py0, py1 = padding + (fh + up - 1) // 2, padding + (fh - up) // 2
    else:
        px0, px1 = padding + (fw - down + 1) // 2, padding + (fw - down) // 2
        py0, py1 = padding + (fh - down + 1) // 2, padding + (fh - down) // 2

    if down > 1:
        if not flip_weight:
            w = w.flip([2, 3])
        if kh == 1 and kw == 1:  # filter and subsample first: 1x1 conv on the small image
            x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
            return F.conv2d(x, w, bias, groups=groups)
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return F.conv2d(x, w, bias, stride=down, groups=groups)
    if kh == 1 and kw == 1:  # 1x1 conv on the small image, then upsample
        x = F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)
    else:
        # Transposed convolution (stride ``up``) then the FIR filter. conv_transpose2d
        # convolves, so a correlating layer (flip_weight=True) flips its weight here.
        if flip_weight:
            w = w.flip([2, 3])
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = F.conv_transpose2d(x, wt, stride=up, padding=(pyt, pxt), groups=groups)
        pad = (px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt)
        x = upfirdn2d(x, f, padding=pad, gain=up * up)
    return x if bias is None else x.add_(bias.to(x.dtype).reshape(1, -1, 1, 1))


def act_clamp(x: torch.Tensor, *, act: str = "linear", clamp: float | None = None) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) if ``act == 'lrelu'``, then clamp to +-``clamp`` (None: no clamp).

    Gains and biases are expected folded in already (see the module doc). ``x`` must be a fresh
    pre-activation that nothing else holds (a convolution or addition result): it is
    overwritten in place, which saves CPU allocations (fresh pages for every large tensor).
    """
    if act not in ("linear", "lrelu"):
        raise ValueError(f"unsupported activation {act!r}")
    if act == "linear":
        return x if clamp is None else F.hardtanh(x, -clamp, clamp)
    return _LeakyReluClamp.apply(x, clamp)


class _LeakyReluClamp(torch.autograd.Function):
    """In-place ``hardtanh(leaky_relu(x, 0.2), -c, c)``; backward from the saved output.

    The gradient is ``grad * (0.2 if y <= 0 else 1) * (|y| < c)``, computed with the built-in
    backward kernels so that double backward (R1 and path-length regularisation) works.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, clamp: float | None) -> torch.Tensor:  # noqa: D102
        F.leaky_relu_(x, LRELU_SLOPE)
        if clamp is not None:
            F.hardtanh_(x, -clamp, clamp)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.clamp = clamp
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (y,) = ctx.saved_tensors
        if ctx.clamp is None:
            return torch.ops.aten.leaky_relu_backward(grad, y, LRELU_SLOPE, True), None
        grad = torch.ops.aten.hardtanh_backward(grad, y, -ctx.clamp, ctx.clamp)
        if torch.is_grad_enabled():  # double backward: stay differentiable
            return torch.ops.aten.leaky_relu_backward(grad, y, LRELU_SLOPE, True), None
        # ``grad`` is our own fresh tensor here: reuse its memory.
        lrelu_backward = torch.ops.aten.leaky_relu_backward.grad_input
        return lrelu_backward(grad, y, LRELU_SLOPE, True, grad_input=grad), None


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of ``x`` [N, D] to unit mean square (the mapping network's z input)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def batch_invariant_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w`` for x [N, K], w [K, M], one matrix-vector product per row.

    A plain matrix product lets BLAS choose kernels (and summation orders) by N, so a row's
    last bits depend on its batch; a batched product of N identical [1, K] x [K, M] problems
    does not.
    """
    n = x.shape[0]
    return torch.bmm(x.unsqueeze(1), w.unsqueeze(0).expand(n, -1, -1)).squeeze(1)


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-output-channel demodulation coefficients [N, O], float32.

    ``weight``: [O, I, kh, kw]; ``styles``: [N, I]. Equals
    ``rsqrt(sum_{i,k} (weight[o,i,k] * styles[n,i])**2 + 1e-8)`` computed as one matmul, so the
    [N, O, I, kh, kw] modulated weight is never materialised.
    """
    w2 = weight.float().square().sum(dim=[2, 3])  # [O, I]
    return (styles.float().square() @ w2.t() + DEMOD_EPS).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    gain: float = 1.0,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution, returning ``gain * (demod(conv(x, w * s)) + noise + b)``.

    ``x``: [N, I, H, W]; ``weight``: [O, I, kh, kw] (shared); ``styles``: [N, I] float32;
    ``noise``: broadcastable to the output ([H, W] or [N, 1, H, W]), ``bias``: [O]. Output
    [N, O, H*up, W*up], pre-activation; ``gain`` is the following activation's gain, folded in
    here so that it costs no pass over the output.

    ``fused=True`` builds per-sample weights and runs one grouped convolution (group = sample);
    its output for a sample does not depend on the rest of the batch. ``fused=False`` scales
    activations before and after one shared-weight convolution (faster for training).
    """
    n, in_ch = styles.shape
    if fused:
        w = weight.float().unsqueeze(0) * styles.float().reshape(n, 1, in_ch, 1, 1)
        if demodulate:  # per (sample, output channel) reduction: independent of the batch
            w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + DEMOD_EPS).rsqrt()
        out = _grouped_conv(x, (w * gain).to(x.dtype), resample_filter, up, padding, flip_weight)
        scale = None
    else:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        out = conv2d_resample(
            x, weight.to(x.dtype), resample_filter, up=up, padding=padding, flip_weight=flip_weight
        )
        scale = demodulation(weight, styles) * gain if demodulate else None  # [N, O]
    return _scale_add(out, scale, noise, bias, gain)


def _scale_add(
    out: torch.Tensor,
    scale: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    gain: float,
) -> torch.Tensor:
    """``out * scale + gain * (noise + bias)`` in as few passes over ``out`` as possible.

    ``scale`` [N, O] (None: 1, the gain being already in the convolution weights); ``noise``
    [H, W], [1, 1, H, W] or [N, 1, H, W]; ``bias`` [O].
    """
    dt = out.dtype
    per_sample_noise = noise is not None and noise.ndim == 4 and noise.shape[0] > 1
    extra = None  # everything without a batch dimension, summed into one small tensor
    if bias is not None:
        extra = (bias * gain).reshape(-1, 1, 1)
    if noise is not None and not per_sample_noise:
        n = noise.reshape(noise.shape[-2:]) * gain
        extra = n if extra is None else extra + n
    # ``out`` is a fresh convolution result (convolutions do not save their output), and so is
    # every intermediate here: adding in place is safe for autograd and saves allocations.
    if scale is not None:
        scale = scale.to(dt).reshape(*scale.shape, 1, 1)
        if per_sample_noise:
            out = torch.addcmul((noise * gain).to(dt), out, scale)
            return out if extra is None else out.add_(extra.to(dt))
        return out * scale if extra is None else torch.addcmul(extra.to(dt), out, scale)
    if per_sample_noise:
        out = out.add_((noise * gain).to(dt))
    return out if extra is None else out.add_(extra.to(dt))


def _grouped_conv(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None,
    up: int,
    padding: int,
    flip_weight: bool,
) -> torch.Tensor:
    """Per-sample weights w [N, O, I, kh, kw] applied to x [N, I, H, W] as one grouped conv.

    Each sample is its own group, so no arithmetic mixes samples.
    """
    n = x.shape[0]
    out = conv2d_resample(
        x.reshape(1, -1, *x.shape[2:]),
        w.reshape(-1, *w.shape[2:]),
        f,
        up=up,
        padding=padding,
        groups=n,
        flip_weight=flip_weight,
    )
    return out.reshape(n, -1, *out.shape[2:])
